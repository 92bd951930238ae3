"""Agent evaluation on real CoinRun levels held out from training: returns, success rate, 95% CIs.

Data collection draws unbounded random 31-bit level seeds; evaluation plays the explicit range
[start_level, start_level + num_levels) (by default 1,000,000 .. 1,000,499), and `check_disjoint`
asserts that no level of that range was seen in training.

Episode counting is unbiased: each env gets a fixed quota of episodes and every episode it finishes
counts until the quota is full. Taking the first N episodes to finish overall would favour short
ones (quick deaths and quick wins finish first).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genie_env._io import read_json
from genie_env.data.format import dataset_level_seeds
from genie_env.data.manifest import MANIFEST
from genie_env.envs.user import real_vector_env
from genie_env.games import DEFAULT_GAME, LevelConfig, Policy
from genie_env.metrics import bootstrap_ci
from genie_env.viz import save_gif

DEFAULT_EVAL_START_LEVEL = 1_000_000
DEFAULT_EVAL_NUM_LEVELS = 500
LEVELS_FILE = "levels.json"
GIF_FRAMES = 300
CONFIDENCE = 0.95  # of every CI in an evaluation result


def _levels_file(path: Path) -> set[int]:
    """The `level_seeds` list of a JSON file; raises ValueError if it is not there or not integers."""
    obj = read_json(path, "levels file", ValueError)
    if not isinstance(obj, dict) or "level_seeds" not in obj:
        raise ValueError(f"{path} has no 'level_seeds' key (expected {{\"level_seeds\": [int, ...]}})")
    seeds = obj["level_seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{path}: 'level_seeds' must be a list of integers")
    return set(seeds)


def held_out_levels(paths: list[str | Path]) -> set[int]:
    """The level seeds seen in training, from datasets, level files or directories holding one.

    Each path is a frame or token dataset directory (its manifest.json), a JSON file with key
    "level_seeds", or a directory holding such a `levels.json`. Returns the union of all seeds.
    Raises FileNotFoundError for a missing path, ValueError for one holding none of these, and
    DatasetError for a corrupt dataset.
    """
    seen: set[int] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (expected a dataset directory or a levels JSON)")
        if path.is_file():
            seen |= _levels_file(path)
        elif (path / MANIFEST).exists():
            seen |= dataset_level_seeds(path)  # both splits: a model may use val levels too
        elif (path / LEVELS_FILE).exists():
            seen |= _levels_file(path / LEVELS_FILE)
        else:
            raise ValueError(f"{path} holds neither a dataset ({MANIFEST}) nor a {LEVELS_FILE}")
    return seen


def check_disjoint(start_level: int, num_levels: int, seen: set[int]) -> None:
    """Raise ValueError if any level of [start_level, start_level + num_levels) is in `seen`.

    The message names how many evaluation levels were seen and the first few. num_levels must be
    > 0: an unbounded level range cannot be shown disjoint from anything.
    """
    if num_levels <= 0:
        raise ValueError(
            f"num_levels is {num_levels}: evaluating on unbounded levels cannot be shown disjoint from "
            "training levels; give --num-levels > 0"
        )
    end = start_level + num_levels
    overlap = sorted(s for s in seen if start_level <= s < end)
    if overlap:
        shown = ", ".join(map(str, overlap[:5])) + (", ..." if len(overlap) > 5 else "")
        raise ValueError(
            f"{len(overlap)} of the {num_levels} evaluation levels [{start_level}, {end}) were seen in training "
            f"({shown}); choose another --start-level"
        )


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env must finish: `episodes` split as evenly as possible, int64 (num_envs,).

    Only the first min(num_envs, episodes) envs get a quota; the others play uncounted.
    """
    used = min(num_envs, episodes)
    quotas = np.zeros(num_envs, np.int64)
    quotas[:used] = episodes // used
    quotas[: episodes % used] += 1
    return quotas


