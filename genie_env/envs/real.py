"""The real Procgen games as Gymnasium envs, single and natively batched: `Procgen-v0` (any of the 16
games, `game=NAME`) and `ProcgenCoinRun-v0` (CoinRun, the project's first game).

The classes are thin wrappers over procgen's gym3 interface (`procgen.ProcgenGym3Env`): the
batched one steps all N levels in one C call, which is what makes collection fast.

Procgen auto-resets inside its C step: when an episode ends, the frame it returns is already the
first frame of the next level, and the frame after the last transition is never rendered. So
`final_obs` (vector env) and SB3's `terminal_observation` hold the last frame the agent saw
before its final action, the nearest real frame there is.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from genie_env.games import (
    ACTION_MEANINGS,
    DEFAULT_GAME,
    MAX_RAND_SEED,
    PROCGEN_TIMEOUT,
    LevelConfig,
    action_space,
    check_action,
    check_actions,
    initial_state,
    make_procgen,
    observation_space,
    rand_seed_for,
)


def vector_seeds(seed: int | list[int] | None, num_envs: int) -> list[int | None]:
    """Per-env seeds of a vector env's `reset(seed=...)`: s gives s, s+1, ...; a list gives itself."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"reset got {len(seeds)} seeds for {num_envs} envs")
    return seeds


