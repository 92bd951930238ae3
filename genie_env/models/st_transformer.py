"""The spatiotemporal (ST) transformer: spatial attention within a frame, causal temporal attention
across frames at each position, then an MLP (pre-norm, PyTorch SDPA kernels).

Each frame attends spatially only to itself and temporally only along its own token positions, so a
sequence of T frames of S tokens costs O(T S^2 + S T W) for a temporal window W, instead of the
O((T S)^2) of full spatiotemporal attention (`attention="full"`, kept for the scaling benchmark).

For generation, `KVCache` keeps each block's temporal keys and values of the last `window` frames in
a ring buffer: stepping one frame costs the same at frame 10 as at frame 900, and equals running the
whole sequence without a cache under the same sliding window. Temporal positions are rotary (RoPE),
which depend only on frame distances, so a sliding window needs no position bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass(frozen=True)
class STConfig:
    """Shape of an ST transformer."""

    dim: int = 256
    """width of every token"""
    depth: int = 4
    """number of blocks"""
    heads: int = 4
    """attention heads (dim must divide by heads)"""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of dim"""
    tokens: int = 64
    """spatial tokens per frame (learned spatial position embedding)"""
    max_frames: int = 16
    """longest sequence with learned temporal positions (temporal_pos="learned")"""
    temporal_pos: Literal["learned", "rope"] = "learned"
    """temporal positions: learned (fixed length) or rope (rotary, any length, sliding windows)"""
    window: int = 0
    """temporal attention looks back at most this many frames, the current one included (0 = all)"""
    attention: Literal["st", "full"] = "st"
    """st (spatial then temporal) or full (all tokens of all frames, frame-causal; benchmark only)"""
    temporal_every: int = 1
    """temporal attention in every k-th block only (the last of each k; the others attend within the frame):
    1 = every block; Dreamer 4 keeps it in every 4th"""
    kv_heads: int = 0
    """key/value heads (grouped-query attention: each serves heads / kv_heads query heads); 0 = heads"""
    dropout: float = 0.0
    """dropout on every residual branch (the attention and MLP outputs), active in training mode only"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads} into even head sizes")
        if self.kv_heads < 0 or self.heads % (self.kv_heads or self.heads):
            raise ValueError(f"kv_heads {self.kv_heads} must divide heads {self.heads} (0 = heads)")
        if not 1 <= self.temporal_every <= self.depth:
            raise ValueError(f"temporal_every {self.temporal_every} must be in 1..depth ({self.depth})")

    def has_temporal(self, block: int) -> bool:
        """Whether block `block` (0-based) attends across frames."""
        return block % self.temporal_every == self.temporal_every - 1
        if self.temporal_pos not in ("learned", "rope"):
            raise ValueError(f"unknown temporal_pos {self.temporal_pos!r}: use learned or rope")
        if self.attention not in ("st", "full"):
            raise ValueError(f"unknown attention {self.attention!r}: use st or full (--model.attention)")


def rope_table(positions: torch.Tensor, d: int, device: torch.device | str) -> torch.Tensor:
    """Rotary phases for head size d at integer positions (L,) -> float (L, d/2, 2), or per row (N, L)
    -> (N, 1, L, d/2, 2) (broadcast over heads): the cosine and sine of each pair's angle, a complex number's
    real and imaginary parts (`torch.view_as_complex`). Computed once per forward and shared by every block."""
    freqs = 1.0 / (10000 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    angles = positions.to(device).float()[..., None] * freqs
    if angles.ndim == 3:
        angles = angles[:, None]
    return torch.stack((angles.cos(), angles.sin()), -1)


def rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (N, H, L, d) with phases from `rope_table`: each pair of features
    (2i, 2i+1) is rotated as one complex number, in float32 whatever x's dtype. Eagerly that is one complex
    multiply (faster on CPU than rotating the even and odd halves separately in bf16, and more exact); under
    torch.compile the same product in real arithmetic, which inductor fuses (it has no complex kernels)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    if torch.compiler.is_compiling():
        a, b, cos, sin = pairs[..., 0], pairs[..., 1], table[..., 0], table[..., 1]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2).to(x.dtype)
    return torch.view_as_real(torch.view_as_complex(pairs) * torch.view_as_complex(table)).flatten(-2).to(x.dtype)


def sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, except for bf16 on CPU, where the fused kernel is slow for
    our short sequences: training (with gradients) runs on the math backend, and generation's unmasked
    spatial attention is `matmul_attention` (both faster there; the README's "Kernel choices")."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        if torch.is_grad_enabled():
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        if mask is None and not causal:
            return matmul_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)


def matmul_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention as two batched matmuls in the inputs' dtype, the softmax in float32; q (N, H, L, d),
    k and v (N, H, W, d), an optional boolean mask broadcasting to (N, H, L, W) (True = attend).

    Without gradients on CPU it beats the fused SDPA kernel, whose per-row overhead dominates our
    shapes, such as the KV cache's one query over a 16-frame window (the README's "Kernel choices")."""
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


