"""Summary statistics of a dataset (`genie data info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard, schema_of
from genie_env.data.manifest import SPLITS, read_manifest
from genie_env.games import ACTION_MEANINGS, NUM_ACTIONS


def _describe(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def dataset_summary(root: str | Path) -> dict[str, Any]:
    """Frames, episodes, return and length stats, success rate and action histogram, per split and overall.

    Success means a positive episode return (CoinRun: the coin). Episodes cut by the collection budget or a
    length limit count as truncated. Actions are named as Procgen's, or numbered for a user's game and latent
    actions.
    """
    manifest = read_manifest(root)
    n = manifest.num_actions
    names = ACTION_MEANINGS if n == NUM_ACTIONS and not manifest.user_game else [str(i) for i in range(n)]
    per_split: dict[str, dict[str, list]] = {s: {"returns": [], "lengths": [], "term": [], "trunc": []} for s in SPLITS}
    actions = {s: np.zeros(n, np.int64) for s in SPLITS}
    levels = {s: set() for s in SPLITS}
    for info in manifest.shards:
        arrays = load_shard(root, info, schema_of(manifest))
        starts, ends = episode_bounds(arrays["episode_ids"])
        acc = per_split[info.split]
        if len(starts):
            acc["returns"].append(np.add.reduceat(np.asarray(arrays["rewards"], np.float64), starts))
            acc["lengths"].append(ends - starts)
            acc["term"].append(np.asarray(arrays["terminations"])[ends - 1])
            acc["trunc"].append(np.asarray(arrays["truncations"])[ends - 1])
        actions[info.split] += np.bincount(np.asarray(arrays["actions"]), minlength=n)[:n]
        levels[info.split].update(np.unique(arrays["level_seeds"]).tolist())

    def summarize(splits: tuple[str, ...]) -> dict[str, Any]:
        def cat(key: str, dtype) -> np.ndarray:
            parts = [p for s in splits for p in per_split[s][key]]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        returns, lengths = cat("returns", np.float64), cat("lengths", np.int64)
        term, trunc = cat("term", bool), cat("trunc", bool)
        hist = sum((actions[s] for s in splits), np.zeros(n, np.int64))
        return {
            "frames": int(lengths.sum()),
            "episodes": len(lengths),
            "levels": len(set().union(*(levels[s] for s in splits))),
            "terminated_episodes": int(term.sum()),
            "truncated_episodes": int(trunc.sum()),
            "success_rate": float((returns > 0).mean()) if len(returns) else float("nan"),
            "return": _describe(returns),
            "length": _describe(lengths),
            "action_histogram": {f"{i}:{names[i]}": int(c) for i, c in enumerate(hist)},
        }

    return {
        "root": str(root),
        "kind": manifest.kind,
        "game": manifest.game,
        "complete": manifest.complete,
        "env": manifest.env,
        "collect": manifest.collect,
        "shards": len(manifest.shards),
        "all": summarize(SPLITS),
        **{split: summarize((split,)) for split in SPLITS},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A human-readable rendering of `dataset_summary`'s result."""
    env = summary["env"]
    lines = [
        f"dataset {summary['root']} ({summary['kind']}, {summary['shards']} shards, "
        f"{'complete' if summary['complete'] else 'INCOMPLETE: resume with genie collect --resume'})",
        f"env: {summary['game']} {env.get('distribution_mode', '?')}, start_level={env.get('start_level', '?')}, "
        f"num_levels={env.get('num_levels', '?')}; policy: {summary['collect'].get('policy', '?')}",
        "",
        f"{'split':<6}{'frames':>10}{'episodes':>10}{'levels':>8}{'success':>9}"
        f"{'return':>15}{'length':>17}{'term':>7}{'trunc':>7}",
    ]
    for split in ("all", *SPLITS):
        s = summary[split]
        ret, length = s["return"], s["length"]
        lines.append(
            f"{split:<6}{s['frames']:>10}{s['episodes']:>10}{s['levels']:>8}{s['success_rate']:>9.3f}"
            f"{ret['mean']:>8.2f} ± {ret['std']:<4.1f}{length['mean']:>9.1f} ± {length['std']:<5.0f}"
            f"{s['terminated_episodes']:>7}{s['truncated_episodes']:>7}"
        )
    hist = summary["all"]["action_histogram"]
    total = max(1, sum(hist.values()))
    lines += ["", "actions: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in hist.items())]
    return "\n".join(lines)
