"""The two-command demo's main job (`make demo`): collect real CoinRun and show it.

Collects a small real dataset (resuming or reusing one already there), prints its summary and
writes a frame grid PNG and a GIF of one real episode to --out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from genie_env.data.collect import CollectConfig, collect
from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard, read_manifest, shard_infos
from genie_env.data.stats import dataset_summary, format_summary
from genie_env.viz import frame_grid, save_gif, save_png, upscale
from training.common import setup_logging


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `genie demo`."""

    out: str = "outputs"
    """where the pictures (and the demo dataset, in OUT/demo_data) go"""
    frames: int = 5000
    """frames of real CoinRun to collect"""
    num_envs: int = 64
    """levels stepped together"""
    seed: int = 0
    """collection seed"""
    distribution_mode: str = "easy"
    """CoinRun difficulty: easy or hard"""


def _best_episode(root: Path) -> np.ndarray:
    """Frames of the longest successful episode (else the longest one) of the dataset."""
    best, best_key = None, (-1, -1)
    for info in shard_infos(read_manifest(root)):
        arrays = load_shard(root, info)
        for a, b in zip(*episode_bounds(arrays["episode_ids"])):
            key = (int(arrays["rewards"][a:b].sum() > 0), b - a)
            if key > best_key:
                best, best_key = arrays["frames"][a:b], key
    return np.asarray(best)


def run(cfg: DemoConfig) -> dict[str, Path]:
    """Collect (or reuse) the demo dataset and write the pictures; returns their paths."""
    out = Path(cfg.out)
    data = out / "demo_data"
    collect(
        CollectConfig(
            out=str(data),
            frames=cfg.frames,
            num_envs=cfg.num_envs,
            seed=cfg.seed,
            distribution_mode=cfg.distribution_mode,
            resume=(data / "manifest.json").exists(),
        )
    )
    print(format_summary(dataset_summary(data)))
    manifest = read_manifest(data)
    frames = load_shard(data, shard_infos(manifest)[0])["frames"]
    pick = np.linspace(0, len(frames) - 1, 64).astype(int)
    paths = {
        "grid": save_png(upscale(frame_grid(frames[pick], ncols=8), 2), out / "real_frames.png"),
        "gif": save_gif(_best_episode(data), out / "real_episode.gif"),
    }
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return paths


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    run(tyro.cli(DemoConfig, args=argv, prog="genie demo", description=__doc__))


if __name__ == "__main__":
    main()
