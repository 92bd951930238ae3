"""Checkpoints: safetensors weights + a JSON config that rebuilds the model, written atomically.

    CKPT/config.json            {"format_version", "kind", "config": {...model config...}, ...}
    CKPT/model.safetensors      the model's state_dict
    CKPT/optimizer.safetensors  (training checkpoints only) the optimizer's tensors
    CKPT/trainer_state.json     (training checkpoints only) step, RNG states, train config

A checkpoint is written into a temp directory that is swapped into place (`genie_env._io.swap_dir`), so
a reader never sees a half-written one and a kill never leaves none. Nothing is ever unpickled: configs
are JSON, tensors are safetensors.

A training run directory holds `checkpoints/step_NNNNNNN/` and `latest.json` naming the newest;
`resolve_checkpoint` turns a run or a checkpoint directory into a checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genie_env._io import GenieError, atomic_dir, file_sha256, read_json, recover_dir

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
TRAINER_STATE = "trainer_state.json"

T = TypeVar("T")
JOINT_HINT = (
    " (a run of `genie train-dynamics --actions joint`, the LAM and dynamics in one: pass its split, "
    "RUN/dynamics or RUN/lam)"
)


class CheckpointError(GenieError):
    """A checkpoint is missing, corrupt, of the wrong kind, or does not fit the model or config."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Rebuild config dataclass `cls` from `data` (nested configs too); a missing or unexpected key is an error
    naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    unexpected = sorted(set(data) - names)
    missing = sorted(required - set(data))
    if unexpected or missing:
        raise CheckpointError(
            f"{where}: config does not fit {cls.__name__}"
            + (f"; unexpected keys {unexpected}" if unexpected else "")
            + (f"; missing keys {missing}" if missing else "")
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():  # a nested config (a field typed as a config dataclass) is rebuilt in turn
        nested = hints.get(k)
        if dataclasses.is_dataclass(nested) and isinstance(v, dict):
            v = config_from_dict(nested, v, f"{where} ({k})")
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: invalid {cls.__name__}: {e}") from e


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the fields that differ between two config dicts (nested dicts are walked)."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key} ({va!r} vs {vb!r})")
    return out


def resume_mismatches(saved: dict[str, Any], now: dict[str, Any], may_change: Iterable[str] = ()) -> list[str]:
    """What keeps a run from resuming: the fields (dotted for nested dicts, with both values) where the
    settings it was started with (`saved`) differ from today's (`now`), leaving out `may_change` (dotted
    names of fields that say how long or how watched a run is, not what it computes). A field only one
    side has counts as different, so a setting dropped since is caught too. The one check every resumable
    stage (training, agents, collection) makes before it continues."""
    skip = set(may_change)
    return [d for d in config_diff(saved, now) if d.split(" (", 1)[0] not in skip]


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    kind: str,
    config: Any,
    extra: dict[str, Any] | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    json_files: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    `kind` names the model class ("tokenizer", "dynamics"); `config` is its config dataclass;
    `extra` goes into config.json too; `tensors` are further safetensors files (name -> tensors),
    `json_files` further JSON files; `dtype` casts floating weights (e.g. float16 for shipping).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        for name, group in (tensors or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in group.items()}, str(tmp / name))
        for name, obj in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": config_to_dict(config), **(extra or {})}
        _write_config(tmp, meta)
    return path


def _write_config(ckpt: Path, meta: dict[str, Any]) -> None:
    """CKPT/config.json with the sha256 of every other file of the checkpoint (checked when they load)."""
    digests = {f.name: file_sha256(f) for f in sorted(ckpt.iterdir()) if f.name != CONFIG}
    (ckpt / CONFIG).write_text(json.dumps({**meta, "files_sha256": digests}, indent=2) + "\n")


def verify_file(ckpt: str | Path, name: str) -> Path:
    """CKPT/name, checked against the sha256 its config.json records (checkpoints written before the
    digests were recorded pass unchecked); CheckpointError naming the file when the bytes changed."""
    path = Path(ckpt) / name
    recorded = read_config(ckpt).get("files_sha256", {}).get(name)
    if recorded is not None and path.exists() and file_sha256(path) != recorded:
        raise CheckpointError(f"corrupt checkpoint file {path}: its bytes do not match the sha256 its config records")
    return path


