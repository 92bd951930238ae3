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


class ConcatVecEnv(VecEnv):
    """SB3 `VecEnv`s with the same spaces stepped side by side as one: env indices run through the first
    one's envs, then the second's, and so on (Dyna's real envs beside the dreams, `AgentConfig.real_envs`).
    `seed(s)` seeds part k from s plus the number of envs before it, so every env keeps its own seed."""

    def __init__(self, parts: Sequence[VecEnv]) -> None:
        if not parts:
            raise ValueError("ConcatVecEnv needs at least one VecEnv")
        first = parts[0]
        for part in parts[1:]:
            if part.observation_space != first.observation_space or part.action_space != first.action_space:
                raise ValueError(
                    f"ConcatVecEnv needs parts with the same spaces: {part.observation_space}, {part.action_space} "
                    f"against {first.observation_space}, {first.action_space}"
                )
        self.parts = list(parts)
        self.bounds = np.cumsum([0] + [p.num_envs for p in self.parts])
        super().__init__(int(self.bounds[-1]), first.observation_space, first.action_space)
        self.render_mode = first.render_mode

    def _slices(self):
        return [slice(int(a), int(b)) for a, b in zip(self.bounds[:-1], self.bounds[1:])]

    def reset(self) -> np.ndarray:
        for part, where in zip(self.parts, self._slices()):
            seeds = self._seeds[where]
            if all(s is not None for s in seeds):
                part.seed(int(seeds[0]))  # the parts seed env i of theirs with seed + i, as SB3 does
        self._reset_seeds()
        self._reset_options()
        return np.concatenate([part.reset() for part in self.parts])

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions).reshape(self.num_envs)
        for part, where in zip(self.parts, self._slices()):
            part.step_async(actions[where])

    def step_wait(self):
        results = [part.step_wait() for part in self.parts]
        obs, rewards, dones = (np.concatenate([r[k] for r in results]) for k in range(3))
        return obs, rewards, dones, [info for r in results for info in r[3]]

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [image for part in self.parts for image in part.get_images()]

    def _locate(self, indices) -> list[tuple[VecEnv, int]]:
        """(part, index within it) of each global env index."""
        out = []
        for i in self._get_indices(indices):
            k = int(np.searchsorted(self.bounds, i, side="right")) - 1
            out.append((self.parts[k], i - int(self.bounds[k])))
        return out

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [part.get_attr(attr_name, [j])[0] for part, j in self._locate(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        for part, j in self._locate(indices):
            part.set_attr(attr_name, value, [j])

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [part.env_method(method_name, *method_args, indices=[j], **method_kwargs)[0]
                for part, j in self._locate(indices)]  # fmt: skip

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [part.env_is_wrapped(wrapper_class, [j])[0] for part, j in self._locate(indices)]
