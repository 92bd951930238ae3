"""GenieCoinRun-v0: the world model's API and the dream env, single and batched."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import genie_env
from genie_env.checkpoint import CheckpointError
from genie_env.envs.dream import GenieCoinRunEnv, GenieCoinRunVectorEnv

SAMPLING = {"steps": 2, "temperature": 1.0}


def test_world_model_api_shapes_and_validation(tiny_world_model):
    wm = genie_env.load_world_model(tiny_world_model)
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
    tokens = wm.encode(frames)
    assert tokens.shape == (2, 3, 4, 4) and wm.decode(tokens).shape == (2, 3, 64, 64, 3)
    out = wm.rollout(frames, np.zeros((2, 5), np.int64), context_actions=np.ones((2, 2), np.int64), seed=0,
                     steps=2, temperature=1.0)  # fmt: skip
    assert out.frames.shape == (2, 5, 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.rewards.shape == (2, 5) and out.rewards.dtype == np.float32 and out.terminations.dtype == bool
    again = wm.rollout(frames, np.zeros((2, 5), np.int64), context_actions=np.ones((2, 2), np.int64), seed=0,
                       steps=2, temperature=1.0)  # fmt: skip
    assert np.array_equal(out.frames, again.frames)
    read_only = frames.copy()  # e.g. frames memory-mapped from a shard: used without a warning, left untouched
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wm.rollout(read_only, np.zeros((2, 2), np.int64), context_actions=np.ones((2, 2), np.int64))
        wm.decode(np.zeros((1, 1, 4, 4), np.int64))
    with pytest.raises(ValueError, match="action 15 out of range"):
        wm.rollout(frames, np.full((2, 5), 15))
    with pytest.raises(TypeError, match="uint8"):
        wm.rollout(frames.astype(np.float32), np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"context_actions must have shape \(2, 2\)"):
        wm.rollout(frames, np.zeros((2, 5), np.int64), context_actions=np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="longer than the model's window"):
        wm.rollout(np.zeros((1, 9, 64, 64, 3), np.uint8), np.zeros((1, 2), np.int64))


def test_dream_env_passes_check_env_and_matches_the_real_spaces(tiny_world_model):
    env = gymnasium.make("GenieCoinRun-v0", world_model=str(tiny_world_model), sampling=SAMPLING).unwrapped
    check_env(env, skip_render_check=False)
    real = gymnasium.make("ProcgenCoinRun-v0")
    assert env.observation_space == real.observation_space and env.action_space == real.action_space
    obs, info = env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step(7)
    assert {"termination_prob", "reward_prob", "dream_step"} <= set(info) and info["dream_step"] == 1


def test_same_seed_and_actions_give_the_same_dream(tiny_world_model):
    env = GenieCoinRunEnv(str(tiny_world_model), sampling=SAMPLING, events="sample")
    actions = np.random.default_rng(0).integers(0, 15, 20)

    def play(seed):
        frames = [env.reset(seed=seed)[0]]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(int(a))
            frames.append(obs)
            if terminated or truncated:
                frames.append(env.reset()[0])
        return np.stack(frames)

    assert np.array_equal(play(3), play(3))
    assert not np.array_equal(play(3), play(4))


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Frames decoded in batches of different sizes may differ by one intensity level in a rare pixel
    (float rounding in the conv kernels); the dreams themselves (tokens) are identical."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) <= 1


def test_batched_dreams_equal_single_dreams_with_autoresets(tiny_world_model):
    n = 3
    venv = gymnasium.make_vec("GenieCoinRun-v0", num_envs=n, world_model=str(tiny_world_model), sampling=SAMPLING,
                              max_episode_steps=5)  # fmt: skip
    assert isinstance(venv.unwrapped, GenieCoinRunVectorEnv)
    singles = [GenieCoinRunEnv(str(tiny_world_model), sampling=SAMPLING, max_episode_steps=5) for _ in range(n)]
    vobs, _ = venv.reset(seed=20)
    obs = [env.reset(seed=20 + i)[0] for i, env in enumerate(singles)]
    assert all(close(vobs[i], obs[i]) for i in range(n))
    actions = np.random.default_rng(1).integers(0, 15, (12, n))
    resets = 0
    for t in range(12):
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions[t])
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(int(actions[t, i]))
            assert (r, term, trunc) == (vrew[i], vterm[i], vtrunc[i])
            if term or trunc:
                resets += 1
                assert close(vinfo["final_obs"][i], o)
                o, _ = env.reset()
            assert torch.equal(env.dream.prev[0], venv.unwrapped.dream.prev[i])  # the same dreamed tokens
            assert close(o, vobs[i])
    assert resets >= n  # every env went through an autoreset (max_episode_steps=5)


@pytest.mark.parametrize("events", ["expected", "sample"])
def test_a_batch_stepped_in_chunks_dreams_what_one_call_dreams(tiny_world_model, monkeypatch, events):
    """On CPU a big batch is stepped in chunks of `CPU_CHUNK` dreams (faster: their activations stay in the
    caches); 5 dreams in chunks of 2 (the last one short) sample the same tokens, rewards (up to float
    rounding) and ends as in one call, through autoresets, and each chunk keeps its own KV cache."""
    from genie_env.envs import dream

    def make():
        return GenieCoinRunVectorEnv(5, world_model=str(tiny_world_model), precision="fp32", sampling=SAMPLING,
                                     events=events, max_episode_steps=4, uncertainty_penalty=0.1)  # fmt: skip

    whole = make()
    monkeypatch.setattr(dream, "CPU_CHUNK", 2)
    chunked = make()
    assert len(whole.dream.caches) == 1 and [len(c.frames) for c in chunked.dream.caches] == [2, 2, 1]
    first, _ = whole.reset(seed=3)
    assert close(first, chunked.reset(seed=3)[0])
    actions = np.random.default_rng(0).integers(0, 15, (9, 5))
    for t in range(9):
        a, b = whole.step(actions[t]), chunked.step(actions[t])
        assert torch.equal(whole.dream.prev, chunked.dream.prev), f"step {t}: the dreams differ"
        assert close(a[0], b[0]) and np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])  # ends alike
        assert np.allclose(a[1], b[1], atol=1e-5)  # rewards: float rounding differs with the batch's size
        assert np.allclose(a[4]["token_entropy"], b[4]["token_entropy"], atol=1e-5)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        dream.DreamBatch(whole.world_model, whole.dream.source, 2, chunk=-1)


def test_sb3_ppo_runs_on_the_batched_dream_env(tiny_world_model):
    from stable_baselines3 import PPO

    from genie_env.envs import SB3VecEnv

    venv = SB3VecEnv(GenieCoinRunVectorEnv(4, str(tiny_world_model), max_episode_steps=20))
    model = PPO("CnnPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256


def test_dream_env_errors_are_clear(tiny_world_model, tmp_path):
    env = GenieCoinRunEnv(str(tiny_world_model))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 15 out of range"):
        env.step(15)
    with pytest.raises(ValueError, match="context frames must be uint8"):
        GenieCoinRunEnv(str(tiny_world_model), context=np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(CheckpointError, match="no world model at"):
        GenieCoinRunEnv(str(tmp_path / "missing"))
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_world_model, broken)
    (broken / "dynamics" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt checkpoint file"):
        GenieCoinRunEnv(str(broken))


def test_genie_dream_writes_a_side_by_side_gif(tiny_world_model, tmp_path):
    from .test_cli import genie

    gif = tmp_path / "dream.gif"
    out = genie("dream", "--world-model", str(tiny_world_model), "--steps", "12", "--gif", str(gif)).stdout
    assert "wrote" in out and gif.stat().st_size > 1000
    import imageio.v2 as imageio

    frames = imageio.mimread(gif)
    assert frames[0].shape[:2] == (64 * 4, 128 * 4)  # real | dream, upscaled 4x
    bad = genie("dream", "--world-model", str(tmp_path / "none"), check=False)
    assert bad.returncode == 1 and "no world model at" in bad.stderr


def test_play_maps_keys_to_actions_and_runs_headless(tiny_world_model):
    from genie_env.cli.play import action_from_keys

    from .test_cli import genie

    assert action_from_keys(set()) == 4 and action_from_keys({"right"}) == 7
    assert action_from_keys({"left", "up"}) == 2 and action_from_keys({"right", "down"}) == 6
    assert action_from_keys({"q", "right"}) == 13
    out = genie("play", "--world-model", str(tiny_world_model), "--max-frames", "5", "--side-by-side",
                "--fps", "1000").stdout  # fmt: skip
    assert "played 5 frames" in out


def test_expected_events_reward_the_coin_probability(tiny_world_model):
    env = GenieCoinRunEnv(str(tiny_world_model), events="expected")
    env.reset(seed=3)
    for _ in range(3):
        _, reward, terminated, _, info = env.step(7)
        assert reward == pytest.approx(10.0 * info["reward_prob"], rel=1e-5)
        assert terminated == (info["termination_prob"] >= 0.5)
        if terminated:
            break
    with pytest.raises(ValueError, match="unknown events mode 'mean'"):
        GenieCoinRunEnv(str(tiny_world_model), events="mean")


def test_uncertainty_penalty_lowers_each_reward_by_the_dreamed_frames_entropy(tiny_world_model):
    plain = GenieCoinRunVectorEnv(3, str(tiny_world_model), events="expected", precision="fp32")
    penalised = GenieCoinRunVectorEnv(3, str(tiny_world_model), events="expected", precision="fp32",
                                      uncertainty_penalty=0.5)  # fmt: skip
    plain.reset(seed=4), penalised.reset(seed=4)
    for actions in ([1, 7, 4], [0, 0, 9]):
        obs, reward, *_, info = plain.step(np.array(actions))
        obs_p, reward_p, *_, info_p = penalised.step(np.array(actions))
        np.testing.assert_array_equal(obs, obs_p)  # the same dream
        assert "token_entropy" not in info and (info_p["token_entropy"] > 0).all()
        np.testing.assert_allclose(reward_p, reward - 0.5 * info_p["token_entropy"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="uncertainty_penalty must be >= 0"):
        GenieCoinRunEnv(str(tiny_world_model), uncertainty_penalty=-1.0)


def test_an_entropy_limit_truncates_a_dream_at_the_first_frame_dreamed_above_it(tiny_world_model):
    venv = GenieCoinRunVectorEnv(4, str(tiny_world_model), precision="fp32", entropy_limit=1e9)
    venv.reset(seed=1)
    *_, terminated, truncated, info = venv.step(np.zeros(4, np.int64))
    limit = float(np.median(info["token_entropy"]))  # about half the envs dream above it
    venv = GenieCoinRunVectorEnv(4, str(tiny_world_model), precision="fp32", entropy_limit=limit)
    venv.reset(seed=1)
    *_, terminated, truncated, info = venv.step(np.zeros(4, np.int64))
    np.testing.assert_array_equal(truncated, (info["token_entropy"] > limit) & ~terminated)
    assert truncated.any() and "final_obs" in info  # the truncated dreams restarted in the same step
    single = GenieCoinRunEnv(str(tiny_world_model), precision="fp32", entropy_limit=limit)
    single.reset(seed=1)
    *_, terminated0, truncated0, info0 = single.step(0)
    assert truncated0 == bool(info0["token_entropy"] > limit and not terminated0)
    with pytest.raises(ValueError, match="entropy_limit must be >= 0"):
        GenieCoinRunVectorEnv(2, str(tiny_world_model), entropy_limit=-1.0)


@pytest.mark.parametrize("events", ["threshold", "sample", "expected"])
def test_a_dreamed_coin_ends_the_episode_in_every_events_mode(tiny_world_model, events, monkeypatch):
    env = GenieCoinRunEnv(str(tiny_world_model), events=events)
    env.reset(seed=0)
    dynamics = env.dream.wm.dynamics
    step = dynamics.step

    def sure_coin_no_termination(*args, **kwargs):
        out = step(*args, **kwargs)
        sure = torch.tensor([[0.0, 1.0]]).expand_as(out.reward_probs)  # all mass on CoinRun's 10
        return out._replace(reward_prob=torch.ones_like(out.reward_prob), reward_probs=sure,
                            termination_prob=torch.zeros_like(out.termination_prob))  # fmt: skip

    monkeypatch.setattr(dynamics, "step", sure_coin_no_termination)
    _, reward, terminated, truncated, _ = env.step(7)
    assert reward == 10.0 and terminated and not truncated  # as in CoinRun: no second coin in one episode


def test_context_file_round_trips_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    from genie_env.data.context import ContextSource
    from genie_env.data.manifest import DatasetError

    rng = np.random.default_rng(0)
    source = ContextSource(rng.integers(0, 256, (3, 2, 64, 64, 3), dtype=np.uint8), rng.integers(0, 15, (3, 1)))
    path = source.save(tmp_path / "contexts.npz")
    loaded = ContextSource.from_file(path)
    assert np.array_equal(loaded.frames, source.frames) and np.array_equal(loaded.actions, source.actions)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        ContextSource(source.frames[:1], source.actions[:1]).save(path)
    monkeypatch.undo()
    assert len(ContextSource.from_file(path)) == 3 and not list(tmp_path.glob(".*.tmp"))
    path.write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="corrupt context file"):
        ContextSource.from_file(path)
    with pytest.raises(DatasetError, match="does not exist"):
        ContextSource.from_file(tmp_path / "missing.npz")


def test_the_batched_step_reads_nothing_back_from_the_device_until_its_outputs(tiny_world_model):
    """On a GPU every read of a tensor's value on the host (`int(t)`, `t.item()`, `bool(t)`) waits for all the
    work queued before it. The batched dream step makes none: it hands back frames and events in one copy
    each. Counted here on CPU as the dispatcher sees them (`aten._local_scalar_dense`)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ScalarReads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                ScalarReads.count += 1
            return func(*args, **(kwargs or {}))

    for events, sampling in (("expected", None), ("sample", {"steps": 2, "temperature": 1.0})):
        venv = GenieCoinRunVectorEnv(4, world_model=str(tiny_world_model), precision="fp32", events=events,
                                     sampling=sampling, max_episode_steps=10**6, uncertainty_penalty=0.1)  # fmt: skip
        venv.reset(seed=0)
        venv.dream.step(np.zeros(4, np.int64))  # warm
        with ScalarReads():
            for _ in range(3):
                frames, rewards, terminated, info = venv.dream.step(np.full(4, 3, np.int64))
        assert ScalarReads.count == 0, f"{events}: {ScalarReads.count} host reads inside the step"
        assert frames.shape == (4, 64, 64, 3) and rewards.dtype == np.float32 and "token_entropy" in info


