"""The world-model API: encode real frames, dream a rollout under chosen actions, compare with the real game.

python examples/world_model_rollout.py --horizon 16
"""

from __future__ import annotations

import numpy as np
import tyro

import genie_env
from genie_env.envs.real import ProcgenCoinRunEnv
from genie_env.metrics import psnr_from_mse
from genie_env.viz import save_gif

RIGHT = 7


def main(world_model: str | None = None, horizon: int = 16, seed: int = 0, gif: str = "outputs/rollout.gif") -> float:
    """Dream `horizon` frames after a real level start while running right; returns the PSNR against the real frames.

    Args:
        world_model: world-model directory (default: the model shipped with the package).
        horizon: frames to dream.
        seed: level and sampling seed.
        gif: where the real | dream GIF goes.
    """
    wm = genie_env.load_world_model(world_model)
    real = ProcgenCoinRunEnv()
    first, _ = real.reset(seed=seed)
    actions = np.full((1, horizon), RIGHT, np.int64)  # actions[:, 0] is taken on the last context frame
    real_frames = np.stack([real.step(RIGHT)[0] for _ in range(horizon)])
    tokens = wm.encode(first[None, None])  # uint8 (B, T, 64, 64, 3) -> int64 (B, T, h, w)
    out = wm.rollout(first[None, None], actions, steps=1, temperature=0.0, seed=seed)
    mse = np.mean((out.frames[0] / 255.0 - real_frames / 255.0) ** 2)
    psnr = psnr_from_mse(float(mse))
    save_gif(np.concatenate([real_frames, out.frames[0]], axis=2), gif)
    print(f"context tokens {tuple(tokens.shape)}; dreamed {horizon} frames: PSNR {psnr:.1f} dB vs the real game; "
          f"predicted return {out.rewards.sum():.1f}; wrote {gif}")  # fmt: skip
    return psnr


if __name__ == "__main__":
    tyro.cli(main)
