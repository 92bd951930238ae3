"""The real CoinRun env: spaces, registration, seeding, batched == single, bad inputs."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genie_env
from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv, ProcgenCoinRunVectorEnv


def test_real_env_passes_check_env():
    env = gymnasium.make("ProcgenCoinRun-v0").unwrapped
    check_env(env, skip_render_check=False)
    env.close()


def test_spaces_and_action_meanings():
    env = gymnasium.make("ProcgenCoinRun-v0")
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(15)
    assert env.unwrapped.action_meanings == ACTION_MEANINGS
    assert ACTION_MEANINGS[4] == "NOOP" and ACTION_MEANINGS[7] == "RIGHT" and len(ACTION_MEANINGS) == 15


def test_no_import_registration_form_works_in_a_fresh_interpreter():
    code = (
        "import gymnasium, sys; env = gymnasium.make('genie_env:ProcgenCoinRun-v0'); "
        "obs, info = env.reset(seed=0); assert obs.shape == (64, 64, 3); "
        "assert 'genie_env' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("ok")


def _rollout(env, seed: int, actions) -> tuple[np.ndarray, list[int]]:
    obs, info = env.reset(seed=seed)
    frames, levels = [obs], [info["level_seed"]]
    for a in actions:
        obs, _, terminated, truncated, info = env.step(int(a))
        frames.append(obs)
        if terminated or truncated:
            obs, info = env.reset()
            levels.append(info["level_seed"])
    return np.stack(frames), levels


def test_reset_with_the_same_seed_gives_the_same_level_and_frames():
    actions = np.random.default_rng(0).integers(0, 15, 120)
    env = ProcgenCoinRunEnv()
    a, levels_a = _rollout(env, 42, actions)
    b, levels_b = _rollout(env, 42, actions)
    c, levels_c = _rollout(env, 43, actions)
    assert levels_a == levels_b and np.array_equal(a, b)
    assert levels_c[0] != levels_a[0] and not np.array_equal(a, c)


def test_distribution_mode_and_level_range_are_applied():
    env = ProcgenCoinRunEnv(distribution_mode="hard", start_level=100, num_levels=3)
    seeds = {env.reset(seed=s)[1]["level_seed"] for s in range(12)}
    assert seeds <= {100, 101, 102} and len(seeds) > 1


def test_vector_env_equals_n_single_envs_on_the_same_seeds():
    n, steps = 3, 400
    venv = gymnasium.make_vec("ProcgenCoinRun-v0", num_envs=n)
    assert isinstance(venv.unwrapped, ProcgenCoinRunVectorEnv)  # one procgen call, not N Python envs
    singles = [ProcgenCoinRunEnv() for _ in range(n)]
    vobs, vinfo = venv.reset(seed=10)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=10 + i)
        assert np.array_equal(obs, vobs[i]) and info["level_seed"] == vinfo["level_seed"][i]
    actions = np.random.default_rng(1).integers(0, 15, (steps, n))
    episodes_ended = 0
    for t in range(steps):
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions[t])
        for i, env in enumerate(singles):
            obs, rew, term, trunc, info = env.step(int(actions[t, i]))
            assert (rew, term, trunc) == (vrew[i], vterm[i], vtrunc[i])
            assert info["level_seed"] == vinfo["level_seed"][i]
            if term or trunc:
                episodes_ended += 1
                assert np.array_equal(vinfo["final_obs"][i], obs)
                obs, info = env.reset()
            assert np.array_equal(obs, vobs[i])
    assert episodes_ended > 0  # the comparison covered autoresets


def test_vector_env_info_and_same_step_autoreset():
    venv = ProcgenCoinRunVectorEnv(num_envs=4)
    obs, info = venv.reset(seed=0)
    assert set(info) >= {"level_seed", "episode_id"} and len(set(info["episode_id"])) == 4
    rng = np.random.default_rng(0)
    for _ in range(500):
        prev = obs
        obs, rew, term, trunc, info = venv.step(rng.integers(0, 15, 4))
        assert set(info) >= {"level_seed", "prev_level_complete", "episode_id"}
        done = term | trunc
        if done.any():
            i = int(np.flatnonzero(done)[0])
            assert np.array_equal(info["final_obs"][i], prev[i])  # the last frame env i saw
            assert info["_final_obs"][i]
            assert rew[i] in (0.0, 10.0) and (rew[i] == 10.0) == bool(info["prev_level_complete"][i])
            return
    pytest.fail("no episode ended in 500 random steps")


def test_standing_still_is_truncated_at_1000_steps():
    venv = ProcgenCoinRunVectorEnv(num_envs=2)
    venv.reset(seed=3)
    noop = np.full(2, ACTION_MEANINGS.index("NOOP"))
    for t in range(1, 1001):
        _, _, term, trunc, _ = venv.step(noop)
        if t < 1000:
            assert not (term | trunc).any()
    assert trunc.all() and not term.any()


@pytest.mark.parametrize(
    "action, error, match",
    [
        (15, ValueError, "action 15 out of range: Procgen has 15 actions"),
        (-1, ValueError, "action -1 out of range"),
        (1.5, TypeError, "action must be an integer"),
        (np.array([1, 2]), ValueError, "single integer"),
    ],
)
def test_bad_actions_give_clear_errors(action, error, match):
    env = ProcgenCoinRunEnv()
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


def test_bad_vector_actions_give_clear_errors():
    venv = ProcgenCoinRunVectorEnv(num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        venv.step(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="integers"):
        venv.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="action 15 \\(env 1\\) out of range"):
        venv.step(np.array([0, 15]))


def test_saved_states_restore_the_exact_game_and_it_plays_on_the_same():
    venv = ProcgenCoinRunVectorEnv(num_envs=3, start_level=2_000_000, num_levels=1000)
    with pytest.raises(RuntimeError, match="reset"):
        venv.get_states()
    venv.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(7):
        frames, *_, info = venv.step(rng.integers(0, 15, 3))
    states = venv.get_states()
    actions = rng.integers(0, 15, (40, 3))
    played = []
    for _ in range(2):
        assert np.array_equal(venv.set_states(states), frames)
        played.append([venv.step(a) for a in actions])
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(*played))
    assert not all(np.array_equal(step[0], frames) for step in played[0])  # it did play on
    assert np.array_equal(played[0][0][4]["level_seed"], info["level_seed"])
    with pytest.raises(ValueError, match="one state per env"):
        venv.set_states(states[:2])


def test_bad_env_settings_give_clear_errors():
    with pytest.raises(ValueError, match="unknown distribution_mode 'medium'"):
        gymnasium.make("ProcgenCoinRun-v0", distribution_mode="medium")
    with pytest.raises(ValueError, match="num_levels must be >= 0"):
        ProcgenCoinRunEnv(num_levels=-1)
    with pytest.raises(ValueError, match="render_mode"):
        ProcgenCoinRunEnv(render_mode="ascii")
    with pytest.raises(RuntimeError, match="reset"):
        ProcgenCoinRunEnv().step(0)


def test_human_render_mode_draws_the_frame_headless():
    import pygame

    env = ProcgenCoinRunEnv(render_mode="human")  # SDL_VIDEODRIVER=dummy in conftest
    env.reset(seed=0)
    obs, *_ = env.step(7)
    shown = pygame.surfarray.array3d(env._window._screen).transpose(1, 0, 2)  # the window, (H, W, 3)
    assert shown.shape == (64 * 8, 64 * 8, 3) and np.array_equal(shown[::8, ::8], obs)
    env.close()
    assert not pygame.display.get_init()


def test_package_exposes_version_and_envs():
    import importlib.metadata

    assert genie_env.__version__ == importlib.metadata.version("genie-env")
    assert "ProcgenCoinRun-v0" in gymnasium.registry
