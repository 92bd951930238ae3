"""A user's own game as the real env agents train on and are evaluated on (`UserGameVectorEnv`), and its
frames at 64x64 for a single env (`ResizeFrames`); see `genie_env.user_game` for what such a game is and
how its frames are resized.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from genie_env.envs.real import ProcgenVectorEnv
from genie_env.games import FRAME_SHAPE, MAX_RAND_SEED, LevelConfig, check_actions, is_user_game
from genie_env.user_game import make_user_env, parse_env_kwargs, resize_frame


class ResizeFrames(gymnasium.ObservationWrapper):
    """A user's env with 64x64 frames (`resize_frame`), so an agent trained in its dream plays it unchanged."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return resize_frame(observation)


class UserGameVectorEnv(VectorEnv):
    """N copies of a user's env with 64x64 frames (`ResizeFrames`), as `ProcgenVectorEnv` plays Procgen: what
    agents train on (`genie train-agent --env real --game ID`) and are evaluated on. Finished episodes restart
    within the same step (`AutoresetMode.SAME_STEP`, last frame in `info["final_obs"]`), each with a reset
    seed drawn from `levels`' range (`start_level` .. + `num_levels`; unbounded when 0) by the generator
    `reset(seed=s)` seeds. `info` holds each env's `level_seed` (of the episode that just ended, where one
    did) and `prev_level_complete`: 1 where the episode that just ended had a positive return (the nearest
    a game of unknown rules comes to "level completed")."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, env_id: str, env_kwargs: dict[str, Any] | None = None,
                 levels: LevelConfig | None = None) -> None:  # fmt: skip
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

    def _draw_seed(self) -> int:
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


def real_vector_env(game: str, num_envs: int, levels: LevelConfig | None = None, env_kwargs: str = "{}") -> VectorEnv:
    """The real game agents train on and are evaluated on: `ProcgenVectorEnv` for a Procgen game,
    `UserGameVectorEnv` for a user's env id (with `env_kwargs`, a JSON object); `levels` gives the level
    (reset seed) range and difficulty, its `game` field unused."""
    levels = levels or LevelConfig()
    if is_user_game(game):
        return UserGameVectorEnv(num_envs, game, parse_env_kwargs(env_kwargs), levels)
    lv = levels
    return ProcgenVectorEnv(num_envs, lv.distribution_mode, lv.start_level, lv.num_levels, game=game)
