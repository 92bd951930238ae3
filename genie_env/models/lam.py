"""Genie's latent action model (LAM): a few discrete actions learned from video alone.

    frames x_1..x_T (pixels) -> encoder (ST transformer, causal in time) -> one continuous latent per
    transition x_t -> x_{t+1}, read at frame t+1 from a per-frame action token -> vector-quantized to a
    codebook of `num_actions` codes (Genie: 8 in general, 6 for CoinRun-like platformers) -> decoder
    (ST transformer, causal in time) that sees x_1..x_t and the latent action a_t, and reconstructs x_{t+1}.

Causality does the information bottleneck's work: the decoder's output at frame t depends on frames
<= t and latent actions <= t only, so whatever about x_{t+1} it cannot guess from the past has to come
through a_t, one of `num_actions` codes. Both transformers read pixels (patches), not tokens, as Genie
found pixel input better for controllability.

Codebook collapse, the known failure of latent-action training, is guarded by the tokenizer's
`VectorQuantizer`: k-means initialisation on the first batch and restarts of codes unused for
`dead_code_steps` steps; the objective logs the codebook's usage and perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie_env.data.dataset import episode_bounds
from genie_env.games import FRAME_SHAPE
from genie_env.models.common import StepResult
from genie_env.models.quantizer import VectorQuantizer
from genie_env.models.st_transformer import STConfig, STTransformer
from genie_env.models.tokenizer import frames_to_input, output_to_frames


@dataclass(frozen=True)
class LAMConfig:
    """Shape and losses of the latent action model."""

    num_actions: int = 6
    """latent actions (codebook size): Genie uses 6 for CoinRun, GenieRedux 7"""
    latent_dim: int = 32
    """width of a latent action code"""
    patch: int = 8
    """pixels per side of a patch (64 / patch patches per side)"""
    dim: int = 256
    """transformer width (encoder and decoder)"""
    depth: int = 4
    """ST blocks of the encoder, and of the decoder"""
    heads: int = 4
    """attention heads"""
    frames: int = 16
    """longest clip (learned temporal positions)"""
    commitment_weight: float = 0.25
    """weight of the commitment loss"""
    codebook_weight: float = 1.0
    """weight of the codebook loss"""
    dead_code_steps: int = 100
    """restart a latent action unused for this many training steps"""

    def __post_init__(self) -> None:
        if self.num_actions < 2:
            raise ValueError(f"--model.num-actions must be >= 2, got {self.num_actions}")
        if FRAME_SHAPE[0] % self.patch:
            raise ValueError(f"--model.patch {self.patch} must divide the frame size {FRAME_SHAPE[0]}")
        if self.frames < 2:
            raise ValueError(f"--model.frames must be >= 2 (a transition needs two frames), got {self.frames}")
        STConfig(dim=self.dim, heads=self.heads)  # checks the width and heads

    @property
    def grid(self) -> int:
        return FRAME_SHAPE[0] // self.patch

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * FRAME_SHAPE[2]


class LAMOutput(NamedTuple):
    """`actions` int64 (B, T-1): the latent action of each transition; `quantized` float (B, T-1, latent_dim):
    their codes, with straight-through gradients into the encoder; `prediction` float (B, T-1, 3, H, W)
    in [-1, 1]: x_2..x_T reconstructed from the past and the latent actions; the loss terms."""

    actions: torch.Tensor
    quantized: torch.Tensor
    prediction: torch.Tensor
    recon_loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class LatentActionModel(nn.Module):
    """The LAM (see the module docstring); built from a `LAMConfig`."""

    def __init__(self, cfg: LAMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        st = STConfig(dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, tokens=cfg.grid**2 + 1, max_frames=cfg.frames)
        self.enc_embed = nn.Linear(cfg.patch_dim, cfg.dim)
        self.action_query = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.encoder = STTransformer(st)
        self.to_latent = nn.Linear(cfg.dim, cfg.latent_dim)
        self.quantizer = VectorQuantizer(cfg.num_actions, cfg.latent_dim, dead_code_steps=cfg.dead_code_steps)
        self.dec_embed = nn.Linear(cfg.patch_dim, cfg.dim)
        self.from_latent = nn.Linear(cfg.latent_dim, cfg.dim)
        self.decoder = STTransformer(STConfig(dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, tokens=cfg.grid**2,
                                              max_frames=cfg.frames))  # fmt: skip
        self.to_pixels = nn.Linear(cfg.dim, cfg.patch_dim)

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> float (B, T, S, p*p*3) in [-1, 1]."""
        size, t = FRAME_SHAPE[0], self.cfg.frames
        if frames.dtype != torch.uint8 or frames.ndim != 5 or tuple(frames.shape[2:]) != (size, size, 3):
            raise ValueError(
                f"frames must be uint8 (B, T, {size}, {size}, 3), got {frames.dtype} {tuple(frames.shape)}"
            )
        if not 2 <= frames.shape[1] <= t:
            raise ValueError(f"the LAM takes clips of 2..{t} frames, got {frames.shape[1]}")
        p = self.cfg.patch
        return rearrange(frames_to_input(frames), "b t c (h p) (w q) -> b t (h w) (p q c)", p=p, q=p)

    def encode(self, frames: torch.Tensor):
        """The continuous latent of each transition, float (B, T-1, latent_dim), and its quantization."""
        x = self.enc_embed(self._patches(frames))
        b, t = x.shape[:2]
        x = torch.cat([self.action_query.expand(b, t, 1, -1), x], dim=2)  # an action token per frame
        h = self.encoder(x)[:, 1:, 0]  # read at frame t+1, which has seen x_1..x_{t+1}
        z = self.to_latent(h)
        q = self.quantizer(z.reshape(-1, self.cfg.latent_dim))
        return z, q

    def decode(self, frames: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """x_{t+1} for each t from x_1..x_t and the latent actions a_1..a_t: frames uint8 (B, T', H, W, 3)
        (the past, T' = T-1), latent float (B, T', latent_dim) -> float (B, T', 3, H, W) in [-1, 1]."""
        x = self.dec_embed(self._patches(frames)) + self.from_latent(latent)[:, :, None]
        out = self.to_pixels(self.decoder(x))
        g, p = self.cfg.grid, self.cfg.patch
        return rearrange(out, "b t (h w) (p q c) -> b t c (h p) (w q)", h=g, w=g, p=p, q=p)

    def forward(self, frames: torch.Tensor) -> LAMOutput:
        """Latent actions of every transition of `frames` uint8 (B, T, H, W, 3), and the losses."""
        z, q = self.encode(frames)
        b, t1 = z.shape[:2]
        quantized = q.quantized.view(b, t1, -1)
        prediction = self.decode(frames[:, :-1], quantized)
        target = frames_to_input(frames[:, 1:])
        recon = F.mse_loss(prediction.float(), target)
        cfg = self.cfg
        loss = recon + cfg.codebook_weight * q.codebook_loss + cfg.commitment_weight * q.commitment_loss
        return LAMOutput(q.indices.view(b, t1), quantized, prediction, recon, q.codebook_loss, q.commitment_loss,
                         loss, q.perplexity, q.usage)  # fmt: skip

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """The latent action (0..num_actions-1) of every transition: uint8 (B, T, H, W, 3) -> int64 (B, T-1)."""
        _, q = self.encode(frames)
        return q.indices.view(frames.shape[0], frames.shape[1] - 1)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """x_{t+1} from x_1..x_t under chosen latent actions: frames uint8 (B, T', H, W, 3), actions int64
        (B, T') -> float (B, T', H, W, 3) in [0, 1]."""
        if actions.shape != frames.shape[:2]:
            raise ValueError(f"actions must have shape {tuple(frames.shape[:2])}, got {tuple(actions.shape)}")
        k = self.cfg.num_actions
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= k):
            raise ValueError(f"latent action out of range: this LAM has {k} (0..{k - 1})")
        latent = F.embedding(actions.long(), self.quantizer.codebook.float())
        out = self.decode(frames, latent)
        return output_to_frames(out).clamp(0.0, 1.0)


@torch.no_grad()
def label_transitions(model: LatentActionModel, frames: np.ndarray, episode_ids: np.ndarray,
                      batch_size: int = 64, device: str = "cpu") -> np.ndarray:  # fmt: skip
    """The latent action of every transition of a shard: frames uint8 (N, 64, 64, 3) in episode order ->
    int64 (N,), row t the action that moves frame t to frame t+1 (as a dataset's `actions` row t). Each
    episode is cut into clips of the model's length overlapping by one frame; an episode's last row, which
    has no next frame, gets 0. Raises ValueError if an episode is split across rows."""
    model.eval()
    out = np.zeros(len(frames), np.int64)
    span = model.cfg.frames
    clips = [(c, min(c + span, b)) for a, b in zip(*episode_bounds(episode_ids)) for c in range(a, b - 1, span - 1)]
    by_length: dict[int, list[int]] = {}
    for a, b in clips:
        by_length.setdefault(b - a, []).append(a)
    for length, starts in by_length.items():
        for i in range(0, len(starts), batch_size):
            chunk = starts[i : i + batch_size]
            batch = torch.from_numpy(np.stack([np.asarray(frames[a : a + length]) for a in chunk])).to(device)
            actions = model.infer_actions(batch).cpu().numpy()
            for a, row in zip(chunk, actions):
                out[a : a + length - 1] = row
    return out


