"""Every stage from nothing to the compare table (`genie pipeline --preset tiny|cpu|gpu --out DIR`).

    collect → train tokenizer → tokenize → train dynamics → package world model → PPO in the dream →
    [each further round: collect with the dream agent → tokenize → fine-tune the dynamics on every
     round's data (then, if the preset says so, with self-forcing) → package → retrain PPO in the new dream] →
    PPO on the real game with the same real frames (every round's) → evaluate on held-out real levels → compare

`--preset cpu` reproduces the shipped model (2 CPU cores, about 6.7 hours for both rounds, IMPALA-CNN
agents); `--preset tiny` runs every stage for real at budgets that finish in minutes (its models need
not transfer). Finished stages are
recorded in DIR/pipeline.json and skipped when the command runs again; an interrupted training stage
resumes from its last checkpoint. With --carry, the record and every trained model and agent are kept also
somewhere that outlives the machine, and a new machine goes on from them (what they were made from is made
again: collection is seeded, tokenizing and packaging are deterministic).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tyro

from genie_env.games import DEFAULT_GAME, DistributionMode, check_game
from genie_env.presets import PipelinePreset, PresetName, pipeline_preset

from .carry import carry_run, copy_back, drop_in_progress, in_progress, mirrored, restore
from .common import StageRecord, cli_errors, setup_logging

logger = logging.getLogger(__name__)

REMADE = ("data", "tokens", "world_model")
"""stage outputs a new machine makes again rather than take from --carry (seeded collection, deterministic
tokenizing and packaging, cheap next to training); the others (tokenizer, dynamics, agents) are carried"""


@dataclass(frozen=True)
class PipelineArgs:
    """Arguments of `genie pipeline`."""

    preset: PresetName = "cpu"
    """budgets of every stage: tiny (minutes, for tests), cpu (the shipped model, 2 cores) or gpu"""
    out: str = "runs/pipeline"
    """directory every stage writes into (one subdirectory each) and DIR/pipeline.json"""
    seed: int = 0
    """seed of collection, training and evaluation"""
    game: str = DEFAULT_GAME
    """the Procgen game every stage learns and plays (one of the 16)"""
    env_id: str | None = None
    """learn a Gymnasium env of your own instead (see `genie collect --env-id`): RGB frames, Discrete actions"""
    env_kwargs: str = "{}"
    """with --env-id: its gymnasium.make kwargs, as a JSON object"""
    distribution_mode: DistributionMode = "easy"
    """game difficulty: easy or hard"""
    eval_episodes: int | None = None
    """held-out real episodes per evaluated policy (default: the preset's)"""
    full_steps: bool = False
    """train every model for all its preset's steps, however long it takes (drop the presets' --train.max-minutes
    caps, which make a slower machine train a different model)"""
    ship: str | None = None
    """when every stage is done, lay the final world model, its dream agent, the comparison and a model card out
    in this directory as genie_env/assets/coinrun/ is (e.g. genie_env/assets/GAME, which GenieProcgen-v0 loads
    for the game); a directory that --ship did not write is refused"""
    ship_notes: str | None = None
    """with --ship: a markdown file whose text goes into the model card under "Why this game" (what its
    dynamics ask of a world model that CoinRun's do not)"""
    carry: str | None = None
    """a directory that outlives the machine (committed, say): a copy of DIR/pipeline.json and of each trained
    model and agent once its stage is done (the final checkpoint without optimizer state; tens of MB with the
    cpu preset). On a new machine (DIR empty) the pipeline goes on from it: a carried stage's output is
    copied back, and the data, tokens and world models are made again from them"""


class Pipeline:
    """Runs the stages in order, each once: DIR/pipeline.json records the finished ones and their wall times."""

    def __init__(self, args: PipelineArgs, preset: PipelinePreset | None = None, header: dict | None = None) -> None:
        """`preset` replaces the named one (the study scales it to a real-frame budget); `header` is what
        DIR/pipeline.json must record, by default the preset's name."""
        preset = preset or pipeline_preset(args.preset)
        if args.eval_episodes is not None:
            preset = dataclasses.replace(preset, eval_episodes=args.eval_episodes)
        self.args, self.preset = args, preset
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        check_game(args.game)
        if args.env_id is not None and args.game != DEFAULT_GAME:
            raise ValueError(f"--env-id {args.env_id} and --game {args.game}: learn one or the other")
        self.game = args.env_id or args.game
        # the game is recorded where it is not CoinRun, so pipelines from before games were recorded still resume
        header = header or {"preset": args.preset, **({"game": self.game} if self.game != DEFAULT_GAME else {})}
        self.carry = None if args.carry is None else Path(args.carry)
        mirror = None if self.carry is None else self.carry / "pipeline.json"
        self.stages = StageRecord(self.out / "pipeline.json", header, mirror=mirror)
        self.record = self.stages.record
        self.stage = self.carried_stage
        self.retrained = False  # a carried stage ran again here (see carried_stage)

    def time_limit(self) -> dict[str, float]:
        """The trainers' max_minutes override: none, or 0 (no cap) with --full-steps."""
        return {"max_minutes": 0.0} if self.args.full_steps else {}

    def path(self, name: str, round: int = 1) -> Path:
        """The directory of `name` (data, tokens, dynamics, world_model, agent_dream) in round `round`."""
        return self.out / (name if round == 1 else f"{name}_r{round}")

    def carried_stage(self, name: str, fn, output: tuple[str, int] | None = None) -> Any:
        """Stage `name` (`StageRecord.stage`), which writes the directory `path(*output)`. With --carry: where
        it is recorded done but its directory is gone (a new machine), a carried output is copied back from
        the carry and any other runs again; a training stage is mirrored into the carry while it trains and
        goes on from that mirror on a new machine; a trained model or agent is copied into the carry once done.
        Once a training stage had to run again (its carried copy missing), no later carried copy is taken:
        it was trained from what that stage made before."""
        if output is None or self.carry is None:
            return self.stages.stage(name, fn)
        out = self.path(*output)
        kept, carried = self.carry / out.name, output[0] not in REMADE
        if self.stages.done(name) and not out.exists():
            if carried and kept.exists() and not self.retrained:
                logger.info("%s: %s is gone: copied back from %s", name, out, kept)
                copy_back(kept, out)
            else:
                logger.info("%s: %s is gone: made again", name, out)
                self.stages.forget(name)
                self.retrained |= carried
        ran = not self.stages.done(name)
        if carried and ran:
            fn = partial(self._train_carried, fn, out, kept)
        result = self.stages.stage(name, fn)
        if carried:
            if not ran and not kept.exists():  # --carry given to a pipeline that trained it before
                carry_run(out, kept)
            drop_in_progress(kept)
        return result

    def _train_carried(self, fn, out: Path, kept: Path) -> Any:
        """Run the training stage `fn` into `out`, going on from its mirror in the carry where `out` is gone
        (unless an earlier stage was trained again here: the mirror was trained from what it made before),
        mirrored while it trains; then kept in the carry, finished."""
        if not self.retrained:
            restore(out, in_progress(kept))
        with mirrored(out, in_progress(kept)):
            result = fn()
        carry_run(out, kept)
        return result

    def run(self) -> dict[str, Any]:
        """All stages; returns DIR/pipeline.json's content."""
        p = self.preset
        self.build_world_model()
        self.stage(f"agent_dream_r{p.rounds}" if p.rounds > 1 else "agent_dream", partial(self.agent_dream, p.rounds),
                   ("agent_dream", p.rounds))  # fmt: skip
        self.stage("agent_real", self.agent_real, ("agent_real", 1))
        self.stage("evaluate", self.evaluate)
        self.stage("compare", self.compare)
        if self.args.ship:  # not a recorded stage: cheap, and shipped again wherever --ship says
            from .ship import ship

            logger.info("shipped to %s", ship(self, self.args.ship))
        return self.record

    def finished_world_model(self) -> Path:
        """The final world model of a pipeline whose world-model stages are all done, touching nothing (another
        study's, taken read-only); ValueError naming the first stage that is not done."""

        def done(name: str, _fn, _output=None) -> Any:
            if not self.stages.done(name):
                raise ValueError(f"{self.out}: stage {name} is not done: finish that study's world models first")
            return self.record["stages"][name]["result"]

        self.stage = done
        try:
            return self.build_world_model()
        finally:
            self.stage = self.carried_stage

    def build_world_model(self) -> Path:
        """The stages up to the final round's world model (with the dream agents that collect the later
        rounds' data); returns the final world model's directory."""
        p = self.preset
        self.stage("collect", self.collect, ("data", 1))
        self.stage("train_tokenizer", lambda: self.train("tokenizer", p.tokenizer), ("tokenizer", 1))
        self.stage("tokenize", self.tokenize, ("tokens", 1))
        self.stage("train_dynamics", lambda: self.train("dynamics", p.dynamics), ("dynamics", 1))
        self.stage("package", self.package, ("world_model", 1))
        for k in range(2, p.rounds + 1):
            self.stage("agent_dream" if k == 2 else f"agent_dream_r{k - 1}", partial(self.agent_dream, k - 1),
                       ("agent_dream", k - 1))  # fmt: skip
            self.stage(f"collect_r{k}", partial(self.collect, k), ("data", k))
            self.stage(f"tokenize_r{k}", partial(self.tokenize, k), ("tokens", k))
            self.stage(f"train_dynamics_r{k}", partial(self.fine_tune, k), ("dynamics", k))
            if p.self_forcing_steps:
                self.stage(f"self_forcing_r{k}", partial(self.fine_tune, k, self_forcing=True),
                           ("dynamics_self_forcing", k))  # fmt: skip
            self.stage(f"package_r{k}", partial(self.package, k), ("world_model", k))
        return self.path("world_model", p.rounds)

    # ------------------------------------------------------------------ stages
    def collect(self, round: int = 1) -> dict[str, Any]:
        """Round 1: the sticky-random policy; later rounds: the previous round's dream agent, on new levels."""
        from genie_env.agents.policies import collection_policy
        from genie_env.data.collect import CollectConfig, collect

        data = self.path("data", round)
        policy = "sticky" if round == 1 else f"sb3:{self.path('agent_dream', round - 1) / 'agent.zip'}"
        cfg = CollectConfig(
            out=str(data), frames=self.preset.frames if round == 1 else self.preset.round_frames,
            num_envs=self.preset.collect_envs, seed=self.args.seed + round - 1, policy=policy,
            distribution_mode=self.args.distribution_mode, resume=(data / "manifest.json").exists(),
            game=self.args.game, env_id=self.args.env_id, env_kwargs=self.args.env_kwargs,
        )  # fmt: skip
        manifest = collect(cfg, collection_policy(cfg))
        return manifest.counts

    def train(self, kind: str, preset: str) -> dict[str, float]:
        from . import train_dynamics, train_tokenizer

        module = train_tokenizer if kind == "tokenizer" else train_dynamics
        out = self.path(kind)
        defaults = module.default_args(preset)
        source = {"data": str(self.path("data"))} if kind == "tokenizer" else {"tokens": str(self.path("tokens"))}
        train = dataclasses.replace(defaults.train, seed=self.args.seed, **self.time_limit())
        args = dataclasses.replace(defaults, out=str(out), train=train, resume=(out / "latest.json").exists(), **source)
        return module.run(args)

    def dynamics(self, round: int) -> Path:
        """The dynamics run round `round` ends with (its self-forcing run when the preset has one)."""
        sf = round > 1 and self.preset.self_forcing_steps
        return self.path("dynamics_self_forcing" if sf else "dynamics", round)

    def fine_tune(self, round: int, self_forcing: bool = False) -> dict[str, float]:
        """Fine-tune the previous round's dynamics on the tokens of every round so far; with `self_forcing`,
        go on from this round's fine-tune with self-forcing (the preset's `self_forcing_*` settings)."""
        from . import train_dynamics

        p = self.preset
        out = self.path("dynamics_self_forcing" if self_forcing else "dynamics", round)
        start = self.path("dynamics", round) if self_forcing else self.dynamics(round - 1)
        steps = p.self_forcing_steps if self_forcing else p.finetune_steps
        defaults = train_dynamics.default_args(p.dynamics)
        train = dataclasses.replace(
            defaults.train, seed=self.args.seed + round - 1 + int(self_forcing), steps=steps, lr=p.finetune_lr,
            warmup_steps=max(1, steps // 20), checkpoint_every=max(1, steps // 8), **self.time_limit(),
        )  # fmt: skip
        args = dataclasses.replace(
            defaults, tokens=tuple(str(self.path("tokens", k)) for k in range(1, round + 1)), out=str(out),
            train=train, init_from=str(start), resume=(out / "latest.json").exists(),
            oversample_events=p.self_forcing_oversample_events if self_forcing else p.finetune_oversample_events,
            self_forcing=p.self_forcing if self_forcing else 0.0,
        )  # fmt: skip
        return train_dynamics.run(args)

    def tokenize(self, round: int = 1) -> dict[str, Any]:
        from genie_env.models.tokenize import tokenize_dataset

        manifest = tokenize_dataset(self.path("data", round), self.path("tokenizer"), self.path("tokens", round))
        return manifest.counts

    def package(self, round: int = 1) -> str:
        """The world model of `round`: its dynamics, and the real data of every round so far."""
        from genie_env.world_model import package_world_model

        data = [self.path("data", k) for k in range(1, round + 1)]
        out = package_world_model(self.path("tokenizer"), self.dynamics(round), data,
                                  self.path("world_model", round))  # fmt: skip
        return str(out)

    def agent_config(self, env: str, steps: int, round: int = 1):
        from genie_env.agents.train import AgentConfig

        p = self.preset
        return AgentConfig(
            env=env, steps=steps, num_envs=p.agent_envs, n_steps=p.agent_n_steps, batch_size=p.agent_batch,
            features=p.agent_features,
            seed=self.args.seed, distribution_mode=self.args.distribution_mode, game=self.game,
            env_kwargs=self.args.env_kwargs,
            world_model=str(self.path("world_model", round)),
            context=tuple(str(self.path("data", k)) for k in range(1, round + 1)), device=p.device,
            checkpoint_every=max(steps // 10, p.agent_envs * p.agent_n_steps),
        )  # fmt: skip

    def agent(self, env: str, steps: int, round: int = 1) -> str:
        from genie_env.agents.train import train_or_resume

        return str(train_or_resume(self.agent_config(env, steps, round), self.path(f"agent_{env}", round)))

    def agent_dream(self, round: int = 1) -> str:
        return self.agent("dream", self.preset.agent_steps, round)

    def agent_real(self) -> str:
        """PPO on the real game with at most as many steps as real frames went into the final world model (every
        round): the whole rollouts that fit."""
        from genie_env.agents.train import steps_within

        levels = json.loads((self.path("world_model", self.preset.rounds) / "levels.json").read_text())
        return self.agent("real", steps_within(levels["frames"], self.preset.agent_envs, self.preset.agent_n_steps))

    def policies(self) -> dict[str, Path | str]:
        """The evaluated policies by name: random, the same-budget real PPO, each round's dream PPO (the
        final round's is `ppo_dream`, earlier ones `ppo_dream_round1`, ...)."""
        rounds = self.preset.rounds
        named: dict[str, Path | str] = {"random": "random"}
        named["ppo_real_same_frames"] = self.path("agent_real") / "agent.zip"
        for k in range(1, rounds):
            named[f"ppo_dream_round{k}"] = self.path("agent_dream", k) / "agent.zip"
        named["ppo_dream"] = self.path("agent_dream", rounds) / "agent.zip"
        return named

    def evaluate(self) -> dict[str, float]:
        """Every policy on held-out real levels (checked disjoint from every level behind the world
        models and the agents); DIR/eval/NAME.json each."""
        from genie_env._io import atomic_write_json

        from .evaluate import EvaluateArgs
        from .evaluate import run as evaluate

        rounds = range(1, self.preset.rounds + 1)
        exclude = tuple(str(self.path(d, k)) for k in rounds for d in ("world_model", "agent_dream"))
        exclude += (str(self.path("agent_real")),)
        returns = {}
        for name, agent in self.policies().items():
            gif = str(self.path("eval") / "ppo_dream_on_real.gif") if name == "ppo_dream" else None
            result = evaluate(EvaluateArgs(
                str(agent), episodes=self.preset.eval_episodes, distribution_mode=self.args.distribution_mode,
                seed=self.args.seed, exclude=exclude, name=name, gif=gif, game=self.game,
                env_kwargs=self.args.env_kwargs,
            ))  # fmt: skip
            atomic_write_json(self.path("eval") / f"{name}.json", result)
            returns[name] = result["mean_return"]
        return returns

    def compare(self) -> dict[str, str]:
        from genie_env.agents.compare import compare_results, format_table, load_result

        results = [load_result(self.path("eval") / f"{n}.json") for n in self.policies()]
        paths = compare_results(results, self.path("compare"))
        print(format_table(json.loads(paths["json"].read_text())["rows"]))
        return {k: str(v) for k, v in paths.items()}


def run(args: PipelineArgs) -> dict[str, Any]:
    """Run (or finish) the pipeline of `args`, with its directory locked; returns its record."""
    from genie_env._io import DirLock

    with DirLock(args.out):
        return Pipeline(args).run()


def _check(preset: PipelinePreset) -> None:
    if preset.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("the gpu preset needs a CUDA device: use --preset cpu on this machine")


def main(argv: list[str] | None = None) -> None:

    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(PipelineArgs, args=argv, prog="genie pipeline", description=__doc__)
    with cli_errors():
        _check(pipeline_preset(args.preset))
        record = run(args)
    total = sum(s["wall_s"] for s in record["stages"].values())
    print(f"pipeline {args.preset} done in {total / 60:.1f} min: {args.out}/compare/compare.md")


if __name__ == "__main__":
    main()
