"""Tokenizer speed: training throughput with MFU, and encode/decode throughput at batch 1, 64, 256.

    python benchmarks/tokenizer.py [--preset cpu] [--checkpoint RUN]

Prints one JSON object. MFU is the achieved FLOP/s (FLOPs counted by torch's FlopCounterMode) over
the matmul peak measured in the same run, in the precision the work used (training: the preset's, as
`genie train-tokenizer` resolves it on this device). bf16 decoding is not timed where this CPU only
emulates bf16 (`decode_fps_bf16` empty). Weights do not change speed; --checkpoint only makes the figures
refer to a trained model.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EMULATED_BELOW, count_flops, machine, matmul_peak_flops, time_per_call  # noqa: E402

from genie_env.models import load_tokenizer  # noqa: E402
from genie_env.models.tokenizer import Tokenizer  # noqa: E402
from genie_env.presets import tokenizer_preset  # noqa: E402
from genie_env.trainer import trains_in_bf16  # noqa: E402


@dataclass(frozen=True)
class Args:
    """Settings of the tokenizer benchmark."""

    preset: str = "cpu"
    """tokenizer preset to measure"""
    checkpoint: str | None = None
    """trained tokenizer run or checkpoint (default: fresh weights of the preset)"""
    device: str = "cpu"
    """torch device"""


def main(args: Args) -> dict:
    preset = tokenizer_preset(args.preset)
    model = load_tokenizer(args.checkpoint, args.device) if args.checkpoint else Tokenizer(preset.model).to(args.device)
    cfg, dev = model.cfg, args.device
    bf16 = trains_in_bf16(preset.train.precision, dev.split(":")[0])  # what `genie train-tokenizer` runs in
    peaks = {"fp32": matmul_peak_flops(torch.float32, dev), "bf16": matmul_peak_flops(torch.bfloat16, dev)}

    # training step: forward, backward, AdamW, at the preset's batch and precision
    batch, window = preset.train.batch_size, preset.window
    frames = torch.randint(0, 256, (batch, window, 64, 64, 3), dtype=torch.uint8, device=dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(dev.split(":")[0], dtype=torch.bfloat16) if bf16 else nullcontext()

    def train_step():
        with autocast:
            loss = model(frames).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model(frames)  # k-means initialisation outside the timing
    step_flops = count_flops(train_step)
    step_s = time_per_call(train_step, dev, min_seconds=5.0)
    train_peak = peaks["bf16" if bf16 else "fp32"]

    model.eval()
    tokens = {}
    speed: dict[str, dict[int, float]] = {"encode_fps": {}, "decode_fps": {}, "decode_fps_bf16": {}}
    for b in (1, 64, 256):
        x = torch.randint(0, 256, (b, 1, 64, 64, 3), dtype=torch.uint8, device=dev)
        tokens[b] = model.encode(x)
        speed["encode_fps"][b] = round(b / time_per_call(lambda: model.encode(x), dev), 1)
        speed["decode_fps"][b] = round(b / time_per_call(lambda: model.decode(tokens[b]), dev), 1)
        if peaks["bf16"] >= EMULATED_BELOW * peaks["fp32"]:  # else emulated on this CPU: minutes a call, not timed
            with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16):
                speed["decode_fps_bf16"][b] = round(b / time_per_call(lambda: model.decode(tokens[b]), dev), 1)
    decode_flops = count_flops(lambda: model.decode(tokens[256])) / 256
    result = {
        "benchmark": "tokenizer",
        "preset": args.preset,
        "kind": cfg.kind,
        "token_grid": [cfg.grid, cfg.grid],
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "train_precision": "bf16" if bf16 else "fp32",
        "train_frames_per_s": round(batch * window / step_s, 1),
        "train_gflops_per_s": round(step_flops / step_s / 1e9, 1),
        "matmul_peak_gflops_per_s": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        "train_mfu": round(step_flops / step_s / train_peak, 3),
        **speed,
        "decode_mflops_per_frame": round(decode_flops / 1e6, 1),
        "decode_mfu_256": round(decode_flops * speed["decode_fps"][256] / peaks["fp32"], 3),
        "flops_note": "FLOPs are counted as direct convolutions; oneDNN's Winograd 3x3 kernels do fewer "
        "multiplies, so a conv model's MFU can exceed 1",
        "decode_target_fps_256": 2000,
        **machine(),
        "command": "python benchmarks/tokenizer.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
