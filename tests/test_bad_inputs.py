"""Bad input gets one clear error naming the file or the field (issue 21's probes), never a raw traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

from genie_env.checkpoint import CheckpointError, latest_checkpoint, read_config
from genie_env.data.context import ContextSource
from genie_env.data.manifest import DatasetError


@pytest.mark.parametrize("content", ["[1, 2]", '{"path": null}', '{"step": 3}', "{trunc"])
def test_a_bad_latest_json_is_named(tmp_path, content):
    (tmp_path / "latest.json").write_text(content)
    with pytest.raises(CheckpointError, match=f"corrupt run pointer {tmp_path / 'latest.json'}"):
        latest_checkpoint(tmp_path)


def test_a_checkpoint_config_that_is_not_utf8_or_not_an_object_is_named(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError, match="corrupt checkpoint config"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        read_config(tmp_path)


def test_bad_contexts_are_named(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="corrupt context file"):
        ContextSource.from_file(tmp_path / "c.npz")
    frames = np.zeros((2, 2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="no contexts"):
        ContextSource(np.zeros((0, 1, 64, 64, 3), np.uint8))
    with pytest.raises(TypeError, match="context actions must be integers"):
        ContextSource(frames, np.full((2, 1), 1.7))
    with pytest.raises(ValueError, match="context action 15 out of range"):
        ContextSource(frames, np.full((2, 1), 15))


def test_a_failed_reset_does_not_break_later_steps():
    env = gymnasium.make("ProcgenCoinRun-v0")
    with pytest.raises(Exception, match="Seed must be"):
        env.reset(seed=-1)
    env.reset(seed=0)
    obs, *_ = env.step(7)  # gymnasium's passive checker raised TypeError here
    assert obs.shape == (64, 64, 3)


def test_dream_inputs_are_checked_up_front(tiny_world_model):
    from genie_env.world_model import load_world_model

    with pytest.raises(ValueError, match="max_episode_steps must be >= 1"):
        gymnasium.make_vec("GenieCoinRun-v0", num_envs=2, world_model=str(tiny_world_model), max_episode_steps=0)
    wm = load_world_model(tiny_world_model)
    frames = np.zeros((1, 1, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="at least one step"):
        wm.rollout(frames, np.zeros((1, 0), np.int64))
    with pytest.raises(ValueError, match="temperature >= 0"):
        wm.rollout(frames, np.zeros((1, 2), np.int64), temperature=-1.0)


def test_train_tokenizer_names_a_token_dataset_given_as_data(tiny_world_model, tmp_path):
    tokens = tiny_world_model.parent / "tokens"
    cmd = [sys.executable, "-m", "genie_env.cli.train_tokenizer", "--preset", "tiny", "--data", str(tokens), "--out",
           str(tmp_path / "run")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"error: {tokens} is a 'tokens' dataset, expected a 'frames' dataset" in r.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mean_return": float("nan")}, "mean_return must be finite numbers"),
        ({"return_ci": [1.0]}, r"return_ci must be a \[low, high\] pair"),
        ({"mean_return": "5"}, "mean_return must be finite numbers"),
        ({"name": "a|b"}, "name 'a|b' must be non-empty text"),
        ({"episodes": 0}, "episodes must be a positive integer"),
    ],
)
def test_compare_refuses_bad_fields(tmp_path, change, message):
    from genie_env.agents.compare import load_result

    good = {"name": "x", "episodes": 4, "mean_return": 5.0, "return_ci": [4.0, 6.0], "success_rate": 0.5,
            "success_ci": [0.4, 0.6], "mean_length": 100.0}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=message) as e:
        load_result(path)
    assert str(path) in str(e.value)


def test_more_dreams_than_memory_warns_before_allocating(tiny_world_model, monkeypatch):
    import os

    from genie_env.envs import dream

    monkeypatch.setattr(os, "sysconf", lambda name: 1 if name == "SC_AVPHYS_PAGES" else 4096)  # 4 KiB free
    with pytest.warns(ResourceWarning, match=r"3 dreams need .* GiB of KV cache .* MiB each\) but 0.0 GiB is free"):
        dream.GenieCoinRunVectorEnv(3, world_model=str(tiny_world_model))


def test_an_out_that_is_a_file_is_one_error_line(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("mine")
    r = subprocess.run([sys.executable, "-m", "genie_env.cli.collect", "--out", str(target), "--frames", "50"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error:") and str(target) in r.stderr
    assert "Traceback" not in r.stderr and target.read_text() == "mine"


def test_a_truncated_resume_state_is_named(tmp_path):
    from genie_env.data.collect import CollectConfig

    from .conftest import collect_with_policy

    out = tmp_path / "ds"
    cfg = dict(frames=400, num_envs=2, shard_frames=100, max_episode_frames=50, progress=False)
    collect_with_policy(CollectConfig(out=str(out), **cfg))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(complete=False, resume_state="resume_000001.npz", state={"next_episode_id": 0, "kept":
                    {"frames": 0, "episodes": 0}, "shard_index": 1, "policy": {}})  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "resume_000001.npz").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(DatasetError, match="corrupt resume state .*resume_000001.npz"):
        collect_with_policy(CollectConfig(out=str(out), resume=True, **cfg))


def test_a_checkpoint_without_its_trainer_state_is_named(tiny_dataset, tmp_path):
    from .test_trainer import make_trainer

    make_trainer(tiny_dataset, tmp_path / "run", steps=4).fit()
    ckpt = tmp_path / "run" / json.loads((tmp_path / "run" / "latest.json").read_text())["path"]
    (ckpt / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError, match=f"corrupt or missing {ckpt / 'trainer_state.json'}"):
        make_trainer(tiny_dataset, tmp_path / "run", steps=4, resume=True)


def test_auto_precision_is_bf16_only_where_bf16_is_fast(monkeypatch):
    from genie_env import _compat
    from genie_env.trainer import TrainConfig, Trainer, trains_in_bf16
    from genie_env.world_model import resolve_precision

    monkeypatch.setattr(_compat, "cpu_flags", lambda: {"avx2", "avx512f"})  # bf16 would be emulated
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert not trains_in_bf16("auto", "cpu") and trains_in_bf16("bf16", "cpu") and not trains_in_bf16("fp32", "cpu")
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.device = TrainConfig(precision="auto"), __import__("torch").device("cpu")
    assert trainer._autocast().__class__.__name__ == "nullcontext"
    monkeypatch.setattr(_compat, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert resolve_precision("auto", "cpu") == "bf16"
    assert trainer._autocast().fast_dtype == __import__("torch").bfloat16 and trains_in_bf16("auto", "cpu")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")
