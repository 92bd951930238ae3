"""genie-env: a Genie world model of Procgen CoinRun, shipped as Gymnasium environments.

Importing the package registers the environments (the one place they are registered):

- `Procgen-v0`: any of the 16 real Procgen games (`game=NAME`); `gymnasium.make_vec(..., num_envs=N)`
  steps N levels in one call.
- `ProcgenCoinRun-v0`: real CoinRun (`Procgen-v0` with `game="coinrun"`), single and batched alike.
- `GenieProcgen-v0`: a world model's dream of a Procgen game (`game=NAME` loads the model shipped for it,
  `world_model=DIR` one you trained), with the real game's spaces; `make_vec` batches N dreams.
- `GenieCoinRun-v0`: the shipped dream of CoinRun (`GenieProcgen-v0` with `game="coinrun"`).
- `GenieEnv-v0`: any world model's dream (`world_model=DIR`): of your own game (`genie collect --env-id`),
  of a Procgen game, or of latent actions, with `Discrete(N)` for its N actions.

Without the import, `gymnasium.make("genie_env:GenieCoinRun-v0")` imports the package first.
"""

import gymnasium

__version__ = "0.1.0"
__all__ = ["Rollout", "WorldModel", "load_world_model"]


def __getattr__(name: str):
    # the world model needs torch; importing it only on use keeps `import genie_env` (and the real env) light
    if name in __all__:
        from genie_env import world_model

        return getattr(world_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# env id -> (module under genie_env.envs, class name); the vector entry point is the class with "Vector"
# before "Env" (ProcgenEnv -> ProcgenVectorEnv)
ENVS = {
    "Procgen-v0": ("real", "ProcgenEnv"),
    "ProcgenCoinRun-v0": ("real", "ProcgenCoinRunEnv"),
    "GenieProcgen-v0": ("dream", "GenieProcgenEnv"),
    "GenieEnv-v0": ("dream", "GenieEnv"),
    "GenieCoinRun-v0": ("dream", "GenieCoinRunEnv"),
}
# disable_env_checker: gymnasium's passive checker, once a first reset() has raised (say for seed=-1), breaks
# every later step() with a TypeError; every env passes gymnasium's full check_env in the tests instead
for _id, (_module, _cls) in ENVS.items():
    gymnasium.register(
        id=_id,
        entry_point=f"genie_env.envs.{_module}:{_cls}",
        vector_entry_point=f"genie_env.envs.{_module}:{_cls[: -len('Env')]}VectorEnv",
        disable_env_checker=True,
    )
