"""The latent action model and the dynamics trained together (Jasmine's co-training of Genie's LAM):
`genie train-dynamics --actions joint`.

    frames x_1..x_W (pixels) -> the LAM's encoder -> latent actions a_1..a_{W-1} (quantized, with
        straight-through gradients) -> action_proj -> the dynamics' action inputs
    tokens z_1..z_W (the frozen tokenizer's, from `genie tokenize`) -> the dynamics (tokens, reward, end)
    loss = the dynamics' loss + lam_weight * the LAM's (reconstruction, codebook, commitment)

The dynamics loss flows back through the quantizer into the LAM's encoder, so the latent actions are
shaped by what the dynamics needs to predict tokens, rewards and ends, not only by the LAM's own
reconstruction. The dynamics never sees a real action. A window's last transition has no next frame in
the window, so its latent action is unknown: it gets a code drawn uniformly (no gradient into the
codebook), and its reward and termination learn what follows whatever the agent does. (A LAM-labelled
token dataset, `genie tokenize --lam`, gives an episode's last transition latent action 0 instead.)

The split. The joint model embeds latent action i as action_proj(codebook[i]): a table of K rows.
`split_joint` writes RUN/lam/ and RUN/dynamics/ as ordinary checkpoints: the LAM, and a `DynamicsModel`
whose action embedding is that table, so it computes what the joint model computes for those codes, and
records the LAM beside it as a `--actions latent` run does. Everything that takes a LAM and a dynamics
of latent actions (`genie tokenize --lam`, `eval-dynamics`, `package_world_model`, `map-actions`,
`play --latent`, `GenieEnv-v0`) takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genie_env.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_weights,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from genie_env.models.common import StepResult
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel
from genie_env.models.lam import LAMConfig, LatentActionModel, lam_metrics

KIND = "joint"


@dataclass(frozen=True)
class JointConfig:
    """The two models trained together, and the weight of the LAM's loss."""

    lam: LAMConfig
    """the latent action model (its `frames` must cover the dynamics' window)"""
    dynamics: DynamicsConfig
    """the dynamics model (its `num_actions` is the LAM's)"""
    lam_weight: float = 1.0
    """weight of the LAM's loss beside the dynamics'"""

    def __post_init__(self) -> None:
        if self.dynamics.num_actions != self.lam.num_actions:
            raise ValueError(f"the dynamics takes {self.dynamics.num_actions} actions but the LAM has "
                             f"{self.lam.num_actions} latent actions: they must be equal")  # fmt: skip
        if self.lam.frames < self.dynamics.context_frames:
            raise ValueError(f"--lam-model.frames {self.lam.frames} must be >= --model.context-frames "
                             f"{self.dynamics.context_frames}: the LAM reads the dynamics' whole window")  # fmt: skip
        if self.lam_weight < 0:
            raise ValueError(f"--lam-weight must be >= 0, got {self.lam_weight}")


class JointModel(nn.Module):
    """A LAM and a dynamics model whose action inputs are the LAM's latent actions (see the module docstring)."""

    def __init__(self, cfg: JointConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lam = LatentActionModel(cfg.lam)
        self.dynamics = DynamicsModel(cfg.dynamics)
        self.dynamics.action_emb = None  # embedded here instead; the split writes its table (`action_table`)
        self.action_proj = nn.Linear(cfg.lam.latent_dim, cfg.dynamics.dim)

    def action_table(self) -> torch.Tensor:
        """float (K, dim): the dynamics' embedding of each latent action, action_proj(codebook[i])."""
        return self.action_proj(self.lam.quantizer.codebook.float())

    def loss(self, batch: dict[str, torch.Tensor]) -> StepResult:
        """The joint loss of a `PairedWindows` batch: frames uint8 (B, W, 64, 64, 3), tokens int64 (B, W, h, w),
        rewards and terminations (B, W); the batch's real actions are never read."""
        frames, tokens = batch["frames"], batch["tokens"]
        lam = self.lam(frames)
        b = tokens.shape[0]
        unknown = torch.randint(self.cfg.lam.num_actions, (b,), device=tokens.device)  # the last transition's
        last = self.action_proj(self.lam.quantizer.codebook.detach()[unknown].float())
        actions = torch.cat([self.action_proj(lam.quantized), last[:, None]], dim=1)  # (B, W, dim)
        dynamics, terms = self.dynamics.loss(tokens, actions, batch["rewards"], batch["terminations"])
        metrics = {**terms, **{f"lam_{k}": v for k, v in lam_metrics(frames, lam).items()}}
        return StepResult(dynamics + self.cfg.lam_weight * lam.loss, {"dynamics_loss": dynamics.detach(), **metrics})


class JointObjective(nn.Module):
    """Training objective for the shared trainer: a `PairedWindows` batch -> StepResult."""

    def __init__(self, model: JointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        return self.model.loss(batch)


def load_joint(path: str | Path) -> tuple[JointModel, dict[str, Any], Path]:
    """A joint checkpoint (or run's newest) as a model in eval mode, its config.json record and its path."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind=KIND)
    model = JointModel(config_from_dict(JointConfig, meta["config"], str(ckpt)))
    load_weights(model, ckpt)
    return model.eval(), meta, ckpt


def split_joint(path: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write the joint checkpoint (or run) `path` as OUT/lam/ and OUT/dynamics/ (see the module docstring);
    returns both. OUT/lam or OUT/dynamics that exists and is not a checkpoint of that kind is refused, so
    nothing the project did not write is replaced."""
    model, meta, ckpt = load_joint(path)
    out = Path(out)
    for name in ("lam", "dynamics"):
        target = out / name
        if target.exists():
            try:
                read_config(target, kind=name)
            except CheckpointError:
                raise CheckpointError(
                    f"{target} exists and is not a {name} checkpoint: refusing to replace it"
                ) from None
    step = int(ckpt.name.removeprefix("step_")) if ckpt.name.startswith("step_") else None
    source = {"path": str(ckpt), "sha256": weights_sha256(ckpt), "step": step}
    kept = {k: meta[k] for k in ("game", "preset", "datasets") if k in meta}
    lam_dir = save_checkpoint(out / "lam", model.lam, "lam", model.cfg.lam, extra={**kept, "joint": source})
    dynamics = DynamicsModel(model.cfg.dynamics)
    with torch.no_grad():
        state = {**model.dynamics.state_dict(), "action_emb.weight": model.action_table()}
    dynamics.load_state_dict(state)
    actions = {"kind": "latent", "num_actions": model.cfg.lam.num_actions,
               "lam": {"path": str(lam_dir), "sha256": weights_sha256(lam_dir)}}  # fmt: skip
    extra = {**kept, **{k: meta[k] for k in ("tokenizer", "oversample_events") if k in meta}}
    dyn_dir = save_checkpoint(out / "dynamics", dynamics, "dynamics", model.cfg.dynamics,
                              extra={**extra, "actions": actions, "joint": source})  # fmt: skip
    return lam_dir, dyn_dir
