"""Collection speed: `genie collect` to disk versus raw procgen gym3 stepping, in the same run.

    python benchmarks/collect.py [--frames 200000] [--num-envs 64]

Prints one JSON object: collect_fps (frames written to disk per second: stepping, policy, buffering,
sha256 and writes included), raw_fps (procgen stepping alone, random actions, same frame count)
and ratio = collect_fps / raw_fps. For context it also measures io_fps, how many frames per second
this machine can only write to disk and hash (no stepping), and serial_bound_ratio, the ratio a
collector would reach if that I/O could not overlap the stepping at all (procgen's stepping already
keeps both cores busy).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from genie_env.agents.policies import collection_policy
from genie_env.data.collect import CollectConfig, collect
from genie_env.games import LevelConfig, make_procgen


@dataclass(frozen=True)
class Args:
    """Settings of the collection benchmark."""

    frames: int = 200_000
    """frames to collect (and to step raw)"""
    num_envs: int = 64
    """levels stepped together"""
    out_dir: str | None = None
    """directory for the temporary dataset (default: a temp dir, removed afterwards)"""


def raw_fps(frames: int, num_envs: int) -> float:
    env = make_procgen(num_envs, 0, LevelConfig())
    steps = frames // num_envs
    actions = np.random.default_rng(0).integers(0, 15, (steps, num_envs)).astype(np.int32)
    for a in actions[:50]:  # warm-up
        env.act(a)
        env.observe()
    start = time.perf_counter()
    for a in actions:
        env.act(a)
        env.observe()
    elapsed = time.perf_counter() - start
    env.close()
    return steps * num_envs / elapsed


def io_fps(frames: int, out_dir: str | None) -> float:
    """Frames per second of writing frames to a .npy with sha256 (the shard writer's work), alone."""
    from genie_env.data.format import save_array

    data = np.random.default_rng(0).integers(0, 256, (min(frames, 50_000), 64, 64, 3), dtype=np.uint8)
    parent = tempfile.mkdtemp(dir=out_dir)
    try:
        start = time.perf_counter()
        save_array(Path(parent) / "frames.npy", data)
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(parent)
    return len(data) / elapsed


def collect_fps(frames: int, num_envs: int, out_dir: str | None) -> tuple[float, int]:
    parent = tempfile.mkdtemp(dir=out_dir)
    try:
        start = time.perf_counter()
        cfg = CollectConfig(out=os.path.join(parent, "ds"), frames=frames, num_envs=num_envs, progress=False)
        manifest = collect(cfg, collection_policy(cfg))
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(parent)
    n = manifest.counts["frames"]
    return n / elapsed, n


def main(args: Args) -> dict:
    make_procgen(1, 0, LevelConfig()).close()  # load procgen's assets outside the timed parts
    raw = raw_fps(args.frames, args.num_envs)
    io = io_fps(args.frames, args.out_dir)
    fps, written = collect_fps(args.frames, args.num_envs, args.out_dir)
    result = {
        "benchmark": "collect",
        "frames": written,
        "num_envs": args.num_envs,
        "collect_fps": round(fps, 1),
        "raw_fps": round(raw, 1),
        "ratio": round(fps / raw, 3),
        "target_ratio": 0.85,
        "io_fps": round(io, 1),
        "serial_bound_ratio": round((1 / (1 / raw + 1 / io)) / raw, 3),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "command": "python benchmarks/collect.py",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
