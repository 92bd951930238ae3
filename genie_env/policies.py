"""Behaviour policies for collection and evaluation: `random`, `sticky` and `sb3:PATH`.

A policy maps a batch of frames to a batch of actions and can save and restore its random state,
so an interrupted collection resumes exactly where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genie_env._compat import import_gym_quietly
from genie_env.envs.real import NUM_ACTIONS


class Policy(Protocol):
    """Maps frames uint8 (N, 64, 64, 3) and episode-start flags bool (N,) to actions int64 (N,)."""

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


class RandomPolicy:
    """Uniform over the 15 actions at every step."""

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, NUM_ACTIONS, self.num_envs)

    def get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class StickyPolicy(RandomPolicy):
    """Repeats its previous action with probability `repeat_prob`, else draws a uniform one.

    Uniform random actions make the agent jitter in place; repeating them lets it travel, so the
    data covers more of each level. A new episode always starts with a fresh draw.
    """

    def __init__(self, num_envs: int, seed: int = 0, repeat_prob: float = 0.75) -> None:
        if not 0.0 <= repeat_prob < 1.0:
            raise ValueError(f"sticky repeat probability must be in [0, 1), got {repeat_prob}")
        super().__init__(num_envs, seed)
        self.repeat_prob = repeat_prob
        self.prev = np.zeros(num_envs, np.int64)

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        fresh = self.rng.integers(0, NUM_ACTIONS, self.num_envs)
        keep = (self.rng.random(self.num_envs) < self.repeat_prob) & ~first
        self.prev = np.where(keep, self.prev, fresh)
        return self.prev.copy()

    def get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "prev": self.prev.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.prev = np.asarray(state["prev"], np.int64)


SB3_ALGOS = ("ppo", "a2c", "dqn")


class SB3Policy:
    """A saved Stable-Baselines3 model (`sb3:PATH` or `sb3:ALGO:PATH`, ALGO one of ppo, a2c, dqn).

    Actions are sampled (not argmax) from the policy; torch's RNG is seeded and saved for resume.
    """

    def __init__(self, path: str, num_envs: int, seed: int = 0, algo: str = "ppo") -> None:
        import torch

        import_gym_quietly()
        import stable_baselines3

        if algo not in SB3_ALGOS:
            raise ValueError(f"unknown SB3 algorithm {algo!r}: use one of {SB3_ALGOS}")
        if not Path(path).exists():
            raise FileNotFoundError(f"SB3 model {path} does not exist")
        cls = getattr(stable_baselines3, algo.upper())
        try:
            self.model = cls.load(path, device="cpu")
        except Exception as e:
            raise ValueError(f"could not load {path} as an SB3 {algo.upper()} model: {e}") from e
        self.num_envs = num_envs
        self.torch = torch
        self.generator_state = torch.Generator().manual_seed(seed).get_state()

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        saved = self.torch.get_rng_state()
        self.torch.set_rng_state(self.generator_state)
        try:
            actions, _ = self.model.predict(frames, deterministic=False)
            self.generator_state = self.torch.get_rng_state()
        finally:
            self.torch.set_rng_state(saved)
        return np.asarray(actions, np.int64).reshape(self.num_envs)

    def get_state(self) -> dict[str, Any]:
        return {"torch_rng": self.generator_state.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.generator_state = self.torch.tensor(state["torch_rng"], dtype=self.torch.uint8)


def make_policy(spec: str, num_envs: int, seed: int = 0, sticky_prob: float = 0.75) -> Policy:
    """Build a policy from its CLI spec: "random", "sticky", "sb3:PATH" or "sb3:ALGO:PATH"."""
    if spec == "random":
        return RandomPolicy(num_envs, seed)
    if spec == "sticky":
        return StickyPolicy(num_envs, seed, sticky_prob)
    if spec.startswith("sb3:"):
        rest = spec[4:]
        algo, _, path = rest.partition(":")
        if algo.lower() in SB3_ALGOS and path:
            return SB3Policy(path, num_envs, seed, algo.lower())
        return SB3Policy(rest, num_envs, seed)
    raise ValueError(f"unknown policy {spec!r}: use 'random', 'sticky', 'sb3:PATH' or 'sb3:ALGO:PATH'")