class ProcgenEnv(gym.Env):
    """A Procgen game (`game`, one of the 16 in `PROCGEN_GAMES`), 64x64 RGB, one level at a time.

    ## Action space
    `Discrete(15)`: procgen's button combos, the same for every game, names in `ACTION_MEANINGS`
    (0 LEFT+DOWN, 1 LEFT, 2 LEFT+UP, 3 DOWN, 4 NOOP, 5 UP, 6 RIGHT+DOWN, 7 RIGHT, 8 RIGHT+UP,
    9..14 D A W S Q E, which only some games use).

    ## Observation space
    `Box(0, 255, (64, 64, 3), uint8)`, channels-last RGB.

    ## Rewards and episode end
    The game's own (procgen's): for example CoinRun's +10 at the coin ends the episode, while
    StarPilot and BigFish reward many times per episode. Terminated when the game ends the episode;
    truncated after 1000 steps (procgen's own time limit, the same for every game).

    ## Seeding
    `reset(seed=s)` picks the level and all its randomness from `s`: same seed, same level, same
    frames. `reset()` after an episode ended continues procgen's own level sequence (so a single
    env reset with seed `s` plays the same levels as slot i of the batched env seeded with `s`).

    ## Info
    `level_seed` (the level being played), `prev_level_complete` (1 on the step that completed the
    level), `episode_id` (counts episodes in this env; a seeded reset starts it again at 0).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}

    def __init__(
        self,
        distribution_mode: str = "easy",
        start_level: int = 0,
        num_levels: int = 0,
        use_sequential_levels: bool = False,
        render_mode: str | None = None,
        *,
        game: str = DEFAULT_GAME,
    ) -> None:
        self.levels = LevelConfig(distribution_mode, start_level, num_levels, use_sequential_levels, game)
        self.game = game
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}: use one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.action_meanings = ACTION_MEANINGS
        self._procgen = None
        self._obs: np.ndarray | None = None
        self._pending_reset = False  # procgen already moved to the next level
        self._episode_id = -1
        self._episode_len = 0
        self._level_seed = 0
        self._window = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._pending_reset:
            if self._procgen is not None:
                self._procgen.close()
            rand_seed = rand_seed_for(seed) if seed is not None else int(self.np_random.integers(MAX_RAND_SEED))
            self._procgen = make_procgen(1, rand_seed, self.levels)
            _, obs, _ = self._procgen.observe()
            self._obs = obs["rgb"][0].copy()
        self._pending_reset = False
        self._episode_id = 0 if seed is not None else self._episode_id + 1
        self._episode_len = 0
        self._level_seed = int(self._procgen.get_info()[0]["level_seed"])
        if self.render_mode == "human":
            self.render()
        return self._obs.copy(), {"level_seed": self._level_seed, "episode_id": self._episode_id}

    def step(self, action):
        if self._procgen is None or self._pending_reset:
            raise RuntimeError("step() called before reset() or after the episode ended: call reset() first")
        self._procgen.act(np.array([check_action(action)], dtype=np.int32))
        rew, obs, first = self._procgen.observe()
        info = self._procgen.get_info()[0]
        self._episode_len += 1
        done = bool(first[0])
        complete = int(info["prev_level_complete"]) if done else 0
        truncated = done and self._episode_len >= PROCGEN_TIMEOUT and not complete
        terminated = done and not truncated
        step_info = {"level_seed": self._level_seed, "prev_level_complete": complete, "episode_id": self._episode_id}
        if done:
            self._pending_reset = True
            # The new level's first frame is kept for the next reset(); the agent sees the last real frame.
            next_obs = obs["rgb"][0].copy()
            obs_out, self._obs = self._obs, next_obs
        else:
            self._obs = obs["rgb"][0].copy()
            obs_out = self._obs
        if self.render_mode == "human":
            self.render()
        return obs_out.copy(), float(rew[0]), terminated, truncated, step_info

    def render(self):
        if self._obs is None:
            raise RuntimeError("render() called before reset()")
        if self.render_mode == "rgb_array":
            return self._obs.copy()
        if self.render_mode == "human":
            from genie_env.envs.viewer import show_frame

            self._window = show_frame(self._window, self._obs, f"Procgen {self.game}", self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._procgen is not None:
            self._procgen.close()
            self._procgen = None
        if self._window is not None:
            self._window.close()
            self._window = None


class ProcgenVectorEnv(VectorEnv):
    """N levels of a Procgen game stepped in one procgen call (`gymnasium.make_vec("Procgen-v0",
    num_envs=N, game=NAME)`).

    Spaces per env are those of `ProcgenEnv`. Finished envs reset within the same step
    (`AutoresetMode.SAME_STEP`): the returned frame is the next level's first frame, and
    `info["final_obs"][i]` holds the last frame env i saw before its final action (procgen never
    renders the frame after it). `reset(seed=s)` gives env i the levels a single env reset with
    `s + i` plays (or `seed[i]` when a list is given). Info keys: `level_seed`,
    `prev_level_complete`, `episode_id` (unique across the N envs; a seeded reset starts the
    count again at 0).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        distribution_mode: str = "easy",
        start_level: int = 0,
        num_levels: int = 0,
        use_sequential_levels: bool = False,
        render_mode: str | None = None,
        *,
        game: str = DEFAULT_GAME,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r} for the batched env: use 'rgb_array'")
        self.levels = LevelConfig(distribution_mode, start_level, num_levels, use_sequential_levels, game)
        self.game = game
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.action_meanings = ACTION_MEANINGS
        self._procgen = None
        self._obs = np.zeros(self.observation_space.shape, np.uint8)
        self._episode_len = np.zeros(num_envs, np.int64)
        self._episode_id = np.zeros(num_envs, np.int64)
        self._level_seed = np.zeros(num_envs, np.int64)
        self._next_episode_id = 0

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        seeds = vector_seeds(seed, self.num_envs)
        super().reset(seed=None if seed is None else seeds[0])
        rand_seeds = [rand_seed_for(s) if s is not None else int(self.np_random.integers(MAX_RAND_SEED)) for s in seeds]
        if self._procgen is not None:
            self._procgen.close()
        if seed is not None:
            self._next_episode_id = 0
        self._procgen = make_procgen(self.num_envs, rand_seeds[0], self.levels)
        if self.num_envs > 1:
            # Each slot gets the exact state of a single env created with its own rand_seed.
            self._procgen.set_state([initial_state(r, self.levels) for r in rand_seeds])
        _, obs, _ = self._procgen.observe()
        self._obs = obs["rgb"].copy()
        self._episode_len[:] = 0
        self._episode_id[:] = np.arange(self._next_episode_id, self._next_episode_id + self.num_envs)
        self._next_episode_id += self.num_envs
        self._level_seed[:] = [int(i["level_seed"]) for i in self._procgen.get_info()]
        info = {"level_seed": self._level_seed.copy(), "episode_id": self._episode_id.copy()}
        return self._obs.copy(), info

    def step(self, actions):
        if self._procgen is None:
            raise RuntimeError("step() called before reset(): call reset() first")
        self._procgen.act(check_actions(actions, self.num_envs))
        rew, obs, first = self._procgen.observe()
        raw_info = self._procgen.get_info()
        self._episode_len += 1
        done = first.astype(bool)
        complete = np.array([int(i["prev_level_complete"]) for i in raw_info], np.int64) * done
        truncated = done & (self._episode_len >= PROCGEN_TIMEOUT) & (complete == 0)
        terminated = done & ~truncated
        info: dict[str, Any] = {
            "level_seed": self._level_seed.copy(),
            "prev_level_complete": complete,
            "episode_id": self._episode_id.copy(),
        }
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = self._obs[i].copy()
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            n_new = int(done.sum())
            self._episode_id[done] = np.arange(self._next_episode_id, self._next_episode_id + n_new)
            self._next_episode_id += n_new
            self._episode_len[done] = 0
            self._level_seed[done] = [int(raw_info[i]["level_seed"]) for i in np.flatnonzero(done)]
        self._obs = obs["rgb"].copy()
        return self._obs.copy(), rew.astype(np.float32), terminated, truncated, info

    def get_states(self) -> list[bytes]:
        """Every env's exact procgen state (its level, every object, the game's RNG), for `set_states`."""
        if self._procgen is None:
            raise RuntimeError("get_states() called before reset(): call reset() first")
        return list(self._procgen.get_state())

    def set_states(self, states: list[bytes]) -> np.ndarray:
        """Put env i in the exact procgen state `states[i]` (from `get_states` of this game and difficulty)
        and return the frames there; the episodes' step counts (for the 1,000-step timeout) start again."""
        if self._procgen is None:
            raise RuntimeError("set_states() called before reset(): call reset() first")
        if len(states) != self.num_envs:
            raise ValueError(f"set_states needs one state per env ({self.num_envs}), got {len(states)}")
        self._procgen.set_state(list(states))
        _, obs, _ = self._procgen.observe()
        self._obs = obs["rgb"].copy()
        self._episode_len[:] = 0
        self._level_seed[:] = [int(i["level_seed"]) for i in self._procgen.get_info()]
        return self._obs.copy()

    def render(self):
        if self.render_mode == "rgb_array":
            return tuple(self._obs.copy())
        return None

    def close_extras(self, **kwargs) -> None:
        if self._procgen is not None:
            self._procgen.close()
            self._procgen = None


