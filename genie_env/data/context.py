"""Where dreams start: real frames (and the actions between them) that condition a dream's first step."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from genie_env._io import atomic_write_bytes
from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard
from genie_env.data.manifest import DatasetError, read_manifest
from genie_env.games import NUM_ACTIONS, bad_action

ResetFrom = Literal["start", "any"]
RESET_FROM: tuple[str, ...] = get_args(ResetFrom)


class ContextSource:
    """A pool of real contexts: frames uint8 (N, C, 64, 64, 3) and the actions between them int64 (N, C-1).

    `sample(rng)` draws one context uniformly with a numpy Generator (an env's `np_random`).
    """

    def __init__(self, frames: np.ndarray, actions: np.ndarray | None = None) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[2:] != (64, 64, 3):
            raise ValueError(f"context frames must be uint8 (N, C, 64, 64, 3), got {frames.dtype} {frames.shape}")
        n, c = frames.shape[:2]
        if n == 0 or c == 0:
            raise ValueError(f"no contexts: context frames have shape {frames.shape}, need at least one of one frame")
        actions = np.zeros((n, c - 1), np.int64) if actions is None else np.asarray(actions)
        if not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(f"context actions must be integers, got {actions.dtype}")
        if actions.shape != (n, c - 1):
            raise ValueError(f"context actions must have shape ({n}, {c - 1}), got {actions.shape}")
        if (bad := bad_action(actions)) is not None:
            raise ValueError(
                f"context action {bad} out of range: Procgen has {NUM_ACTIONS} actions (0..{NUM_ACTIONS - 1})"
            )
        self.frames, self.actions = frames, actions.astype(np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def context_frames(self) -> int:
        return self.frames.shape[1]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One context: frames uint8 (C, 64, 64, 3), actions int64 (C-1,)."""
        return self[self.sample_index(rng)]

    def sample_index(self, rng: np.random.Generator) -> int:
        """The index of a context drawn uniformly."""
        return int(rng.integers(len(self.frames)))

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Context i: frames uint8 (C, 64, 64, 3), actions int64 (C-1,)."""
        return self.frames[i], self.actions[i]

    @classmethod
    def from_file(cls, path: str | Path) -> ContextSource:
        """Contexts saved by `save` (an .npz of `frames` and `actions`, no pickle)."""
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"context file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["frames"], z["actions"])
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            raise DatasetError(f"corrupt context file {path}: {e}") from e

    def save(self, path: str | Path) -> Path:
        """Write the contexts as a compressed .npz, atomically (an existing file survives a failed write)."""
        path = Path(path)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=self.frames, actions=self.actions)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def from_dataset(cls, root: str | Path | Sequence[str | Path], context_frames: int = 1, reset_from: str = "start",
                     split: str = "train", limit: int = 4096, seed: int = 0) -> ContextSource:  # fmt: skip
        """Contexts of `context_frames` real frames from one frame dataset or several (`root` a list, e.g.
        the original data and the data a later round's agent collected): at level starts
        (`reset_from="start"`) or anywhere inside episodes (`"any"`, as dream-RL methods do to cover
        later parts of levels); at most `limit` of them, drawn uniformly over all datasets with `seed`."""
        if reset_from not in RESET_FROM:
            raise ValueError(f"unknown reset_from {reset_from!r}: use one of {RESET_FROM}")
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        if not roots:
            raise ValueError("no dataset directory given for the contexts")
        shards = []  # the arrays of every shard of every dataset
        candidates = []  # (shard, first row) of every possible context
        for r in roots:
            manifest = read_manifest(r, kind="frames")
            for info in manifest.shards_of(split):
                arrays = load_shard(r, info)
                for a, b in zip(*episode_bounds(arrays["episode_ids"])):
                    if b - a < context_frames:
                        continue
                    starts = [a] if reset_from == "start" else range(a, b - context_frames + 1)
                    candidates.extend((len(shards), row) for row in starts)
                shards.append(arrays)
        if not candidates:
            where = ", ".join(map(str, roots))
            raise DatasetError(f"no {split} episode of {where} has {context_frames} frames")
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(candidates), size=min(limit, len(candidates)), replace=False)
        chosen = [candidates[i] for i in pick]
        frames = np.stack([shards[s]["frames"][r : r + context_frames] for s, r in chosen])
        actions = np.stack([shards[s]["actions"][r : r + context_frames - 1] for s, r in chosen])
        return cls(frames, actions)
