"""Adapter from our gymnasium `VectorEnv`s to Stable-Baselines3's `VecEnv` (SB3 takes no gymnasium vector envs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from genie_env._compat import import_gym_quietly

import_gym_quietly()
from stable_baselines3.common.vec_env import VecEnv  # noqa: E402


class SB3VecEnv(VecEnv):
    """Wrap a gymnasium `VectorEnv` that autoresets in the same step as an SB3 `VecEnv`.

    SB3's contract: `step_wait` returns the next episode's first frame for finished envs, the final
    frame in `infos[i]["terminal_observation"]`, and `infos[i]["TimeLimit.truncated"] = True` when
    the episode was cut by a time limit (so the value of that frame is bootstrapped). Every other
    info key of env i (`level_seed`, `episode_id`, ...) is copied into `infos[i]`.

    Raises ValueError for a vector env whose autoreset mode is not `SAME_STEP`.
    """

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs a vector env that autoresets in the same step "
                f"(metadata['autoreset_mode'] == AutoresetMode.SAME_STEP), got {mode!r}"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.render_mode = venv.render_mode

    def reset(self) -> np.ndarray:
        seeds = [s for s in self._seeds if s is not None]
        seed = [int(s) for s in self._seeds] if len(seeds) == self.num_envs else None
        obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        infos = self._split_infos(info)
        final_obs = info.get("final_obs")
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = final_obs[i] if final_obs is not None else obs[i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, infos

    def _split_infos(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """gymnasium's dict of batched arrays (with `_key` masks) -> SB3's list of per-env dicts."""
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in info.items():
            if key.startswith("_") or key in ("final_obs", "final_info"):
                continue
            mask = info.get(f"_{key}", np.ones(self.num_envs, bool))
            for i in np.flatnonzero(mask):
                infos[i][key] = value[i]
        return infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
