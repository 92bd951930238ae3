"""Policies that play the game (`random`, `sticky`, `sb3:PATH`) for collection and evaluation, the one
loader of saved SB3 agents, and what an agent file records of its training.

A policy (`genie_env.games.Policy`) maps a batch of frames to a batch of actions and can save and
restore its random state, so an interrupted collection resumes exactly where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genie_env._compat import import_gym_quietly
from genie_env._io import read_json
from genie_env.data.collect import CollectConfig
from genie_env.games import DEFAULT_GAME, NUM_ACTIONS, Policy

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

SB3_ALGOS = ("ppo", "a2c", "dqn")


def sb3_class(algo: str) -> type[BaseAlgorithm]:
    """The Stable-Baselines3 algorithm class named `algo` (one of `SB3_ALGOS`); ValueError otherwise."""
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}: use one of {SB3_ALGOS}")
    import_gym_quietly()
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def load_agent(path: str | Path, algo: str = "ppo", env: VecEnv | None = None, device: str = "cpu") -> BaseAlgorithm:
    """Load a saved SB3 agent (.zip): the one loader every command uses. Nothing in the file is unpickled
    (`genie_env.agents.sb3_file`): a file holding objects that could run code is refused. FileNotFoundError
    or ValueError (UnsafeAgentFile for such a file) with the path when it cannot be read."""
    from genie_env.agents.sb3_file import UnsafeAgentFile, safe_objects

    path = Path(path)
    cls = sb3_class(algo)
    if not path.exists():
        raise FileNotFoundError(f"agent {path} does not exist")
    objects = safe_objects(path, cls)
    try:
        return cls.load(path, env=env, device=device, custom_objects=objects)
    except UnsafeAgentFile:
        raise
    except Exception as e:  # SB3 raises zipfile, KeyError, torch errors... for a bad file
        raise ValueError(f"could not load {path} as an SB3 {algo.upper()} agent: {e}") from e


class RandomPolicy:
    """Uniform over the game's actions (Procgen's 15) at every step."""

    def __init__(self, num_envs: int, seed: int = 0, num_actions: int = NUM_ACTIONS) -> None:
        self.num_envs, self.num_actions = num_envs, num_actions
        self.rng = np.random.default_rng(seed)

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.num_actions, self.num_envs)

    def get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class StickyPolicy(RandomPolicy):
    """Repeats its previous action with probability `repeat_prob`, else draws a uniform one.

    Uniform random actions make the agent jitter in place; repeating them lets it travel, so the
    data covers more of each level. A new episode always starts with a fresh draw.
    """

    def __init__(self, num_envs: int, seed: int = 0, repeat_prob: float = 0.75, num_actions: int = NUM_ACTIONS) -> None:
        if not 0.0 <= repeat_prob < 1.0:
            raise ValueError(f"sticky repeat probability must be in [0, 1), got {repeat_prob}")
        super().__init__(num_envs, seed, num_actions)
        self.repeat_prob = repeat_prob
        self.prev = np.zeros(num_envs, np.int64)

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        fresh = self.rng.integers(0, self.num_actions, self.num_envs)
        keep = (self.rng.random(self.num_envs) < self.repeat_prob) & ~first
        self.prev = np.where(keep, self.prev, fresh)
        return self.prev.copy()

    def get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "prev": self.prev.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.prev = np.asarray(state["prev"], np.int64)


class SB3Policy:
    """A saved Stable-Baselines3 model (`sb3:PATH` or `sb3:ALGO:PATH`, ALGO one of ppo, a2c, dqn).

    Actions are sampled (not argmax) from the policy; torch's RNG is seeded and saved for resume. The network
    runs in `precision` (`networks.TrainPrecision`: auto is bf16 autocast on CPUs with AVX512-BF16 or AMX, 1.38x
    faster for 64 frames of the shipped agent there with action probabilities within 0.003 of fp32's, and fp32
    elsewhere).
    """

    def __init__(self, path: str, num_envs: int, seed: int = 0, algo: str = "ppo", precision: str = "auto") -> None:
        import torch

        from genie_env.agents.networks import resolve_train_precision

        self.bf16 = resolve_train_precision(precision, "cpu", what="policy precision") == "bf16"
        self.model = load_agent(path, algo)
        self.num_envs = num_envs
        self.torch = torch
        self.generator_state = torch.Generator().manual_seed(seed).get_state()

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        saved = self.torch.get_rng_state()
        self.torch.set_rng_state(self.generator_state)
        try:
            with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
                actions, _ = self.model.predict(frames, deterministic=False)
            self.generator_state = self.torch.get_rng_state()
        finally:
            self.torch.set_rng_state(saved)
        return np.asarray(actions, np.int64).reshape(self.num_envs)

    def get_state(self) -> dict[str, Any]:
        return {"torch_rng": self.generator_state.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.generator_state = self.torch.tensor(state["torch_rng"], dtype=self.torch.uint8)


def make_policy(spec: str, num_envs: int, seed: int = 0, sticky_prob: float = 0.75,
                num_actions: int = NUM_ACTIONS) -> Policy:  # fmt: skip
    """Build a policy from its CLI spec: "random", "sticky", "sb3:PATH" or "sb3:ALGO:PATH" (random and sticky
    draw from `num_actions`, Procgen's 15 by default)."""
    if spec == "random":
        return RandomPolicy(num_envs, seed, num_actions)
    if spec == "sticky":
        return StickyPolicy(num_envs, seed, sticky_prob, num_actions)
    if spec.startswith("sb3:"):
        rest = spec[4:]
        algo, _, path = rest.partition(":")
        if algo.lower() in SB3_ALGOS and path:
            return SB3Policy(path, num_envs, seed, algo.lower())
        return SB3Policy(rest, num_envs, seed)
    raise ValueError(f"unknown policy {spec!r}: use 'random', 'sticky', 'sb3:PATH' or 'sb3:ALGO:PATH'")


def collection_policy(cfg: CollectConfig) -> Policy:
    """The behaviour policy a collection's `--policy` names, seeded as its config says, over the actions of
    its game."""
    num_actions = cfg.env_record().get("num_actions", NUM_ACTIONS)
    return make_policy(cfg.policy, cfg.num_envs, cfg.seed, cfg.sticky_prob, num_actions)


def policy_spec(agent: str) -> str:
    """The `make_policy` spec of an AGENT argument: a bare path (or *.zip) means sb3:PATH."""
    if agent in ("random", "sticky") or agent.startswith("sb3:"):
        return agent
    if agent.endswith(".zip") or Path(agent).exists() or "/" in agent:
        return f"sb3:{agent}"
    return agent


def default_name(spec: str) -> str:
    """A short label for a policy spec: random, sticky, or the stem of the model file."""
    return Path(spec.rsplit(":", 1)[-1]).stem if spec.startswith("sb3:") else spec


def agent_record(spec: str) -> dict[str, Any] | None:
    """The record `genie train-agent` keeps beside an SB3 agent (`NAME.json` next to NAME.zip, or the
    run's `config.json`); None for other policies or without one."""
    if not spec.startswith("sb3:"):
        return None
    model = Path(spec.rsplit(":", 1)[-1])
    for record in (model.with_suffix(".json"), model.parent / "config.json"):
        if record.exists():
            meta = read_json(record, "agent record", ValueError)
            if isinstance(meta, dict) and meta.get("kind") == "agent":
                return meta
    return None


def agent_budget(spec: str) -> dict[str, int]:
    """The real and dreamed frames an SB3 agent cost (and, for a cloned one, the real action labels), from its
    record; {} for other policies or without one."""
    meta = agent_record(spec)
    if meta is None:
        return {}
    labels = {"real_action_labels": meta["real_action_labels"]} if "real_action_labels" in meta else {}
    return {"real_frames": meta["real_frames"], "dream_frames": meta["dream_frames"], **labels}


def agent_game(spec: str) -> str | None:
    """The game an SB3 agent was trained for, from its record (agents from before games: CoinRun); None
    for other policies or without a record."""
    meta = agent_record(spec)
    return None if meta is None else meta.get("config", {}).get("game", DEFAULT_GAME)
