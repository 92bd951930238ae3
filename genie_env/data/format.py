"""The on-disk dataset format: shards of `.npy` arrays plus a `manifest.json`.

    DIR/manifest.json                 format_version, kind, env settings, counts, one entry per shard
    DIR/shard_000000_train/frames.npy uint8 (N, 64, 64, 3)  ... one file per array, all of length N

Two kinds share the layout: "frames" (from `genie collect`) and "tokens" (from `genie tokenize`:
`tokens.npy` uint16 (N, h, w) instead of frames, plus the tokenizer's hash in the manifest).

A shard holds whole episodes of one split (train or validation; the split is chosen by level seed,
so no level is in both). Every array file has its sha256 in the manifest (`genie_env.data.manifest`).
Shards and the manifest are written atomically (`genie_env._io`): a killed writer leaves either the old
or the new version, and at most an orphan shard the manifest does not list, which `remove_orphans` deletes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from genie_env._io import atomic_dir, file_sha256, is_temp_name, recover_dir
from genie_env.data.manifest import MANIFEST, DatasetError, Manifest, ShardInfo, read_manifest
from genie_env.games import bad_action

# Per-kind array schema: name -> (dtype, shape of one row). Every array of a shard has the same length.
STEP_ARRAYS = {
    "actions": (np.int64, ()),
    "rewards": (np.float32, ()),
    "terminations": (np.bool_, ()),
    "truncations": (np.bool_, ()),
    "episode_ids": (np.int64, ()),
    "level_seeds": (np.int64, ()),
}
SCHEMAS = {
    "frames": {"frames": (np.uint8, (64, 64, 3)), **STEP_ARRAYS},
    "tokens": {"tokens": (np.uint16, None), **STEP_ARRAYS},  # row shape (h, w): the manifest's token_grid
}
Schema = dict[str, tuple[Any, tuple[int, ...]]]


def split_of(level_seed: int, val_fraction: float) -> str:
    """The split ("train" or "val") a level belongs to: a fixed hash of its seed, so no level is in both."""
    h = (int(level_seed) * 2654435761 + 97) % 2**32
    return "val" if h < val_fraction * 2**32 else "train"


class _HashingWriter:
    """File wrapper that feeds every written byte to a sha256."""

    def __init__(self, f) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)


def save_array(path: Path, arr: np.ndarray) -> str:
    """Save `arr` as a `.npy` file and return the sha256 of the file's bytes (one pass, no extra copy)."""
    arr = np.ascontiguousarray(arr)
    with open(path, "wb") as f:
        w = _HashingWriter(f)
        np.lib.format.write_array_header_1_0(w, np.lib.format.header_data_from_array_1_0(arr))
        if arr.size:
            w.write(memoryview(arr.reshape(-1).view(np.uint8)))
    return w.hash.hexdigest()


def write_shard(
    root: Path, name: str, split: str, arrays: dict[str, np.ndarray], schema: Schema | None = None
) -> ShardInfo:
    """Write one shard directory atomically (a temp directory swapped into place) and return its manifest entry.

    `arrays` must match `schema` (default: the frames schema); rows must be whole episodes.
    """
    schema = schema or SCHEMAS["frames"]
    check_arrays(arrays, schema, where=f"shard {name}")
    with atomic_dir(Path(root) / name) as tmp:
        digests = {f"{key}.npy": save_array(tmp / f"{key}.npy", arrays[key]) for key in schema}
    n = len(arrays["episode_ids"])
    num_episodes = int(np.count_nonzero(np.diff(arrays["episode_ids"]))) + 1 if n else 0
    return ShardInfo(name, split, n, num_episodes, digests)


def check_arrays(arrays: dict[str, np.ndarray], schema: Schema, where: str) -> int:
    """Check names, dtypes, row shapes and equal lengths against the schema; returns the length."""
    missing = sorted(set(schema) - set(arrays))
    if missing:
        raise DatasetError(f"{where}: missing arrays {missing}")
    lengths = {}
    for key, (dtype, row) in schema.items():
        arr = arrays[key]
        if arr.dtype != dtype or arr.shape[1:] != row:
            raise DatasetError(
                f"{where}: {key} has dtype {arr.dtype} and shape {arr.shape}, "
                f"expected {np.dtype(dtype)} with rows of shape {row}"
            )
        lengths[key] = len(arr)
    if len(set(lengths.values())) > 1:
        raise DatasetError(f"{where}: arrays have different lengths {lengths}")
    return next(iter(lengths.values()))


def schema_of(manifest: Manifest) -> Schema:
    """The array schema of a dataset, from its manifest (token datasets record their token grid)."""
    if manifest.kind == "tokens":
        return {**SCHEMAS["tokens"], "tokens": (np.uint16, tuple(manifest.token_grid))}
    return SCHEMAS[manifest.kind]


