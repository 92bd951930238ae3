"""The sample-efficiency study (`genie study --budgets 50000 100000 250000 --seeds 3 --out runs/study`).

At each real-frame budget B, from nothing:
    the preset's pipeline scaled to B real frames in all (every round of the loop counted, tokenizer
    included) -> the final world model -> N dream agents (seeds 0..N-1) -> N PPO agents on the real game
    with B frames and the same CNN -> every agent on validation levels (which pick the seed that ships)
    and on test levels (which the table reports) -> OUT/study.md, OUT/study.json, OUT/study.png.

Every stage is recorded in OUT/stages.json and skipped when the command runs again, and a training stage
that was killed resumes from its checkpoint, so the study survives being stopped and resumed many times.
Both level ranges are checked disjoint from every level behind the world models and the agents.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from genie_env.games import DistributionMode
from genie_env.presets import PipelinePreset, PresetName, pipeline_preset
from genie_env.world_model import Precision

from .common import StageRecord, cli_errors, setup_logging

logger = logging.getLogger(__name__)

SPLITS = ("val", "test")


@dataclass(frozen=True)
class StudyArgs:
    """Arguments of `genie study`."""

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
    val_start_level: int = 2_000_000
    """first level of the validation range (picks the seed that ships)"""
    val_num_levels: int = 1000
    """levels in the validation range"""
    val_episodes: int = 1024
    """validation episodes per agent"""
    test_episodes: int = 500
    """test episodes per agent, on levels 1,000,000 .. 1,000,499 (what the table reports)"""
    dream_precision: Precision = "auto"
    """precision of the dreams the agents train in: auto is bf16 (as the shipped agent) where bf16 is fast"""

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) < 1 or self.seeds < 1:
            raise ValueError("--budgets needs at least one budget >= 1 and --seeds must be >= 1")


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
        self.stages = StageRecord(self.out / "stages.json", {"preset": args.preset, "seed": args.seed})

    def pipeline(self, budget: int):
        from .pipeline import Pipeline, PipelineArgs

        args = PipelineArgs(preset=self.args.preset, out=str(self.out / str(budget) / "pipeline"), seed=self.args.seed,
                            distribution_mode=self.args.distribution_mode, full_steps=True)  # fmt: skip
        header = {"preset": self.args.preset, "budget": budget}
        return Pipeline(args, budget_preset(self.base, budget), header)

    def run(self) -> dict[str, Any]:
        from genie_env._io import DirLock

        with DirLock(self.out):
            return self._run()

    def _run(self) -> dict[str, Any]:
        from genie_env.agents.study import write_study

        random = {split: self.stages.stage(f"eval/random_{split}", lambda s=split: self.evaluate("random", s, ()))
                  for split in SPLITS}  # fmt: skip
        rows = []
        for budget in sorted(self.args.budgets):
            rows.append(self.budget(budget))
            paths = write_study(rows, self.out, random["test"])  # after each budget: what is done so far
        return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}}

    def budget(self, budget: int) -> dict[str, Any]:
        """Every stage of one budget; returns its table row."""
        from genie_env.agents.study import budget_row, summarise_side
        from genie_env.agents.train import train_or_resume

        pipe = self.pipeline(budget)
        rounds = pipe.preset.rounds
        runs = {}

        def agent(side: str, seed: int, cfg) -> None:
            run = runs[(side, seed)] = self.out / str(budget) / f"{side}_seed{seed}"
            self.stages.stage(f"{budget}/{side}_seed{seed}", lambda: str(train_or_resume(cfg, run)))

        for seed in range(self.args.seeds):  # first: they need no world model, and they are the cheap side
            agent("real", seed, dataclasses.replace(pipe.agent_config("real", budget), seed=seed, world_model=None,
                                                    context=()))  # fmt: skip
        world_model = pipe.build_world_model()
        exclude = tuple(str(pipe.path("world_model", k)) for k in range(1, rounds + 1))
        for seed in range(self.args.seeds):
            cfg = pipe.agent_config("dream", pipe.preset.agent_steps, rounds)
            agent("dream", seed, dataclasses.replace(cfg, seed=seed, precision=self.args.dream_precision))
        exclude += tuple(str(r) for r in runs.values())
        sides: dict[str, Any] = {}
        for side in ("dream", "real"):
            results = {split: {} for split in SPLITS}
            for seed in range(self.args.seeds):
                for split in SPLITS:
                    name = f"{budget}/eval/{side}_seed{seed}_{split}"
                    agent = str(runs[(side, seed)] / "agent.zip")
                    results[split][seed] = self.stages.stage(
                        name, lambda a=agent, s=split: self.evaluate(a, s, exclude)
                    )
            sides[side] = summarise_side(results["val"], results["test"])
        logger.info("budget %d: world model %s", budget, world_model)
        return budget_row(budget, sides)

    def evaluate(self, agent: str, split: str, exclude: tuple[str, ...]) -> dict[str, Any]:
        """One agent on the validation or test levels; the summary without the per-episode lists (the full
        result is kept in OUT/eval/ or OUT/BUDGET/eval/)."""
        from genie_env._io import atomic_write_json

        from .evaluate import EvaluateArgs
        from .evaluate import run as evaluate

        a = self.args
        levels = {"start_level": a.val_start_level, "num_levels": a.val_num_levels} if split == "val" else {}
        episodes = a.val_episodes if split == "val" else a.test_episodes
        result = evaluate(EvaluateArgs(agent, episodes=episodes, distribution_mode=a.distribution_mode, seed=a.seed,
                                       exclude=exclude, progress=False, **levels))  # fmt: skip
        where = Path(agent).parent.parent if agent != "random" else self.out
        name = Path(agent).parent.name if agent != "random" else "random"
        atomic_write_json(where / "eval" / f"{name}_{split}.json", result)
        return {k: v for k, v in result.items() if k != "per_episode"}


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
