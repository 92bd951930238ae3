"""Every metric the evaluations report, in one place: image quality (PSNR, SSIM), event classification
(ROC AUC, calibration error) and the bootstrap confidence interval of a mean return.

PSNR is always computed from the MSE averaged over all evaluated frames (values in [0, 1]): identical
consecutive frames have infinite per-frame PSNR, so a mean of per-frame PSNRs would reward copying.
The tests check each against a well-kept implementation (scikit-image, scikit-learn, SciPy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of values in [0, 1]."""
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) of float images in [0, 1].

    a, b: (N, H, W, 3) -> (N,), averaged over channels and valid window positions.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim expects two (N, H, W, C) tensors of the same shape, got {a.shape} and {b.shape}")
    c = a.shape[-1]
    x = a.permute(0, 3, 1, 2).reshape(-1, 1, *a.shape[1:3]).float()  # "nhwc" -> "(n c) 1 h w"
    y = b.permute(0, 3, 1, 2).reshape(-1, 1, *b.shape[1:3]).float()
    w = _gaussian_window().to(x.device)
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3)).view(-1, c).mean(1)


class FrameErrors:
    """Accumulates squared error and SSIM over batches of frames; PSNR from the overall mean MSE."""

    def __init__(self) -> None:
        self.sq_err = 0.0
        self.values = 0
        self.ssim_sum = 0.0
        self.frames = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: uint8 or [0, 1] float frames (..., H, W, 3)."""
        p = pred.float() / 255.0 if pred.dtype == torch.uint8 else pred.float()
        t = target.float() / 255.0 if target.dtype == torch.uint8 else target.float()
        p, t = p.reshape(-1, *p.shape[-3:]), t.reshape(-1, *t.shape[-3:])
        self.sq_err += float((p - t).pow(2).sum())
        self.values += p.numel()
        self.ssim_sum += float(ssim(p, t).sum())
        self.frames += len(p)

    @property
    def mse(self) -> float:
        return self.sq_err / max(1, self.values)

    @property
    def psnr(self) -> float:
        return psnr_from_mse(self.mse)

    @property
    def ssim(self) -> float:
        return self.ssim_sum / max(1, self.frames)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for bool `labels` (Mann-Whitney U, ties given their average
    rank); NaN without both classes."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    average_rank = last - (counts - 1) / 2
    ranks = average_rank[inverse]
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of probabilities `probs` for bool `labels`: over `bins` equal-width bins
    of probability, the gap between mean probability and positive rate, weighted by the bin's share."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    which = np.clip((probs * bins).astype(int), 0, bins - 1)
    return float(sum(
        abs(probs[which == b].mean() - labels[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    ))  # fmt: skip


def normalized_mutual_info(table: np.ndarray) -> float:
    """Normalized mutual information of a contingency table (rows: one labelling, columns: the other),
    I(X; Y) / mean(H(X), H(Y)) (scikit-learn's arithmetic normalisation); 0 when either is constant."""
    p = np.asarray(table, np.float64)
    p = p / max(p.sum(), 1e-300)
    px, py = p.sum(1), p.sum(0)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(px, py)[nz])).sum())
    hx, hy = entropy(px), entropy(py)
    return 0.0 if hx == 0 or hy == 0 else max(0.0, mi / ((hx + hy) / 2))


def bootstrap_ci(values: Any, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `values` (1-D); returns (lo, hi).

    Raises ValueError for no values or a confidence outside (0, 1).
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if np.all(values == values[0]):  # every resample's mean is that value; skip float rounding
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    n = len(values)
    chunk = max(1, 4_000_000 // n)  # resamples per batch, so memory stays ~32 MB whatever n is
    means = np.concatenate([
        values[rng.integers(0, n, (min(chunk, resamples - a), n))].mean(axis=1) for a in range(0, resamples, chunk)
    ])  # fmt: skip
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
