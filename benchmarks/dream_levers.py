"""Which levers make dream-trained agents better on the real game? Variants of one dream recipe, several
seeds each, scored on the validation levels at several dream lengths.

    python benchmarks/dream_levers.py --out runs/levers --seeds 0 1 --steps 163840 327680 \
        --variant base '{}' --variant sampled '{"temperature": 1.0}' --variant dyna '{"real_envs": 8}'

Every variant is the base recipe (`--base`, JSON of `AgentConfig` fields; by default the shipped agent's:
the IMPALA CNN in the shipped world model's dream, expected rewards, 20-step dreams, 163,840 steps, dreams
starting from the model's `agent_contexts.npz`, frames from anywhere in its training episodes) with its
own fields changed. Each (variant, seed) trains to the first of `--steps`, is evaluated on the
validation levels (`--episodes` episodes on levels 2,000,000 .. 2,000,999, checked disjoint from the world
model's and the agent's own levels), then resumes to the next. So one run answers both "does this lever
help?" and "does the dream still teach after ~170k dreamed steps?" (the shipped recipe's return fell from
there on, MODEL_CARD.md).

Each agent is kept at every length (OUT/VARIANT/seedN/agent_STEPS.zip), so `benchmarks/dream_gap.py`
can ask of each whether it plays the dream better than the game. Every stage is recorded in
OUT/stages.json and skipped when the command runs again, and a killed agent resumes from its checkpoint:
stop and rerun it as often as needed. Prints JSON (also OUT/levers.json): per variant and dream length,
each seed's validation return with its 95% CI, the seed mean, and the real frames each agent cost (the
world model's plus Dyna's). Results are validation figures: the levers that
help are then taken to the study, whose test levels report them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from genie_env.cli.common import StageRecord, setup_logging
from genie_env.cli.evaluate import EvaluateArgs
from genie_env.cli.evaluate import run as evaluate

from genie_env._io import DirLock, atomic_write_bytes, atomic_write_json
from genie_env.agents.train import AgentConfig, train_or_resume, with_fields
from genie_env.world_model import DEFAULT_MODEL_DIR

BASE = dict(env="dream", features="impala", events="expected", horizon=20, steps=163_840, precision="auto")
VAL = dict(start_level=2_000_000, num_levels=1000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/levers", help="directory of the runs, OUT/stages.json and OUT/levers.json")
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), default=None,
                   help="a variant: its name and the AgentConfig fields it changes, as JSON (repeatable; "
                        "default: base '{}')")  # fmt: skip
    p.add_argument("--base", default=json.dumps(BASE), help="AgentConfig fields of the recipe every variant changes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="agent seeds of every variant")
    p.add_argument("--steps", type=int, nargs="+", default=[163_840],
                   help="dream lengths (increasing) at which each agent is evaluated, resuming in between")  # fmt: skip
    p.add_argument("--episodes", type=int, default=1024, help="validation episodes per evaluation")
    p.add_argument("--eval-envs", type=int, default=64, help="levels played together in each evaluation")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between agent checkpoints (default: the recipe's, 50,000 unless --base says); not "
                        "part of the recipe, so it may differ between runs of one OUT")  # fmt: skip
    args = p.parse_args(argv)
    args.variant = args.variant or [["base", "{}"]]
    if sorted(set(args.steps)) != args.steps or args.steps[0] < 1:
        p.error("--steps must be increasing and >= 1")
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        p.error(f"variant names must differ, got {names}")
    return args


def variant_configs(base: dict[str, Any], variants: list[list[str]]) -> dict[str, AgentConfig]:
    """name -> the AgentConfig of each variant (ValueError naming the variant for unknown or bad fields)."""
    recipe = with_fields(AgentConfig(), base, "--base")
    configs = {}
    for name, text in variants:
        try:
            change = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"variant {name}: {text!r} is not JSON ({err})") from None
        configs[name] = with_fields(recipe, change, f"variant {name}")
    return configs


def summarise(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Each seed's validation return and CI, their mean and spread, and the real frames behind them."""
    seeds = sorted(results)
    returns = [results[s]["mean_return"] for s in seeds]
    return {
        "seeds": seeds, "returns": returns, "return_cis": [results[s]["return_ci"] for s in seeds],
        "seed_mean": float(np.mean(returns)), "seed_std": float(np.std(returns, ddof=1)) if len(seeds) > 1 else 0.0,
        "real_frames": [results[s]["real_frames"] for s in seeds],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = variant_configs(json.loads(args.base), args.variant)
    with DirLock(out):
        stages = StageRecord(out / "stages.json", {"base": json.loads(args.base), "episodes": args.episodes,
                                                    "eval_envs": args.eval_envs})  # fmt: skip
        table = {name: {"config": dataclasses.asdict(cfg)} for name, cfg in configs.items()}
        for steps in args.steps:  # every variant at one length before any goes longer
            for name, cfg in configs.items():
                every = {"checkpoint_every": args.checkpoint_every} if args.checkpoint_every else {}
                runs = {seed: dataclasses.replace(cfg, seed=seed, steps=steps, **every) for seed in args.seeds}
                results = {seed: trained_and_validated(stages, name, c, out, args) for seed, c in runs.items()}
                table[name][str(steps)] = summarise(results)
                atomic_write_json(out / "levers.json", table)  # what is done so far
    print(json.dumps({name: {k: v for k, v in row.items() if k != "config"} for name, row in table.items()}, indent=2))
    return table


def trained_and_validated(stages: StageRecord, name: str, cfg: AgentConfig, out: Path,
                          args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Variant `name`'s agent of `cfg.seed` trained (or resumed) to `cfg.steps`, then its validation result:
    two stages, each skipped when done."""
    run, tag = out / name / f"seed{cfg.seed}", f"{name}/seed{cfg.seed}"
    stages.stage(f"{tag}/train_{cfg.steps}", lambda: str(kept(train_or_resume(cfg, run), cfg.steps)))
    label = f"{name}_seed{cfg.seed}_{cfg.steps}"
    return stages.stage(f"{tag}/val_{cfg.steps}", lambda: validate(run, cfg, label, args.episodes, args.eval_envs))


def kept(agent: Path, steps: int) -> Path:
    """A copy of `agent` beside it as agent_STEPS.zip, which the next, longer stage does not overwrite:
    one agent file per dream length, for `benchmarks/dream_gap.py` to compare along the run."""
    copy = agent.with_name(f"agent_{steps}.zip")
    atomic_write_bytes(copy, agent.read_bytes())
    return copy


def validate(run: Path, cfg: AgentConfig, name: str, episodes: int, num_envs: int) -> dict[str, Any]:
    """The agent in `run` on the validation levels; the summary (the full result goes to OUT/eval/NAME.json)."""
    world_model = Path(cfg.world_model or DEFAULT_MODEL_DIR)
    exclude = (str(world_model / "levels.json"), str(run / "levels.json"))
    result = evaluate(EvaluateArgs(str(run / "agent.zip"), episodes=episodes, distribution_mode=cfg.distribution_mode,
                                   exclude=exclude, progress=False, name=name, num_envs=num_envs, **VAL))  # fmt: skip
    atomic_write_json(run.parent.parent / "eval" / f"{name}.json", result)
    record = json.loads((run / "config.json").read_text())
    summary = {k: v for k, v in result.items() if k != "per_episode"}
    return {**summary, "real_frames": record["real_frames"], "dream_frames": record["dream_frames"]}


if __name__ == "__main__":
    main()
