"""Gymnasium environments: the real game (`real.py`) and the SB3 adapter (`sb3.py`, imported on use)."""

from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv, ProcgenCoinRunVectorEnv

__all__ = ["ACTION_MEANINGS", "ProcgenCoinRunEnv", "ProcgenCoinRunVectorEnv", "SB3VecEnv"]


def __getattr__(name: str):
    # Stable-Baselines3 takes a second to import: only pay for it when the adapter is used.
    if name == "SB3VecEnv":
        from genie_env.envs.sb3 import SB3VecEnv

        return SB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
