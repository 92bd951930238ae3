"""The reward head's support: the reward values a dynamics model predicts a distribution over, the
two-hot targets it trains on, and the reward a dream returns from that distribution.

Games differ in reward size and sign (fruitbot penalises) and in how many rewards an episode holds
(bigfish, starpilot). The head predicts a categorical distribution over a fixed support that always
holds 0: the distinct reward values of the training data when there are at most `MAX_REWARD_VALUES`
of them (every Procgen game has at most 6), else bins evenly spaced in symlog space between the
smallest and the largest reward (DreamerV3). A reward between two support values trains as the two-hot
target between them (linear weights), so the distribution's mean is the reward itself.

The zero class is the reference: the head emits one logit per non-zero value, the zero class's logit is
0. With CoinRun's support (0, 10) that is one logit, the coin logit of the models trained before
rewards were distributions, so they load and predict unchanged.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

MAX_REWARD_VALUES = 32
RewardMode = Literal["threshold", "sample", "expected"]
REWARD_MODES: tuple[str, ...] = get_args(RewardMode)


def symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def symexp(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.expm1(np.abs(x))


def reward_support(rewards: np.ndarray, max_values: int = MAX_REWARD_VALUES) -> tuple[float, ...]:
    """The support for rewards seen in training: their distinct values and 0 (at most `max_values`), or
    `max_values` symlog-spaced bins over their range, with 0 among them. Sorted ascending."""
    if max_values < 2:
        raise ValueError(f"max_values must be >= 2, got {max_values}")
    values = np.union1d(np.unique(np.asarray(rewards, np.float32)), np.zeros(1, np.float32))
    if not np.isfinite(values).all():
        raise ValueError("rewards hold NaN or infinity")
    if len(values) > max_values:
        bins = symexp(np.linspace(symlog(float(values[0])), symlog(float(values[-1])), max_values - 1))
        values = np.union1d(bins.astype(np.float32), np.zeros(1, np.float32))
    return tuple(float(v) for v in values)


def check_support(values: tuple[float, ...]) -> None:
    """ValueError unless `values` is a strictly increasing support that holds 0."""
    if 0.0 not in values:
        raise ValueError(f"reward_values must hold 0 (the no-reward class), got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"reward_values must be strictly increasing, got {values}")


def two_hot(rewards: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Targets float (..., K) for rewards float (...) on `support` float (K,): all weight on a support
    value a reward equals, else split linearly between the two around it (clipped to the support's range)."""
    k = support.numel()
    if k == 1:
        return torch.ones(*rewards.shape, 1, device=rewards.device)
    r = rewards.float().clamp(float(support[0]), float(support[-1]))
    lo = (torch.searchsorted(support, r.contiguous(), right=True) - 1).clamp(0, k - 2)
    upper = ((r - support[lo]) / (support[lo + 1] - support[lo])).clamp(0, 1)
    target = torch.zeros(*r.shape, k, device=r.device)
    target.scatter_(-1, lo[..., None], (1 - upper)[..., None])
    target.scatter_add_(-1, (lo + 1)[..., None], upper[..., None])
    return target


def dream_rewards(probs: np.ndarray, values: np.ndarray, mode: str, draws: np.ndarray | None = None) -> np.ndarray:
    """The reward a dream returns from distributions probs float (N, K) over `values` float (K,):
    "expected" the mean; "threshold" the likeliest non-zero value where a non-zero reward has probability
    >= 0.5, else 0; "sample" a value drawn with draws float (N,) uniform in [0, 1) (the non-zero values
    first, in support order, then 0). With CoinRun's support (0, 10) these are 10 x the coin probability,
    10 where that is >= 0.5, and 10 where the draw falls below it."""
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown events mode {mode!r}: use one of {REWARD_MODES}")
    if mode == "expected":
        return probs @ values
    nonzero = values != 0
    if not nonzero.any():
        return np.zeros(len(probs), values.dtype)
    p, v = probs[:, nonzero], values[nonzero]
    if mode == "threshold":
        return np.where(p.sum(1) >= 0.5, v[p.argmax(1)], 0.0)
    if draws is None:
        raise ValueError('events="sample" needs one uniform draw per dream')
    index = (draws[:, None] >= np.cumsum(p, 1)).sum(1)
    return np.where(index < len(v), v[np.minimum(index, len(v) - 1)], 0.0)
