"""A dataset's `manifest.json` as one typed, versioned record, parsed and checked in one place.

Frame datasets (`genie collect`) and token datasets (`genie tokenize`) share it:

    format_version, kind           the format and "frames" or "tokens"
    env, collect                   the game settings and the collection settings (a resume must match them)
    shards                         per shard: name, split, rows, episodes, a sha256 per array file
    counts                         frames and episodes, overall and per split (derived from the shards)
    complete                       the writer finished
    resume_state, state            (frames) where an interrupted collection continues from
    token_grid, codebook_size      (tokens) the token grid (h, w) and vocabulary
    tokenizer, source              (tokens) the tokenizer (path, sha256, config) and the frame dataset tokenized
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from genie_env._io import GenieError, atomic_write_json, file_sha256, read_json
from genie_env.games import DEFAULT_GAME, NUM_ACTIONS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
Kind = Literal["frames", "tokens"]
KINDS: tuple[str, ...] = get_args(Kind)
Split = Literal["train", "val"]
SPLITS: tuple[str, ...] = get_args(Split)


class DatasetError(GenieError):
    """A dataset directory, manifest or shard is missing, corrupt or of the wrong kind."""


@dataclass(frozen=True)
class ShardInfo:
    """One manifest entry: which split, how many rows and episodes, and a sha256 per array file."""

    name: str
    split: Split
    num_frames: int
    num_episodes: int
    sha256: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: Any, where: str) -> ShardInfo:
        """Parse one shard entry; DatasetError naming `where` and the missing or bad field."""
        if not isinstance(d, dict):
            raise DatasetError(f"{where}: a shard entry is {type(d).__name__}, expected an object")
        missing = [f.name for f in dataclasses.fields(ShardInfo) if f.name not in d]
        if missing:
            raise DatasetError(f"{where}: shard entry {d.get('name', '?')!r} has no {', '.join(missing)}")
        if d["split"] not in SPLITS:
            raise DatasetError(f"{where}: shard {d['name']!r} has split {d['split']!r}, expected one of {SPLITS}")
        return ShardInfo(str(d["name"]), d["split"], int(d["num_frames"]), int(d["num_episodes"]), dict(d["sha256"]))


def shard_counts(shards: tuple[ShardInfo, ...] | list[ShardInfo]) -> dict[str, int]:
    """Frames and episodes over the shards, overall and per split."""
    counts = {"frames": 0, "episodes": 0, **{f"{s}_{n}": 0 for s in SPLITS for n in ("frames", "episodes")}}
    for s in shards:
        counts["frames"] += s.num_frames
        counts["episodes"] += s.num_episodes
        counts[f"{s.split}_frames"] += s.num_frames
        counts[f"{s.split}_episodes"] += s.num_episodes
    return counts


@dataclass(frozen=True)
class Manifest:
    """A dataset's manifest (see the module docstring); `counts` is derived from `shards`, never stored apart."""

    kind: Kind
    shards: tuple[ShardInfo, ...] = ()
    complete: bool = False
    env: dict[str, Any] = field(default_factory=dict)
    collect: dict[str, Any] = field(default_factory=dict)
    resume_state: str | None = None
    state: dict[str, Any] | None = None
    token_grid: tuple[int, int] | None = None
    codebook_size: int | None = None
    tokenizer: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    actions: dict[str, Any] | None = None
    """a token dataset's actions: None for the real ones; {"kind": "latent", "num_actions": K, "lam": {"path",
    "sha256"}} when a latent action model labelled the transitions (`genie tokenize --lam RUN`)"""
    format_version: int = FORMAT_VERSION

    @property
    def game(self) -> str:
        """The game of a dataset: a Procgen game's name, or the env id of a user's game (datasets from before
        games were recorded are CoinRun's)."""
        return self.env.get("game") or self.env.get("env_name") or self.env.get("env_id") or DEFAULT_GAME

    @property
    def num_actions(self) -> int:
        """How many actions the transitions hold: the LAM's latent actions, a user game's (recorded at
        collection), or Procgen's 15."""
        if self.actions:
            return int(self.actions["num_actions"])
        return int(self.env.get("num_actions", NUM_ACTIONS))

    @property
    def user_game(self) -> bool:
        """Collected from a Gymnasium env of the user's (`genie collect --env-id`), not from Procgen."""
        return "env_id" in self.env

    @property
    def counts(self) -> dict[str, int]:
        """frames, episodes, train_frames, val_frames, train_episodes, val_episodes."""
        return shard_counts(self.shards)

    def shards_of(self, split: str | None = None) -> list[ShardInfo]:
        """The shards, optionally only those of one split ("train" or "val")."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
        return [s for s in self.shards if split is None or s.split == split]

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: v for k, v in d.items() if v is not None or k in ("resume_state",) and self.kind == "frames"}
        d["shards"] = [s.to_json() for s in self.shards]
        if self.token_grid is not None:
            d["token_grid"] = list(self.token_grid)
        d["counts"] = self.counts
        order = ["format_version", "kind", "complete", "counts"]
        return {**{k: d[k] for k in order}, **{k: v for k, v in d.items() if k not in order}}

    @staticmethod
    def from_json(d: Any, where: str) -> Manifest:
        """Parse and check a manifest's JSON; DatasetError naming `where` and the problem."""
        if not isinstance(d, dict):
            raise DatasetError(f"corrupt manifest {where}: expected a JSON object")
        for key in ("format_version", "kind", "shards"):
            if key not in d:
                raise DatasetError(f"corrupt manifest {where}: missing key {key!r}")
        if d["format_version"] != FORMAT_VERSION:
            raise DatasetError(
                f"{where} has format_version {d['format_version']}, this genie-env reads {FORMAT_VERSION}"
            )
        if d["kind"] not in KINDS:
            raise DatasetError(f"{where}: unknown dataset kind {d['kind']!r}: known kinds are {list(KINDS)}")
        names = {f.name for f in dataclasses.fields(Manifest)}
        unexpected = sorted(set(d) - names - {"counts"})
        if unexpected:
            raise DatasetError(f"corrupt manifest {where}: unexpected keys {unexpected}")
        if d["kind"] == "tokens":
            for key in ("token_grid", "codebook_size", "tokenizer"):
                if key not in d:
                    raise DatasetError(f"corrupt token manifest {where}: missing key {key!r}")
        if not isinstance(d["shards"], list):
            raise DatasetError(f"corrupt manifest {where}: 'shards' must be a list")
        fields = {k: v for k, v in d.items() if k in names}
        fields["shards"] = tuple(ShardInfo.from_json(s, where) for s in d["shards"])
        if fields.get("token_grid") is not None:
            fields["token_grid"] = tuple(fields["token_grid"])
        return Manifest(**fields)