def window_mask(t: int, window: int, device) -> torch.Tensor:
    """Boolean (t, t) mask: frame i may attend to frame j iff i - window < j <= i (window 0 = causal)."""
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None]
    allowed = j <= i
    return allowed & (j > i - window) if window else allowed


def cache_dtypes(device: torch.device | str, dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """The dtypes the KV cache keeps its keys and its values in (and attends in, with `matmul_attention`).

    On CPU the keys stay float32, which does not round the attention scores (a bf16 matmul rounds its output),
    and the values take the computing dtype: under bf16 autocast that halves the bytes the probabilities-times-
    values matmul reads, the cache's largest cost at 64 envs and more (the README's "Kernel choices"), and the
    attended values are rounded to bf16 afterwards anyway. Elsewhere both take the computing dtype."""
    return (torch.float32, dtype) if torch.device(device).type == "cpu" else (dtype, dtype)


class KVCache:
    """Temporal keys/values of the last `window` frames of each batch element, for every block.

    Ring buffers (B*S, H, W, d). All rows write the same slot at a step (`steps % window`: one strided copy,
    not a scatter), and each batch element b (an environment) has its own frame count `frames[b]`: its
    rotary position, and how many of the slots before the current one are its own. So a batch of
    environments can start new episodes at different steps (`reset` one row), and attention, which does
    not depend on the order of its keys (their positions are rotated in when written), sees exactly each
    row's last frames.
    """

    def __init__(self, depth: int, window: int, batch: int, spatial: int) -> None:
        self.window, self.spatial = window, spatial
        self.keys: list[torch.Tensor | None] = [None] * depth
        self.values: list[torch.Tensor | None] = [None] * depth
        self.frames = torch.zeros(batch, dtype=torch.long)
        # frames stored since the cache was made (this step writes slot steps % window): a tensor, so a compiled
        # step does not specialise on its value and compile again at every slot
        self.steps = torch.zeros((), dtype=torch.long)
        # the same count as a Python int, for the eager CPU step's slot copy (no read of `steps` from the device
        # inside a step); None once a compiled step has advanced the cache, which keeps only `steps`
        self.host_steps: int | None = 0

    def positions(self) -> torch.Tensor:
        """Rotary position of the next frame of each row (B*S, 1)."""
        return self.frames.repeat_interleave(self.spatial)[:, None]

    def attend(self, block: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store this frame's k, v (B*S, Hkv, 1, d) and attend q (B*S, H, 1, d) over each row's window (each
        key/value head serving H / Hkv query heads: grouped-query attention keeps only Hkv heads)."""
        n, h, _, d = k.shape
        if n != len(self.frames) * self.spatial:
            raise ValueError(f"cache holds {len(self.frames)} sequences of {self.spatial} tokens, got {n} rows")
        if self.keys[block] is None:
            key_dtype, value_dtype = cache_dtypes(k.device, k.dtype)
            self.keys[block] = k.new_zeros(n, h, self.window, d, dtype=key_dtype)
            self.values[block] = v.new_zeros(n, h, self.window, d, dtype=value_dtype)
        self.frames, self.steps = self.frames.to(k.device), self.steps.to(k.device)
        keys, values = self.keys[block], self.values[block]
        slot = self.steps % self.window
        if not torch.compiler.is_compiling() and keys.device.type == "cpu" and self.host_steps is not None:
            # a plain strided copy into the slot: 5x faster than index_copy_ on CPU (a compiled step keeps
            # index_copy_ at the tensor's slot, one graph for every slot)
            keys.select(2, self.host_steps % self.window).copy_(k.squeeze(2))
            values.select(2, self.host_steps % self.window).copy_(v.squeeze(2))
        else:
            keys.index_copy_(2, slot[None], k.to(keys.dtype))
            values.index_copy_(2, slot[None], v.to(values.dtype))
        # slot j was written (slot - j) % window steps ago: a row's own iff that is under its frames (this one
        # included). Always masked (all True once a row's window is full: the same result), so no branch
        # depends on the data and torch.compile traces the step in one graph.
        age = (slot - torch.arange(self.window, device=k.device)) % self.window
        valid = age[None] < (self.frames + 1).clamp(max=self.window)[:, None]  # (B, W)
        mask = valid.repeat_interleave(self.spatial, 0)[:, None, None]  # (B*S, 1, 1, W)
        # the query heads of each key/value head stacked as its queries: (B*S, Hkv, group, d) against the
        # window's (B*S, Hkv, W, d), so no key or value is copied per query head
        grouped = q.reshape(n, h, q.shape[1] // h, d).to(keys.dtype)
        with torch.autocast(k.device.type, enabled=False):  # autocast would cast the cache back to bf16
            attended = matmul_attention(grouped, keys, values, mask)
        return attended.reshape(q.shape).to(q.dtype)

    def advance(self) -> None:
        """Every batch element has stored one more frame."""
        self.frames = self.frames + 1
        self.steps = self.steps + 1
        if torch.compiler.is_compiling():
            self.host_steps = None
        elif self.host_steps is not None:
            self.host_steps += 1

    def assign(self, rows: torch.Tensor, other: KVCache) -> None:
        """Overwrite batch elements `rows` (indices) with the sequences of `other` (one per row), their
        slots turned to this cache's step."""
        index = (rows[:, None] * self.spatial + torch.arange(self.spatial)).flatten()
        shift = int(self.steps - other.steps.to(self.steps.device)) % self.window
        for mine, theirs in ((self.keys, other.keys), (self.values, other.values)):
            for i, t in enumerate(theirs):
                if t is None:
                    continue
                if mine[i] is None:
                    n = len(self.frames) * self.spatial
                    mine[i] = t.new_zeros(n, *t.shape[1:])
                mine[i][index.to(t.device)] = t.roll(shift, 2).to(mine[i].dtype) if shift else t.to(mine[i].dtype)
        self.frames = self.frames.clone()
        self.frames[rows.to(self.frames.device)] = other.frames.to(self.frames.device)

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the frames of batch elements `rows` (bool (B,) or indices): they start a new sequence."""
        self.frames = self.frames.clone()
        self.frames[rows.to(self.frames.device)] = 0


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (N, L, D), via SDPA; with `kv_heads` <
    `heads`, grouped-query attention (one key/value head per heads / kv_heads query heads)."""

    def __init__(self, dim: int, heads: int, kv_heads: int = 0) -> None:
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads or heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim + 2 * self.kv_heads * self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (N, heads, L, d), k and v (N, kv_heads, L, d)."""
        q, kv = self.qkv(x).split([self.heads * self.head_dim, 2 * self.kv_heads * self.head_dim], -1)
        k, v = rearrange(kv, "n l (two h d) -> two n h l d", two=2, h=self.kv_heads)
        return rearrange(q, "n l (h d) -> n h l d", h=self.heads), k, v

    def out(self, attended: torch.Tensor) -> torch.Tensor:
        return self.proj(rearrange(attended, "n h l d -> n l (h d)"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        group = self.heads // self.kv_heads
        if group > 1 and mask is None and not causal:
            # grouped-query attention without copying keys and values: each key/value head's query heads
            # are stacked along the query axis (the same attention; every query sees every key)
            n, _, length, d = q.shape
            folded = sdpa(q.reshape(n, self.kv_heads, group * length, d), k, v)
            return self.out(folded.reshape(n, self.heads, length, d))
        return self.out(sdpa(q, *expand_kv(k, v, self.heads), mask, causal))


def expand_kv(k: torch.Tensor, v: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped keys and values (N, kv_heads, L, d) repeated to `heads` heads (each serves heads / kv_heads
    consecutive query heads); unchanged when they already have `heads`."""
    group = heads // k.shape[1]
    return (k, v) if group == 1 else (k.repeat_interleave(group, 1), v.repeat_interleave(group, 1))


class STBlock(nn.Module):
    """Spatial attention, causal temporal attention (unless `temporal` is False), MLP; each pre-norm with a
    residual."""

    def __init__(self, cfg: STConfig, temporal: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm_s, self.spatial = nn.LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads, cfg.kv_heads)
        self.temporal = Attention(cfg.dim, cfg.heads, cfg.kv_heads) if temporal else None
        self.norm_t = nn.LayerNorm(cfg.dim) if temporal else None
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm_m = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, index: int = 0,
                phases: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """x: float (B, T, S, D) at frame positions 0..T-1 (or each row's next position in `cache`) -> (B, T, S, D),
        with those positions' rotary `phases` (`rope_table`) when temporal_pos is rope.

        Frame t depends only on frames <= t (within the window). With `cache`, T must be 1.
        """
        b, t, s, _ = x.shape
        h = rearrange(x, "b t s d -> (b t) s d")
        h = h + self.drop(self.spatial(self.norm_s(h)))
        h = rearrange(h, "(b t) s d -> b t s d", b=b, t=t)
        if self.temporal is not None:
            h = h + self.drop(self.attend_in_time(h, cache, index, phases))
        return h + self.drop(self.mlp(self.norm_m(h)))

    def attend_in_time(self, h: torch.Tensor, cache: KVCache | None, index: int,
                       phases: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """The temporal attention's update of h (B, T, S, D): each position attends to its own past frames."""
        b, t, s, _ = h.shape
        q, k, v = self.temporal.qkv_heads(self.norm_t(rearrange(h, "b t s d -> (b s) t d")))
        if phases is not None:
            q, k = rope(q, phases), rope(k, phases)
        if cache is not None:
            attended = cache.attend(index, q, k, v)
        else:
            mask = window_mask(t, self.cfg.window, h.device) if self.cfg.window and self.cfg.window < t else None
            attended = sdpa(q, *expand_kv(k, v, self.cfg.heads), mask, causal=True)
        return rearrange(self.temporal.out(attended), "(b s) t d -> b t s d", b=b, s=s)


class FullBlock(nn.Module):
    """Full spatiotemporal attention over all T*S tokens, frame-causal; for the scaling benchmark."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.norm_a, self.attn = nn.LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads, cfg.kv_heads)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm_m = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, index: int = 0,
                phases: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        if cache is not None:
            raise NotImplementedError("the full-attention variant is for the scaling benchmark: no KV cache")
        b, t, s, _ = x.shape
        frame = torch.arange(t, device=x.device).repeat_interleave(s)
        mask = frame[None, :] <= frame[:, None]
        h = rearrange(x, "b t s d -> b (t s) d")
        h = h + self.attn(self.norm_a(h), mask=mask)
        h = h + self.mlp(self.norm_m(h))
        return rearrange(h, "b (t s) d -> b t s d", t=t)


class STTransformer(nn.Module):
    """A stack of blocks with learned spatial positions, learned or rotary temporal positions, final norm."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_spatial = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
        if cfg.temporal_pos == "learned":
            self.pos_temporal = nn.Parameter(torch.randn(cfg.max_frames, cfg.dim) * 0.02)
        if cfg.attention == "st":
            self.blocks = nn.ModuleList(STBlock(cfg, cfg.has_temporal(i)) for i in range(cfg.depth))
        else:
            self.blocks = nn.ModuleList(FullBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def new_cache(self, batch: int) -> KVCache:
        """An empty KV cache for generating `batch` sequences frame by frame (needs rotary positions)."""
        if self.cfg.temporal_pos != "rope" or self.cfg.attention != "st":
            raise ValueError("a KV cache needs attention='st' and temporal_pos='rope'")
        return KVCache(self.cfg.depth, self.cfg.window or self.cfg.max_frames, batch, self.cfg.tokens)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, commit: bool = True) -> torch.Tensor:
        """x: float (B, T, S, D) -> (B, T, S, D). With `cache`, x is the next single frame (T == 1);
        `commit=False` runs it without advancing the cache (a later pass for the same frame overwrites it)."""
        _, t, s, _ = x.shape
        if s != self.cfg.tokens:
            raise ValueError(f"ST transformer built for {self.cfg.tokens} tokens a frame, got {s}")
        if self.cfg.temporal_pos == "learned" and t > self.cfg.max_frames:
            raise ValueError(f"ST transformer built for <= {self.cfg.max_frames} frames, got {t}")
        if cache is not None and t != 1:
            raise ValueError(f"a cached step takes one frame at a time, got {t}")
        x = x + self.pos_spatial[None, None]
        if self.cfg.temporal_pos == "learned":
            x = x + self.pos_temporal[None, :t, None]
        phases = None
        if self.cfg.temporal_pos == "rope":
            positions = cache.positions() if cache is not None else torch.arange(t, device=x.device)
            phases = rope_table(positions, self.cfg.dim // self.cfg.heads, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache, index=i, phases=phases)
        if cache is not None and commit:
            cache.advance()
        return self.norm(x)
