"""The spatiotemporal (ST) transformer: spatial attention within a frame, causal temporal attention
across frames at each position, then an MLP (pre-norm, PyTorch SDPA kernels).

Each frame attends spatially only to itself and temporally only along its own token positions,
so a sequence of T frames of S tokens costs O(T S^2 + S T^2) instead of O((T S)^2): linear in T for
the frame counts we use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class STConfig:
    """Shape of an ST transformer."""

    dim: int = 256
    """width of every token"""
    depth: int = 4
    """number of ST blocks"""
    heads: int = 4
    """attention heads (dim must divide by heads)"""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of dim"""
    tokens: int = 64
    """spatial tokens per frame (learned spatial position embedding)"""
    max_frames: int = 16
    """longest sequence (learned temporal position embedding)"""

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (N, L, D), via SDPA."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))


class STBlock(nn.Module):
    """Spatial attention, causal temporal attention, MLP; each pre-norm with a residual."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.norm_s, self.spatial = nn.LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        self.norm_t, self.temporal = nn.LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm_m = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (B, T, S, D) -> (B, T, S, D); frame t depends only on frames <= t."""
        b, t, s, _ = x.shape
        h = rearrange(x, "b t s d -> (b t) s d")
        h = h + self.spatial(self.norm_s(h), causal=False)
        h = rearrange(h, "(b t) s d -> (b s) t d", b=b, t=t)
        h = h + self.temporal(self.norm_t(h), causal=True)
        h = rearrange(h, "(b s) t d -> b t s d", b=b, s=s)
        return h + self.mlp(self.norm_m(h))


class STTransformer(nn.Module):
    """A stack of ST blocks with learned spatial and temporal position embeddings and a final norm."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_spatial = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
        self.pos_temporal = nn.Parameter(torch.randn(cfg.max_frames, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(STBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (B, T, S, D) with T <= max_frames and S == tokens -> (B, T, S, D)."""
        _, t, s, _ = x.shape
        if t > self.cfg.max_frames or s != self.cfg.tokens:
            raise ValueError(
                f"ST transformer built for <= {self.cfg.max_frames} frames of {self.cfg.tokens} tokens, "
                f"got {t} frames of {s} tokens"
            )
        x = x + self.pos_spatial[None, None] + self.pos_temporal[None, :t, None]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
