"""Gymnasium environments: the real game (`real.py`) and the SB3 adapter (`sb3.py`)."""

from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv, ProcgenCoinRunVectorEnv
from genie_env.envs.sb3 import SB3VecEnv

__all__ = ["ACTION_MEANINGS", "ProcgenCoinRunEnv", "ProcgenCoinRunVectorEnv", "SB3VecEnv"]