def read_manifest(root: str | Path, kind: str | None = None) -> Manifest:
    """Read and check `DIR/manifest.json`; raises DatasetError naming the file and the problem."""
    path = Path(root) / MANIFEST
    if not path.exists():
        raise DatasetError(f"no dataset at {root}: {path} does not exist (run `genie collect --out {root}` first)")
    manifest = Manifest.from_json(read_json(path, "manifest", DatasetError), str(path))
    if kind is not None and manifest.kind != kind:
        raise DatasetError(f"{root} is a {manifest.kind!r} dataset, expected a {kind!r} dataset")
    return manifest


def manifest_sha256(root: str | Path) -> str:
    """The identity of a dataset as it is now: the sha256 of its manifest.json (which lists every file's)."""
    return file_sha256(Path(root) / MANIFEST)


def dataset_identities(roots) -> list[dict[str, str]]:
    """What a training run records of the datasets it trains on (each one's path and `manifest_sha256`), so
    a resume on other data, or on the same directory rewritten, is refused."""
    return [{"path": str(root), "manifest_sha256": manifest_sha256(root)} for root in roots]


def write_manifest(root: str | Path, manifest: Manifest) -> Manifest:
    """Write `DIR/manifest.json` atomically (the commit point of every dataset writer); returns `manifest`."""
    atomic_write_json(Path(root) / MANIFEST, manifest.to_json())
    return manifest
