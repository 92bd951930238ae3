"""The sample-efficiency study (`genie study --budgets 50000 100000 250000 --seeds 3 --out runs/study`).

At each real-frame budget B, from nothing:
    the preset's pipeline scaled to B real frames in all (every round of the loop counted, tokenizer
    included) -> the final world model -> N dream agents (seeds 0..N-1) -> N PPO agents on the real game
    with B frames and the same CNN; each agent, as soon as it is trained, on validation levels (which pick
    the seed that ships) and on test levels (which the table reports) -> OUT/study.md, OUT/study.json,
    OUT/study.png.

Every stage is recorded in OUT/stages.json and skipped when the command runs again, and a training stage
that was killed resumes from its checkpoint, so the study survives being stopped and resumed many times.
With --records, an agent trained and evaluated on a machine since lost is not trained again: its figures
are in the records. Both level ranges are checked disjoint from every level behind each agent (its own
and, for a dream agent, its world model's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from genie_env.games import DistributionMode
from genie_env.presets import PipelinePreset, PresetName, pipeline_preset
from genie_env.world_model import Precision

from .carry import drop_in_progress, in_progress, mirrored, restore
from .common import StageRecord, cli_errors, setup_logging
from .evaluate import HeldOutSplits

logger = logging.getLogger(__name__)

SPLITS = ("val", "test")


@dataclass(frozen=True)
class StudyArgs(HeldOutSplits):
    """Arguments of `genie study` (and the validation and test levels every agent is played on)."""

    budgets: tuple[int, ...] = (50_000, 100_000, 250_000)
    """real-frame budgets: each gets its own world model, tokenizer included, from at most that many real frames"""
    seeds: int = 3
    """agents per side (dream, real) and budget: seeds 0..N-1"""
    preset: PresetName = "cpu"
    """the pipeline recipe each budget scales (its rounds and their shares, models, agent settings)"""
    out: str = "runs/study"
    """directory of the study: OUT/BUDGET/ per budget, OUT/stages.json, OUT/study.{md,json,png}"""
    seed: int = 0
    """seed of collection and of the world models' training"""
    distribution_mode: DistributionMode = "easy"
    """CoinRun difficulty: easy or hard"""
    ship_to: str | None = None
    """also copy each budget's picked dream agent (OUT/ship/BUDGET/) to SHIP_TO/BUDGET/, e.g.
    genie_env/assets/coinrun/sample_efficiency"""
    records: str | None = None
    """a second copy of OUT/stages.json, kept after every stage somewhere that outlives the machine (e.g.
    docs/sample_efficiency/stages.json, committed): where OUT has no stages.json (a new machine), the study
    starts from it, so finished evaluations and budgets are not run again (a finished budget is tabled
    from its records alone; a recorded agent whose files are gone is kept where both its evaluations are
    recorded, else trained again)"""
    carry: str | None = None
    """a directory that outlives the machine, beside --records (e.g. docs/sample_efficiency/carry): each budget's
    pipeline keeps its record and its trained models and agents (`genie pipeline --carry`; tens of MB a budget),
    and each agent is mirrored there while it trains (until its evaluations are recorded): on a new machine a
    budget's world model, and an agent cut off half way, go on from there instead of from nothing"""
    dream_precision: Precision = "auto"
    """precision of the dreams the agents train in: auto is bf16 (as the shipped agent) where bf16 is fast"""
    world_models_from: str | None = None
    """take the world models and the real PPO agents of this other study's --out, read-only, and train only
    the dream agents here (every agent is evaluated again into this study's records): a --dream-recipe
    measured on the same world models without days of tokenizers and dynamics (same preset and seed; not
    with Dyna, whose frames change the world models' budget)"""
    dream_recipe: str = "{}"
    """AgentConfig fields the dream agents change, as JSON: a lever measured by benchmarks/dream_levers.py,
    e.g. '{"entropy_limit": 2.5}'. Dyna's real frames ('{"real_envs": 8}') come out of each budget, so the
    world model gets fewer. One --out holds one recipe."""

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) < 1 or self.seeds < 1:
            raise ValueError("--budgets needs at least one budget >= 1 and --seeds must be >= 1")
        recipe = self.recipe()
        if {"seed", "env", "world_model", "context"} & set(recipe):
            raise ValueError(f"--dream-recipe {self.dream_recipe}: the study sets seed, env, world_model and context")

    def recipe(self) -> dict[str, Any]:
        """--dream-recipe as a dict (ValueError for text that is not a JSON object)."""
        try:
            recipe = json.loads(self.dream_recipe)
        except json.JSONDecodeError as err:
            raise ValueError(f"--dream-recipe {self.dream_recipe!r} is not JSON ({err})") from None
        if not isinstance(recipe, dict):
            raise ValueError(f"--dream-recipe {self.dream_recipe!r}: needs a JSON object of AgentConfig fields")
        return recipe


