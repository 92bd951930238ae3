"""Windowed sequence dataset over the shards: what every model trains on."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from genie_env.data.format import check_values, load_shard, schema_of, verify_shard_files
from genie_env.data.manifest import DatasetError, Manifest, read_manifest

logger = logging.getLogger(__name__)


def episode_bounds(episode_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) row of each episode in a shard whose episodes are contiguous."""
    ids = np.asarray(episode_ids)
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    return starts, ends


class WindowDataset(Dataset):
    """Windows of `window` consecutive steps of one split that never cross an episode boundary.

    Shards are memory-mapped, so a dataset far larger than RAM is fine. Item `i` is a dict of
    tensors, all of length T = `window`: `frames` uint8 (T, 64, 64, 3) (or `tokens` int64 (T, h, w)
    for a token dataset), `actions` int64 (T,), `rewards` float32 (T,), `terminations` bool (T,),
    `truncations` bool (T,). Row t holds frame t, the action taken on it and that transition's
    reward and termination.

    `oversample_events` > 1 repeats every window that holds a reward or a termination that many times
    in the index, so the rare events that reward and termination heads learn from are seen more often.
    `oversample_deaths` > 1 repeats the windows holding a death (a termination without a reward: in
    CoinRun lava, a saw or a fall, where the coin is a rewarded end) that many times more on top, so the
    termination head learns where agents die, not only where they win (`benchmarks/dream_gap.py` found
    dreams that die at the wrong states).

    `verify` (the default) checks every shard file against its recorded sha256 (once per file and process)
    and every action and token against its range, so training never runs on a corrupt shard.

    Raises DatasetError for a missing or corrupt dataset, ValueError if no episode is long enough.
    """

    def __init__(self, root: str | Path, split: str = "train", window: int = 16, stride: int = 1,
                 oversample_events: int = 1, verify: bool = True, oversample_deaths: int = 1) -> None:  # fmt: skip
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
        if oversample_events < 1 or oversample_deaths < 1:
            raise ValueError(f"oversample_events and oversample_deaths must be >= 1, got {oversample_events}, "
                             f"{oversample_deaths}")  # fmt: skip
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.kind = self.manifest.kind
        self.window = window
        schema = schema_of(self.manifest)
        if not self.manifest.complete:
            logger.warning("%s is incomplete (its writer has not finished): training on what it holds", self.root)
        self.shards = []
        for info in self.manifest.shards_of(split):
            if verify:
                verify_shard_files(self.root, info)
            self.shards.append(load_shard(self.root, info, schema))
            if verify:
                check_values(self.shards[-1], self.manifest, f"{self.root} shard {info.name}")
        index = []
        for s, arrays in enumerate(self.shards):
            rewarded, ended = np.asarray(arrays["rewards"]) != 0, np.asarray(arrays["terminations"])
            events, deaths = np.cumsum(np.r_[0, rewarded | ended]), np.cumsum(np.r_[0, ended & ~rewarded])
            for a, b in zip(*episode_bounds(arrays["episode_ids"])):
                starts = np.arange(a, b - window + 1, stride)
                extra = []
                if oversample_events > 1:
                    has_event = events[starts + window] > events[starts]
                    extra.append(np.repeat(starts[has_event], oversample_events - 1))
                if oversample_deaths > 1:
                    has_death = deaths[starts + window] > deaths[starts]
                    extra.append(np.repeat(starts[has_death], oversample_deaths - 1))
                starts = np.concatenate([starts, *extra])
                index.append(np.stack([np.full_like(starts, s), starts], axis=1))
        self.index = np.concatenate(index) if index else np.zeros((0, 2), np.int64)
        if len(self.index) == 0:
            raise ValueError(f"no {split} episode in {self.root} has {window} steps: lower the window or collect more")
        self.keys = [k for k in (self.kind, "actions", "rewards", "terminations", "truncations")]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, t = self.index[i]
        arrays = self.shards[s]
        out = {}
        for key in self.keys:
            arr = np.array(arrays[key][t : t + self.window])
            out[key] = torch.from_numpy(arr.astype(np.int64) if arr.dtype == np.uint16 else arr)
        return out


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int | None = None,
    drop_last: bool = True,
) -> DataLoader:
    """A DataLoader with seeded shuffling and worker processes that keep the cores fed (default: 2)."""
    workers = min(2, os.cpu_count() or 1) if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last,
    )


