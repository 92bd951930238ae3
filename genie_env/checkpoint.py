"""Checkpoints: safetensors weights + a JSON config that rebuilds the model, written atomically.

    CKPT/config.json            {"format_version", "kind", "config": {...model config...}, ...}
    CKPT/model.safetensors      the model's state_dict
    CKPT/optimizer.safetensors  (training checkpoints only) the optimizer's tensors
    CKPT/trainer_state.json     (training checkpoints only) step, RNG states, train config

A checkpoint is written into a temp directory that is renamed into place, so a reader never sees a
half-written one. Nothing is ever unpickled: configs are JSON, tensors are safetensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genie_env.data.format import atomic_write_json

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
TRAINER_STATE = "trainer_state.json"

T = TypeVar("T")


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, of the wrong kind, or does not fit the model or config."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Rebuild config dataclass `cls` from `data`; a missing or unexpected key is an error naming it."""
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
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
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


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to `path` via a temp file and rename."""
    atomic_write_json(Path(path), obj)


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
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(tmp / WEIGHTS))
    for name, group in (tensors or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in group.items()}, str(tmp / name))
    meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": config_to_dict(config), **(extra or {})}
    (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    for name, obj in (json_files or {}).items():
        (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    return path


def read_config(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read and check CKPT/config.json; raises CheckpointError naming the file and problem."""
    cfg_path = Path(path) / CONFIG
    if not cfg_path.exists():
        raise CheckpointError(f"no checkpoint at {path}: {cfg_path} does not exist")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt checkpoint config {cfg_path}: {e}") from e
    for key in ("format_version", "kind", "config"):
        if key not in meta:
            raise CheckpointError(f"corrupt checkpoint config {cfg_path}: missing key {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} has format_version {meta['format_version']}, expected {FORMAT_VERSION}")
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{path} is a {meta['kind']!r} checkpoint, expected a {kind!r} checkpoint")
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
    state = load_tensors(Path(path) / WEIGHTS)
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
    h = hashlib.sha256()
    with open(Path(path) / WEIGHTS, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def export_checkpoint(src: str | Path, out: str | Path, dtype: torch.dtype | None = torch.float16) -> Path:
    """Copy a checkpoint's weights (cast to `dtype`) and config.json to `out`, without optimizer state:
    the inference-only form a model ships in. Returns `out`."""
    src, out = Path(src), Path(out)
    meta = read_config(src)
    state = load_tensors(src / WEIGHTS)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS))
    meta = {k: v for k, v in meta.items() if k != "train"}
    meta["exported_from"] = str(src)
    meta["source_sha256"] = weights_sha256(src)
    meta["weights_dtype"] = str(dtype).replace("torch.", "") if dtype is not None else "unchanged"
    (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out
