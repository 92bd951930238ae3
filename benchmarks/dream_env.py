"""Speed of the batched dream env: steps/s for N = 1, 16, 64, 256 (decoding included), MFU, and
per-step time over a long episode (flat thanks to the sliding-window KV cache).

    python benchmarks/dream_env.py [--world-model DIR] [--precision bf16] [--device cpu] [--compile]

Without --world-model it uses the shipped model if there is one, else fresh `cpu`-preset weights
(speed does not depend on the weights; the JSON says which). Prints one JSON object with
`steps_per_s` and `mfu` keyed by N, `step_time_ratio_900_10` and the real env's steps/s.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import count_flops, machine, matmul_peak_flops, sync  # noqa: E402

from genie_env.data.context import ContextSource  # noqa: E402
from genie_env.envs.dream import GenieCoinRunVectorEnv  # noqa: E402
from genie_env.envs.real import ProcgenCoinRunVectorEnv  # noqa: E402
from genie_env.models.dynamics import DynamicsModel  # noqa: E402
from genie_env.models.tokenizer import Tokenizer  # noqa: E402
from genie_env.presets import dynamics_preset, tokenizer_preset  # noqa: E402
from genie_env.world_model import DEFAULT_MODEL_DIR, WorldModel, load_world_model  # noqa: E402


@dataclass(frozen=True)
class Args:
    """Settings of the dream-env benchmark."""

    world_model: str | None = None
    """world-model directory (default: the shipped model, else untrained cpu-preset weights)"""
    precision: str = "bf16"
    """inference precision: fp32 or bf16"""
    device: str = "cpu"
    """torch device"""
    sizes: tuple[int, ...] = (1, 16, 64, 256)
    """numbers of envs to time"""
    seconds: float = 3.0
    """timing per size"""
    long_episode: int = 900
    """step at which per-step time is compared with step 10"""
    compile: bool = False
    """torch.compile (inductor) the dynamics model's forward and the decoder before timing"""


def world_model(args: Args) -> tuple[WorldModel, str]:
    if args.world_model or (DEFAULT_MODEL_DIR / "dynamics" / "config.json").exists():
        return load_world_model(args.world_model, args.device, args.precision), "trained"
    tok = tokenizer_preset("cpu").model
    dyn = dynamics_preset("cpu").model
    return WorldModel(Tokenizer(tok), DynamicsModel(dyn), args.device, args.precision), "untrained cpu preset"


def steps_per_second(venv, n: int, seconds: float, device: str) -> float:
    rng = np.random.default_rng(0)
    venv.step(rng.integers(0, 15, n))
    sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        venv.step(rng.integers(0, 15, n))
        steps += 1
    sync(device)
    return steps * n / (time.perf_counter() - start)


def main(args: Args) -> dict:
    wm, weights = world_model(args)
    compile_s = None
    if args.compile:
        start = time.perf_counter()
        wm.dynamics.forward = torch.compile(wm.dynamics.forward)
        wm.tokenizer.decode_uint8 = torch.compile(wm.tokenizer.decode_uint8)
        warm = GenieCoinRunVectorEnv(64, wm, context=ContextSource(np.zeros((1, 1, 64, 64, 3), np.uint8)))
        warm.reset(seed=0)
        for _ in range(3):
            warm.step(np.zeros(64, np.int64))
        compile_s = round(time.perf_counter() - start, 1)
    contexts = ContextSource(np.random.default_rng(0).integers(0, 256, (8, 1, 64, 64, 3), dtype=np.uint8))
    peak = matmul_peak_flops(torch.bfloat16 if args.precision == "bf16" else torch.float32, args.device)
    sps, mfu = {}, {}
    for n in args.sizes:
        venv = GenieCoinRunVectorEnv(n, wm, context=contexts, max_episode_steps=10**6)
        venv.reset(seed=0)
        sps[n] = round(steps_per_second(venv, n, args.seconds, args.device), 1)
        flops = count_flops(lambda: venv.step(np.zeros(n, np.int64)))
        mfu[n] = round(flops * sps[n] / n / peak, 4)
    venv = GenieCoinRunVectorEnv(64, wm, context=contexts, max_episode_steps=10**6)
    venv.reset(seed=0)
    # where the work goes at N=64: the dynamics step against decoding its tokens into frames
    grid = wm.tokenizer.cfg.grid
    step_flops = count_flops(lambda: venv.step(np.zeros(64, np.int64)))
    decode_flops = count_flops(lambda: wm.decode(torch.zeros(64, 1, grid, grid, dtype=torch.long, device=args.device)))
    times = {}
    for t in range(1, args.long_episode + 6):
        start = time.perf_counter()
        venv.step(np.zeros(64, np.int64))
        if t in range(10, 15) or t in range(args.long_episode, args.long_episode + 5):
            times.setdefault("late" if t >= args.long_episode else "early", []).append(time.perf_counter() - start)
    real = ProcgenCoinRunVectorEnv(64)
    real.reset(seed=0)
    real_sps = steps_per_second(real, 64, 2.0, "cpu")
    result = {
        "benchmark": "dream_env",
        "weights": weights,
        "precision": args.precision,
        "device": args.device,
        "compiled": args.compile,
        "compile_s_64": compile_s,
        "steps_per_s": sps,
        "mfu": mfu,
        "matmul_peak_gflops_per_s": round(peak / 1e9, 1),
        "gflop_per_step_64": {
            "total": round(step_flops / 1e9, 2),
            "decode": round(decode_flops / 1e9, 2),
            "dynamics": round((step_flops - decode_flops) / 1e9, 2),
        },
        "step_time_ms_10": round(1000 * float(np.median(times["early"])), 2),
        "step_time_ms_900": round(1000 * float(np.median(times["late"])), 2),
        "step_time_ratio_900_10": round(float(np.median(times["late"]) / np.median(times["early"])), 3),
        "real_env_steps_per_s_64": round(real_sps, 1),
        "targets": {"steps_per_s_64": ">= 500", "mfu_256": ">= 0.30", "step_time_ratio_900_10": "<= 1.10"},
        **machine(),
        "command": "python benchmarks/dream_env.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