def token_manifests(roots: tuple[str, ...]) -> list[Manifest]:
    """The manifests of token datasets trained on together; ValueError (naming `--tokens`) unless they share
    one token grid, vocabulary and tokenizer."""
    if not roots:
        raise ValueError("--tokens: give at least one token dataset directory")
    manifests = [read_manifest(r, kind="tokens") for r in roots]
    first = manifests[0]
    for root, m in zip(roots[1:], manifests[1:]):
        for key in ("token_grid", "codebook_size"):
            if getattr(m, key) != getattr(first, key):
                raise ValueError(f"--tokens: {root} has {key} {getattr(m, key)}, {roots[0]} has {getattr(first, key)}")
        if m.actions != first.actions:
            raise ValueError(f"--tokens: {root} and {roots[0]} hold different actions (real or latent, or two LAMs')")
        if m.game != first.game:
            raise ValueError(
                f"--tokens: {root} is {m.game}, {roots[0]} is {first.game}: a dynamics model learns one game"
            )
        if m.tokenizer["sha256"] != first.tokenizer["sha256"]:
            raise ValueError(f"--tokens: {root} and {roots[0]} were tokenized with different tokenizers")
    return manifests


def reward_values(dataset: Dataset) -> np.ndarray:
    """The distinct rewards float32 of every shard a `WindowDataset` (or a ConcatDataset of them) reads."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    return np.unique(np.concatenate(
        [np.unique(np.asarray(arrays["rewards"])) for part in parts for arrays in part.shards] or [np.zeros(0)]
    ).astype(np.float32))  # fmt: skip


def token_windows(roots: tuple[str, ...], window: int, oversample_events: int, oversample_deaths: int = 1) -> Dataset:
    """The train windows of every token dataset, together (each window drawn as often as in its own dataset)."""
    parts = [WindowDataset(root, "train", window=window, oversample_events=oversample_events,
                           oversample_deaths=oversample_deaths) for root in roots]  # fmt: skip
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


class PairedWindows(Dataset):
    """The train windows of a token dataset beside the frames they were tokenized from: item i is the token
    dataset's item i with `frames` uint8 (T, 64, 64, 3), the same rows of `frames_root` (default: the source
    its manifest records). For models that learn from pixels and tokens at once (the LAM trained together
    with the dynamics, `genie_env.models.joint`). DatasetError unless `frames_root` is that very source
    (its counts, shard names and windows all match)."""

    def __init__(self, tokens_root: str | Path, window: int, oversample_events: int = 1,
                 frames_root: str | Path | None = None, oversample_deaths: int = 1) -> None:  # fmt: skip
        over = {"oversample_events": oversample_events, "oversample_deaths": oversample_deaths}
        self.tokens = WindowDataset(tokens_root, "train", window=window, **over)
        source = self.tokens.manifest.source or {}
        root = Path(frames_root if frames_root is not None else source.get("path", ""))
        manifest = read_manifest(root, kind="frames")
        names = [[s.name for s in m.shards_of("train")] for m in (manifest, self.tokens.manifest)]
        if manifest.counts != source.get("counts") or names[0] != names[1]:
            raise DatasetError(f"{root} is not the frame dataset {tokens_root} was tokenized from "
                               f"({source.get('path')}): pass the one it was")  # fmt: skip
        self.frames = WindowDataset(root, "train", window=window, **over)
        if not np.array_equal(self.frames.index, self.tokens.index):
            raise DatasetError(f"{root} and {tokens_root} hold different episodes: {tokens_root} was not tokenized "
                               "from it")  # fmt: skip

    @property
    def shards(self) -> list:
        """The token dataset's shards (what `reward_values` reads)."""
        return self.tokens.shards

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, t = self.frames.index[i]
        frames = np.array(self.frames.shards[s]["frames"][t : t + self.frames.window])
        return {**self.tokens[i], "frames": torch.from_numpy(frames)}


def paired_windows(tokens: tuple[str, ...], frames: tuple[str, ...], window: int, oversample_events: int,
                   oversample_deaths: int = 1) -> Dataset:  # fmt: skip
    """`PairedWindows` of every token dataset (with the frame dataset of the same place in `frames`, or each
    one's recorded source when `frames` is empty), together."""
    if frames and len(frames) != len(tokens):
        raise ValueError(f"--frames: give one frame dataset per --tokens directory ({len(tokens)}), got {len(frames)}")
    parts = [PairedWindows(root, window, oversample_events, frames[i] if frames else None, oversample_deaths)
             for i, root in enumerate(tokens)]  # fmt: skip
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
