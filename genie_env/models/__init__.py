"""Models: the video tokenizer, the ST transformer, and loading them from checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from genie_env.checkpoint import (
    CheckpointError,
    config_diff,
    config_from_dict,
    config_to_dict,
    load_weights,
    read_config,
    resolve_checkpoint,
    weights_sha256,
)
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel
from genie_env.models.lam import LAMConfig, LatentActionModel
from genie_env.models.tokenizer import Tokenizer, TokenizerConfig


def _load(path: str | Path, kind: str, config_class: type, model_class: type, device: str | torch.device):
    """Rebuild a trained model of `kind` from a checkpoint or run directory, in eval mode."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind=kind)
    model = model_class(config_from_dict(config_class, meta["config"], where=str(ckpt)))
    load_weights(model, ckpt)
    return model.to(device).eval()


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild a trained tokenizer from a checkpoint or run directory, in eval mode."""
    return _load(path, "tokenizer", TokenizerConfig, Tokenizer, device)


def load_dynamics(path: str | Path, device: str | torch.device = "cpu") -> DynamicsModel:
    """Rebuild a trained dynamics model from a checkpoint or run directory, in eval mode.

    Its config.json also records the tokenizer it was trained with (`tokenizer.sha256`)."""
    return _load(path, "dynamics", DynamicsConfig, DynamicsModel, device)


def load_lam(path: str | Path, device: str | torch.device = "cpu") -> LatentActionModel:
    """Rebuild a trained latent action model from a checkpoint or run directory, in eval mode."""
    return _load(path, "lam", LAMConfig, LatentActionModel, device)


def tokenizer_identity(path: str | Path) -> set[str]:
    """The sha256s a tokenizer checkpoint (or run) is known by: its weights', for an exported (shipped)
    one those of the checkpoint it was exported from, and for one with a new decoder (`genie
    train-tokenizer --decoder-for`) those of the tokenizer whose tokens it decodes."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind="tokenizer")
    source = [meta["source_sha256"]] if "source_sha256" in meta else []
    return {weights_sha256(ckpt), *source, *meta.get("tokens_of", [])}


def check_trained_on(dynamics: str | Path, tokenizer: set[str], tokenizer_name: str, required: bool = False,
                     dynamics_name: str | None = None) -> None:  # fmt: skip
    """The one check that a dynamics model was trained on tokens of this tokenizer: the tokenizer sha256
    its checkpoint (or run) records must be one `tokenizer` is known by (`tokenizer_identity`, or the
    sha256 a token dataset records). A dynamics that records none passes unless `required`. Raises
    CheckpointError naming both (`dynamics_name`, default the path, and `tokenizer_name`)."""
    ckpt = resolve_checkpoint(dynamics)
    trained_with = read_config(ckpt, kind="dynamics").get("tokenizer", {}).get("sha256")
    if (trained_with or required) and trained_with not in tokenizer:
        raise CheckpointError(
            f"{dynamics_name or dynamics} was trained on tokens of another tokenizer than {tokenizer_name}"
        )


def init_config(path: str | Path) -> DynamicsConfig:
    """The config of the dynamics checkpoint (or run) `path` that a fine-tune starts from (`--init-from`)."""
    ckpt = resolve_checkpoint(path)
    return config_from_dict(DynamicsConfig, read_config(ckpt, kind="dynamics")["config"], str(ckpt))


def init_weights(model: DynamicsModel, path: str | Path, tokenizer: dict, load: bool = True) -> str:
    """Load the weights of the dynamics checkpoint (or run) `path` into `model` to fine-tune it
    (`--init-from`); its config must equal the model's and it must have been trained on tokens of
    `tokenizer` (a token manifest's record). Returns the checkpoint used; CheckpointError otherwise."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind="dynamics")
    saved = config_to_dict(config_from_dict(DynamicsConfig, meta["config"], str(ckpt)))  # JSON lists as tuples
    regularisers = ("dropout",)  # not the architecture: a fine-tune may add or change them
    diff = [d for d in config_diff(saved, config_to_dict(model.cfg)) if d.split(" (", 1)[0] not in regularisers]
    if diff:
        raise CheckpointError(f"--init-from {path}: its architecture differs from --model's in {', '.join(diff)}")
    check_trained_on(ckpt, {tokenizer["sha256"]}, "--tokens", required=True, dynamics_name=f"--init-from {path}")
    if load:
        load_weights(model, ckpt)
    return str(ckpt)


__all__ = [
    "DynamicsConfig", "DynamicsModel", "Tokenizer", "TokenizerConfig", "check_trained_on", "init_config",
    "init_weights", "load_dynamics", "load_tokenizer", "tokenizer_identity",
]  # fmt: skip