class ProcgenCoinRunEnv(ProcgenEnv):
    """Procgen CoinRun, 64x64 RGB, one level at a time.

    ## Action space
    `Discrete(15)`: procgen's button combos, names in `ACTION_MEANINGS`
    (0 LEFT+DOWN, 1 LEFT, 2 LEFT+UP, 3 DOWN, 4 NOOP, 5 UP, 6 RIGHT+DOWN, 7 RIGHT, 8 RIGHT+UP,
    9..14 D A W S Q E, which do nothing in CoinRun).

    ## Observation space
    `Box(0, 255, (64, 64, 3), uint8)`, channels-last RGB.

    ## Rewards
    +10 on reaching the coin, 0 otherwise.

    ## Episode end
    Terminated on reaching the coin or dying (falling into lava, touching an enemy or saw);
    truncated after 1000 steps (procgen's own time limit).

    ## Seeding
    `reset(seed=s)` picks the level and all its randomness from `s`: same seed, same level, same
    frames. `reset()` after an episode ended continues procgen's own level sequence (so a single
    env reset with seed `s` plays the same levels as slot i of the batched env seeded with `s`).

    ## Info
    `level_seed` (the level being played), `prev_level_complete` (1 on the step that reached the
    coin), `episode_id` (counts episodes in this env; a seeded reset starts it again at 0).
    """

    def __init__(self, distribution_mode: str = "easy", start_level: int = 0, num_levels: int = 0,
                 use_sequential_levels: bool = False, render_mode: str | None = None) -> None:  # fmt: skip
        super().__init__(distribution_mode, start_level, num_levels, use_sequential_levels, render_mode, game="coinrun")


class ProcgenCoinRunVectorEnv(ProcgenVectorEnv):
    """N CoinRun levels stepped in one procgen call (`gymnasium.make_vec("ProcgenCoinRun-v0", num_envs=N)`);
    `ProcgenVectorEnv` with the game fixed to CoinRun (see `ProcgenCoinRunEnv`)."""

    def __init__(self, num_envs: int, distribution_mode: str = "easy", start_level: int = 0, num_levels: int = 0,
                 use_sequential_levels: bool = False, render_mode: str | None = None) -> None:  # fmt: skip
        super().__init__(num_envs, distribution_mode, start_level, num_levels, use_sequential_levels, render_mode,
                         game="coinrun")  # fmt: skip
