"""The on-disk dataset format: shards of `.npy` arrays plus a `manifest.json`.

    DIR/manifest.json                 format_version, kind, env settings, counts, one entry per shard
    DIR/shard_000000_train/frames.npy uint8 (N, 64, 64, 3)  ... one file per array, all of length N

Two kinds share the layout: "frames" (from `genie collect`) and "tokens" (from `genie tokenize`:
`tokens.npy` uint16 (N, h, w) instead of frames, plus the tokenizer's hash in the manifest).

A shard holds whole episodes of one split (train or validation; the split is chosen by level seed,
so no level is in both). Every array file has its sha256 in the manifest. Shards and the manifest are
written atomically (temp name + rename): a killed writer leaves either the old or the new version,
and at most an orphan shard the manifest does not list, which `remove_orphans` deletes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")

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


class DatasetError(Exception):
    """A dataset directory, manifest or shard is missing, corrupt or of the wrong kind."""


@dataclass(frozen=True)
class ShardInfo:
    """One manifest entry: which split, how many rows and episodes, and a sha256 per array file."""

    name: str
    split: str
    num_frames: int
    num_episodes: int
    sha256: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "num_frames": self.num_frames,
            "num_episodes": self.num_episodes,
            "sha256": self.sha256,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> ShardInfo:
        return ShardInfo(d["name"], d["split"], int(d["num_frames"]), int(d["num_episodes"]), dict(d["sha256"]))


def split_of(level_seed: int, val_fraction: float) -> str:
    """The split ("train" or "val") a level belongs to: a fixed hash of its seed, so no level is in both."""
    h = (int(level_seed) * 2654435761 + 97) % 2**32
    return "val" if h < val_fraction * 2**32 else "train"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` (creating its directory) via a temp file beside it and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path`, atomically."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


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


def file_sha256(path: Path, chunk: int = 1 << 24) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_shard(
    root: Path, name: str, split: str, arrays: dict[str, np.ndarray], schema: Schema | None = None
) -> ShardInfo:
    """Write one shard directory atomically (temp dir + rename) and return its manifest entry.

    `arrays` must match `schema` (default: the frames schema); rows must be whole episodes.
    """
    schema = schema or SCHEMAS["frames"]
    check_arrays(arrays, schema, where=f"shard {name}")
    final = Path(root) / name
    tmp = Path(root) / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digests = {f"{key}.npy": save_array(tmp / f"{key}.npy", arrays[key]) for key in schema}
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
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


def schema_of(manifest: dict[str, Any]) -> Schema:
    """The array schema of a dataset, from its manifest (token datasets record their token grid)."""
    kind = manifest["kind"]
    if kind not in SCHEMAS:
        raise DatasetError(f"unknown dataset kind {kind!r}: known kinds are {sorted(SCHEMAS)}")
    if kind == "tokens":
        if "token_grid" not in manifest:
            raise DatasetError("corrupt token manifest: missing key 'token_grid'")
        return {**SCHEMAS[kind], "tokens": (np.uint16, tuple(manifest["token_grid"]))}
    return SCHEMAS[kind]


def load_shard(root: Path, info: ShardInfo, schema: Schema | None = None, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load one shard's arrays (memory-mapped by default); raises DatasetError naming a bad file.

    `schema` defaults to the frames schema; use `schema_of(manifest)` for other kinds.
    """
    schema = schema or SCHEMAS["frames"]
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


def read_manifest(root: Path, kind: str | None = None) -> dict[str, Any]:
    """Read and check `DIR/manifest.json`; raises DatasetError naming the file and the problem."""
    path = Path(root) / MANIFEST
    if not path.exists():
        raise DatasetError(f"no dataset at {root}: {path} does not exist (run `genie collect --out {root}` first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"corrupt manifest {path}: {e} (truncated or not JSON)") from e
    if not isinstance(manifest, dict):
        raise DatasetError(f"corrupt manifest {path}: expected a JSON object")
    for key in ("format_version", "kind", "shards"):
        if key not in manifest:
            raise DatasetError(f"corrupt manifest {path}: missing key {key!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"{path} has format_version {manifest['format_version']}, this genie-env reads {FORMAT_VERSION}"
        )
    if kind is not None and manifest["kind"] != kind:
        raise DatasetError(f"{root} is a {manifest['kind']!r} dataset, expected a {kind!r} dataset")
    schema_of(manifest)
    return manifest


def shard_infos(manifest: dict[str, Any], split: str | None = None) -> list[ShardInfo]:
    """The manifest's shards, optionally only those of one split ("train" or "val")."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
    infos = [ShardInfo.from_json(d) for d in manifest["shards"]]
    return [s for s in infos if split is None or s.split == split]


def dataset_level_seeds(root: Path, split: str | None = None) -> set[int]:
    """Every level seed a frame or token dataset holds (of one split, or all); DatasetError if unreadable."""
    manifest = read_manifest(root)
    schema = schema_of(manifest)
    return {
        int(level)
        for info in shard_infos(manifest, split)
        for level in np.unique(load_shard(root, info, schema)["level_seeds"])
    }


def verify_dataset(root: Path) -> dict[str, Any]:
    """Check every shard's files, checksums, shapes and episode layout; returns the manifest.

    Raises DatasetError naming the first bad shard (in manifest order) and what is wrong with it.
    """
    manifest = read_manifest(root)
    schema = schema_of(manifest)
    seen_levels: dict[int, str] = {}
    seen_episodes: set[int] = set()
    for info in shard_infos(manifest):
        for fname, expected in info.sha256.items():
            path = Path(root) / info.name / fname
            if not path.exists():
                raise DatasetError(f"shard {info.name}: missing file {path}")
            if file_sha256(path) != expected:
                raise DatasetError(f"shard {info.name}: checksum mismatch in {path} (file changed or corrupt)")
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


def remove_orphans(root: Path, manifest: dict[str, Any], keep: set[str] = frozenset()) -> list[str]:
    """Delete shard dirs and temp files the manifest does not list (left by a killed writer)."""
    listed = {s["name"] for s in manifest["shards"]} | set(keep) | {MANIFEST}
    removed = []
    for path in Path(root).iterdir():
        if path.name in listed:
            continue
        if path.name.endswith(".tmp") or path.name.startswith(("shard_", "resume_")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed
