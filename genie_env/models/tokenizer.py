"""The video tokenizer: frames uint8 (B, T, 64, 64, 3) <-> tokens int64 (B, T, h, w).

Two kinds behind one interface (`TokenizerConfig.kind`):

- "conv" (the Genie-Opt design, default): a strided conv patchifies each frame straight to the
  token grid (patch 4 -> 16x16, patch 8 -> 8x8), residual blocks work at grid resolution, a 1x1
  conv maps to `embed_dim`-dim vectors that the quantizer snaps to codes; the decoder mirrors it
  and a transposed conv paints each token's patch. Frames are coded independently.
- "stvivit" (Genie's ST-ViViT): linear patch embedding, ST-transformer blocks (spatial attention,
  causal temporal attention), so frame t's tokens depend only on frames <= t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie_env.models.common import StepResult
from genie_env.models.quantizer import VectorQuantizer, nearest_code
from genie_env.models.st_transformer import STConfig, STTransformer

Kind = Literal["conv", "stvivit"]
KINDS: tuple[str, ...] = get_args(Kind)


@dataclass(frozen=True)
class TokenizerConfig:
    """Shape and losses of a VQ-VAE tokenizer."""

    kind: Kind = "conv"
    """tokenizer architecture: conv (per frame) or stvivit (causal spatiotemporal transformer)"""
    frame_size: int = 64
    """frames are frame_size x frame_size x 3"""
    patch: int = 8
    """pixels per token side: 4 gives a 16x16 token grid, 8 an 8x8 grid"""
    channels: int = 128
    """conv width, or transformer width for stvivit"""
    blocks: int = 4
    """residual blocks (conv) or ST blocks (stvivit) in the encoder and again in the decoder"""
    heads: int = 4
    """attention heads (stvivit)"""
    max_frames: int = 16
    """longest clip the stvivit tokenizer takes (temporal positions)"""
    embed_dim: int = 64
    """dimension of the quantized vectors"""
    codebook_size: int = 1024
    """number of codes (tokens are stored as uint16, so at most 65536)"""
    codebook_weight: float = 1.0
    """weight of the codebook term ||sg[z] - e||^2 (standard VQ-VAE: 1.0)"""
    commitment_weight: float = 0.25
    """weight of the commitment term ||z - sg[e]||^2 (standard VQ-VAE: 0.25)"""
    ema: bool = False
    """update codes by an exponential moving average instead of the codebook loss"""
    ema_decay: float = 0.99
    """decay of the EMA codebook updates"""
    dead_code_steps: int = 200
    """restart a code from a recent encoder output after this many training steps unused"""
    kmeans_init: bool = True
    """initialise the codebook by k-means on the first batch's encoder outputs"""
    decoder_channels: int = 0
    """conv width of the decoder (0 = channels): a lighter decoder decodes dreams faster"""
    decoder_blocks: int = -1
    """residual blocks of the decoder (-1 = blocks)"""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown tokenizer --model.kind {self.kind!r}: use one of {KINDS}")
        if self.frame_size % self.patch:
            raise ValueError(f"--model.frame-size {self.frame_size} must be divisible by --model.patch {self.patch}")
        if not 2 <= self.codebook_size <= 65536:
            raise ValueError(
                f"--model.codebook-size must be in [2, 65536] (tokens are uint16), got {self.codebook_size}"
            )
        if self.decoder_channels < 0 or self.decoder_blocks < -1:
            raise ValueError("--model.decoder-channels must be >= 0 (0 = channels), --model.decoder-blocks >= -1")
        if self.kind == "stvivit" and (self.decoder_channels or self.decoder_blocks != -1):
            raise ValueError("--model.decoder-channels and --model.decoder-blocks are for the conv tokenizer")
        if self.kind == "stvivit" and self.channels % self.heads:
            raise ValueError(f"--model.channels {self.channels} must be divisible by --model.heads {self.heads}")

    @property
    def grid(self) -> int:
        """Tokens per side of a frame."""
        return self.frame_size // self.patch