def budget_preset(base: PipelinePreset, budget: int) -> PipelinePreset:
    """`base`'s recipe with at most `budget` real frames over all its rounds, shared among the rounds as in
    `base`. Collection stops the step its target is reached, keeping every env's running episode (up to
    `collect_envs - 1` frames more), so each round's target leaves that room and the total stays <= budget."""
    total = base.frames + (base.rounds - 1) * base.round_frames
    slack = base.collect_envs - 1
    later = round(budget * base.round_frames / total) if base.rounds > 1 else 0
    first = budget - (base.rounds - 1) * later
    if min(first, later if base.rounds > 1 else first) <= slack:
        raise ValueError(f"--budgets {budget} is too small for {base.rounds} rounds of {base.collect_envs} envs")
    return dataclasses.replace(base, frames=first - slack, round_frames=max(later - slack, 1))


class Study:
    """Runs the study's stages in order (see the module docstring)."""

    def __init__(self, args: StudyArgs) -> None:
        self.args, self.base = args, pipeline_preset(args.preset)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.recipe = args.recipe()
        header = {"preset": args.preset, "seed": args.seed, "dream_recipe": self.recipe,
                  "world_models_from": args.world_models_from}  # fmt: skip
        legacy = {"dream_recipe": {}, "world_models_from": None}
        records = None if args.records is None else Path(args.records)
        self.stages = StageRecord(self.out / "stages.json", header, legacy=legacy, mirror=records)
        self.dyna_frames = self._dyna_frames()  # also: a bad recipe fails now, not after hours of world model
        self.source = self._source()

    def base_agent(self):
        """The preset's dream agent, before the study gives it a world model, seed and recipe."""
        from genie_env.agents.train import AgentConfig

        b = self.base
        return AgentConfig(env="dream", steps=b.agent_steps, num_envs=b.agent_envs, n_steps=b.agent_n_steps,
                           batch_size=b.agent_batch, features=b.agent_features)  # fmt: skip

    def dream_config(self, cfg, seed: int):
        """`cfg` (a dream agent's config) with the study's seed, precision and --dream-recipe."""
        from genie_env.agents.train import with_fields

        cfg = dataclasses.replace(cfg, seed=seed, precision=self.args.dream_precision)
        return with_fields(cfg, self.recipe, "--dream-recipe")

    def _dyna_frames(self) -> int:
        """The real frames each dream agent takes itself (Dyna's real envs; 0 without), out of every budget."""
        from genie_env.agents.train import real_steps, trained_steps

        cfg = self.dream_config(self.base_agent(), 0)
        return real_steps(cfg, trained_steps(cfg))

    def _source(self) -> Path | None:
        """--world-models-from, checked: a study of the same preset and seed, and a recipe without Dyna."""
        if self.args.world_models_from is None:
            return None
        source = Path(self.args.world_models_from)
        if not (source / "stages.json").exists():
            raise ValueError(f"--world-models-from {source}: no study there ({source / 'stages.json'} is missing)")
        if source.resolve() == self.out.resolve():
            raise ValueError("--world-models-from names this study's own --out")
        theirs = json.loads((source / "stages.json").read_text())
        for key in ("preset", "seed"):
            if theirs.get(key) != getattr(self.args, key):
                raise ValueError(f"--world-models-from {source} is a --{key} {theirs.get(key)} study, not "
                                 f"{getattr(self.args, key)}")  # fmt: skip
        if self.dyna_frames:
            raise ValueError(f"--dream-recipe {self.args.dream_recipe} takes {self.dyna_frames:,} real frames (Dyna): "
                             "its world models get fewer, so another study's cannot be taken")  # fmt: skip
        return source

    def pipeline(self, budget: int):
        """The world model's pipeline of `budget`: all of its real frames but the dream agents' own (in
        --world-models-from's study when given)."""
        from .pipeline import Pipeline, PipelineArgs

        root = self.source or self.out
        if self.source is not None and not (root / str(budget) / "pipeline" / "pipeline.json").exists():
            raise ValueError(f"--world-models-from {self.source} has no world model of budget {budget:,} yet: run "
                             "that study first")  # fmt: skip
        carry = None if self.args.carry is None or self.source is not None else str(Path(self.args.carry) / str(budget))
        args = PipelineArgs(preset=self.args.preset, out=str(root / str(budget) / "pipeline"), seed=self.args.seed,
                            distribution_mode=self.args.distribution_mode, full_steps=True, carry=carry)  # fmt: skip
        frames = budget - self.dyna_frames
        if frames < 1:
            raise ValueError(f"--dream-recipe {self.args.dream_recipe}: its agents take {self.dyna_frames:,} real "
                             f"frames, the whole budget of {budget:,}")  # fmt: skip
        header = {"preset": self.args.preset, "budget": frames}
        return Pipeline(args, budget_preset(self.base, frames), header)

    def run(self) -> dict[str, Any]:
        from genie_env._io import DirLock

        with DirLock(self.out):
            return self._run()

    def _run(self) -> dict[str, Any]:
        from genie_env.agents.study import write_study

        random = {split: self.evaluated(f"eval/random_{split}", "random", split, (), self.out / "eval" /
                                        f"random_{split}.json") for split in SPLITS}  # fmt: skip
        rows = []
        for budget in sorted(self.args.budgets):
            rows.append(self.budget(budget))
            paths = write_study(rows, self.out, random["test"])  # after each budget: what is done so far
        return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}}

    def budget(self, budget: int) -> dict[str, Any]:
        """Every stage of one budget; returns its table row."""
        from genie_env.agents.study import budget_row
        from genie_env.agents.train import steps_within, train_or_resume

        if self.finished(budget):
            logger.info("budget %d: every stage is recorded: tabled from %s alone", budget, self.stages.path)
            row = budget_row(budget, {side: self.scores(budget, side) for side in ("dream", "real")})
            self.ship_pick(row)
            return row
        pipe = self.pipeline(budget)
        rounds, p, seeds = pipe.preset.rounds, pipe.preset, range(self.args.seeds)

        def agent(side: str, seed: int, cfg, exclude: tuple[str, ...] = ()) -> None:
            """Train (where not recorded) and evaluate one agent; `exclude`: levels behind it besides its own."""
            if side == "real" and self.source is not None:  # the other study's, read-only
                self.evaluate_agent(budget, side, seed, self.taken_agent(budget, seed), exclude)
                return
            run = self.out / str(budget) / f"{side}_seed{seed}"
            name = f"{budget}/{side}_seed{seed}"
            if self.kept_from_records(budget, side, seed, run):
                return
            kept = None if self.args.carry is None else Path(self.args.carry) / str(budget) / run.name
            mirror = None if kept is None else in_progress(kept)  # the agent, mirrored while it trains
            if mirror is not None and not (side == "dream" and pipe.retrained):  # else: from another world model
                restore(run, mirror)
            self.retrain_if_over_budget(budget, side, seed, run)
            self.retrain_if_lost(budget, side, seed, run)
            with mirrored(run, mirror) if mirror is not None else contextlib.nullcontext():
                self.stages.stage(name, lambda: str(train_or_resume(cfg, run)))
            if real_frames(run) > budget:
                raise ValueError(f"{run / 'config.json'}: the agent took {real_frames(run):,} real frames, over the "
                                 f"budget of {budget:,}")  # fmt: skip
            self.evaluate_agent(budget, side, seed, run, exclude)
            if kept is not None:  # its figures are recorded: the mirror is not needed any more
                drop_in_progress(kept)

        ppo_steps = steps_within(budget, p.agent_envs, p.agent_n_steps)  # whole rollouts, never past the budget
        for seed in seeds:  # first: they need no world model, and they are the cheap side
            agent("real", seed, dataclasses.replace(pipe.agent_config("real", ppo_steps), seed=seed, world_model=None,
                                                    context=()))  # fmt: skip
        run = self.out / str(budget)
        if all(self.kept_from_records(budget, "dream", seed, run / f"dream_seed{seed}") for seed in seeds):
            logger.info("budget %d: every dream agent is recorded trained and evaluated: no world model needed",
                        budget)  # fmt: skip
        else:
            world_model = pipe.finished_world_model() if self.source is not None else pipe.build_world_model()
            logger.info("budget %d: world model %s", budget, world_model)
            exclude = tuple(str(pipe.path("world_model", k)) for k in range(1, rounds + 1))
            for seed in seeds:
                agent("dream", seed, self.dream_config(pipe.agent_config("dream", p.agent_steps, rounds), seed),
                      exclude)  # fmt: skip
        row = budget_row(budget, {side: self.scores(budget, side) for side in ("dream", "real")})
        self.ship_pick(row)
        return row

    def evaluate_agent(self, budget: int, side: str, seed: int, run: Path, exclude: tuple[str, ...]) -> None:
        """Both evaluations of the agent in `run` (where not recorded as asked), checked against its own levels
        and `exclude`'s."""
        for split in SPLITS:
            out = self.out / str(budget) / "eval" / f"{side}_seed{seed}_{split}.json"
            self.evaluated(eval_stage(budget, side, seed, split), str(run / "agent.zip"), split,
                           (*exclude, str(run)), out)  # fmt: skip

    def scores(self, budget: int, side: str):
        """One side's recorded evaluations at `budget`, summarised."""
        from genie_env.agents.study import summarise_side

        stages, seeds = self.stages.record["stages"], range(self.args.seeds)
        results = {split: {seed: stages[eval_stage(budget, side, seed, split)]["result"] for seed in seeds}
                   for split in SPLITS}  # fmt: skip
        return summarise_side(results["val"], results["test"])

    def finished(self, budget: int) -> bool:
        """Whether every agent of `budget` is recorded trained, within the budget (by its files where they are
        here), and every evaluation recorded as asked now."""
        seeds = range(self.args.seeds)
        sides = ("dream",) if self.source is not None else ("dream", "real")  # real PPO: the other study's
        runs = [self.out / str(budget) / f"{side}_seed{seed}" for side in sides for seed in seeds]
        trained = all(self.stages.done(f"{budget}/{run.name}") for run in runs) and all(
            real_frames(run) <= budget for run in runs if (run / "config.json").exists()
        )
        return trained and all(self.evaluations_recorded(budget, side, seed) for side in ("dream", "real")
                               for seed in seeds)  # fmt: skip

    def evaluations_recorded(self, budget: int, side: str, seed: int) -> bool:
        """Whether both evaluations of one agent are recorded as asked now, of an agent within the budget."""
        stages = self.stages.record["stages"]
        return all(
            self.stages.done(name := eval_stage(budget, side, seed, split))
            and self.args.asked(stages[name]["result"], split)
            and int(stages[name]["result"].get("real_frames") or 0) <= budget
            for split in SPLITS
        )

    def kept_from_records(self, budget: int, side: str, seed: int, run: Path) -> bool:
        """Whether the agent of `run` is recorded trained and evaluated while its files are gone (with the
        machine that trained it): what the study needs of it is in the records, so it is not trained again."""
        kept = not (run / "config.json").exists() and self.stages.done(f"{budget}/{side}_seed{seed}") and (
            self.evaluations_recorded(budget, side, seed))  # fmt: skip
        if kept:
            logger.info("%s is gone but recorded trained and evaluated in %s: kept from the records", run,
                        self.stages.path)  # fmt: skip
        return kept

    def ship_pick(self, row: dict[str, Any]) -> None:
        """Ship a budget's picked dream agent (its files may be gone with the machine that trained it): where
        shipped already with these figures, it is copied to where it is missing; where shipped nowhere, it is
        shipped from its run, or, with that gone too, left unshipped with a warning."""
        import shutil

        from genie_env._io import atomic_dir

        budget, seed = row["budget"], row["dream"]["picked_seed"]
        test = self.stages.record["stages"][eval_stage(budget, "dream", seed, "test")]["result"]

        def holds_pick(target: Path) -> bool:
            if not (target / "agent.json").exists():
                return False
            picked = json.loads((target / "agent.json").read_text()).get("picked", {})
            return (picked.get("seed"), picked.get("test_return"), picked.get("test_episodes")) == (
                seed, test["mean_return"], test["episodes"])  # fmt: skip

        targets = self.ship_targets(budget)
        shipped = [target for target in targets if holds_pick(target)]
        if not shipped:
            run = self.out / str(budget) / f"dream_seed{seed}"
            if not (run / "config.json").exists():
                logger.warning("budget %d: the picked dream agent %s is gone and shipped nowhere: not shipped "
                               "(--ship-to keeps a copy that outlives the machine)", budget, run)  # fmt: skip
                return
            self.ship(row, run, Path(json.loads((run / "config.json").read_text())["config"]["world_model"]))
            return
        for target in targets:
            if target not in shipped:
                if target.exists() and not (target / "agent.json").exists():
                    raise ValueError(f"{target} exists and holds no shipped agent: refusing to replace it")
                with atomic_dir(target) as tmp:
                    for name in ("agent.zip", "agent.json", "levels.json"):
                        shutil.copy2(shipped[0] / name, tmp / name)

    def ship(self, row: dict[str, Any], run: Path, world_model: Path) -> Path:
        """OUT/ship/BUDGET/ (and SHIP_TO/BUDGET/ with --ship-to): the picked dream agent `run`'s agent.zip,
        agent.json (its training record, the budget, the pick and its figures, the world model) and
        levels.json (every real level behind it), so `genie evaluate DIR/agent.zip --exclude DIR/levels.json`
        reproduces the table's test figure. Written by a directory swap: a copy is whole or absent."""
        import shutil

        from genie_env._io import atomic_dir, atomic_write_json

        budget, seed = row["budget"], row["dream"]["picked_seed"]
        result = {split: self.stages.record["stages"][eval_stage(budget, "dream", seed, split)]["result"]
                  for split in SPLITS}  # fmt: skip
        record = json.loads((run / "config.json").read_text())
        model_levels = json.loads((Path(world_model) / "levels.json").read_text())
        seeds = set(model_levels["level_seeds"]) | set(json.loads((run / "levels.json").read_text())["level_seeds"])
        agent = {
            **record, "budget": budget, "world_model": {"path": str(world_model), "frames": model_levels["frames"]},
            "picked": {"seed": seed, "on": "validation levels", "val_return": result["val"]["mean_return"],
                       "test_return": result["test"]["mean_return"], "test_ci": result["test"]["return_ci"],
                       "test_episodes": result["test"]["episodes"]},
        }  # fmt: skip
        targets = self.ship_targets(budget)
        for target in targets:
            if target.exists() and not (target / "agent.json").exists():
                raise ValueError(f"--ship-to {target} exists and holds no shipped agent: refusing to replace it")
            with atomic_dir(target) as tmp:
                shutil.copy2(run / "agent.zip", tmp / "agent.zip")
                atomic_write_json(tmp / "agent.json", agent)
                atomic_write_json(tmp / "levels.json", {**model_levels, "level_seeds": sorted(seeds)})
        return targets[0]

    def ship_targets(self, budget: int) -> list[Path]:
        """Where `budget`'s picked dream agent is shipped: OUT/ship/BUDGET/, and SHIP_TO/BUDGET/ with --ship-to."""
        ship_to = [Path(self.args.ship_to) / str(budget)] if self.args.ship_to else []
        return [self.out / "ship" / str(budget), *ship_to]

    def retrain_if_over_budget(self, budget: int, side: str, seed: int, run: Path) -> None:
        """An agent recorded done that took more real frames than `budget` (real PPO before budgets were kept
        to whole rollouts took up to one rollout more) is moved aside to RUN.over_budget, and it and its
        evaluations are trained and run again."""
        name = f"{budget}/{side}_seed{seed}"
        if not self.stages.done(name) or not run.exists() or real_frames(run) <= budget:
            return
        aside = run.with_name(run.name + ".over_budget")
        if aside.exists():
            raise ValueError(f"{run} took more than {budget:,} real frames and {aside} is in the way: move it")
        logger.warning("%s took %s real frames, over the budget of %s: moved to %s and trained again", run,
                       f"{real_frames(run):,}", f"{budget:,}", aside)  # fmt: skip
        run.rename(aside)
        self.stages.forget(name, *(eval_stage(budget, side, seed, split) for split in SPLITS))

    def retrain_if_lost(self, budget: int, side: str, seed: int, run: Path) -> None:
        """An agent recorded done whose files are gone (the record came from --records on a new machine) is
        trained again, and its evaluations run again."""
        name = f"{budget}/{side}_seed{seed}"
        if self.stages.done(name) and not (run / "config.json").exists():
            logger.warning("%s is recorded done but %s is gone: training it again", name, run / "config.json")
            self.stages.forget(name, *(eval_stage(budget, side, seed, split) for split in SPLITS))

    def evaluated(self, name: str, agent: str, split: str, exclude: tuple[str, ...], out: Path) -> dict[str, Any]:
        """Stage `name`: one agent on the validation or test levels (again where it was recorded with other
        episodes or levels); the summary without the per-episode lists (the full result is kept at `out`, in
        OUT/eval/ or OUT/BUDGET/eval/)."""
        return self.stages.stage(name, lambda: self.args.evaluate(agent, split, exclude, out,
                                                                  self.args.distribution_mode, self.args.seed),
                                 current=lambda result: self.args.asked(result, split))  # fmt: skip

    def taken_agent(self, budget: int, seed: int) -> Path:
        """The real PPO agent of --world-models-from at `budget` and `seed`, which must be done there (and within
        the budget); it is evaluated here again, into this study's own records."""
        theirs = json.loads((self.source / "stages.json").read_text())["stages"]
        run = self.source / str(budget) / f"real_seed{seed}"
        if f"{budget}/real_seed{seed}" not in theirs or not (run / "agent.zip").exists():
            raise ValueError(f"--world-models-from {self.source}: its real PPO {run} is not done: finish it there")
        if real_frames(run) > budget:
            raise ValueError(f"--world-models-from {self.source}: {run} took {real_frames(run):,} real frames, over "
                             f"the budget of {budget:,}: let that study train it again first")  # fmt: skip
        return run


def eval_stage(budget: int, side: str, seed: int, split: str) -> str:
    """The name of the stage that evaluates one agent on one split."""
    return f"{budget}/eval/{side}_seed{seed}_{split}"


def real_frames(run: Path) -> int:
    """The real frames the agent in `run` cost, as its config.json records them (0 where unknown)."""
    return int(json.loads((run / "config.json").read_text()).get("real_frames") or 0)


def main(argv: list[str] | None = None) -> None:

    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(StudyArgs, args=argv, prog="genie study", description=__doc__)
        result = Study(args).run()
    from genie_env.agents.study import format_study_table

    print(format_study_table(result["rows"]))
    print(f"wrote {result['paths']['markdown']}, {result['paths']['png']}")


if __name__ == "__main__":
    main()