def read_config(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read and check CKPT/config.json; raises CheckpointError naming the file and problem."""
    recover_dir(path)
    cfg_path = Path(path) / CONFIG
    if not cfg_path.exists():
        raise CheckpointError(f"no checkpoint at {path}: {cfg_path} does not exist")
    meta = read_json(cfg_path, "checkpoint config", CheckpointError)
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint config {cfg_path}: expected a JSON object")
    for key in ("format_version", "kind", "config"):
        if key not in meta:
            raise CheckpointError(f"corrupt checkpoint config {cfg_path}: missing key {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} has format_version {meta['format_version']}, expected {FORMAT_VERSION}")
    if kind is not None and meta["kind"] != kind:
        hint = JOINT_HINT if meta["kind"] == "joint" else ""
        raise CheckpointError(f"{path} is a {meta['kind']!r} checkpoint, expected a {kind!r} checkpoint{hint}")
    return meta


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; raises CheckpointError if it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {e}") from e


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load CKPT/model.safetensors into `model` strictly; names missing, unexpected or misshaped keys."""
    state = load_tensors(verify_file(path, WEIGHTS))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: weights do not fit the model"
            + (f"; missing keys {missing[:5]}" if missing else "")
            + (f"; unexpected keys {unexpected[:5]}" if unexpected else "")
            + (f"; shape mismatch {shapes[:5]}" if shapes else "")
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def weights_sha256(path: str | Path) -> str:
    """sha256 of CKPT/model.safetensors: identifies a trained model (e.g. the tokenizer behind token shards)."""
    return file_sha256(Path(path) / WEIGHTS)


def _check_export_target(src: Path, out: Path, force: bool) -> None:
    """Refuse to replace anything but an export of ours (and that only with `force`)."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file: give a directory to export to")
    if out.resolve() == src.resolve() or src.resolve().is_relative_to(out.resolve()):
        raise CheckpointError(f"--out {out} holds the checkpoint being exported ({src}): choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        ours = "exported_from" in read_config(out)
    except CheckpointError:
        ours = False
    if not ours:
        raise CheckpointError(f"--out {out} exists and is not an exported checkpoint: refusing to replace it")
    if not force:
        raise CheckpointError(f"--out {out} already holds an exported checkpoint: pass --force to replace it")


def export_checkpoint(src: str | Path, out: str | Path, dtype: torch.dtype | None = torch.float16,
                      force: bool = False) -> Path:  # fmt: skip
    """Copy a checkpoint's weights (cast to `dtype`) and config.json to `out`, without optimizer state:
    the inference-only form a model ships in. Returns `out`. An existing `out` is replaced only if it is
    an export of ours and `force` is set (CheckpointError otherwise), and then by an atomic swap."""
    src, out = Path(src), Path(out)
    _check_export_target(src, out, force)
    meta = read_config(src)
    state = load_tensors(src / WEIGHTS)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {k: v for k, v in meta.items() if k != "train"}
    meta["exported_from"] = str(src)
    meta["source_sha256"] = weights_sha256(src)
    meta["weights_dtype"] = str(dtype).replace("torch.", "") if dtype is not None else "unchanged"
    meta.pop("files_sha256", None)
    with atomic_dir(out) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS))
        _write_config(tmp, meta)
    return out


def latest_checkpoint(run: str | Path) -> Path | None:
    """The newest training checkpoint of a run directory (named by its `latest.json`), or None."""
    pointer = Path(run) / "latest.json"
    if not pointer.exists():
        return None
    record = read_json(pointer, "run pointer", CheckpointError)
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise CheckpointError(f'corrupt run pointer {pointer}: expected {{"step": N, "path": "checkpoints/step_..."}}')
    return Path(run) / record["path"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from either itself or a run directory (whose newest checkpoint is used)."""
    path = Path(path)
    recover_dir(path)
    if (path / CONFIG).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"no checkpoint at {path}: neither {path / CONFIG} nor {path / 'latest.json'} exists")
    return latest
