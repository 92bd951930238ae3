"""Your own game: any Gymnasium env with RGB image observations and `Discrete` actions goes through the
same commands as Procgen (`genie collect --env-id ID --env-kwargs '{"size": 5}'`, then the tokenizer,
the dynamics and `GenieEnv-v0`).

- **ID** is anything `gymnasium.make` takes: a registered id, or `module:Id` (gymnasium imports the module
  first, from the working directory or the installed packages: that is where a game of your own registers
  itself; `examples/sprite_game.py` is one). `gym:ID` plays an env written for the old
  `gym` API through shimmy's `GymV26CompatibilityV0`.
- **Frames** become 64x64x3 uint8 by stretching the whole frame (the aspect ratio is not kept: no border
  is cropped and no bars are added), with a box filter when shrinking (each pixel averages the source
  pixels it covers, so thin sprites do not alias away) and nearest neighbour when enlarging (pixel art stays
  sharp). The observation space must be `Box(uint8, (H, W, 3))`.
- **Rewards and ends** are the env's own: `terminated` ends an episode as terminated, `truncated` (its
  time limit) as truncated.
- **Episodes** are collected with reset seeds `1_000_000_000 + seed * 1_000_000 + k` for the k-th episode
  started; they play the part of Procgen's level seeds (the validation split is drawn by them, and
  evaluation plays seeds 1,000,000..1,000,499 by default, which no collection with seed < 1000 reaches).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from PIL import Image

from genie_env.games import FRAME_SHAPE, MAX_RAND_SEED, LevelConfig, check_actions

RESIZE = "stretched to 64x64 (aspect not kept): box filter when shrinking, nearest neighbour when enlarging"
EPISODE_SEED_BASE, EPISODE_SEED_STRIDE = 1_000_000_000, 1_000_000


class UserGameError(ValueError):
    """A user's env that cannot be made, or whose spaces the pipeline cannot learn."""


def parse_env_kwargs(text: str) -> dict[str, Any]:
    """The `--env-kwargs` JSON object; UserGameError naming the problem."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserGameError(f"--env-kwargs is not JSON ({e}): pass an object, e.g. '{{\"size\": 5}}'") from None
    if not isinstance(kwargs, dict):
        raise UserGameError(f"--env-kwargs must be a JSON object, got {type(kwargs).__name__}")
    return kwargs


def make_user_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gymnasium.Env:
    """`gymnasium.make(env_id, **env_kwargs)` (`gym:ID` through shimmy), checked to be learnable: RGB uint8
    frames and Discrete actions. UserGameError naming the env and the problem otherwise."""
    kwargs = dict(env_kwargs or {})
    if ":" in env_id and not env_id.startswith("gym:") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `module:Id` finds a module in the working directory, as `python -m` does
    try:
        if env_id.startswith("gym:"):
            from shimmy import GymV26CompatibilityV0

            env = GymV26CompatibilityV0(env_id=env_id[4:], make_kwargs=kwargs)
        else:
            env = gymnasium.make(env_id, **kwargs)
    except UserGameError:
        raise
    except Exception as e:  # gymnasium raises Error, NameNotFound, ModuleNotFoundError, TypeError for kwargs...
        raise UserGameError(f"cannot make env {env_id!r} with {kwargs}: {type(e).__name__}: {e}") from e
    check_spaces(env, env_id)
    return env


def check_spaces(env: gymnasium.Env, env_id: str) -> None:
    """UserGameError unless `env` has `Box(uint8, (H, W, 3))` observations and `Discrete(n)` actions (start 0)."""
    obs, act = env.observation_space, env.action_space
    if not (isinstance(obs, spaces.Box) and obs.dtype == np.uint8 and len(obs.shape) == 3 and obs.shape[2] == 3):
        raise UserGameError(f"env {env_id!r} observes {obs}: genie-env learns RGB frames, Box(0, 255, (H, W, 3), "
                            "uint8)")  # fmt: skip
    if not isinstance(act, spaces.Discrete) or int(act.start) != 0:
        raise UserGameError(f"env {env_id!r} acts in {act}: genie-env learns Discrete(n) actions numbered from 0")


def resize_frame(frame: np.ndarray) -> np.ndarray:
    """One RGB frame uint8 (H, W, 3) -> uint8 (64, 64, 3), as the module docstring says."""
    frame = np.asarray(frame, np.uint8)
    h, w = FRAME_SHAPE[:2]
    if frame.shape[:2] == (h, w):
        return frame
    shrinking = frame.shape[0] >= h and frame.shape[1] >= w
    method = Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(frame).resize((w, h), method), np.uint8)


class ResizeFrames(gymnasium.ObservationWrapper):
    """A user's env with 64x64 frames (`resize_frame`), so an agent trained in its dream plays it unchanged."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return resize_frame(observation)


