"""Tokenizer evaluation on held-out levels: PSNR (from the mean MSE), SSIM, codebook usage, speed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genie_env.data.format import load_shard
from genie_env.data.manifest import read_manifest
from genie_env.metrics import FrameErrors
from genie_env.models.tokenize import encode_frames
from genie_env.models.tokenizer import Tokenizer
from genie_env.viz import frame_grid, save_png, upscale


def evaluate_tokenizer(tokenizer: Tokenizer, data: str | Path, split: str = "val", max_frames: int = 0,
                       batch_size: int = 256, grid_path: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Reconstruct every frame of `split` (or the first `max_frames`) and measure the tokenizer.

    Returns psnr (dB, from the MSE over all frames, values in [0, 1]), ssim, mse, codebook_usage
    (fraction of codes used), perplexity (of the token histogram), encode_decode_ms_per_frame.
    Writes originals over reconstructions to `grid_path` when given.
    """
    tokenizer.eval()
    errors = FrameErrors()
    counts = np.zeros(tokenizer.cfg.codebook_size, np.int64)
    seconds, shown = 0.0, []
    for info in read_manifest(data, kind="frames").shards_of(split):
        arrays = load_shard(data, info)
        n = info.num_frames if not max_frames else min(info.num_frames, max_frames - errors.frames)
        if n <= 0:
            break
        frames = np.array(arrays["frames"][:n])  # a writable copy of the read-only shard for torch
        start = time.perf_counter()
        tokens = encode_frames(tokenizer, frames, np.asarray(arrays["episode_ids"][:n]), batch_size)
        recon = np.concatenate([
            tokenizer.decode_uint8(torch.from_numpy(tokens[a : a + batch_size].astype(np.int64))[None])[0].numpy()
            for a in range(0, n, batch_size)
        ])  # fmt: skip
        seconds += time.perf_counter() - start
        errors.update(torch.from_numpy(recon), torch.from_numpy(frames))
        counts += np.bincount(tokens.reshape(-1), minlength=len(counts))
        if not shown:
            pick = np.linspace(0, n - 1, min(16, n)).astype(int)
            shown = [frames[pick], recon[pick]]
    if errors.frames == 0:
        raise ValueError(f"no {split} frames in {data}")
    probs = counts / counts.sum()
    nz = probs[probs > 0]
    if grid_path is not None:
        save_png(upscale(frame_grid(np.concatenate(shown), ncols=len(shown[0])), 2), grid_path)
    return {
        "split": split,
        "frames": errors.frames,
        "psnr": round(errors.psnr, 3),
        "ssim": round(errors.ssim, 4),
        "mse": errors.mse,
        "codebook_usage": round(float((counts > 0).mean()), 4),
        "perplexity": round(float(np.exp(-(nz * np.log(nz)).sum())), 1),
        "encode_decode_ms_per_frame": round(1000 * seconds / errors.frames, 3),
        "token_grid": [tokenizer.cfg.grid, tokenizer.cfg.grid],
    }
