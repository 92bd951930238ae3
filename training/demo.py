"""The two-command demo's main job (`make demo`): the shipped world model and its dream-trained agent.

1. dreams an episode next to the real game under the same actions (the shipped agent's, acting on
   the real frames): OUT/dream_vs_real.gif;
2. evaluates the shipped dream-trained agent and the random policy on held-out real levels (checked
   disjoint from the levels the world model was trained on) and prints the table;
3. writes the bar plot (OUT/compare.png), the table (OUT/compare.md) and each result (OUT/eval/).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env._io import atomic_write_json
from genie_env.agents.compare import compare_results, format_table
from genie_env.world_model import DEFAULT_AGENT, DEFAULT_MODEL_DIR

from .common import cli_errors, setup_logging
from .dream import DreamArgs
from .dream import run as dream
from .evaluate import EvaluateArgs
from .evaluate import run as evaluate


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `genie demo`."""

    out: str = "outputs"
    """where the GIF, the table, the plot and the evaluation results go"""
    episodes: int = 200
    """held-out real episodes per policy"""
    dream_steps: int = 200
    """steps of the dream-vs-real GIF"""
    seed: int = 0
    """seed of the level, the actions and the evaluation"""
    world_model: str = str(DEFAULT_MODEL_DIR)
    """world-model directory (default: the model shipped with the package)"""
    agent: str = str(DEFAULT_AGENT)
    """the dream-trained SB3 agent to show and evaluate (default: the one shipped with the package)"""


def run(cfg: DemoConfig) -> dict[str, Path]:
    """The GIF, both evaluations, the table and the plot; returns the paths written."""
    out = Path(cfg.out)
    if not Path(cfg.agent).exists():
        raise FileNotFoundError(f"no agent at {cfg.agent}: train one with `genie train-agent --env dream`")
    summary = dream(DreamArgs(world_model=cfg.world_model, steps=cfg.dream_steps, actions=f"sb3:{cfg.agent}",
                              seed=cfg.seed, gif=str(out / "dream_vs_real.gif")))  # fmt: skip
    print(f"wrote {summary['gif']}: real | dream, {summary['steps']} steps under the agent's actions")
    results = []
    for name, agent in (("ppo_dream (shipped)", cfg.agent), ("random", "random")):
        result = evaluate(EvaluateArgs(agent, episodes=cfg.episodes, seed=cfg.seed, exclude=(cfg.world_model,),
                                       name=name))  # fmt: skip
        atomic_write_json(out / "eval" / f"{name.split()[0]}.json", result)
        results.append(result)
    paths = compare_results(results, out)
    print(format_table(json.loads(paths["json"].read_text())["rows"]))
    for key in ("markdown", "png"):
        print(f"wrote {paths[key]}")
    return {"gif": Path(summary["gif"]), **paths}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    cfg = tyro.cli(DemoConfig, args=argv, prog="genie demo", description=__doc__)
    with cli_errors():
        run(cfg)


if __name__ == "__main__":
    main()
