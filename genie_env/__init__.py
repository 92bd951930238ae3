"""genie-env: a Genie world model of Procgen CoinRun, shipped as Gymnasium environments.

Importing the package registers the environments (the one place they are registered):

- `ProcgenCoinRun-v0`: the real game; `gymnasium.make_vec(..., num_envs=N)` steps N levels in one call.

Without the import, `gymnasium.make("genie_env:ProcgenCoinRun-v0")` imports the package first.
"""

import gymnasium

__version__ = "0.1.0"

gymnasium.register(
    id="ProcgenCoinRun-v0",
    entry_point="genie_env.envs.real:ProcgenCoinRunEnv",
    vector_entry_point="genie_env.envs.real:ProcgenCoinRunVectorEnv",
)
