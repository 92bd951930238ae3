"""Collect real Procgen episodes (CoinRun unless told otherwise), or those of a Gymnasium env of your own
(`env_id`, see `genie_env.envs.user`), into a sharded dataset, fast and resumably.

All N levels step in one procgen call. Frames go into per-env episode buffers; a finished episode
is copied whole into its split's shard buffer, and full shards are written by a background thread
(sha256 computed while writing) so the game keeps stepping meanwhile.

Resume: every time shards are committed, the writer also saves the exact collection state (procgen's
serialized game states, the in-flight episodes, the policy's RNG) and then the manifest that points
at it. A killed run restarted with `resume=True` therefore continues bit for bit: it produces the same
episodes, in the same shards, as a run that was never interrupted. A user's env has no serializable
state, so its resume drops the episodes that were in flight (never written) and goes on with new ones,
whose seeds follow on from those already started (none is played twice).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genie_env._io import DirLock, atomic_path
from genie_env.checkpoint import resume_mismatches
from genie_env.data.format import SCHEMAS, load_shard, remove_orphans, save_array, split_of, write_shard
from genie_env.data.manifest import DatasetError, Manifest, ShardInfo, read_manifest, write_manifest
from genie_env.games import (
    DEFAULT_GAME,
    FRAME_SHAPE,
    PROCGEN_TIMEOUT,
    DistributionMode,
    LevelConfig,
    Policy,
    env_state,
    make_procgen,
)
from genie_env.user_game import UserGameBatch, parse_env_kwargs, user_game_record

logger = logging.getLogger(__name__)


# settings a resumed collection may change: where it writes, how far it goes and how it reports
RESUMABLE_CHANGES = {"out", "frames", "resume", "export_npy", "progress"}


@dataclass(frozen=True)
class CollectConfig:
    """Settings of `genie collect`. With no flags at all it runs the original Genie-Opt job:
    5000 frames into coinrun_data/ plus coinrun_data/training_data.npy."""

    out: str = "coinrun_data"
    """dataset directory to create (or to continue with --resume)"""
    frames: int = 5000
    """number of frames to collect; episodes still running when it is reached are kept, marked truncated"""
    num_envs: int = 64
    """number of levels stepped together in one procgen call"""
    policy: str = "sticky"
    """behaviour policy: random, sticky, sb3:PATH or sb3:ALGO:PATH (ALGO in ppo, a2c, dqn)"""
    sticky_prob: float = 0.75
    """sticky policy: probability of repeating the previous action"""
    seed: int = 0
    """seed of the levels and of the policy"""
    distribution_mode: DistributionMode = "easy"
    """difficulty: easy or hard"""
    game: str = DEFAULT_GAME
    """the Procgen game to collect (one of the 16; the manifest records it)"""
    env_id: str | None = None
    """collect a Gymnasium env of your own instead of Procgen: an id `gymnasium.make` takes (`module:Id` imports
    the module that registers it; `gym:ID` an old-gym env through shimmy), with RGB uint8 frames (resized to
    64x64) and Discrete actions; --game and the level flags do not apply"""
    env_kwargs: str = "{}"
    """with --env-id: keyword arguments of gymnasium.make, as a JSON object"""
    start_level: int = 0
    """first level seed"""
    num_levels: int = 0
    """number of distinct levels (0 = unbounded)"""
    val_fraction: float = 0.05
    """fraction of levels (by level seed) put in the validation split"""
    shard_frames: int = 20_000
    """frames per shard (about 250 MB of frames at 64x64x3)"""
    max_episode_frames: int = PROCGEN_TIMEOUT
    """longer episodes are split; the first part is marked truncated"""
    resume: bool = False
    """continue an interrupted collection in --out instead of starting a new one"""
    export_npy: str | None = None
    """also write the first --frames frames as one (N, 64, 64, 3) uint8 .npy (the original script's output)"""
    progress: bool = True
    """show a tqdm progress bar"""

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {self.frames}")
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be >= 1, got {self.num_envs}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_frames < 1:
            raise ValueError(f"--shard-frames must be >= 1, got {self.shard_frames}")
        if not 1 <= self.max_episode_frames <= PROCGEN_TIMEOUT:
            raise ValueError(f"--max-episode-frames must be in [1, {PROCGEN_TIMEOUT}], got {self.max_episode_frames}")
        self.levels  # noqa: B018  (validates the game and the level range)
        if self.env_id is not None:
            if self.game != DEFAULT_GAME:
                raise ValueError(f"--env-id {self.env_id} and --game {self.game}: collect one or the other")
            parse_env_kwargs(self.env_kwargs)
        elif self.env_kwargs != "{}":
            raise ValueError("--env-kwargs needs --env-id (they are the kwargs of that env)")
        if self.policy not in ("random", "sticky") and not self.policy.startswith("sb3:"):
            raise ValueError(f"unknown --policy {self.policy!r}: use random, sticky or sb3:PATH")

    @property
    def levels(self) -> LevelConfig:
        return LevelConfig(self.distribution_mode, self.start_level, self.num_levels, game=self.game)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (recorded in the manifest; the
        --env-id fields only when set, so collections from before them still resume)."""
        user = () if self.env_id is not None else ("env_id", "env_kwargs")
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES and k not in user}

    def env_record(self) -> dict[str, Any]:
        """What the manifest's `env` records: the Procgen game and levels, or the user's env."""
        if self.env_id is not None:
            return user_game_record(self.env_id, parse_env_kwargs(self.env_kwargs))
        return {"env_name": self.game, **asdict(self.levels)}


class _ArrayPool:
    """Recycled sets of shard arrays: allocating (and page-faulting) fresh memory per shard is slow."""

    def __init__(self, capacity: int, max_sets: int) -> None:
        self.capacity = capacity
        self.max_sets = max_sets
        self.allocated = 0
        self.free: queue.Queue = queue.Queue()

    def take(self) -> dict[str, np.ndarray]:
        """A free set; blocks until the writer returns one when `max_sets` are in use."""
        try:
            return self.free.get_nowait()
        except queue.Empty:
            if self.allocated < self.max_sets:
                self.allocated += 1
                return {k: np.empty((self.capacity, *row), dtype) for k, (dtype, row) in SCHEMAS["frames"].items()}
            return self.free.get()

    def give(self, arrays: dict[str, np.ndarray]) -> None:
        self.free.put(arrays)


class _ShardBuffer:
    """Rows of whole episodes for one split, waiting to become a shard."""

    def __init__(self, pool: _ArrayPool) -> None:
        self.pool = pool
        self.arrays = pool.take()
        self.n = 0

    def append(self, episode: dict[str, np.ndarray]) -> None:
        length = len(episode["actions"])
        if self.n + length > len(self.arrays["actions"]):  # rare: many episodes cut at once
            grown = {k: np.empty((2 * (self.n + length), *a.shape[1:]), a.dtype) for k, a in self.arrays.items()}
            for k, a in grown.items():
                a[: self.n] = self.arrays[k][: self.n]
            self.arrays = grown
        for key, arr in self.arrays.items():
            arr[self.n : self.n + length] = episode[key]
        self.n += length

    def hand_off(self) -> tuple[dict[str, np.ndarray], int]:
        """Give the filled arrays away (the writer returns them to the pool) and start a new set."""
        arrays, n = self.arrays, self.n
        self.arrays, self.n = self.pool.take(), 0
        return arrays, n


class Collector:
    """Runs one collection (see the module docstring) with `policy`, the behaviour policy `cfg.policy`
    names (`genie_env.agents.policies.make_policy` builds it); `run()` returns the final manifest."""

    def __init__(self, cfg: CollectConfig, policy: Policy) -> None:
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.policy = policy
        e, cap = cfg.num_envs, cfg.max_episode_frames
        self.ep_frames = np.empty((e, cap, *FRAME_SHAPE), np.uint8)
        self.ep_actions = np.zeros((e, cap), np.int64)
        self.ep_rewards = np.zeros((e, cap), np.float32)
        self.ep_len = np.zeros(e, np.int64)
        self.ep_level = np.zeros(e, np.int64)
        self.first = np.ones(e, bool)
        self.start_states: list[bytes] = []  # procgen state of each env where its in-flight episode began
        self.next_episode_id = 0
        self.kept = {"frames": 0, "episodes": 0}
        self.shard_index = 0
        self.shards: list[ShardInfo] = []  # owned by the writer thread once the run starts
        self.resume_name: str | None = None
        # two sets filling (train, val) and up to two being written
        self.pool = _ArrayPool(cfg.shard_frames + cap, max_sets=4)
        self.buffers = {s: _ShardBuffer(self.pool) for s in ("train", "val")}
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self.pending: list[Future] = []
        self.env = None
        self.frames_now: np.ndarray | None = None
        self.user = cfg.env_id is not None
        self.env_record = cfg.env_record()

    # ----------------------------------------------------------------------------- set-up
    def _start_fresh(self) -> None:
        if (self.root / "manifest.json").exists():
            raise DatasetError(
                f"{self.root} already holds a dataset: pass --resume to continue it, or choose another --out"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._start_env()

    def _start_env(self, episodes_started: int = 0) -> None:
        if self.user:
            kwargs = parse_env_kwargs(self.cfg.env_kwargs)
            self.env = UserGameBatch(self.cfg.env_id, kwargs, self.cfg.num_envs, self.cfg.seed, episodes_started)
        else:
            self.env = make_procgen(self.cfg.num_envs, self.cfg.seed, self.cfg.levels)
        _, obs, _ = self.env.observe()
        self.frames_now = obs["rgb"].copy()
        self.ep_level[:] = [i["level_seed"] for i in self.env.get_info()]
        self.start_states = [b""] * self.cfg.num_envs if self.user else self.env.get_state()

    def _start_resumed(self) -> Manifest | None:
        """Restore the state saved with the last commit; returns the manifest if it is already complete."""
        manifest = read_manifest(self.root, kind="frames")
        # datasets collected before --game existed are CoinRun's
        diff = resume_mismatches({"game": DEFAULT_GAME, **manifest.collect}, self.cfg.identity())
        if diff:
            raise DatasetError(
                f"--resume with different settings than {self.root} was collected with (dataset vs now: "
                + "; ".join(diff)
                + ")"
            )
        if manifest.complete:
            return manifest
        self.resume_name = manifest.resume_state
        removed = remove_orphans(self.root, manifest, keep={self.resume_name} if self.resume_name else set())
        if removed:
            logger.info("removed files a killed run left behind: %s", removed)
        if self.resume_name is None:  # killed before the first commit: nothing to continue from
            self._start_env()
            return None
        self.shards = list(manifest.shards)
        state = manifest.state
        self.next_episode_id = state["next_episode_id"]
        self.kept = dict(state["kept"])
        self.shard_index = state["shard_index"]
        path = self.root / self.resume_name
        try:
            with np.load(path, allow_pickle=False) as z:
                snapshot = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DatasetError(f"corrupt resume state {path}: {e}") from e
        self._restore(snapshot, path)
        self.policy.set_state(state["policy"])
        logger.info("resuming %s at %d frames, %d shards", self.root, self.kept["frames"], len(self.shards))
        return None

    # ------------------------------------------------------------------------ main loop
    def run(self) -> Manifest:
        """Collect (or continue) into `cfg.out`, locked meanwhile: a second collection into it is refused."""
        with DirLock(self.root):
            return self._run()

    def _run(self) -> Manifest:
        cfg = self.cfg
        if cfg.resume:
            done_manifest = self._start_resumed()
            if done_manifest is not None:
                logger.info("%s is already complete (%d frames)", self.root, done_manifest.counts["frames"])
                if cfg.export_npy:
                    export_npy(self.root, Path(cfg.export_npy), cfg.frames)
                return done_manifest
        else:
            self._start_fresh()
            self._submit_commit([], None, complete=False)  # the manifest exists from the start
        arange = np.arange(cfg.num_envs)
        bar = tqdm(total=cfg.frames, initial=min(self.kept["frames"], cfg.frames), disable=not cfg.progress,
                   unit="frame", desc=f"collect {self.root.name}", smoothing=0.05)  # fmt: skip
        try:
            while self.kept["frames"] < cfg.frames:
                actions = self.policy.act(self.frames_now, self.first)
                self.ep_frames[arange, self.ep_len] = self.frames_now
                self.ep_actions[arange, self.ep_len] = actions
                self.env.act(actions.astype(np.int32))
                rew, obs, first = self.env.observe()
                self.ep_rewards[arange, self.ep_len] = rew
                self.ep_len += 1
                self.frames_now = obs["rgb"]
                self.first = first.astype(bool)
                cut = self.first | (self.ep_len >= cfg.max_episode_frames)
                stepped = self.kept["frames"] + int(self.ep_len.sum())
                bar.update(min(stepped, cfg.frames) - bar.n)
                if stepped >= cfg.frames:
                    cut = self.ep_len > 0  # budget reached: episodes still running end here, truncated
                if cut.any():
                    self._finish_episodes(np.flatnonzero(cut))
                    if any(b.n >= cfg.shard_frames for b in self.buffers.values()):
                        self._flush(complete=False)
            self._flush(complete=True)
            self._drain()
        finally:
            bar.close()
            self.writer.shutdown(wait=True)
            if self.env is not None:
                self.env.close()
        manifest = read_manifest(self.root)
        if cfg.export_npy:
            export_npy(self.root, Path(cfg.export_npy), cfg.frames)
        return manifest

    def _finish_episodes(self, envs: np.ndarray) -> None:
        """Move the episodes cut this step (in env order) into their split's shard buffer.

        An episode the game ended is terminated, or truncated at procgen's 1000-step limit (a user's env:
        when it says truncated); one cut by `max_episode_frames` or by the end of collection is truncated.
        """
        info = self.env.get_info()
        for e in envs:
            length = int(self.ep_len[e])
            ended = bool(self.first[e])
            if self.user:
                truncated = not ended or info[e]["prev_truncated"]
            else:
                complete = ended and bool(info[e]["prev_level_complete"])
                truncated = (ended and length >= PROCGEN_TIMEOUT and not complete) or not ended
            episode = {
                "frames": self.ep_frames[e, :length],
                "actions": self.ep_actions[e, :length],
                "rewards": self.ep_rewards[e, :length],
                "terminations": np.zeros(length, bool),
                "truncations": np.zeros(length, bool),
                "episode_ids": np.full(length, self.next_episode_id, np.int64),
                "level_seeds": np.full(length, self.ep_level[e], np.int64),
            }
            episode["terminations"][-1] = ended and not truncated
            episode["truncations"][-1] = truncated
            self.buffers[split_of(self.ep_level[e], self.cfg.val_fraction)].append(episode)
            self.kept["frames"] += length
            self.kept["episodes"] += 1
            self.next_episode_id += 1
            self.ep_len[e] = 0
            if ended:
                self.ep_level[e] = int(info[e]["level_seed"])
            if not self.user:
                self.start_states[e] = env_state(self.env, e)

    # ------------------------------------------------------------------------- commits
    def _flush(self, complete: bool) -> None:
        """Hand every non-empty shard buffer to the writer, with the state to resume from."""
        jobs = []
        for split, buf in self.buffers.items():
            if buf.n:
                arrays, n = buf.hand_off()
                jobs.append((f"shard_{self.shard_index:06d}_{split}", split, arrays, n))
                self.shard_index += 1
        self._submit_commit(jobs, None if complete else self._snapshot(), complete)

    def _snapshot(self) -> dict[str, np.ndarray]:
        """What `_restore` needs to continue from this step: each env's procgen state where its
        in-flight episode began, plus that episode's first frame, actions and rewards (a few MB;
        the other frames are regenerated by replaying the actions). A user's env: how many episodes it started."""
        if self.user:
            return {"episodes_started": np.array(self.env.started, np.int64)}
        lens = self.ep_len
        envs = range(len(lens))
        return {
            "start_states": np.frombuffer(b"".join(self.start_states), np.uint8),
            "start_offsets": np.r_[0, np.cumsum([len(s) for s in self.start_states])].astype(np.int64),
            "first_frames": self.ep_frames[:, 0].copy(),
            "frames_now": self.frames_now.copy(),
            "ep_len": lens.copy(),
            "ep_level": self.ep_level.copy(),
            "first": self.first.copy(),
            "inflight_actions": np.concatenate([self.ep_actions[e, : lens[e]] for e in envs]),
            "inflight_rewards": np.concatenate([self.ep_rewards[e, : lens[e]] for e in envs]),
        }

    def _restore(self, snap: dict[str, np.ndarray], path: Path) -> None:
        """Rebuild the in-flight episodes by replaying their actions from their start states (a user's env:
        drop them and start new episodes, seeded after every one started before)."""
        if self.user:
            dropped = int(self.ep_len.sum())
            self.ep_len[:], self.first[:] = 0, True
            self._start_env(int(snap["episodes_started"]))
            logger.info("%s: a user's env cannot be replayed: %d frames of episodes in flight are collected again "
                        "from new episodes", path, dropped)  # fmt: skip
            return
        offsets = snap["start_offsets"]
        self.start_states = [snap["start_states"][a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
        self.ep_len[:], self.ep_level[:], self.first[:] = snap["ep_len"], snap["ep_level"], snap["first"]
        self.frames_now = snap["frames_now"].copy()
        starts = np.r_[0, np.cumsum(self.ep_len)]
        now_states = []
        for e in range(self.cfg.num_envs):
            a, b = starts[e], starts[e + 1]
            self.ep_actions[e, : b - a] = snap["inflight_actions"][a:b]
            self.ep_rewards[e, : b - a] = snap["inflight_rewards"][a:b]
            if b == a:
                now_states.append(self.start_states[e])
                continue
            self.ep_frames[e, 0] = snap["first_frames"][e]
            replay = make_procgen(1, self.cfg.seed, self.cfg.levels)
            replay.set_state([self.start_states[e]])
            for t in range(b - a):
                replay.act(self.ep_actions[e, t : t + 1].astype(np.int32))
                rew, obs, _ = replay.observe()
                if rew[0] != self.ep_rewards[e, t]:
                    raise DatasetError(f"resume state {path}: replaying env {e} diverged at step {t}")
                if t + 1 < b - a:
                    self.ep_frames[e, t + 1] = obs["rgb"][0]
            if not np.array_equal(obs["rgb"][0], self.frames_now[e]):
                raise DatasetError(f"resume state {path}: replaying env {e} did not reach the saved frame")
            now_states.append(replay.get_state()[0])
            replay.close()
        self.env = make_procgen(self.cfg.num_envs, self.cfg.seed, self.cfg.levels)
        self.env.set_state(now_states)

    def _submit_commit(self, jobs: list, snapshot: dict[str, np.ndarray] | None, complete: bool) -> None:
        header = Manifest(
            kind="frames", complete=complete, env=self.env_record,
            collect=self.cfg.identity(),
            state={
                "next_episode_id": self.next_episode_id,
                "kept": dict(self.kept),
                "shard_index": self.shard_index,
                "policy": json.loads(json.dumps(self.policy.get_state())),
            },
        )  # fmt: skip
        for fut in self.pending:
            if fut.done():
                fut.result()  # re-raise a writer error here, in the main thread
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(self.writer.submit(self._commit, jobs, snapshot, header))

    def _commit(self, jobs: list, snapshot: dict[str, np.ndarray] | None, header: Manifest) -> None:
        """Writer thread: shards, then the resume state, then the manifest (the commit point)."""
        for name, split, arrays, n in jobs:
            self.shards.append(write_shard(self.root, name, split, {k: a[:n] for k, a in arrays.items()}))
            self.pool.give(arrays)
        old = self.resume_name
        if snapshot is not None:
            self.resume_name = f"resume_{header.state['shard_index']:06d}.npz"
            with atomic_path(self.root / self.resume_name) as tmp, open(tmp, "wb") as f:
                np.savez(f, **snapshot)
        else:
            self.resume_name = None
        write_manifest(self.root, dataclasses.replace(header, resume_state=self.resume_name, shards=tuple(self.shards)))
        if old and old != self.resume_name:
            (self.root / old).unlink(missing_ok=True)

    def _drain(self) -> None:
        for fut in self.pending:
            fut.result()
        self.pending = []


def collect(cfg: CollectConfig, policy: Policy) -> Manifest:
    """Run a collection with `policy` (the behaviour policy `cfg.policy` names) and return its manifest."""
    start = time.perf_counter()
    manifest = Collector(cfg, policy).run()
    logger.info("collected %d frames in %.1fs", manifest.counts["frames"], time.perf_counter() - start)
    return manifest


def export_npy(root: Path, path: Path, frames: int) -> np.ndarray:
    """Write the dataset's first `frames` frames (manifest order) as one uint8 (N, 64, 64, 3) .npy, atomically."""
    manifest = read_manifest(root, kind="frames")
    parts, total = [], 0
    for info in manifest.shards:
        if total >= frames:
            break
        arr = load_shard(root, info)["frames"][: frames - total]
        parts.append(arr)
        total += len(arr)
    if total < frames:
        raise DatasetError(f"{root} holds only {total} frames, cannot export {frames}")
    out = np.concatenate(parts)
    with atomic_path(path) as tmp:
        save_array(tmp, out)
    return out
