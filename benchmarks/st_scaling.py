"""How the ST transformer scales with sequence length, against full spatiotemporal attention.

    python benchmarks/st_scaling.py [--dim 256 --depth 4 --tokens 64 --batch 2]

Measures forward+backward time and activation memory for T = 4..64 frames (ST versus full attention,
same width and depth), and the time to generate one frame at context 4, 16, 64 with and without the
KV cache. Prints one JSON object (including st_ratio_64_16, full_ratio_64_16, cache_ratio_64_4) and
writes a log-log plot. Activation memory is the bytes autograd saves for the backward pass (on CUDA,
the peak allocated memory).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_per_call  # noqa: E402

from genie_env.models.st_transformer import STConfig, STTransformer  # noqa: E402


@dataclass(frozen=True)
class Args:
    """Settings of the scaling benchmark."""

    dim: int = 256
    """width"""
    depth: int = 4
    """blocks"""
    heads: int = 4
    """attention heads"""
    tokens: int = 64
    """tokens per frame (an 8x8 grid)"""
    batch: int = 2
    """sequences per batch"""
    lengths: tuple[int, ...] = (4, 8, 16, 32, 64)
    """sequence lengths T to time"""
    contexts: tuple[int, ...] = (4, 16, 64)
    """contexts for the per-frame generation timing"""
    device: str = "cpu"
    """torch device"""
    plot: str = "outputs/st_scaling.png"
    """where the log-log plot goes"""


def activation_bytes(model: STTransformer, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves in one forward (the activation memory of training)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return total


def main(args: Args) -> dict:
    dev = args.device
    torch.manual_seed(0)
    result: dict[str, object] = {"benchmark": "st_scaling", "dim": args.dim, "depth": args.depth, "tokens": args.tokens,
                                 "batch": args.batch}  # fmt: skip
    train: dict[str, dict[int, dict[str, float]]] = {}
    for attention in ("st", "full"):
        cfg = STConfig(args.dim, args.depth, args.heads, tokens=args.tokens, max_frames=max(args.lengths),
                       temporal_pos="rope", attention=attention)  # fmt: skip
        model = STTransformer(cfg).to(dev)
        train[attention] = {}
        for t in args.lengths:
            x = torch.randn(args.batch, t, args.tokens, args.dim, device=dev, requires_grad=True)

            def step():
                model(x).sum().backward()

            seconds = time_per_call(step, dev, warmup=1, min_seconds=1.0)
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                step()
                memory = torch.cuda.max_memory_allocated()
            else:
                memory = activation_bytes(model, x)
            train[attention][t] = {"fwd_bwd_ms": round(seconds * 1000, 2), "memory_mb": round(memory / 2**20, 1)}
    result["train"] = train
    ms = {a: {t: v["fwd_bwd_ms"] for t, v in r.items()} for a, r in train.items()}
    result["st_ratio_64_16"] = round(ms["st"][64] / ms["st"][16], 3)
    result["full_ratio_64_16"] = round(ms["full"][64] / ms["full"][16], 3)

    infer: dict[str, dict[int, float]] = {"cached_ms": {}, "uncached_ms": {}}
    with torch.no_grad():
        for context in args.contexts:
            cfg = STConfig(args.dim, args.depth, args.heads, tokens=args.tokens, max_frames=context,
                           temporal_pos="rope", window=context)  # fmt: skip
            model = STTransformer(cfg).to(dev).eval()
            history = torch.randn(args.batch, context, args.tokens, args.dim, device=dev)
            cache = model.new_cache(args.batch)
            for t in range(context):  # fill the window, then keep stepping (the ring buffer wraps)
                model(history[:, t : t + 1], cache=cache)
            frame = history[:, -1:]
            infer["cached_ms"][context] = round(1000 * time_per_call(lambda: model(frame, cache=cache), dev), 3)
            infer["uncached_ms"][context] = round(1000 * time_per_call(lambda: model(history), dev), 3)
    result["inference"] = infer
    result["cache_ratio_64_4"] = round(infer["cached_ms"][64] / infer["cached_ms"][4], 3)
    result["targets"] = {"st_ratio_64_16": "<= 4.5", "cache_ratio_64_4": "<= 1.5"}
    result["plot"] = _plot(ms, infer, args.plot)
    result.update(machine())
    result["command"] = "python benchmarks/st_scaling.py " + " ".join(sys.argv[1:])
    print(json.dumps(result))
    return result


def _plot(ms: dict[str, dict[int, float]], infer: dict[str, dict[int, float]], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, series in ms.items():
        a.loglog(list(series), list(series.values()), marker="o", base=2, label=f"{name} attention")
    a.set(xlabel="frames T", ylabel="forward+backward (ms)", title="training cost vs sequence length")
    for name, series in infer.items():
        b.loglog(list(series), list(series.values()), marker="o", base=2, label=name.replace("_ms", ""))
    b.set(xlabel="context (frames)", ylabel="one generated frame (ms)", title="generation cost vs context")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main(tyro.cli(Args))
