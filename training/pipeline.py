"""Every stage from nothing to the compare table (`genie pipeline --preset tiny|cpu|gpu --out DIR`).

    collect → train tokenizer → tokenize → train dynamics → package world model →
    PPO in the dream → PPO on the real game with the same real frames → evaluate on held-out real levels → compare

`--preset cpu` reproduces the shipped model (2 CPU cores, about 3 hours); `--preset tiny` runs every
stage for real at budgets that finish in minutes (its models need not transfer). Finished stages are
recorded in DIR/pipeline.json and skipped when the command runs again; an interrupted training stage
resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from genie_env.presets import PipelinePreset, pipeline_preset
from training.common import fail, setup_logging

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineArgs:
    """Arguments of `genie pipeline`."""

    preset: str = "cpu"
    """budgets of every stage: tiny (minutes, for tests), cpu (the shipped model, 2 cores) or gpu"""
    out: str = "runs/pipeline"
    """directory every stage writes into (one subdirectory each) and DIR/pipeline.json"""
    seed: int = 0
    """seed of collection, training and evaluation"""
    distribution_mode: str = "easy"
    """CoinRun difficulty: easy or hard"""
    eval_episodes: int | None = None
    """held-out real episodes per evaluated policy (default: the preset's)"""


class Pipeline:
    """Runs the stages in order, each once: DIR/pipeline.json records the finished ones and their wall times."""

    def __init__(self, args: PipelineArgs) -> None:
        preset = pipeline_preset(args.preset)
        if args.eval_episodes is not None:
            preset = dataclasses.replace(preset, eval_episodes=args.eval_episodes)
        self.args, self.preset = args, preset
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.record_path = self.out / "pipeline.json"
        self.record: dict[str, Any] = (
            json.loads(self.record_path.read_text()) if self.record_path.exists() else {"preset": args.preset}
        )
        if self.record.get("preset") != args.preset:
            raise ValueError(f"{self.out} holds a --preset {self.record.get('preset')} pipeline: use another --out")
        self.record.setdefault("stages", {})

    def stage(self, name: str, fn: Callable[[], Any]) -> None:
        """Run stage `name` unless it already finished; record its wall time and result."""
        if name in self.record["stages"]:
            logger.info("pipeline: %s already done", name)
            return
        logger.info("pipeline: %s", name)
        start = time.time()
        result = fn()
        self.record["stages"][name] = {"wall_s": round(time.time() - start, 1), "result": result}
        from genie_env.data.format import atomic_write_json

        atomic_write_json(self.record_path, self.record)

    def path(self, name: str) -> Path:
        return self.out / name

    def run(self) -> dict[str, Any]:
        """All stages; returns DIR/pipeline.json's content."""
        p = self.preset
        self.stage("collect", self.collect)
        self.stage("train_tokenizer", lambda: self.train("tokenizer", p.tokenizer))
        self.stage("tokenize", self.tokenize)
        self.stage("train_dynamics", lambda: self.train("dynamics", p.dynamics))
        self.stage("package", self.package)
        self.stage("agent_dream", lambda: self.agent("dream", p.agent_steps))
        self.stage("agent_real", lambda: self.agent("real", p.frames))
        self.stage("evaluate", self.evaluate)
        self.stage("compare", self.compare)
        return self.record

    # ------------------------------------------------------------------ stages
    def collect(self) -> dict[str, Any]:
        from genie_env.data.collect import CollectConfig, collect

        data = self.path("data")
        manifest = collect(CollectConfig(
            out=str(data), frames=self.preset.frames, num_envs=self.preset.collect_envs, seed=self.args.seed,
            distribution_mode=self.args.distribution_mode, resume=(data / "manifest.json").exists(),
        ))  # fmt: skip
        return manifest["counts"]

    def train(self, kind: str, preset: str) -> dict[str, float]:
        from training import train_dynamics, train_tokenizer

        module = train_tokenizer if kind == "tokenizer" else train_dynamics
        out = self.path(kind)
        defaults = module.default_args(preset)
        source = {"data": str(self.path("data"))} if kind == "tokenizer" else {"tokens": str(self.path("tokens"))}
        train = dataclasses.replace(defaults.train, seed=self.args.seed)
        args = dataclasses.replace(defaults, out=str(out), train=train, resume=(out / "latest.json").exists(), **source)
        return module.run(args)

    def tokenize(self) -> dict[str, Any]:
        from genie_env.data.tokenize import tokenize_dataset

        manifest = tokenize_dataset(self.path("data"), self.path("tokenizer"), self.path("tokens"))
        return manifest["counts"]

    def package(self) -> str:
        from genie_env.world_model import package_world_model

        out = package_world_model(self.path("tokenizer"), self.path("dynamics"), self.path("data"),
                                  self.path("world_model"))  # fmt: skip
        return str(out)

    def agent_config(self, env: str, steps: int):
        from genie_env.agent import AgentConfig

        p = self.preset
        return AgentConfig(
            env=env, steps=steps, num_envs=p.agent_envs, n_steps=p.agent_n_steps, batch_size=p.agent_batch,
            seed=self.args.seed, distribution_mode=self.args.distribution_mode,
            world_model=str(self.path("world_model")), context=str(self.path("data")), device=p.device,
            checkpoint_every=max(steps // 10, p.agent_envs * p.agent_n_steps),
        )  # fmt: skip

    def agent(self, env: str, steps: int) -> str:
        from genie_env.agent import train_agent

        run = self.path(f"agent_{env}")
        resume = (run / "checkpoints" / "latest.zip").exists()
        return str(train_agent(self.agent_config(env, steps), run, resume=resume))

    def evaluate(self) -> dict[str, float]:
        """Random, the same-budget real PPO and the dream PPO on held-out real levels (checked disjoint
        from every level behind the world model and the agents); DIR/eval/NAME.json each."""
        from genie_env.data.format import atomic_write_json
        from training.evaluate import EvaluateArgs
        from training.evaluate import run as evaluate

        exclude = tuple(str(self.path(d)) for d in ("world_model", "agent_dream", "agent_real"))
        policies = {
            "random": "random",
            "ppo_real_same_frames": str(self.path("agent_real") / "agent.zip"),
            "ppo_dream": str(self.path("agent_dream") / "agent.zip"),
        }
        returns = {}
        for name, agent in policies.items():
            gif = str(self.path("eval") / "ppo_dream_on_real.gif") if name == "ppo_dream" else None
            result = evaluate(EvaluateArgs(
                agent, episodes=self.preset.eval_episodes, distribution_mode=self.args.distribution_mode,
                seed=self.args.seed, exclude=exclude, name=name, gif=gif,
            ))  # fmt: skip
            atomic_write_json(self.path("eval") / f"{name}.json", result)
            returns[name] = result["mean_return"]
        return returns

    def compare(self) -> dict[str, str]:
        from genie_env.evaluate.compare import compare_results, format_table, load_result

        names = ("random", "ppo_real_same_frames", "ppo_dream")
        results = [load_result(self.path("eval") / f"{n}.json") for n in names]
        paths = compare_results(results, self.path("compare"))
        print(format_table(json.loads(paths["json"].read_text())["rows"]))
        return {k: str(v) for k, v in paths.items()}


def run(args: PipelineArgs) -> dict[str, Any]:
    """Run (or finish) the pipeline of `args`; returns its record."""
    return Pipeline(args).run()


def _check(preset: PipelinePreset) -> None:
    if preset.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("the gpu preset needs a CUDA device: use --preset cpu on this machine")


def main(argv: list[str] | None = None) -> None:
    from genie_env.checkpoint import CheckpointError
    from genie_env.data.format import DatasetError

    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(PipelineArgs, args=argv, prog="genie pipeline", description=__doc__)
    try:
        _check(pipeline_preset(args.preset))
        record = run(args)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError, FileExistsError) as e:
        fail(str(e))
    total = sum(s["wall_s"] for s in record["stages"].values())
    print(f"pipeline {args.preset} done in {total / 60:.1f} min: {args.out}/compare/compare.md")


if __name__ == "__main__":
    main()
