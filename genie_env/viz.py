"""Pictures people would rather look at than numbers: frame grids, GIFs, and the finish of every plot."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from genie_env._io import atomic_path, atomic_write_bytes


def frame_grid(frames: np.ndarray, ncols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile frames uint8 (N, H, W, 3) into one uint8 image, `ncols` per row, with white padding."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frame_grid expects uint8 (N, H, W, 3), got shape {frames.shape}")
    n, h, w, _ = frames.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = frame
    return grid


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, C) images by an integer factor."""
    return image.repeat(factor, axis=-3).repeat(factor, axis=-2)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W, 3) image as PNG, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        imageio.imwrite(tmp, image)
    return path


def png_bytes(image: np.ndarray, compression: int = 6) -> bytes:
    """A uint8 (H, W, 3) image as PNG bytes (zlib `compression` 0..9: 1 is fast, for live frames)."""
    return imageio.imwrite("<bytes>", image, format="PNG", compress_level=compression)


def gif_bytes(frames: np.ndarray, fps: int = 15, scale: int = 4) -> bytes:
    """Frames uint8 (T, H, W, 3) as a looping GIF, upscaled `scale`x."""
    return imageio.mimwrite("<bytes>", list(upscale(np.asarray(frames), scale)), format="GIF",
                            duration=1000 / fps, loop=0)  # fmt: skip


def save_gif(frames: np.ndarray, path: str | Path, fps: int = 15, scale: int = 4) -> Path:
    """Write frames uint8 (T, H, W, 3) as a looping GIF, upscaled `scale`x, atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, fps, scale))
    return path


def finish_plot(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str, legend: str = "lower right",
                log_x: bool = False, dpi: int = 110) -> Path:  # fmt: skip
    """Label, grid and legend a matplotlib `ax` of `fig` the one way our plots do, and write it as PNG at `path`
    atomically; returns `path`."""
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc=legend)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return Path(path)