def test_a_compiled_world_model_dreams_what_the_eager_one_dreams_and_compiles_once_per_batch_size(tiny_world_model):
    """`compile=True` (`WorldModel.compile`): the same dreams to rounding (tokens and frames), the same dream again
    under the same seed, and the KV cache's step count does not make it compile again at every slot of the ring
    buffer (it did while the count was a Python int)."""
    from torch._dynamo.utils import counters

    actions = np.random.default_rng(0).integers(0, 15, (12, 4))

    def dream(venv):
        obs, _ = venv.reset(seed=0)
        frames, rewards, tokens = [obs], [], []
        for a in actions:  # more steps than the cache's window and than dynamo's limit of 8 recompiles
            obs, reward, *_ = venv.step(a)
            frames.append(obs), rewards.append(reward), tokens.append(venv.dream.prev.clone())
        return np.stack(frames), np.stack(rewards), torch.stack(tokens)

    counters.clear()
    runs = {}
    for compile in (False, True):
        venv = GenieCoinRunVectorEnv(4, world_model=str(tiny_world_model), precision="fp32", compile=compile,
                                     sampling=SAMPLING, max_episode_steps=10**6)  # fmt: skip
        assert venv.world_model.compiled == compile
        runs[compile] = dream(venv)
    again = dream(venv)  # the compiled env, seeded as before
    eager, compiled = runs[False], runs[True]
    assert all(np.array_equal(a, b) for a, b in zip(compiled[:2], again[:2])) and torch.equal(compiled[2], again[2])
    agreement = (eager[2] == compiled[2]).float().mean().item()
    assert agreement >= 0.95, f"compiled dreams agree with eager ones on {agreement:.1%} of tokens"
    mse = ((eager[0].astype(np.float64) - compiled[0]) ** 2).mean()
    assert mse < 1e-3 * 255**2, f"compiled dream PSNR {10 * np.log10(255**2 / max(mse, 1e-12)):.1f} dB"
    assert np.allclose(eager[1], compiled[1], atol=1e-3)
    # 5 graphs: the dynamics pass with an empty cache, then committing and not (2 MaskGIT steps) with a filled
    # one, and the decoder at 1 and 4 envs (a step count that dynamo specialised on made 10 without MaskGIT
    # steps, one per cache slot until dynamo's recompile limit, and then ran eagerly)
    assert 0 < counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])


def test_compile_without_a_cpp_compiler_says_so_before_compiling_anything(tiny_world_model):
    """Inductor builds C++ on CPU: with no working compiler (a name that is none, as on a machine without g++),
    `compile=True` fails at once with what needed it and what to do, not at the first dreamed step."""
    import torch._inductor.config as inductor_config

    from genie_env.models import inductor

    inductor._probe.cache_clear()  # a probe passed earlier in this process would not ask the compiler again
    try:
        with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
            with pytest.raises(RuntimeError, match=r"WorldModel.compile\(\).*C\+\+ compiler.*leave compile off"):
                GenieCoinRunVectorEnv(2, world_model=str(tiny_world_model), precision="fp32", compile=True)
            model = genie_env.load_world_model(tiny_world_model, precision="fp32")
            with pytest.raises(RuntimeError, match="InvalidCxxCompiler"):
                model.compile()
            assert not model.compiled and model.dynamics._compiled_call_impl is None
    finally:
        inductor._probe.cache_clear()
