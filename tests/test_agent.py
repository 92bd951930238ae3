"""Agents: training in the dream and the real game, checkpoints, resume, the IMPALA CNN, bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

import genie_env
from genie_env.agents.networks import ImpalaCNN
from genie_env.agents.policies import load_agent
from genie_env.agents.train import AgentConfig, make_vec_env, train_agent

# a few hundred steps: enough for two PPO updates and a checkpoint, seconds on 2 cores
SMALL = dict(steps=256, num_envs=4, n_steps=32, batch_size=64, n_epochs=1, checkpoint_every=128)


def test_train_agent_in_the_dream_writes_a_loadable_agent_and_its_bookkeeping(tiny_world_model, tmp_path):
    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), horizon=8, precision="fp32", **SMALL)
    path = train_agent(cfg, tmp_path / "run", progress=False)
    assert path == tmp_path / "run" / "agent.zip"
    model = load_agent(path)
    assert model.num_timesteps == 256
    actions, _ = model.predict(np.zeros((3, 64, 64, 3), np.uint8))
    assert actions.shape == (3,) and ((0 <= actions) & (actions < 15)).all()
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    wm_levels = json.loads((tiny_world_model / "levels.json").read_text())
    assert record["dream_frames"] == 256 and record["real_frames"] == wm_levels["frames"] > 0
    assert record["config"]["env"] == "dream" and record["dream_precision"] == "fp32"
    levels = json.loads((tmp_path / "run" / "levels.json").read_text())["level_seeds"]
    assert levels == wm_levels["level_seeds"]
    assert (tmp_path / "run" / "checkpoints" / "latest.zip").exists()
    assert any((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))


def test_dyna_mixes_real_levels_into_the_dream_and_counts_their_frames(tiny_world_model, tmp_path):
    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), horizon=8, precision="fp32", real_envs=1,
                      temperature=1.0, maskgit_steps=2, **SMALL)  # fmt: skip
    env = make_vec_env(cfg)
    real, dream = env.venv.parts
    assert (real.num_envs, dream.num_envs) == (1, 3)
    assert (dream.venv.dream.temperature, dream.venv.dream.steps) == (1.0, 2)
    env.close()
    train_agent(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    wm_levels = json.loads((tiny_world_model / "levels.json").read_text())
    # 256 steps over 4 envs: 64 of them on the real game, 192 dreamed
    assert record["dream_frames"] == 192 and record["real_frames"] == wm_levels["frames"] + 64
    levels = set(json.loads((tmp_path / "run" / "levels.json").read_text())["level_seeds"])
    assert levels > set(wm_levels["level_seeds"])  # the real env's levels are recorded too


def test_real_returns_are_logged_for_the_dyna_envs_only():
    from types import SimpleNamespace

    from stable_baselines3.common.logger import Logger

    from genie_env.agents.train import _RealReturns

    callback = _RealReturns(2)
    callback.model = SimpleNamespace(logger=Logger(folder=None, output_formats=[]))
    callback.locals = {"infos": [{"episode": {"r": 10.0, "l": 50}}, {}, {"episode": {"r": 99.0, "l": 3}}]}
    callback._on_step()
    callback.locals = {"infos": [{}, {"episode": {"r": 0.0, "l": 30}}, {}]}
    callback._on_step()
    values = callback.model.logger.name_to_value
    assert values["dyna/real_ep_rew_mean"] == 5.0 and values["dyna/real_ep_len_mean"] == 40.0


def test_concat_vec_env_matches_one_vec_env_of_all_its_envs():
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from genie_env.envs.sb3 import ConcatVecEnv

    def make(n):
        return DummyVecEnv([lambda: gym.make("CartPole-v1") for _ in range(n)])

    whole, parts = make(5), ConcatVecEnv([make(2), make(3)])
    whole.seed(3), parts.seed(3)
    assert parts.num_envs == 5
    np.testing.assert_array_equal(parts.reset(), whole.reset())
    rng = np.random.default_rng(0)
    for _ in range(40):  # long enough for episodes to end and autoreset
        actions = rng.integers(0, 2, 5)
        a, b = parts.step(actions), whole.step(actions)
        for x, y in zip(a[:3], b[:3]):
            np.testing.assert_array_equal(x, y)
        assert [sorted(i) for i in a[3]] == [sorted(i) for i in b[3]]
    assert parts.get_attr("spec", [1, 4]) == whole.get_attr("spec", [1, 4])
    with pytest.raises(ValueError, match="same spaces"):
        ConcatVecEnv([make(1), DummyVecEnv([lambda: gym.make("MountainCar-v0")])])


def test_train_agent_on_the_real_game_records_its_levels_and_resumes(tmp_path):
    cfg = AgentConfig(env="real", algo="a2c", **{**SMALL, "steps": 128})
    train_agent(cfg, tmp_path / "run", progress=False)
    first = json.loads((tmp_path / "run" / "levels.json").read_text())["level_seeds"]
    assert len(first) >= 4  # every env's first level at least
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["real_frames"] == 128 and record["dream_frames"] == 0
    first_wall = record["wall_s"]
    more = AgentConfig(env="real", algo="a2c", **{**SMALL, "steps": 256})
    train_agent(more, tmp_path / "run", resume=True, progress=False)
    assert load_agent(tmp_path / "run" / "agent.zip", algo="a2c").num_timesteps == 256
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["steps_done"] == 256 and record["real_frames"] == 256
    assert record["wall_s"] > first_wall > 0  # wall time adds up over the resume
    assert set(first) <= set(json.loads((tmp_path / "run" / "levels.json").read_text())["level_seeds"])


def test_train_agent_refuses_to_overwrite_or_to_resume_with_another_config(tmp_path):
    cfg = AgentConfig(env="real", **{**SMALL, "steps": 128})
    train_agent(cfg, tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_agent(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_agent(AgentConfig(env="real", lr=1e-3, **SMALL), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_agent(cfg, tmp_path / "other", resume=True, progress=False)


def test_max_minutes_stops_training_early_and_still_saves_the_agent(tmp_path):
    cfg = AgentConfig(env="real", max_minutes=1e-6, **SMALL)
    train_agent(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert 0 < record["steps_done"] < 256
    assert load_agent(tmp_path / "run" / "agent.zip").num_timesteps == record["steps_done"]


def test_agent_config_rejects_bad_values_naming_the_flag():
    with pytest.raises(ValueError, match="--env"):
        AgentConfig(env="simulator")
    with pytest.raises(ValueError, match="--algo"):
        AgentConfig(algo="dqn")
    with pytest.raises(ValueError, match="--features"):
        AgentConfig(features="resnet")
    with pytest.raises(ValueError, match="--batch-size"):
        AgentConfig(num_envs=2, n_steps=8, batch_size=64)
    for bad in ("temperature", "uncertainty_penalty", "entropy_limit"):
        with pytest.raises(ValueError, match="--temperature, --uncertainty-penalty and --entropy-limit"):
            AgentConfig(**{bad: -1.0})
    for bad in (dict(env="real", real_envs=2), dict(num_envs=4, real_envs=4, batch_size=256)):
        with pytest.raises(ValueError, match="--real-envs"):
            AgentConfig(**bad)


def test_load_agent_names_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_agent(tmp_path / "nope.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not load"):
        load_agent(bad)


def test_impala_cnn_maps_frames_to_features():
    space = spaces.Box(0, 255, (3, 64, 64), np.uint8)
    net = ImpalaCNN(space, features_dim=32)
    out = net(torch.rand(5, 3, 64, 64))
    assert out.shape == (5, 32) and (out >= 0).all()
    out.sum().backward()
    assert net.cnn[0].weight.grad is not None and net.cnn[0].weight.grad.abs().sum() > 0


def _with_payload(src, dst, key, marker, keep_description=True):
    """A copy of agent zip `src` whose `data[key]` unpickles to a call that creates `marker`."""
    import base64
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (Path.touch, (Path(marker),))

    with zipfile.ZipFile(src) as z:
        files = {name: z.read(name) for name in z.namelist()}
    data = json.loads(files["data"])
    described = data.get(key) if keep_description and isinstance(data.get(key), dict) else {":type:": "<class 'x'>"}
    data[key] = {**described, ":serialized:": base64.b64encode(pickle.dumps(Payload())).decode()}
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return dst


def test_a_crafted_agent_file_cannot_run_code(tiny_agent, tmp_path):
    from genie_env.agents.policies import make_policy
    from genie_env.agents.sb3_file import UnsafeAgentFile

    marker = tmp_path / "pwned"
    # a payload in an entry we rebuild from its description: never unpickled, and the agent still loads
    hidden = _with_payload(tiny_agent, tmp_path / "hidden.zip", "policy_kwargs", marker)
    assert load_agent(hidden).policy is not None and not marker.exists()
    # a payload in an entry we do not know: refused, naming it, before anything is unpickled
    unknown = _with_payload(tiny_agent, tmp_path / "unknown.zip", "evil", marker, keep_description=False)
    with pytest.raises(UnsafeAgentFile, match="evil"):
        load_agent(unknown)
    with pytest.raises(UnsafeAgentFile, match="evil"):
        make_policy(f"sb3:{unknown}", 2)  # what genie evaluate and genie collect --policy sb3: use
    assert not marker.exists()


def test_agents_saved_with_the_old_module_path_still_load(tiny_agent, tmp_path):
    import zipfile

    with zipfile.ZipFile(tiny_agent) as z:
        data = json.loads(z.read("data"))
    assert "features_extractor_class" not in json.dumps(data.get("policy_kwargs", {}))  # NatureCNN: nothing to map
    shipped = load_agent(Path(genie_env.__file__).parent / "assets" / "coinrun" / "agent.zip")  # names genie_env.agent
    assert isinstance(shipped.policy.features_extractor, ImpalaCNN)


def test_dream_agents_start_anywhere_in_the_world_models_episodes_unless_given_contexts(
    tiny_world_model, tiny_dataset, tmp_path, caplog
):
    import dataclasses
    import logging
    import shutil

    from genie_env.agents.train import dream_context
    from genie_env.data.context import ContextSource
    from genie_env.world_model import AGENT_CONTEXTS, DEFAULT_MODEL_DIR

    # packaged with the world model: frames from inside its training episodes, not only their first frames
    starts = ContextSource.from_dataset(tiny_dataset, 1, "start", limit=10**6).frames
    inside = ContextSource.from_file(tiny_world_model / AGENT_CONTEXTS).frames
    first = {frame.tobytes() for frame in starts}
    assert len(inside) > len(starts) and sum(frame.tobytes() not in first for frame in inside) > len(inside) // 2
    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), steps=256, num_envs=4, n_steps=32,
                      batch_size=64, horizon=8)  # fmt: skip
    assert dream_context(cfg) == str(tiny_world_model / AGENT_CONTEXTS)
    assert dream_context(dataclasses.replace(cfg, context=(str(tiny_dataset),))) == str(tiny_dataset)
    assert dream_context(dataclasses.replace(cfg, world_model=None)) == str(DEFAULT_MODEL_DIR / AGENT_CONTEXTS)
    assert (DEFAULT_MODEL_DIR / AGENT_CONTEXTS).stat().st_size < 5_000_000  # shipped, within the wheel's budget
    # a world model packaged before it had agent contexts: its level starts, with a warning that says why not
    old = Path(shutil.copytree(tiny_world_model, tmp_path / "old"))
    (old / AGENT_CONTEXTS).unlink()
    with caplog.at_level(logging.WARNING, logger="genie_env.agents.train"):
        assert dream_context(dataclasses.replace(cfg, world_model=str(old))) is None
    assert f"has no {AGENT_CONTEXTS}" in caplog.text and "--context" in caplog.text


def test_dreams_can_start_from_several_real_frames_that_the_model_conditions_on(tiny_world_model, tiny_dataset):
    import dataclasses

    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), context=(str(tiny_dataset),), num_envs=4,
                      n_steps=32, batch_size=64, horizon=8, precision="fp32", context_frames=3)  # fmt: skip
    env = make_vec_env(cfg)  # VecMonitor -> SB3VecEnv -> the batched dream
    dream = env.venv.venv.dream
    assert dream.source.context_frames == 3 and dream.source.actions.shape == (len(dream.source), 2)
    obs = env.reset()
    # each dream is primed with its context's 3 frames: its first frame is the last of them, as decoded
    first = dream.source.frames[dream.context_index][:, -1]
    decoded = dream.wm.decode(dream.wm.encode(first[:, None]))[:, 0]
    np.testing.assert_array_equal(obs.transpose(0, 2, 3, 1) if obs.shape[1] == 3 else obs, decoded)
    assert make_vec_env(dataclasses.replace(cfg, context_frames=1)).venv.venv.dream.source.context_frames == 1
    assert not dream.wm.compiled  # --compile (off by default) reaches the dreams' world model
    assert make_vec_env(dataclasses.replace(cfg, compile=True)).venv.venv.dream.wm.compiled
    with pytest.raises(ValueError, match="--context-frames 3 needs --env dream and a dataset --context"):
        dataclasses.replace(cfg, context=(str(tiny_world_model / "agent_contexts.npz"),))
    with pytest.raises(ValueError, match="--context-frames must be >= 1"):
        dataclasses.replace(cfg, context_frames=0)


def test_dream_dropout_is_on_while_dreaming_and_off_everywhere_else(tiny_world_model, tiny_tokenizer_run,
                                                                     tiny_dataset, tmp_path):  # fmt: skip
    """Dropout's Dream Land: a world model fine-tuned with dropout keeps it on in the dream only."""
    import dataclasses

    from genie_env.cli.train_dynamics import default_args, run

    from genie_env.models import load_dynamics
    from genie_env.world_model import load_world_model, package_world_model

    # fine-tuned from the tiny model with dropout: a regulariser, so --init-from takes the weights
    tokens = tiny_world_model.parent / "tokens"
    args = default_args("tiny")
    run(dataclasses.replace(args, tokens=(str(tokens),), out=str(tmp_path / "dyn"), preset="tiny",
                            model=dataclasses.replace(args.model, dropout=0.3),
                            init_from=str(tiny_world_model / "dynamics")))  # fmt: skip
    assert load_dynamics(tmp_path / "dyn").cfg.dropout == 0.3
    model_dir = package_world_model(tiny_tokenizer_run, tmp_path / "dyn", tiny_dataset, tmp_path / "wm", num_contexts=8)

    def dream(dropout: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The frames dreamed and the coin and end probabilities the model gave at every step."""
        cfg = AgentConfig(env="dream", world_model=str(model_dir), num_envs=4, n_steps=32, batch_size=64, horizon=8,
                          precision="fp32", dream_dropout=dropout)  # fmt: skip
        env = make_vec_env(cfg)
        env.seed(seed)
        env.reset()
        torch.manual_seed(seed)
        frames, probs = [], []
        for _ in range(3):
            obs, _, _, infos = env.step(np.full(4, 3, np.int64))
            frames.append(obs)
            probs.append([[info["reward_prob"], info["termination_prob"]] for info in infos])
        drops = [m.training for m in env.venv.venv.dream.wm.dynamics.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and all(d == dropout for d in drops)  # on in the dream with the flag, off without
        return np.stack(frames), np.array(probs)

    off = dream(False)
    for a, b in zip(off, dream(False)):
        np.testing.assert_array_equal(a, b)  # off: the dream is the model's one future
    on, again = dream(True, seed=0), dream(True, seed=0)
    for a, b in zip(on, again):
        np.testing.assert_array_equal(a, b)  # reproducible under the training seed
    # but another simulator than the plain dream: the model's probabilities move with the dropped units (the tiny
    # model's greedy frames may not, and whether they do depends on the CPU's rounding)
    assert np.abs(on[1] - off[1]).max() > 1e-6
    # off wherever the model is loaded to be measured (eval-dynamics, play, GenieCoinRun-v0)
    assert not any(m.training for m in load_world_model(model_dir).dynamics.modules())
    with pytest.raises(ValueError, match="trained without dropout .*--model.dropout"):
        make_vec_env(AgentConfig(env="dream", world_model=str(tiny_world_model), num_envs=4, n_steps=32,
                                 batch_size=64, horizon=8, precision="fp32", dream_dropout=True))  # fmt: skip
    with pytest.raises(ValueError, match="--dream-dropout is for dreams"):
        AgentConfig(env="real", dream_dropout=True)


def test_a_saved_agent_plays_in_bf16_where_bf16_is_fast_and_in_fp32_elsewhere(monkeypatch):
    from genie_env import _compat
    from genie_env.agents.policies import SB3Policy
    from genie_env.world_model import DEFAULT_AGENT

    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    first = np.ones(4, bool)
    for flags, autocast in (({"avx2", "avx512f"}, False), ({"avx512_bf16"}, True)):
        monkeypatch.setattr(_compat, "cpu_flags", lambda flags=flags: flags)
        policy = SB3Policy(str(DEFAULT_AGENT), 4, seed=3)
        seen = []
        policy.model.policy.features_extractor.register_forward_hook(
            lambda *_, seen=seen: seen.append(torch.is_autocast_enabled("cpu")))  # fmt: skip
        actions = policy.act(frames, first)
        assert seen == [autocast] and actions.shape == (4,) and ((0 <= actions) & (actions < 15)).all()
        assert np.array_equal(actions, SB3Policy(str(DEFAULT_AGENT), 4, seed=3).act(frames, first))  # seeded
    assert SB3Policy(str(DEFAULT_AGENT), 4, precision="fp32").bf16 is False
    with pytest.raises(ValueError, match="unknown policy precision 'int8'"):
        SB3Policy(str(DEFAULT_AGENT), 4, precision="int8")


def test_the_agents_cnn_runs_in_bf16_autocast_only_when_asked_and_its_features_stay_float32():
    from stable_baselines3 import PPO

    from genie_env.agents.networks import autocast_features

    env = make_vec_env(AgentConfig(env="real", features="impala", **SMALL))
    model = PPO("CnnPolicy", env, policy_kwargs={"features_extractor_class": ImpalaCNN}, n_steps=32, batch_size=64)
    net = model.policy.features_extractor
    frames = torch.rand(6, 3, 64, 64)
    inner = []
    net.cnn.register_forward_hook(lambda _m, _i, out: inner.append(out.dtype))
    with torch.no_grad():
        fp32 = net(frames)
        autocast_features(model.policy, "bf16")
        bf16 = net(frames)
        autocast_features(model.policy, "fp32")
        again = net(frames)
    assert inner == [torch.float32, torch.bfloat16, torch.float32]  # the convolutions ran in bf16 only when asked
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # what the fp32 heads get
    assert torch.allclose(bf16, fp32, atol=0.05 * fp32.abs().max().item())
    assert torch.equal(again, fp32)  # fp32 puts the plain forward back
    env.close()


def test_agents_train_in_bf16_autocast_where_bf16_is_fast_and_save_fp32_weights(tmp_path, monkeypatch):
    from genie_env import _compat
    from genie_env.agents import train
    from genie_env.agents.networks import resolve_train_precision

    seen = []

    def watched(policy, precision):
        policy.features_extractor.cnn.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        autocast_features(policy, precision)

    autocast_features = train.autocast_features
    monkeypatch.setattr(train, "autocast_features", watched)
    for flags, dtype, name in (({"avx512f"}, torch.float32, "fp32"), ({"avx512_bf16"}, torch.bfloat16, "bf16")):
        monkeypatch.setattr(_compat, "cpu_flags", lambda flags=flags: flags)
        seen.clear()
        train_agent(AgentConfig(env="real", **{**SMALL, "steps": 128}), tmp_path / name, progress=False)
        assert seen and set(seen) == {dtype}  # rollouts and updates alike
        record = json.loads((tmp_path / name / "config.json").read_text())
        assert record["train_precision"] == name and record["dream_precision"] is None  # the real game
        saved = load_agent(tmp_path / name / "agent.zip")
        assert {p.dtype for p in saved.policy.parameters()} == {torch.float32}
        assert resolve_train_precision("auto", "cpu") == name
    assert resolve_train_precision("fp32", "cpu") == "fp32"  # asked for: whatever the CPU
    with pytest.raises(ValueError, match="--train-precision"):
        AgentConfig(train_precision="fp16")
    assert AgentConfig().precision == "auto"  # dreams too are fast by default (bf16 where bf16 is fast)
