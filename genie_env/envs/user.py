"""The real game agents train on and are evaluated on, Procgen or a user's own (`real_vector_env`); see
`genie_env.user_game` for what a user's game is and how its frames are resized.
"""

from __future__ import annotations

from gymnasium.vector import VectorEnv

from genie_env.envs.real import ProcgenVectorEnv
from genie_env.games import LevelConfig, is_user_game
from genie_env.user_game import ResizeFrames, UserGameVectorEnv, parse_env_kwargs

__all__ = ["ResizeFrames", "UserGameVectorEnv", "real_vector_env"]


def real_vector_env(game: str, num_envs: int, levels: LevelConfig | None = None, env_kwargs: str = "{}") -> VectorEnv:
    """The real game agents train on and are evaluated on: `ProcgenVectorEnv` for a Procgen game,
    `UserGameVectorEnv` for a user's env id (with `env_kwargs`, a JSON object); `levels` gives the level
    (reset seed) range and difficulty, its `game` field unused."""
    levels = levels or LevelConfig()
    if is_user_game(game):
        return UserGameVectorEnv(num_envs, game, parse_env_kwargs(env_kwargs), levels)
    return ProcgenVectorEnv(num_envs, levels.distribution_mode, levels.start_level, levels.num_levels, game=game)
