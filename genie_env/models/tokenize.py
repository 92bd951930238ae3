"""Turn a frame dataset into a token dataset (`genie tokenize`), so dynamics training never runs the encoder.

The token dataset has the same shards, splits and step arrays as its source, with `tokens` uint16
(N, h, w) instead of `frames`; its manifest records the tokenizer's sha256, config and token grid.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genie_env._io import DirLock
from genie_env.checkpoint import config_to_dict, read_config, resolve_checkpoint, weights_sha256
from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard, schema_of, write_shard
from genie_env.data.manifest import DatasetError, Manifest, read_manifest, write_manifest
from genie_env.games import DEFAULT_GAME
from genie_env.models import load_lam, load_tokenizer
from genie_env.models.lam import label_transitions
from genie_env.models.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def encode_frames(tokenizer: Tokenizer, frames: np.ndarray, episode_ids: np.ndarray, batch_size: int = 256,
                  device: str | torch.device = "cpu") -> np.ndarray:  # fmt: skip
    """Tokens uint16 (N, h, w) for frames uint8 (N, 64, 64, 3).

    A conv tokenizer codes frames independently; an ST-ViViT one codes each episode in consecutive
    clips of `max_frames`, so a frame's tokens see only earlier frames of its own episode.
    """
    cfg = tokenizer.cfg
    out = np.empty((len(frames), cfg.grid, cfg.grid), np.uint16)
    if cfg.kind == "conv":
        spans = [(a, min(a + batch_size, len(frames))) for a in range(0, len(frames), batch_size)]
    else:
        spans = [(c, min(c + cfg.max_frames, b)) for a, b in zip(*episode_bounds(episode_ids))
                 for c in range(a, b, cfg.max_frames)]  # fmt: skip
    for a, b in spans:
        clip = torch.from_numpy(np.array(frames[a:b])).to(device)
        clip = clip[:, None] if cfg.kind == "conv" else clip[None]  # conv: (N, 1, ...); stvivit: (1, T, ...)
        tokens = tokenizer.encode(clip).reshape(b - a, cfg.grid, cfg.grid)
        out[a:b] = tokens.cpu().numpy().astype(np.uint16)
    return out


def tokenize_dataset(data: str | Path, tokenizer_path: str | Path, out: str | Path, batch_size: int = 256,
                     device: str = "cpu", progress: bool = True,
                     lam: str | Path | None = None) -> Manifest:  # fmt: skip
    """Tokenize every shard of frame dataset `data` into `out`; returns the token manifest. With `lam` (a
    latent action model run), every transition's action is the LAM's latent action instead of the real one
    (the manifest's `actions` says so), for dynamics trained from video alone.

    Re-running into the same `out` skips shards already written (an interrupted run continues).
    Raises DatasetError if `data` is not a frame dataset, or if `out` holds tokens of another
    tokenizer or another source dataset.
    """
    with DirLock(out):
        return _tokenize(Path(data), Path(out), tokenizer_path, batch_size, device, progress, lam)


def _tokenize(data: Path, out: Path, tokenizer_path: str | Path, batch_size: int, device: str,
              progress: bool, lam_path: str | Path | None) -> Manifest:  # fmt: skip
    source = read_manifest(data, kind="frames")
    ckpt = resolve_checkpoint(tokenizer_path)
    trained_on = read_config(ckpt).get("game", DEFAULT_GAME)  # tokenizers from before games were recorded: CoinRun
    if trained_on != source.game:
        raise DatasetError(f"{data} holds {source.game} frames, but tokenizer {ckpt} was trained on {trained_on}")
    tokenizer = load_tokenizer(ckpt, device)
    digest = weights_sha256(ckpt)
    lam, actions = None, None
    if lam_path is not None:
        lam_ckpt = resolve_checkpoint(lam_path)
        lam = load_lam(lam_ckpt, device)
        actions = {"kind": "latent", "num_actions": lam.cfg.num_actions,
                   "lam": {"path": str(lam_ckpt), "sha256": weights_sha256(lam_ckpt)}}  # fmt: skip
    header = Manifest(
        kind="tokens", token_grid=(tokenizer.cfg.grid, tokenizer.cfg.grid), codebook_size=tokenizer.cfg.codebook_size,
        tokenizer={"path": str(ckpt), "sha256": digest, "config": config_to_dict(tokenizer.cfg)},
        source={"path": str(data), "counts": source.counts}, env=source.env, collect=source.collect,
        actions=actions,
    )  # fmt: skip
    done = []
    if (out / "manifest.json").exists():
        existing = read_manifest(out, kind="tokens")
        if existing.tokenizer["sha256"] != digest:
            raise DatasetError(
                f"{out} holds tokens of tokenizer {existing.tokenizer['sha256'][:12]} "
                f"({existing.tokenizer['path']}), not of {ckpt} ({digest[:12]}): choose another --out"
            )
        if existing.source["counts"] != source.counts:
            raise DatasetError(
                f"{out} was tokenized from another dataset ({existing.source['path']}): choose another --out"
            )
        if existing.actions != actions:
            raise DatasetError(f"{out} holds tokens with {describe_actions(existing.actions)}, not "
                               f"{describe_actions(actions)}: choose another --out")  # fmt: skip
        done = list(existing.shards)
    out.mkdir(parents=True, exist_ok=True)
    schema = schema_of(header)
    todo = [s for s in source.shards if s.name not in {d.name for d in done}]
    bar = tqdm(total=sum(s.num_frames for s in todo), disable=not progress, unit="frame", desc="tokenize")
    for info in todo:
        arrays = load_shard(data, info)
        tokens = encode_frames(tokenizer, arrays["frames"], np.asarray(arrays["episode_ids"]), batch_size, device)
        rows = {"tokens": tokens, **{k: np.asarray(v) for k, v in arrays.items() if k != "frames"}}
        if lam is not None:
            rows["actions"] = label_transitions(lam, arrays["frames"], rows["episode_ids"], device=device).astype(
                rows["actions"].dtype
            )
        done.append(write_shard(out, info.name, info.split, rows, schema))
        write_manifest(out, dataclasses.replace(header, shards=tuple(done)))
        bar.update(info.num_frames)
    bar.close()
    return write_manifest(out, dataclasses.replace(header, shards=tuple(done), complete=True))


def describe_actions(actions: dict | None) -> str:
    """A token dataset's `actions` in words: the real actions, or a LAM's latent ones."""
    if actions is None:
        return "the real actions"
    return f"{actions['num_actions']} latent actions of LAM {actions['lam']['sha256'][:12]} ({actions['lam']['path']})"
