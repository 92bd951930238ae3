"""Which tokenizer kind is better at equal compute on this data: conv VQ-VAE or ST-ViViT.

    python benchmarks/tokenizer_compare.py --data DIR [--minutes 5]

Trains each kind for the same wall time on this machine (steps sized from a short timing run so the
cosine schedule completes), evaluates both on the validation split, prints one JSON object.
Not part of `make bench` by default: it takes 2 x --minutes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from genie_env.cli.train_tokenizer import TrainTokenizerArgs, run

from genie_env.evaluate.tokenizer import evaluate_tokenizer
from genie_env.models import load_tokenizer
from genie_env.models.tokenizer import TokenizerConfig
from genie_env.presets import tokenizer_preset


@dataclass(frozen=True)
class Args:
    """Settings of the tokenizer comparison."""

    data: str
    """frame dataset directory"""
    minutes: float = 5.0
    """training wall time per tokenizer kind"""
    eval_frames: int = 3000
    """validation frames to evaluate on"""


def variants() -> dict[str, tuple[TokenizerConfig, int]]:
    """The two kinds at the cpu preset's token grid and a similar parameter count: (config, clip length)."""
    conv = tokenizer_preset("cpu").model
    stvivit = dataclasses.replace(conv, kind="stvivit", channels=128, blocks=4, heads=4, max_frames=4)
    return {"conv": (conv, 1), "stvivit": (stvivit, 4)}


def train_for(kind: str, model: TokenizerConfig, window: int, data: str, minutes: float, root: Path) -> dict:
    base = dataclasses.replace(tokenizer_preset("cpu").train, max_minutes=0, checkpoint_every=10**9, image_every=0)
    batch = max(1, base.batch_size // window)  # the same frames per step for both kinds
    probe = dataclasses.replace(base, steps=30, batch_size=batch, log_every=10, warmup_steps=5)
    start = time.perf_counter()
    run(TrainTokenizerArgs(data=data, out=str(root / f"{kind}_probe"), model=model, train=probe, window=window))
    rate = 30 / (time.perf_counter() - start)
    steps = max(50, int(rate * minutes * 60))
    cfg = dataclasses.replace(base, steps=steps, batch_size=batch, max_minutes=minutes * 1.2)
    start = time.perf_counter()
    run(TrainTokenizerArgs(data=data, out=str(root / kind), model=model, train=cfg, window=window))
    return {
        "steps": steps,
        "frames_seen": steps * batch * window,
        "train_minutes": round((time.perf_counter() - start) / 60, 2),
    }


def main(args: Args) -> dict:
    result: dict[str, object] = {"benchmark": "tokenizer_compare", "minutes_each": args.minutes}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (model, window) in variants().items():
            stats = train_for(kind, model, window, args.data, args.minutes, Path(tmp))
            tokenizer = load_tokenizer(Path(tmp) / kind)
            stats["params_m"] = round(sum(p.numel() for p in tokenizer.parameters()) / 1e6, 3)
            stats.update(evaluate_tokenizer(tokenizer, args.data, "val", args.eval_frames))
            result[kind] = stats
    result["better"] = max(("conv", "stvivit"), key=lambda k: result[k]["psnr"])
    result["command"] = "python benchmarks/tokenizer_compare.py " + " ".join(sys.argv[1:])
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