class UserGameVectorEnv(VectorEnv):
    """N copies of a user's env with 64x64 frames (`ResizeFrames`), as `ProcgenVectorEnv` plays Procgen: what
    agents train on (`genie train-agent --env real --game ID`) and are evaluated on, and what a collection
    steps (through `UserGameBatch`). Finished episodes restart within the same step
    (`AutoresetMode.SAME_STEP`, last frame in `info["final_obs"]`), each with a reset seed drawn from
    `levels`' range (`start_level` .. + `num_levels`; unbounded when 0) by the generator `reset(seed=s)`
    seeds, or taken from `next_seed()` when given (a collection's sequential seeds). `info` holds each
    env's `level_seed` (of the episode that just ended, where one did) and `prev_level_complete`: 1 where
    the episode that just ended had a positive return (the nearest a game of unknown rules comes to
    "level completed")."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, env_id: str, env_kwargs: dict[str, Any] | None = None,
                 levels: LevelConfig | None = None, next_seed: Callable[[], int] | None = None) -> None:  # fmt: skip
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.envs = [ResizeFrames(make_user_env(env_id, env_kwargs)) for _ in range(num_envs)]
        self.game, self.num_envs = env_id, num_envs
        self.levels = levels or LevelConfig()
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.level_seeds = np.zeros(num_envs, np.int64)
        self.returns = np.zeros(num_envs, np.float64)
        self.rng = np.random.default_rng()
        self.next_seed = next_seed

    def _draw_seed(self) -> int:
        if self.next_seed is not None:
            return int(self.next_seed())
        lv = self.levels
        if lv.num_levels > 0:
            return lv.start_level + int(self.rng.integers(lv.num_levels))
        return int(self.rng.integers(MAX_RAND_SEED))

    def _start(self, i: int) -> np.ndarray:
        self.level_seeds[i], self.returns[i] = self._draw_seed(), 0.0
        return self.envs[i].reset(seed=int(self.level_seeds[i]))[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.rng = np.random.default_rng(seed)
        frames = np.stack([self._start(i) for i in range(self.num_envs)])
        return frames, {"level_seed": self.level_seeds.copy()}

    def step(self, actions):
        actions = check_actions(actions, self.num_envs, int(self.single_action_space.n))
        frames = np.empty((self.num_envs, *FRAME_SHAPE), np.uint8)
        rewards = np.zeros(self.num_envs, np.float32)
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        info: dict[str, Any] = {
            "level_seed": self.level_seeds.copy(),
            "prev_level_complete": np.zeros(self.num_envs, np.int32),
        }
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i, env in enumerate(self.envs):
            frames[i], rewards[i], terminated[i], truncated[i], _ = env.step(int(actions[i]))
            self.returns[i] += rewards[i]
            if terminated[i] or truncated[i]:
                info["prev_level_complete"][i] = int(self.returns[i] > 0)
                final_obs[i] = frames[i].copy()
                frames[i] = self._start(i)
        done = terminated | truncated
        if done.any():
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
        return frames, rewards, terminated, truncated, info

    def close_extras(self, **kwargs) -> None:
        for env in self.envs:
            env.close()


class UserGameBatch:
    """`UserGameVectorEnv` behind procgen's gym3 interface, which the collector drives: `act`, `observe` ->
    (rewards, {"rgb": frames}, first) and `get_info`. An episode that ends is reset at once (its last reward
    is reported with the first frame of the next one, `first` set) with the next episode seed
    (`EPISODE_SEED_BASE + seed * EPISODE_SEED_STRIDE + k`, k counting the episodes started); `get_info`
    gives each env's `level_seed` (its current episode's seed) and whether the episode that just ended was
    `prev_truncated` (cut by the env's time limit) rather than terminated."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], num: int, seed: int, episodes_started: int = 0) -> None:
        self.base, self.started = EPISODE_SEED_BASE + seed * EPISODE_SEED_STRIDE, episodes_started
        self.venv = UserGameVectorEnv(num, env_id, env_kwargs, next_seed=self._next_seed)
        self.frames, _ = self.venv.reset()
        self.rewards = np.zeros(num, np.float32)
        self.first, self.truncated = np.ones(num, bool), np.zeros(num, bool)

    def _next_seed(self) -> int:
        self.started += 1
        return self.base + self.started - 1

    def act(self, actions: np.ndarray) -> None:
        self.frames, self.rewards, terminated, truncated, _ = self.venv.step(actions)
        self.first, self.truncated = terminated | truncated, truncated & ~terminated

    def observe(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        return self.rewards.copy(), {"rgb": self.frames.copy()}, self.first.copy()

    def get_info(self) -> list[dict[str, Any]]:
        return [
            {"level_seed": int(s), "prev_truncated": bool(t)} for s, t in zip(self.venv.level_seeds, self.truncated)
        ]

    def close(self) -> None:
        self.venv.close()


def user_game_record(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a dataset's manifest records of a user's game (its `env`): the id and kwargs, its number of
    actions, its frame shape and how frames were resized."""
    env = make_user_env(env_id, env_kwargs)
    try:
        return {"env_id": env_id, "env_kwargs": env_kwargs, "num_actions": int(env.action_space.n),
                "frame_shape": list(env.observation_space.shape), "resize": RESIZE}  # fmt: skip
    finally:
        env.close()