def _commonest_partner(pairs_from: np.ndarray, pairs_to: np.ndarray, num_from: int, num_to: int) -> np.ndarray:
    """For each id of one side, the id of the other it co-occurs with most in the pairs (ties: the lowest);
    an id no pair shows gets the other side's commonest id."""
    counts = np.zeros((num_from, num_to), np.int64)
    np.add.at(counts, (pairs_from, pairs_to), 1)
    commonest = int(np.bincount(pairs_to, minlength=num_to).argmax())
    return np.where(counts.sum(1) > 0, counts.argmax(1), commonest)


def latent_to_real(latent: np.ndarray, real: np.ndarray, num_latent: int, num_real: int = 15) -> np.ndarray:
    """The map int64 (num_latent,) from latent to real actions that labelled pairs (latent, real) give: each
    latent action's commonest real action among them (what behaviour cloning from latent labels acts on)."""
    return _commonest_partner(latent, real, num_latent, num_real)


def real_to_latent(latent: np.ndarray, real: np.ndarray, num_latent: int, num_real: int = 15) -> np.ndarray:
    """The map int64 (num_real,) from real to latent actions that labelled pairs (latent, real) give: each
    real action's commonest latent action among them (what lets a latent world model take real actions)."""
    return _commonest_partner(real, latent, num_real, num_latent)


class LAMObjective(nn.Module):
    """Training objective for the shared trainer: batch["frames"] uint8 (B, T, H, W, 3) -> StepResult."""

    def __init__(self, model: LatentActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        frames = batch["frames"]
        out = self.model(frames)
        return StepResult(out.loss, lam_metrics(frames, out))


@torch.no_grad()
def lam_metrics(frames: torch.Tensor, out: LAMOutput) -> dict[str, torch.Tensor]:
    """What a LAM's training step logs: its loss terms, the PSNR of its reconstruction of x_2..x_T beside
    copy-last-frame's (over the batch), and the latent actions' usage and perplexity."""
    target = frames[:, 1:].float() / 255.0
    mse = F.mse_loss(output_to_frames(out.prediction.float()).clamp(0, 1), target)
    copy_mse = F.mse_loss(frames[:, :-1].float() / 255.0, target)
    return {
        "recon_loss": out.recon_loss.detach(),
        "codebook_loss": out.codebook_loss.detach(),
        "commitment_loss": out.commitment_loss.detach(),
        "psnr": -10 * torch.log10(mse.clamp(min=1e-10)),
        "copy_last_psnr": -10 * torch.log10(copy_mse.clamp(min=1e-10)),
        "action_perplexity": out.perplexity.detach(),
        "action_usage": out.usage.detach(),
    }
