"""Latent action model evaluation on held-out levels: what the latent actions mean.

- the contingency table of latent actions against the real actions (and against CoinRun's movement
  classes), with its normalized mutual information;
- each latent action's mean effect: the horizontal shift of the scene between the frames of its
  transitions (CoinRun's camera follows the agent, so the scene moves against the agent's motion);
- the next-frame PSNR of the LAM's reconstruction (with the inferred latent actions), from the mean MSE
  over all evaluated frames, beside copy-last-frame's;
- a picture: each latent action applied to the same frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genie_env.data.dataset import WindowDataset
from genie_env.games import ACTION_MEANINGS, ACTION_MOVEMENT, MOVEMENT_CLASSES, NUM_ACTIONS
from genie_env.metrics import FrameErrors, normalized_mutual_info
from genie_env.models.lam import LatentActionModel
from genie_env.models.tokenizer import output_to_frames
from genie_env.viz import frame_grid, save_png, upscale

MAX_SHIFT = 6
"""largest horizontal scene shift (pixels) the effect measure looks for"""


def horizontal_shift(before: np.ndarray, after: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Per pair of frames uint8 (N, H, W, 3), the shift dx in -max_shift..max_shift (pixels, + = the
    scene moved right) that best maps `before` onto `after`, by mean squared error over the overlap."""
    a, b = before.astype(np.float32), after.astype(np.float32)
    w = a.shape[2]
    errors = []
    for dx in range(-max_shift, max_shift + 1):
        if dx >= 0:
            err = ((b[:, :, dx:] - a[:, :, : w - dx]) ** 2).mean(axis=(1, 2, 3))
        else:
            err = ((b[:, :, :dx] - a[:, :, -dx:]) ** 2).mean(axis=(1, 2, 3))
        errors.append(err)
    return np.argmin(np.stack(errors, 1), axis=1) - max_shift


def evaluate_lam(model: LatentActionModel, data: str | Path, split: str = "val", window: int | None = None,
                 max_windows: int = 0, batch_size: int = 32, grid_path: str | Path | None = None,
                 grid_contexts: int = 6) -> dict[str, Any]:  # fmt: skip
    """Label every transition of `split` (windows chained without overlapping transitions, or the first
    `max_windows`) with the LAM and measure it (see the module docstring). Returns a JSON-serialisable dict."""
    model.eval()
    window = window or model.cfg.frames
    dataset = WindowDataset(data, split, window=window, stride=window - 1)
    n = len(dataset) if not max_windows else min(max_windows, len(dataset))
    k = model.cfg.num_actions
    table = np.zeros((k, NUM_ACTIONS), np.int64)
    shifts: list[list[int]] = [[] for _ in range(k)]
    errors, copy_errors = FrameErrors(), FrameErrors()
    first_frames = []
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        frames = torch.stack([item["frames"] for item in items])
        real = torch.stack([item["actions"] for item in items])[:, :-1].numpy()  # action t moves frame t to t+1
        with torch.no_grad():
            out = model(frames)
        latent = out.actions.numpy()
        np.add.at(table, (latent.ravel(), real.ravel()), 1)
        dx = horizontal_shift(frames[:, :-1].flatten(0, 1).numpy(), frames[:, 1:].flatten(0, 1).numpy())
        for code, shift in zip(latent.ravel(), dx):
            shifts[code].append(int(shift))
        predicted = output_to_frames(out.prediction.float()).clamp(0, 1)
        errors.update(predicted, frames[:, 1:])
        copy_errors.update(frames[:, :-1], frames[:, 1:])
        if len(first_frames) < grid_contexts:
            first_frames += [f[: window - 1] for f in frames[: grid_contexts - len(first_frames)]]
    movement = np.zeros((k, len(MOVEMENT_CLASSES)), np.int64)
    for a, name in enumerate(ACTION_MEANINGS):
        movement[:, MOVEMENT_CLASSES.index(ACTION_MOVEMENT[name])] += table[:, a]
    used = table.sum(1)
    result = {
        "transitions": int(table.sum()),
        "windows": n,
        "window": window,
        "num_latent_actions": k,
        "latent_action_counts": used.tolist(),
        "latent_actions_used": int((used > 0).sum()),
        "nmi_real_actions": normalized_mutual_info(table),
        "nmi_movement_classes": normalized_mutual_info(movement),
        "contingency_real_actions": {
            "rows": [f"latent {i}" for i in range(k)],
            "columns": list(ACTION_MEANINGS),
            "counts": table.tolist(),
        },  # fmt: skip
        "contingency_movement": {
            "rows": [f"latent {i}" for i in range(k)],
            "columns": list(MOVEMENT_CLASSES),
            "counts": movement.tolist(),
        },  # fmt: skip
        "mean_scene_shift_px": [float(np.mean(s)) if s else None for s in shifts],
        "psnr": errors.psnr,
        "copy_last_psnr": copy_errors.psnr,
        "frames": errors.frames,
    }
    if grid_path is not None and first_frames:
        result["grid"] = str(action_grid(model, torch.stack(first_frames), grid_path))
    return result


@torch.no_grad()
def action_grid(model: LatentActionModel, contexts: torch.Tensor, path: str | Path) -> Path:
    """A PNG: one row per context (uint8 (N, T', 64, 64, 3)): its last frame, then the frame each latent
    action predicts after it."""
    n, t = contexts.shape[:2]
    k = model.cfg.num_actions
    rows = []
    for i in range(n):
        past = contexts[i : i + 1].expand(k, -1, -1, -1, -1)
        actions = torch.arange(k)[:, None].repeat(1, t)  # the last column: each latent action in turn
        if t > 1:  # the context's own transitions keep the actions the LAM infers for them
            actions[:, :-1] = model.infer_actions(contexts[i : i + 1])[0]
        predicted = model.predict(past, actions)[:, -1].mul(255).round().to(torch.uint8).numpy()
        rows += [contexts[i, -1].numpy(), *predicted]
    return save_png(upscale(frame_grid(np.stack(rows), ncols=k + 1), 2), path)
