"""Evaluate an agent on held-out real CoinRun levels (`ProcgenCoinRun-v0`, the same spaces as the dream).

python examples/evaluate_on_real.py --episodes 100
"""

from __future__ import annotations

import tyro

from genie_env.agents.evaluate import (
    DEFAULT_EVAL_NUM_LEVELS,
    DEFAULT_EVAL_START_LEVEL,
    check_disjoint,
    evaluate_policy,
    held_out_levels,
)
from genie_env.agents.policies import make_policy
from genie_env.world_model import DEFAULT_AGENT, DEFAULT_MODEL_DIR


def main(agent: str = str(DEFAULT_AGENT), world_model: str = str(DEFAULT_MODEL_DIR), episodes: int = 100,
         num_envs: int = 32) -> dict:  # fmt: skip
    """Play `episodes` episodes with the agent and with the random policy; print both.

    Args:
        agent: a saved SB3 agent (default: the dream-trained agent shipped with the package).
        world_model: the world model the agent was trained in; its levels must not be evaluated on.
        episodes: held-out real episodes per policy.
        num_envs: real levels stepped together.
    """
    check_disjoint(DEFAULT_EVAL_START_LEVEL, DEFAULT_EVAL_NUM_LEVELS, held_out_levels([world_model]))
    results = {}
    for name, spec in (("agent", f"sb3:{agent}"), ("random", "random")):
        r = evaluate_policy(make_policy(spec, num_envs, seed=0), episodes, num_envs=num_envs, progress=False)
        lo, hi = r["return_ci"]
        print(f"{name:>6}: return {r['mean_return']:.2f} [{lo:.2f}, {hi:.2f}], success {r['success_rate']:.0%}")
        results[name] = r
    return results


if __name__ == "__main__":
    tyro.cli(main)
