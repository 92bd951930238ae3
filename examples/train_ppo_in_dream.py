"""Train Stable-Baselines3 PPO inside the world model's dream (`GenieCoinRun-v0`, natively batched).

python examples/train_ppo_in_dream.py --steps 20000
"""

from __future__ import annotations

import gymnasium
import tyro
from stable_baselines3 import PPO

import genie_env  # noqa: F401  (registers GenieCoinRun-v0)
from genie_env.envs import SB3VecEnv


def main(world_model: str | None = None, steps: int = 20_000, num_envs: int = 16, horizon: int = 20,
         out: str = "outputs/ppo_dream.zip") -> PPO:  # fmt: skip
    """Train PPO for `steps` dreamed steps and save it.

    Args:
        world_model: world-model directory (default: the model shipped with the package).
        steps: dreamed environment steps to train for.
        num_envs: dreams stepped together in one batched model call.
        horizon: dream episodes are truncated after this many steps (the value is bootstrapped there).
        out: where the trained agent goes (SB3's .zip format).
    """
    venv = gymnasium.make_vec("GenieCoinRun-v0", num_envs=num_envs, world_model=world_model, max_episode_steps=horizon)
    env = SB3VecEnv(venv.unwrapped)  # SB3 takes no gymnasium vector envs: this adapter bridges them
    batch = min(256, 64 * num_envs)
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=batch, n_epochs=3, gamma=0.999, ent_coef=0.01, seed=0)
    model.learn(steps)
    model.save(out)
    print(f"trained {model.num_timesteps} dreamed steps; saved {out}")
    return model


if __name__ == "__main__":
    tyro.cli(main)
