"""Speed of the batched dream env: steps/s for N = 1, 16, 64, 256 (decoding included), MFU, and
per-step time over a long episode (flat thanks to the sliding-window KV cache); then, in the same run,
steps/s in every precision beside the default's (fp32, bf16, int8: at 64 envs and --precision-sizes, the
best of --rounds interleaved rounds), and of architecture variants.

    python benchmarks/dream_env.py [--world-model DIR] [--precision auto] [--device cpu] [--compile] \
        [--precision-sizes 64 256] [--rounds 3] [--variant lean '{"temporal_every": 4, "kv_heads": 1}' ...]

Without --world-model it uses the shipped model if there is one, else fresh `cpu`-preset weights
(speed does not depend on the weights; the JSON says which). It prints one JSON object: the CPU, the
measured matmul peaks (fp32, bf16, int8), the precision `auto` resolved to, `steps_per_s` and `mfu`
keyed by N, `steps_per_s_64_by_precision` with each one's ratio to the fastest eager one (the default
should be within 10% of it; a precision this CPU only emulates is not timed, `precisions_not_timed` says
why; with --compile each precision's compiled twin too, PRECISION+compile, and `compile_s_64`, the seconds
each took to compile and warm up), `steps_per_s_by_precision` keyed by N
with each one's ratio to the default,
`layers_alone_64` (the step's Linear and convolution layers replayed alone: their share of the step's
time and FLOPs, and the MFU they reach, the step's ceiling), `step_time_ratio_900_10`, the real env's
steps/s, and per `--variant` (DynamicsConfig fields changed, fresh weights, the same tokenizer) its
steps/s at 64 envs as a ratio to the model's.
Absolute speeds differ between machines of one kind: compare ratios from one run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EMULATED_BELOW, count_flops, machine, matmul_peak_flops, sync, time_per_call  # noqa: E402

from genie_env.data.context import ContextSource  # noqa: E402
from genie_env.envs.dream import GenieCoinRunVectorEnv  # noqa: E402
from genie_env.envs.real import ProcgenCoinRunVectorEnv  # noqa: E402
from genie_env.models.dynamics import DynamicsModel  # noqa: E402
from genie_env.models.int8 import Int8Linear  # noqa: E402
from genie_env.models.tokenizer import Tokenizer  # noqa: E402
from genie_env.presets import dynamics_preset, tokenizer_preset  # noqa: E402
from genie_env.world_model import DEFAULT_MODEL_DIR, WorldModel, load_world_model, resolve_precision  # noqa: E402

PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


@dataclass(frozen=True)
class Args:
    """Settings of the dream-env benchmark."""

    world_model: str | None = None
    """world-model directory (default: the shipped model, else untrained cpu-preset weights)"""
    precision: str = "auto"
    """inference precision of the detailed figures: auto (what the dream envs default to), fp32, bf16 or int8"""
    precisions: tuple[str, ...] = ("fp32", "bf16", "int8")
    """precisions also timed at 64 envs, beside the default's (int8: compiled at its first step, not timed)"""
    precision_sizes: tuple[int, ...] = (64,)
    """numbers of envs at which every precision is timed (64 always)"""
    rounds: int = 3
    """interleaved rounds of the precision timings (the best is reported: interference only slows a timing down)"""
    variant: Annotated[tuple[tuple[str, str], ...], tyro.conf.UseAppendAction] = ()
    """architecture variants to time at 64 envs: NAME and the DynamicsConfig fields it changes as JSON, e.g.
    lean '{"temporal_every": 4, "kv_heads": 1}' (fresh weights: speed does not depend on them)"""
    device: str = "cpu"
    """torch device"""
    sizes: tuple[int, ...] = (1, 16, 64, 256)
    """numbers of envs to time"""
    seconds: float = 3.0
    """timing per size"""
    long_episode: int = 900
    """step at which per-step time is compared with step 10"""
    emulated_below: float = EMULATED_BELOW
    """a precision whose measured matmul peak is under this fraction of the best one's is emulated on this CPU
    (bf16 without AVX512-BF16 or AMX: about 100x below fp32 on an AVX2 machine): it is not timed, and the JSON
    says why (`precisions_not_timed`)"""
    compile: bool = False
    """also time each precision compiled (`WorldModel.compile`: inductor, weights frozen in), as PRECISION+compile
    beside its eager timing, and compile the --variant models"""


