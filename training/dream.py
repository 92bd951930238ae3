"""Dream an episode next to the real game under the same actions (`genie dream --steps 200 --gif out.gif`).

Both start from the same real frame (a level the real env generates from --seed); every action,
from --actions random, sticky or sb3:PATH (an agent acting on the real frames), goes to both. The
GIF shows real | dream side by side.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import tyro

from genie_env.agents.policies import make_policy
from genie_env.data.context import ContextSource
from genie_env.envs.dream import GenieCoinRunEnv
from genie_env.envs.real import ProcgenCoinRunEnv
from genie_env.games import DistributionMode
from genie_env.viz import save_gif

from .common import cli_errors, setup_logging


@dataclass(frozen=True)
class DreamArgs:
    """Arguments of `genie dream`."""

    world_model: str | None = None
    """world-model directory (default: the model shipped with the package)"""
    steps: int = 200
    """steps to dream"""
    actions: str = "sticky"
    """who acts: random, sticky, or sb3:PATH (a saved agent, acting on the real frames)"""
    seed: int = 0
    """seed of the level, the actions and the dream's sampling"""
    distribution_mode: DistributionMode = "easy"
    """CoinRun difficulty of the real game"""
    sampling_steps: int = 1
    """MaskGIT refinement steps per frame"""
    temperature: float = 0.0
    """sampling temperature (0 = most likely tokens)"""
    gif: str = "outputs/dream_vs_real.gif"
    """where the real | dream GIF goes"""


def run(args: DreamArgs) -> dict[str, float]:
    """Play both, write the GIF, return a short summary."""
    real = ProcgenCoinRunEnv(distribution_mode=args.distribution_mode)
    frame, _ = real.reset(seed=args.seed)
    dream = GenieCoinRunEnv(args.world_model, context=ContextSource(frame[None, None]), max_episode_steps=args.steps,
                            sampling={"steps": args.sampling_steps, "temperature": args.temperature})  # fmt: skip
    dreamed, _ = dream.reset(seed=args.seed)
    policy = make_policy(args.actions, 1, args.seed)
    first = np.ones(1, bool)
    pairs = [np.concatenate([frame, dreamed], axis=1)]
    real_return = dream_return = 0.0
    for _ in range(args.steps):
        action = int(policy.act(frame[None], first)[0])
        first[:] = False
        frame, r_real, real_done, real_cut, _ = real.step(action)
        dreamed, r_dream, dream_done, dream_cut, _ = dream.step(action)
        real_return, dream_return = real_return + r_real, dream_return + r_dream
        pairs.append(np.concatenate([frame, dreamed], axis=1))
        if real_done or real_cut or dream_done or dream_cut:
            break
    save_gif(np.stack(pairs), args.gif, fps=15)
    return {"steps": len(pairs) - 1, "real_return": real_return, "dream_return": dream_return, "gif": args.gif}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(DreamArgs, args=argv, prog="genie dream", description=__doc__)
    with cli_errors():
        summary = run(args)
    print(f"wrote {summary['gif']}: {summary['steps']} steps, real return {summary['real_return']:.0f}, "
          f"dream return {summary['dream_return']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