class TokenizerOutput(NamedTuple):
    """tokens int64 (B, T, h, w); recon float (B, T, H, W, 3) in [0, 1]; each loss term separate."""

    tokens: torch.Tensor
    recon: torch.Tensor
    recon_loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ConvCoder(nn.Module):
    """Per-frame conv encoder or decoder working at token-grid resolution."""

    def __init__(self, cfg: TokenizerConfig, decoder: bool) -> None:
        super().__init__()
        c = (cfg.decoder_channels or cfg.channels) if decoder else cfg.channels
        depth = cfg.decoder_blocks if decoder and cfg.decoder_blocks >= 0 else cfg.blocks
        blocks = [ResBlock(c) for _ in range(depth)]
        if decoder:
            self.net = nn.Sequential(
                nn.Conv2d(cfg.embed_dim, c, 1), *blocks, nn.ReLU(), nn.ConvTranspose2d(c, 3, cfg.patch, cfg.patch)
            )
        else:
            self.net = nn.Sequential(
                nn.Conv2d(3, c, cfg.patch, cfg.patch), *blocks, nn.ReLU(), nn.Conv2d(c, cfg.embed_dim, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C', H', W'), frames independent."""
        b = x.shape[0]
        h = self.net[:-1](rearrange(x, "b t c h w -> (b t) c h w"))
        last = self.net[-1]
        h = tokens_to_patches(h, last) if isinstance(last, nn.ConvTranspose2d) else last(h)
        return rearrange(h, "(b t) c h w -> b t c h w", b=b)


def tokens_to_patches(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    """`layer(x)` for a transposed conv whose kernel equals its stride (each token becomes one p x p
    patch), as one float32 matmul: exact, and faster on CPU than the transposed-conv kernel under bf16
    autocast (the README's "Kernel choices" has the timings)."""
    p = layer.stride[0]
    with torch.autocast(x.device.type, enabled=False):
        y = rearrange(x.float(), "n c h w -> n h w c") @ layer.weight.float().flatten(1)
        return rearrange(y, "n h w (o p q) -> n o (h p) (w q)", p=p, q=p) + layer.bias.float()[:, None, None]


class STViViTCoder(nn.Module):
    """Causal ST-transformer encoder or decoder over patch tokens."""

    def __init__(self, cfg: TokenizerConfig, decoder: bool) -> None:
        super().__init__()
        self.cfg = cfg
        patch_dim = 3 * cfg.patch**2
        st = STConfig(
            dim=cfg.channels, depth=cfg.blocks, heads=cfg.heads, tokens=cfg.grid**2, max_frames=cfg.max_frames
        )
        self.inp = nn.Linear(cfg.embed_dim if decoder else patch_dim, cfg.channels)
        self.st = STTransformer(st)
        self.out = nn.Linear(cfg.channels, patch_dim if decoder else cfg.embed_dim)
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C', H', W') with frame t depending only on frames <= t."""
        p, g = self.cfg.patch, self.cfg.grid
        if self.decoder:
            h = rearrange(x, "b t c h w -> b t (h w) c")
            h = self.out(self.st(self.inp(h)))
            return rearrange(h, "b t (h w) (c p q) -> b t c (h p) (w q)", h=g, w=g, p=p, q=p, c=3)
        h = rearrange(x, "b t c (h p) (w q) -> b t (h w) (c p q)", p=p, q=p)
        h = self.out(self.st(self.inp(h)))
        return rearrange(h, "b t (h w) c -> b t c h w", h=g, w=g)


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, T, 3, H, W) in [-1, 1]."""
    return frames.permute(0, 1, 4, 2, 3).float().div(127.5).sub(1.0)  # "bthwc" -> "btchw"


def output_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (B, T, 3, H, W) in [-1, 1] -> float (B, T, H, W, 3) in [0, 1] (unclamped)."""
    return x.permute(0, 1, 3, 4, 2).add(1.0).mul(0.5)  # "btchw" -> "bthwc"


class Tokenizer(nn.Module):
    """VQ-VAE video tokenizer (see the module docstring); built from a `TokenizerConfig`."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        coder = ConvCoder if cfg.kind == "conv" else STViViTCoder
        self.encoder = coder(cfg, decoder=False)
        self.decoder = coder(cfg, decoder=True)
        self.quantizer = VectorQuantizer(
            cfg.codebook_size, cfg.embed_dim, cfg.ema, cfg.ema_decay, cfg.dead_code_steps, cfg.kmeans_init
        )

    def _check_frames(self, frames: torch.Tensor) -> None:
        size = self.cfg.frame_size
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim != 5 or tuple(frames.shape[2:]) != (size, size, 3):
            raise ValueError(f"frames must be uint8 (B, T, {size}, {size}, 3), got shape {tuple(frames.shape)}")
        if self.cfg.kind == "stvivit" and frames.shape[1] > self.cfg.max_frames:
            raise ValueError(f"stvivit tokenizer takes at most {self.cfg.max_frames} frames, got {frames.shape[1]}")

    def forward(self, frames: torch.Tensor) -> TokenizerOutput:
        """Encode, quantize and decode frames uint8 (B, T, H, W, 3); returns every loss term."""
        self._check_frames(frames)
        x = frames_to_input(frames)
        z = self.encoder(x)  # (B, T, D, h, w)
        b, t, d, h, w = z.shape
        q = self.quantizer(rearrange(z, "b t d h w -> (b t h w) d"))
        zq = rearrange(q.quantized, "(b t h w) d -> b t d h w", b=b, t=t, h=h, w=w)
        out = self.decoder(zq.to(z.dtype))
        recon_loss = F.mse_loss(out.float(), x)
        loss = recon_loss + self.cfg.codebook_weight * q.codebook_loss + self.cfg.commitment_weight * q.commitment_loss
        tokens = q.indices.view(b, t, h, w)
        recon = output_to_frames(out.float())
        return TokenizerOutput(
            tokens, recon, recon_loss, q.codebook_loss, q.commitment_loss, loss, q.perplexity, q.usage
        )

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, T, H, W, 3) -> tokens int64 (B, T, h, w)."""
        self._check_frames(frames)
        z = self.encoder(frames_to_input(frames))
        b, t, d, h, w = z.shape
        flat = rearrange(z.float(), "b t d h w -> (b t h w) d")
        return nearest_code(flat, self.quantizer.codebook.float()).view(b, t, h, w)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, check_range: bool = True) -> torch.Tensor:
        """tokens int64 (B, T, h, w) -> frames float (B, T, H, W, 3) in [0, 1]. `check_range=False` skips reading
        the tokens' range back to the host (for tokens a model just generated: on a GPU that read waits for
        the whole step)."""
        g, k = self.cfg.grid, self.cfg.codebook_size
        if tokens.ndim != 4 or tuple(tokens.shape[2:]) != (g, g):
            raise ValueError(f"tokens must be (B, T, {g}, {g}), got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"tokens must be int64, got {tokens.dtype}")
        if check_range and tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= k):
            raise ValueError(f"tokens out of range: this tokenizer has {k} codes (0..{k - 1})")
        zq = rearrange(self.quantizer.lookup(tokens.long()), "b t h w d -> b t d h w")
        return output_to_frames(self.decoder(zq).float()).clamp(0.0, 1.0)

    @torch.no_grad()
    def decode_uint8(self, tokens: torch.Tensor, check_range: bool = True) -> torch.Tensor:
        """tokens int64 (B, T, h, w) -> frames uint8 (B, T, H, W, 3)."""
        return self.decode(tokens, check_range).mul(255.0).round().to(torch.uint8)


class TokenizerObjective(nn.Module):
    """Training objective for the shared trainer: batch["frames"] uint8 (B, T, H, W, 3) -> StepResult."""

    def __init__(self, model: Tokenizer) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        out = self.model(batch["frames"])
        with torch.no_grad():
            mse01 = F.mse_loss(out.recon.clamp(0, 1), batch["frames"].float() / 255.0)
        metrics = {
            "recon_loss": out.recon_loss.detach(),
            "codebook_loss": out.codebook_loss.detach(),
            "commitment_loss": out.commitment_loss.detach(),
            "psnr": -10 * torch.log10(mse01.clamp(min=1e-10)),
            "perplexity": out.perplexity.detach(),
            "codebook_usage": out.usage.detach(),
        }
        return StepResult(out.loss, metrics)


class DecoderObjective(nn.Module):
    """Training objective of a new decoder for a frozen encoder and codebook (`genie train-tokenizer
    --decoder-for TOK`): the frames' tokens are the frozen tokenizer's, and only the decoder learns to paint
    them (reconstruction MSE), so every token dataset and dynamics model of that tokenizer still fits."""

    def __init__(self, model: Tokenizer) -> None:
        super().__init__()
        self.model = model
        for part in (model.encoder, model.quantizer):
            part.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        model = self.model
        frames = batch["frames"]
        with torch.no_grad():
            zq = rearrange(model.quantizer.lookup(model.encode(frames)), "b t h w d -> b t d h w")
        x = frames_to_input(frames)
        out = model.decoder(zq.to(x.dtype))
        recon_loss = F.mse_loss(out.float(), x)
        with torch.no_grad():
            mse01 = F.mse_loss(output_to_frames(out.float()).clamp(0, 1), frames.float() / 255.0)
        return StepResult(recon_loss, {"recon_loss": recon_loss.detach(),
                                       "psnr": -10 * torch.log10(mse01.clamp(min=1e-10))})  # fmt: skip


@torch.no_grad()
def reconstruction_grid(model: Tokenizer, batch: dict[str, torch.Tensor], n: int = 8):
    """{"reconstructions": uint8 image}: the first n frames of the batch over their reconstructions."""
    from genie_env.viz import frame_grid

    was_training = model.training
    model.eval()
    try:
        frames = batch["frames"][:n, :1]
        recon = model.decode_uint8(model.encode(frames))
    finally:
        model.train(was_training)
    both = torch.cat([frames[:, 0], recon[:, 0]]).cpu().numpy()
    return {"reconstructions": frame_grid(both, ncols=len(frames))}