def world_model(args: Args, precision: str) -> tuple[WorldModel, str]:
    if args.world_model or (DEFAULT_MODEL_DIR / "dynamics" / "config.json").exists():
        return load_world_model(args.world_model, args.device, precision), "trained"
    tok = tokenizer_preset("cpu").model
    dyn = dynamics_preset("cpu").model
    return WorldModel(Tokenizer(tok), DynamicsModel(dyn), args.device, precision), "untrained cpu preset"


def variant_model(wm: WorldModel, changes: dict, precision: str, tokenizer_changes: dict | None = None) -> WorldModel:
    """`wm`'s tokenizer (or, with `tokenizer_changes`, a fresh one of its config changed so, e.g. a lighter decoder
    or a coarser grid) with a fresh dynamics model of `wm`'s config changed by `changes` (its token grid
    following the tokenizer's)."""
    tokenizer = wm.tokenizer
    if tokenizer_changes:
        tokenizer = Tokenizer(dataclasses.replace(wm.tokenizer.cfg, **tokenizer_changes)).to(wm.device).eval()
    cfg = dataclasses.replace(wm.dynamics.cfg, grid=tokenizer.cfg.grid, **changes)
    return WorldModel(tokenizer, DynamicsModel(cfg), wm.device, precision)


def compiled(wm: WorldModel) -> float:
    """`wm.compile()`, warmed up at 64 envs; the seconds it took."""
    start = time.perf_counter()
    wm.compile()
    warm = GenieCoinRunVectorEnv(64, wm, context=ContextSource(np.zeros((1, 1, 64, 64, 3), np.uint8)))
    warm.reset(seed=0)
    for _ in range(3):
        warm.step(np.zeros(64, np.int64))
    return round(time.perf_counter() - start, 1)


def steps_per_second_64(wm: WorldModel, contexts: ContextSource, seconds: float, device: str) -> float:
    return steps_per_second_n(wm, 64, contexts, seconds, device)


def steps_per_second_n(wm: WorldModel, n: int, contexts: ContextSource, seconds: float, device: str) -> float:
    venv = GenieCoinRunVectorEnv(n, wm, context=contexts, max_episode_steps=10**6)
    venv.reset(seed=0)
    return round(steps_per_second(venv, n, seconds, device), 1)


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


def layers_alone(wm: WorldModel, venv: GenieCoinRunVectorEnv, device: str, peak: float) -> dict:
    """Where the step's MFU goes: its Linear and convolution layers (dynamics and decoder, nearly all of its
    FLOPs), each replayed alone on the inputs it saw in one step of `venv`, against the whole step. What the
    layers alone reach is the step's MFU ceiling; the rest of the step is the small memory-bound ops between
    them (attention, norms, activations, rotary, casts) and Python."""
    layers = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d, Int8Linear)
    calls: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, _o: calls.append((m, i[0].detach().clone())))
             for model in (wm.dynamics, wm.tokenizer) for m in model.modules() if isinstance(m, layers)]  # fmt: skip
    n = venv.num_envs
    venv.step(np.zeros(n, np.int64))
    for hook in hooks:
        hook.remove()
    with torch.no_grad(), wm.autocast():
        layer_s = sum(time_per_call(lambda m=m, x=x: m(x), device, min_seconds=0.05) for m, x in calls)
        layer_flops = sum(count_flops(lambda m=m, x=x: m(x)) for m, x in calls)
    step_s = time_per_call(lambda: venv.step(np.zeros(n, np.int64)), device, min_seconds=2.0)
    return {
        "envs": n, "step_ms": round(step_s * 1e3, 2), "layers_ms": round(layer_s * 1e3, 2),
        "layers_share_of_time": round(layer_s / step_s, 3),
        "layers_share_of_flops": round(layer_flops / count_flops(lambda: venv.step(np.zeros(n, np.int64))), 3),
        "mfu_layers_alone": round(layer_flops / layer_s / peak, 4),
    }  # fmt: skip