def load_shard(root: Path, info: ShardInfo, schema: Schema | None = None, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load one shard's arrays (memory-mapped by default); raises DatasetError naming a bad file.

    `schema` defaults to the frames schema; use `schema_of(manifest)` for other kinds.
    """
    schema = schema or SCHEMAS["frames"]
    recover_dir(Path(root) / info.name)
    arrays = {}
    for key in schema:
        path = Path(root) / info.name / f"{key}.npy"
        if not path.exists():
            raise DatasetError(f"missing file {path} (shard {info.name} is incomplete)")
        try:
            arrays[key] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DatasetError(f"corrupt file {path}: {e}") from e
    n = check_arrays(arrays, schema, where=f"shard {info.name}")
    if n != info.num_frames:
        raise DatasetError(f"shard {info.name} has {n} rows but the manifest says {info.num_frames}")
    return arrays


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: each file hashed once a process


def verify_shard_files(root: Path, info: ShardInfo) -> None:
    """Check every file of a shard against the sha256 the manifest records, hashing each file at most once
    per process (while its size and mtime stay the same); DatasetError naming the shard and the file."""
    for fname, expected in info.sha256.items():
        path = Path(root) / info.name / fname
        if not path.exists():
            raise DatasetError(f"shard {info.name}: missing file {path}")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _VERIFIED:
            _VERIFIED[key] = file_sha256(path)
        if _VERIFIED[key] != expected:
            raise DatasetError(f"shard {info.name}: checksum mismatch in {path} (file changed or corrupt)")


def check_values(arrays: dict[str, np.ndarray], manifest: Manifest, where: str) -> None:
    """Check that a shard's actions (and tokens) are in range, so a bad value is named here rather than met
    as an IndexError inside a model; DatasetError naming `where`."""
    n = manifest.num_actions
    if (bad := bad_action(arrays["actions"], n)) is not None:
        raise DatasetError(f"{where}: action {bad} out of range ({manifest.game} has {n} actions, 0..{n - 1})")
    if manifest.kind == "tokens" and len(arrays["tokens"]):
        top = int(np.asarray(arrays["tokens"]).max())
        if top >= manifest.codebook_size:
            raise DatasetError(f"{where}: token {top} out of range (the tokenizer has {manifest.codebook_size} codes)")


def dataset_level_seeds(root: Path, split: str | None = None) -> set[int]:
    """Every level seed a frame or token dataset holds (of one split, or all); DatasetError if unreadable."""
    manifest = read_manifest(root)
    schema = schema_of(manifest)
    return {
        int(level)
        for info in manifest.shards_of(split)
        for level in np.unique(load_shard(root, info, schema)["level_seeds"])
    }


def verify_dataset(root: Path) -> Manifest:
    """Check every shard's files, checksums, shapes and episode layout; returns the manifest.

    Raises DatasetError naming the first bad shard (in manifest order) and what is wrong with it.
    """
    manifest = read_manifest(root)
    schema = schema_of(manifest)
    seen_levels: dict[int, str] = {}
    seen_episodes: set[int] = set()
    for info in manifest.shards:
        verify_shard_files(root, info)
        arrays = load_shard(root, info, schema)
        ids = np.asarray(arrays["episode_ids"])
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        episode_ids = ids[starts]
        if len(set(episode_ids.tolist())) != len(episode_ids) or seen_episodes & set(episode_ids.tolist()):
            raise DatasetError(f"shard {info.name}: an episode's rows are not contiguous or appear twice")
        seen_episodes.update(episode_ids.tolist())
        for level in np.unique(arrays["level_seeds"]).tolist():
            other = seen_levels.setdefault(level, info.split)
            if other != info.split:
                raise DatasetError(f"shard {info.name}: level {level} is in both the train and val splits")
    return manifest


# names the project gives what it writes into a dataset directory (older versions' temp names included)
OUR_SHARD = re.compile(r"shard_\d{6}_(train|val)")
OUR_RESUME = re.compile(r"resume_\d{6}\.npz")
OUR_OLD_TEMP = re.compile(r"\.(shard_\d{6}_(train|val)|resume_\d{6}\.npz)\.tmp")


def _written_by_us(path: Path, schema: Schema) -> bool:
    """Whether a file or directory not in the manifest is a leftover of a killed writer of ours, and not
    something a user put there: our temp names, or a shard directory holding exactly a shard's arrays."""
    name = path.name
    if is_temp_name(name) or OUR_OLD_TEMP.fullmatch(name) or (OUR_RESUME.fullmatch(name) and path.is_file()):
        return True
    if OUR_SHARD.fullmatch(name) and path.is_dir():
        return {f.name for f in path.iterdir()} <= {f"{key}.npy" for key in schema}
    return False


def remove_orphans(root: Path, manifest: Manifest, keep: set[str] = frozenset()) -> list[str]:
    """Delete what a killed writer of ours left that the manifest does not list (unlisted shards, temp files,
    an old resume state). Nothing else is touched, whatever its name: a user's `shard_notes.txt` stays."""
    listed = {s.name for s in manifest.shards} | set(keep) | {MANIFEST}
    for name in listed:
        recover_dir(Path(root) / name)  # a swap killed between its renames: its old version is not an orphan
    removed = []
    schema = schema_of(manifest)
    for path in sorted(Path(root).iterdir()):
        if path.name not in listed and _written_by_us(path, schema):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed
