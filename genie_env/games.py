"""Game facts, the ground floor every stage builds on: CoinRun's frames, actions and rewards, which levels
an env plays, procgen's construction and serialized state, action checks, and what a policy is.

Nothing here imports the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from genie_env._compat import import_gym_quietly

FRAME_SHAPE = (64, 64, 3)
NUM_ACTIONS = 15
# procgen's own time limit for every game: the episode is cut after this many steps.
PROCGEN_TIMEOUT = 1000
# reward for reaching CoinRun's coin (the only reward there is)
COIN_REWARD = 10.0
# Procgen's button combos for action ids 0..14, in its own order (procgen/env.py get_combos).
ACTION_MEANINGS = (
    "LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
    "D", "A", "W", "S", "Q", "E",
)  # fmt: skip
# the 16 Procgen games (procgen.env.ENV_NAMES); every one shares the frames and the 15 actions above
PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot", "heist",
    "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
DEFAULT_GAME = "coinrun"
# the non-zero rewards each game gives in one step, as measured by `benchmarks/game_facts.py` (the union of
# three runs of 192k steps of random play per game, seeds 0 and 1 covered by it): the support of a dynamics
# model's reward head holds them, and any others its training data holds, so a model trained on little data
# can still predict a reward it has not seen
REWARD_VALUES: dict[str, tuple[float, ...]] = {
    "bigfish": (1.0, 2.0), "bossfight": (1.0, 11.0), "caveflyer": (3.0, 10.0), "chaser": (0.04, 0.08),
    "climber": (1.0, 11.0), "coinrun": (COIN_REWARD,), "dodgeball": (2.0, 4.0, 10.0),
    "fruitbot": (-8.0, -4.0, -3.0, 1.0, 2.0), "heist": (10.0,), "jumper": (10.0,), "leaper": (10.0,), "maze": (10.0,),
    "miner": (1.0, 10.0), "ninja": (10.0,), "plunder": (1.0, 2.0, 11.0), "starpilot": (1.0, 2.0),
}  # fmt: skip
# the games where every reward ends the episode (the goal is the only reward): a dream of one of them ends
# when it predicts a reward, whatever its termination head says. Measured by `benchmarks/game_facts.py`
# (in 192k random-policy steps per game, every reward of these six came on an episode's last step, and
# every other game rewarded mid-episode).
ENDS_ON_REWARD = frozenset({"coinrun", "heist", "jumper", "leaper", "maze", "ninja"})
# CoinRun's movement classes: what each action does there (D A W S Q E do nothing, as NOOP and DOWN)
MOVEMENT_CLASSES = ("left", "right", "jump", "jump left", "jump right", "none")
ACTION_MOVEMENT = {
    "LEFT+DOWN": "left", "LEFT": "left", "LEFT+UP": "jump left", "DOWN": "none", "NOOP": "none", "UP": "jump",
    "RIGHT+DOWN": "right", "RIGHT": "right", "RIGHT+UP": "jump right",
    "D": "none", "A": "none", "W": "none", "S": "none", "Q": "none", "E": "none",
}  # fmt: skip
DistributionMode = Literal["easy", "hard"]
DISTRIBUTION_MODES: tuple[str, ...] = get_args(DistributionMode)
MAX_RAND_SEED = 2**31 - 1


@dataclass(frozen=True)
class LevelConfig:
    """Which CoinRun levels an env plays; shared by the single env, the batched env and collection."""

    distribution_mode: DistributionMode = "easy"
    """procgen difficulty: "easy" (the project default, as in the Procgen benchmark) or "hard\""""
    start_level: int = 0
    """first level seed of the level range"""
    num_levels: int = 0
    """number of levels in the range; 0 means unbounded (every level seed is possible)"""
    use_sequential_levels: bool = False
    """finishing a level moves on to the next level instead of ending the episode"""
    game: str = DEFAULT_GAME
    """the Procgen game (one of `PROCGEN_GAMES`)"""

    def __post_init__(self) -> None:
        check_game(self.game)
        if self.distribution_mode not in DISTRIBUTION_MODES:
            raise ValueError(
                f"unknown distribution_mode {self.distribution_mode!r}: "
                f"{self.game} supports {', '.join(map(repr, DISTRIBUTION_MODES))}"
            )
        if self.start_level < 0 or self.start_level > MAX_RAND_SEED:
            raise ValueError(f"start_level must be in [0, {MAX_RAND_SEED}], got {self.start_level}")
        if self.num_levels < 0:
            raise ValueError(f"num_levels must be >= 0 (0 = unbounded), got {self.num_levels}")


def check_game(game: Any) -> str:
    """`game` if it is one of the 16 Procgen games; ValueError listing them otherwise."""
    if game not in PROCGEN_GAMES:
        raise ValueError(f"unknown Procgen game {game!r}: use one of {', '.join(PROCGEN_GAMES)}")
    return game


def is_user_game(game: str) -> bool:
    """Whether `game` names a Gymnasium env of the user's (an id such as `MyGame-v0`, `module:MyGame-v0` or
    `gym:OldGame-v1`, as `genie collect --env-id` records it) rather than a Procgen game."""
    return game not in PROCGEN_GAMES and any(mark in game for mark in ("-v", ":", "/"))


def check_any_game(game: Any) -> str:
    """`game` if it is a Procgen game or a user's env id (`is_user_game`); ValueError otherwise."""
    if isinstance(game, str) and is_user_game(game):
        return game
    if game not in PROCGEN_GAMES:
        raise ValueError(f"unknown game {game!r}: use one of the Procgen games ({', '.join(PROCGEN_GAMES)}) or the "
                         "Gymnasium env id of your own game (e.g. MyGame-v0, or my_module:MyGame-v0)")  # fmt: skip
    return game


def _procgen_env_class():
    """procgen's gym3 env class (procgen imports gym 0.26, whose notice is swallowed)."""
    import_gym_quietly()
    from procgen import ProcgenGym3Env

    return ProcgenGym3Env


def make_procgen(num: int, rand_seed: int, levels: LevelConfig):
    """Create a gym3 `ProcgenGym3Env` running `num` levels of `levels.game`."""
    return _procgen_env_class()(
        num=num,
        env_name=levels.game,
        distribution_mode=levels.distribution_mode,
        start_level=levels.start_level,
        num_levels=levels.num_levels,
        use_sequential_levels=levels.use_sequential_levels,
        rand_seed=rand_seed,
    )


def rand_seed_for(seed: int | None) -> int:
    """The procgen `rand_seed` a Gymnasium reset seed maps to (the same in single and batched env)."""
    rng, _ = seeding.np_random(seed)
    return int(rng.integers(MAX_RAND_SEED))


def initial_state(rand_seed: int, levels: LevelConfig) -> bytes:
    """The serialized state of a fresh single-level procgen env with this rand_seed."""
    env = make_procgen(1, rand_seed, levels)
    try:
        return env.get_state()[0]
    finally:
        env.close()


def _has_actions(num_actions: int) -> str:
    """ "Procgen has 15 actions (0..14)", or the same for another game's number of actions."""
    who = "Procgen has" if num_actions == NUM_ACTIONS else "the game has"
    return f"{who} {num_actions} actions (0..{num_actions - 1})"


def check_action(action: Any, num_actions: int = NUM_ACTIONS) -> int:
    """Validate one action (of Procgen's 15, or `num_actions`) and return it as int; raises TypeError/ValueError
    naming the problem."""
    arr = np.asarray(action)
    if arr.shape != ():
        raise ValueError(f"action must be a single integer, got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"action must be an integer, got {action!r} of dtype {arr.dtype}")
    value = int(arr)
    if not 0 <= value < num_actions:
        raise ValueError(f"action {value} out of range: {_has_actions(num_actions)}")
    return value


def bad_action(actions: np.ndarray, num_actions: int = NUM_ACTIONS) -> int | None:
    """The first action of an integer array outside 0..num_actions-1 (Procgen's 0..14), or None if all are in."""
    actions = np.asarray(actions)
    bad = (actions < 0) | (actions >= num_actions)
    return int(actions.reshape(-1)[np.argmax(bad.reshape(-1))]) if bad.any() else None


def check_actions(actions: Any, num_envs: int, num_actions: int = NUM_ACTIONS) -> np.ndarray:
    """Validate a batch of actions: integer array of shape (num_envs,) in 0..num_actions-1; returns int32."""
    arr = np.asarray(actions)
    if arr.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},) for {num_envs} envs, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"actions must be integers, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= num_actions)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"action {int(arr[i])} (env {i}) out of range: {_has_actions(num_actions)}")
    return arr.astype(np.int32)


def observation_space() -> spaces.Box:
    """One frame: uint8 (64, 64, 3), channels-last RGB (the real game's and the dream's)."""
    return spaces.Box(0, 255, FRAME_SHAPE, np.uint8)


def action_space(num_actions: int = NUM_ACTIONS) -> spaces.Discrete:
    """One action: procgen's 15 button combos (`ACTION_MEANINGS`), or another game's `num_actions`."""
    return spaces.Discrete(num_actions)


class Policy(Protocol):
    """What plays the game, for collection and evaluation: maps frames uint8 (N, 64, 64, 3) and
    episode-start flags bool (N,) to actions int64 (N,), and saves and restores its random state (so an
    interrupted collection resumes exactly)."""

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def env_state(env, index: int) -> bytes:
    """The serialized procgen state of one env of a gym3 batch (procgen's `get_state` serializes all N)."""
    from procgen.env import MAX_STATE_SIZE

    buf = env._ffi.new(f"char[{MAX_STATE_SIZE}]")
    n = env.call_c_func("get_state", index, buf, MAX_STATE_SIZE)
    return bytes(env._ffi.buffer(buf, n))
