"""Models: the video tokenizer, the ST transformer, and loading them from checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from genie_env.checkpoint import CheckpointError, config_from_dict, load_weights, read_config
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel
from genie_env.models.tokenizer import Tokenizer, TokenizerConfig


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from either itself or a run directory (whose newest checkpoint is used)."""
    from genie_env.trainer import latest_checkpoint

    path = Path(path)
    if (path / "config.json").exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"no checkpoint at {path}: neither {path / 'config.json'} nor {path / 'latest.json'} exists"
        )
    return latest


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild a trained tokenizer from a checkpoint or run directory, in eval mode."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind="tokenizer")
    model = Tokenizer(config_from_dict(TokenizerConfig, meta["config"], where=str(ckpt)))
    load_weights(model, ckpt)
    return model.to(device).eval()


def load_dynamics(path: str | Path, device: str | torch.device = "cpu") -> DynamicsModel:
    """Rebuild a trained dynamics model from a checkpoint or run directory, in eval mode.

    Its config.json also records the tokenizer it was trained with (`tokenizer.sha256`)."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind="dynamics")
    model = DynamicsModel(config_from_dict(DynamicsConfig, meta["config"], where=str(ckpt)))
    load_weights(model, ckpt)
    return model.to(device).eval()


__all__ = [
    "DynamicsConfig", "DynamicsModel", "Tokenizer", "TokenizerConfig", "load_dynamics", "load_tokenizer",
    "resolve_checkpoint",
]  # fmt: skip
