"""Vector quantizer of the VQ-VAE tokenizer: nearest code, straight-through gradients, codebook health."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class QuantizerOutput(NamedTuple):
    """`quantized` float (N, D) with straight-through gradients; `indices` int64 (N,); loss terms unweighted."""

    quantized: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (Euclidean) for each row of z (N, D) in codebook (K, D).

    The squared distance ||z||^2 - 2 z·E + ||E||^2 is one batched matmul, never an (N, K, D) tensor.
    """
    dist2 = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(1)
    return dist2.argmin(1)


def kmeans(x: torch.Tensor, k: int, iters: int = 10) -> torch.Tensor:
    """k-means centroids (k, D) of the rows of x (N, D), seeded by k-means++ (spread-out starting points)."""
    n = len(x)
    centroids = x.new_empty(k, x.shape[1])
    centroids[0] = x[torch.randint(n, ())]
    closest = (x - centroids[0]).pow(2).sum(1)
    for i in range(1, k):
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        centroids[i] = x[torch.multinomial(weights, 1)[0]]
        closest = torch.minimum(closest, (x - centroids[i]).pow(2).sum(1))
    for _ in range(iters):
        assign = nearest_code(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """A codebook of `codebook_size` codes of `dim` dims.

    Training keeps the codebook healthy: the codes are initialised by k-means on the first batch's
    encoder outputs; a code unused for `dead_code_steps` training steps is restarted from a recent
    encoder output; with `ema=True` codes follow an exponential moving average of their assigned
    vectors instead of the codebook loss. Under DDP every rank ends each step with the same codebook.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        ema: bool = False,
        ema_decay: float = 0.99,
        dead_code_steps: int = 200,
        kmeans_init: bool = True,
        recent_size: int = 8192,
    ) -> None:
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.ema, self.ema_decay = ema, ema_decay
        self.dead_code_steps = dead_code_steps
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / dim**0.5, requires_grad=not ema)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.int64))
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.detach().clone())
        self.register_buffer("recent", torch.zeros(recent_size, dim))
        self.register_buffer("recent_filled", torch.tensor(0, dtype=torch.int64))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z float (N, D)."""
        z = z.float()
        if self.training and not bool(self.initialized):
            self._kmeans_init(z.detach())
        codebook = self.codebook.float()
        indices = nearest_code(z.detach(), codebook.detach())
        selected = F.embedding(indices, codebook)
        codebook_loss = F.mse_loss(selected, z.detach()) if not self.ema else z.new_zeros(())
        commitment_loss = F.mse_loss(z, selected.detach())
        quantized = z + (selected - z).detach()  # straight-through: decoder gradients reach the encoder
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        if self.training:
            self._update(z.detach(), indices, counts)
        probs = counts / counts.sum().clamp(min=1)
        perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-10))).sum())
        usage = (counts > 0).float().mean()
        return QuantizerOutput(quantized, indices, codebook_loss, commitment_loss, perplexity, usage)

    @torch.compiler.disable  # once per run; eager, so a seed gives the same codebook with `--train.compile`
    @torch.no_grad()
    def _kmeans_init(self, z: torch.Tensor) -> None:
        if _distributed():  # k-means on the global batch, in rank order: the same as one process
            parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, z)
            z = torch.cat(parts)
        centroids = kmeans(z, self.codebook_size)
        self.codebook.data.copy_(centroids)
        self.ema_sum.copy_(centroids)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.compiler.disable  # data-dependent bookkeeping; and torch 2.13's inductor fails on z[randperm[:k]]
    @torch.no_grad()
    def _update(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA step, dead-code bookkeeping and restarts, and the recent-outputs ring buffer (left out of
        `torch.compile`, `--train.compile`, which runs it eagerly)."""
        if _distributed():
            counts = counts.clone()
            dist.all_reduce(counts)
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, z)
            if _distributed():
                dist.all_reduce(sums)
            self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
            self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + 1e-5) / (n + self.codebook_size * 1e-5) * n
            self.codebook.data.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self._remember(z)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = self.steps_unused >= self.dead_code_steps
        if dead.any() and int(self.recent_filled) > 0:
            pool = self.recent[: int(self.recent_filled)]
            pick = torch.randint(len(pool), (int(dead.sum()),))
            fresh = pool[pick]
            if _distributed():
                full = self.codebook.data.clone()
                full[dead] = fresh
                dist.broadcast(full, 0)
                fresh = full[dead]
            self.codebook.data[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
            self.steps_unused[dead] = 0

    def _remember(self, z: torch.Tensor) -> None:
        """Keep the most recent encoder outputs (a random subset of this batch) for restarts."""
        size = len(self.recent)
        take = z[torch.randperm(len(z))[: size // 4]]
        self.recent = torch.cat([take, self.recent[: size - len(take)]])
        self.recent_filled.copy_(torch.clamp(self.recent_filled + len(take), max=size))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for int64 indices of any shape -> (..., D)."""
        return F.embedding(indices, self.codebook)
