"""The SB3 VecEnv adapter over our batched envs."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv
from stable_baselines3 import PPO

from genie_env.envs import SB3VecEnv
from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv, ProcgenCoinRunVectorEnv


def test_adapter_sets_terminal_observation_and_timelimit_flag_on_truncation():
    venv = SB3VecEnv(ProcgenCoinRunVectorEnv(num_envs=2))
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    noop = np.full(2, ACTION_MEANINGS.index("NOOP"))
    for _ in range(1000):
        prev = obs
        obs, rewards, dones, infos = venv.step(noop)
    assert dones.all()
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True
        assert np.array_equal(infos[i]["terminal_observation"], prev[i])
        assert {"level_seed", "episode_id", "prev_level_complete"} <= set(infos[i])
    assert not np.array_equal(obs[0], prev[0])  # already the next level's first frame


def test_adapter_does_not_flag_terminations_as_truncations():
    venv = SB3VecEnv(ProcgenCoinRunVectorEnv(num_envs=4))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(600):
        _, _, dones, infos = venv.step(rng.integers(0, 15, 4))
        for i in np.flatnonzero(dones):
            assert infos[i]["TimeLimit.truncated"] is False
            assert infos[i]["terminal_observation"].shape == (64, 64, 3)
            return
    pytest.fail("no episode ended in 600 random steps")


def test_adapter_seeding_is_deterministic():
    def first_frames(seed):
        venv = SB3VecEnv(gymnasium.make_vec("ProcgenCoinRun-v0", num_envs=2).unwrapped)
        venv.seed(seed)
        return venv.reset()

    assert np.array_equal(first_frames(1), first_frames(1))
    assert not np.array_equal(first_frames(1), first_frames(2))


def test_adapter_refuses_next_step_autoreset_envs():
    sync = SyncVectorEnv([lambda: ProcgenCoinRunEnv()])
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(sync)


def test_sb3_ppo_trains_a_few_steps_on_the_batched_real_env():
    venv = SB3VecEnv(ProcgenCoinRunVectorEnv(num_envs=2))
    model = PPO("CnnPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    actions, _ = model.predict(venv.reset())
    assert actions.shape == (2,)