def _summary(returns: np.ndarray, successes: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """Means and bootstrap CIs of the per-episode returns, successes and lengths."""
    return {
        "mean_return": float(returns.mean()),
        "return_ci": list(bootstrap_ci(returns, CONFIDENCE)),
        "success_rate": float(successes.mean()),
        "success_ci": list(bootstrap_ci(successes, CONFIDENCE)),
        "mean_length": float(lengths.mean()),
        "length_ci": list(bootstrap_ci(lengths, CONFIDENCE)),
    }


def evaluate_policy(
    policy: Policy,
    episodes: int = 500,
    start_level: int = DEFAULT_EVAL_START_LEVEL,
    num_levels: int = DEFAULT_EVAL_NUM_LEVELS,
    distribution_mode: str = "easy",
    num_envs: int = 64,
    seed: int = 0,
    gif_path: str | Path | None = None,
    progress: bool = True,
    game: str = DEFAULT_GAME,
    env_kwargs: str = "{}",
) -> dict[str, Any]:
    """Play `episodes` real episodes of `game` (CoinRun by default; or a user's env id, with `env_kwargs`, where
    levels are reset seeds) with `policy` on `num_envs` envs and summarise them.

    `policy.act(frames uint8 (num_envs, 64, 64, 3), first bool (num_envs,))` must return
    `num_envs` actions. Returns a JSON-serialisable dict: episodes, mean_return, return_ci,
    success_rate, success_ci, mean_length, length_ci (CIs are 95% percentile bootstraps [lo, hi]),
    distinct_levels, the level settings, num_envs, seed, wall_s and `per_episode` lists (returns,
    lengths, successes, level_seeds, envs: the env that played each). Writes a GIF of env 0's first
    ~300 frames to `gif_path` when given.
    Raises ValueError for episodes or num_envs < 1 and bad level settings.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    start = time.perf_counter()
    env = real_vector_env(game, num_envs, LevelConfig(distribution_mode, start_level, num_levels), env_kwargs)
    quotas = episode_quotas(episodes, num_envs)
    done_count = np.zeros(num_envs, np.int64)
    ep_return = np.zeros(num_envs, np.float64)
    ep_length = np.zeros(num_envs, np.int64)
    records: dict[str, list] = {"returns": [], "lengths": [], "successes": [], "level_seeds": [], "envs": []}
    obs, _ = env.reset(seed=seed)
    first = np.ones(num_envs, bool)
    gif_frames = [obs[0]] if gif_path is not None else []
    bar = tqdm(total=episodes, desc="episodes", unit="ep", disable=not progress)
    try:
        while (done_count < quotas).any():
            obs, rewards, terminated, truncated, info = env.step(policy.act(obs, first))
            ep_return += rewards
            ep_length += 1
            first = terminated | truncated
            if gif_path is not None and len(gif_frames) < GIF_FRAMES:
                gif_frames.append(obs[0])
            for i in np.flatnonzero(first & (done_count < quotas)):
                success = bool(info["prev_level_complete"][i] == 1)  # the game's own "level completed"
                records["returns"].append(float(ep_return[i]))
                records["lengths"].append(int(ep_length[i]))
                records["successes"].append(success)
                records["level_seeds"].append(int(info["level_seed"][i]))
                records["envs"].append(int(i))
                done_count[i] += 1
                bar.update(1)
            ep_return[first] = 0.0
            ep_length[first] = 0
    finally:
        bar.close()
        env.close()
    if gif_path is not None:
        save_gif(np.stack(gif_frames), gif_path)
    returns, lengths = np.array(records["returns"]), np.array(records["lengths"], np.float64)
    return {
        "episodes": len(returns),
        **_summary(returns, np.array(records["successes"], np.float64), lengths),
        "confidence": CONFIDENCE,
        "distinct_levels": len(set(records["level_seeds"])),
        "start_level": start_level,
        "num_levels": num_levels,
        "distribution_mode": distribution_mode,
        "game": game,
        **({"env_kwargs": json.loads(env_kwargs)} if env_kwargs != "{}" else {}),
        "num_envs": num_envs,
        "seed": seed,
        "wall_s": round(time.perf_counter() - start, 3),
        "per_episode": records,
    }
