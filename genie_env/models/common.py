"""What every model shares with the trainer, kept below both: the objective's named output and seeding."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class StepResult(NamedTuple):
    """What a training objective returns: the loss to minimise and named scalar metrics."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (model initialisation happens after this)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