def main(args: Args) -> dict:
    default = resolve_precision(args.precision, args.device)
    wm, weights = world_model(args, default)
    contexts = ContextSource(np.random.default_rng(0).integers(0, 256, (8, 1, 64, 64, 3), dtype=np.uint8))
    peaks = {name: matmul_peak_flops(dtype, args.device) for name, dtype in PEAK_DTYPES.items()}
    peak = peaks[default]
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
    floor = layers_alone(wm, venv, args.device, peak)
    times = {}
    for t in range(1, args.long_episode + 6):
        start = time.perf_counter()
        venv.step(np.zeros(64, np.int64))
        if t in range(10, 15) or t in range(args.long_episode, args.long_episode + 5):
            times.setdefault("late" if t >= args.long_episode else "early", []).append(time.perf_counter() - start)
    models = {default: wm}
    best_peak = max(peaks.values())
    not_timed = {
        p: f"matmul peak {peaks[p] / 1e9:.1f} G/s, {peaks[p] / best_peak:.3f} of the best ({best_peak / 1e9:.1f}): "
        "emulated on this CPU"
        for p in args.precisions if p != default and peaks[p] < args.emulated_below * best_peak
    }  # fmt: skip
    for precision in args.precisions:
        if precision not in models and precision not in not_timed:
            models[precision], _ = world_model(args, precision)
    compile_s = {}
    if args.compile:  # a compiled twin of each precision, timed in the same interleaved rounds
        for precision in list(models):
            twin, _ = world_model(args, precision)
            compile_s[precision] = compiled(twin)
            models[f"{precision}+compile"] = twin
    timings = {(n, p): [] for n in sorted({64, *args.precision_sizes}) for p in models}
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every precision alike
        for n, precision in timings:
            timings[n, precision].append(steps_per_second_n(models[precision], n, contexts, args.seconds, args.device))
    by_size = {n: {p: max(timings[n, p]) for p in models} for n, _ in timings}
    by_precision = by_size[64]
    # the fastest precision as it runs eagerly (what make_vec gives): compiled twins show as ratios above it
    fastest = max(v for p, v in by_precision.items() if not p.endswith("+compile"))
    variants = {}
    for name, text in args.variant:
        changes = json.loads(text)
        lean = variant_model(wm, changes, default)
        if args.compile:
            compiled(lean)
        speed = steps_per_second_64(lean, contexts, args.seconds, args.device)
        venv = GenieCoinRunVectorEnv(64, lean, context=contexts, max_episode_steps=10**6)
        venv.reset(seed=0)
        variants[name] = {
            "changes": changes, "steps_per_s_64": speed, "ratio_to_model": round(speed / by_precision[default], 3),
            "gflop_per_step_64": round(count_flops(lambda v=venv: v.step(np.zeros(64, np.int64))) / 1e9, 2),
            "dynamics_params_m": round(sum(p.numel() for p in lean.dynamics.parameters()) / 1e6, 2),
        }  # fmt: skip
    real = ProcgenCoinRunVectorEnv(64)
    real.reset(seed=0)
    real_sps = steps_per_second(real, 64, 2.0, "cpu")
    result = {
        "benchmark": "dream_env",
        "weights": weights,
        "precision": args.precision,
        "precision_resolved": default,
        "device": args.device,
        "compiled": args.compile,
        "compile_s_64": compile_s or None,
        "steps_per_s": sps,
        "mfu": mfu,
        "matmul_peak_gflops_per_s": round(peak / 1e9, 1),
        "matmul_peaks_gflops_per_s": {name: round(value / 1e9, 1) for name, value in peaks.items()},
        "steps_per_s_64_by_precision": {
            name: {"steps_per_s": value, "ratio_to_fastest": round(value / fastest, 3)}
            for name, value in by_precision.items()
        },
        "steps_per_s_by_precision": {
            n: {p: {"steps_per_s": v, "ratio_to_default": round(v / row[default], 3)} for p, v in row.items()}
            for n, row in by_size.items()
        },
        "precision_rounds": args.rounds,
        "precisions_not_timed": not_timed,
        "default_within_10pct_of_fastest": by_precision[default] >= 0.9 * fastest,
        "variants": variants,
        "gflop_per_step_64": {
            "total": round(step_flops / 1e9, 2),
            "decode": round(decode_flops / 1e9, 2),
            "dynamics": round((step_flops - decode_flops) / 1e9, 2),
        },
        "layers_alone_64": floor,
        "step_time_ms_10": round(1000 * float(np.median(times["early"])), 2),
        "step_time_ms_900": round(1000 * float(np.median(times["late"])), 2),
        "long_episode": args.long_episode,  # the step the "900" figures were taken at
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
