"""A second round of the loop: data collected by the agent, the dynamics fine-tuned on both rounds' data,
dreams starting from both, and the real-frame budget counting both."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from genie_env.cli import train_dynamics

from genie_env.agents.train import AgentConfig, train_agent
from genie_env.checkpoint import CheckpointError, read_config, resolve_checkpoint
from genie_env.data.collect import CollectConfig
from genie_env.data.context import ContextSource
from genie_env.data.dataset import token_windows
from genie_env.data.format import dataset_level_seeds
from genie_env.data.manifest import read_manifest
from genie_env.envs.dream import GenieCoinRunVectorEnv
from genie_env.models import init_weights, load_dynamics
from genie_env.models.dynamics import DynamicsModel
from genie_env.models.tokenize import tokenize_dataset
from genie_env.world_model import package_world_model

from .conftest import TINY, collect_with_policy


@pytest.fixture(scope="module")
def second_round(tiny_dataset, tiny_tokenizer_run, tiny_agent, tmp_path_factory):
    """Round 2's frames (collected by the tiny dream agent on other levels) and both rounds' tokens."""
    root = tmp_path_factory.mktemp("round2")
    collect_with_policy(
        CollectConfig(out=str(root / "data"), **{**TINY, "frames": 600, "seed": 11}, policy=f"sb3:{tiny_agent}")
    )
    for name, data in (("tokens1", tiny_dataset), ("tokens2", root / "data")):
        tokenize_dataset(data, tiny_tokenizer_run, root / name, progress=False)
    return root


def _args(tokens, out, **kw):
    args = train_dynamics.default_args("tiny")
    train = dataclasses.replace(args.train, steps=kw.pop("steps", 4), checkpoint_every=2)
    return dataclasses.replace(args, tokens=tokens, out=str(out), train=train, **kw)


def test_dynamics_trains_on_both_rounds_and_fine_tunes_from_the_first(tiny_world_model, second_round):
    r = second_round
    tokens = (str(r / "tokens1"), str(r / "tokens2"))
    both = token_windows(tokens, 4, 1)
    one = [token_windows((t,), 4, 1) for t in tokens]
    assert len(both) == sum(map(len, one)) and all(len(d) > 0 for d in one)

    first = tiny_world_model.parent / "dyn_run"  # the tiny world model's dynamics run
    fresh = DynamicsModel(load_dynamics(first).cfg)
    manifest = read_manifest(r / "tokens1", kind="tokens")
    used = init_weights(fresh, str(first), manifest.tokenizer)
    source = load_dynamics(first).state_dict()
    assert all(torch.equal(v, source[k]) for k, v in fresh.state_dict().items())

    train_dynamics.run(_args(tokens, r / "dyn2", init_from=str(first)))
    meta = read_config(r / "dyn2" / "checkpoints" / "step_0000004", kind="dynamics")
    assert meta["init_from"] == used
    # a fine-tune killed after step 2 resumes from its own checkpoint, not from --init-from's weights
    shutil.rmtree(r / "dyn2" / "checkpoints" / "step_0000004")
    (r / "dyn2" / "latest.json").write_text(json.dumps({"step": 2, "path": "checkpoints/step_0000002"}))
    train_dynamics.run(_args(tokens, r / "dyn2", init_from=str(first), resume=True))
    assert json.loads((r / "dyn2" / "latest.json").read_text())["step"] == 4


def test_self_forcing_fine_tune_is_recorded_and_resumes_only_with_the_same_probability(
    tiny_world_model, second_round, tmp_path
):
    tokens = (str(second_round / "tokens1"),)
    first = str(tiny_world_model.parent / "dyn_run")
    run = tmp_path / "sf"
    train_dynamics.run(_args(tokens, run, init_from=first, self_forcing=0.5))
    assert read_config(run / "checkpoints" / "step_0000004", kind="dynamics")["self_forcing"] == 0.5
    shutil.rmtree(run / "checkpoints" / "step_0000004")  # killed after step 2
    (run / "latest.json").write_text(json.dumps({"step": 2, "path": "checkpoints/step_0000002"}))
    with pytest.raises(CheckpointError, match="self_forcing"):
        train_dynamics.run(_args(tokens, run, init_from=first, resume=True))
    train_dynamics.run(_args(tokens, run, init_from=first, self_forcing=0.5, resume=True))
    assert json.loads((run / "latest.json").read_text())["step"] == 4


def test_fine_tuning_refuses_another_architecture_or_tokenizer(tiny_world_model, second_round, tmp_path):
    r = second_round
    first = str(tiny_world_model.parent / "dyn_run")
    args = _args((str(r / "tokens2"),), tmp_path / "a", init_from=first)
    wider = dataclasses.replace(args, model=dataclasses.replace(args.model, dim=args.model.dim * 2))
    with pytest.raises(CheckpointError, match="architecture differs .* dim"):
        train_dynamics.run(wider)
    other = tmp_path / "tokens_other"
    shutil.copytree(r / "tokens2", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="different tokenizers"):
        train_dynamics.run(_args((str(r / "tokens1"), str(other)), tmp_path / "b"))
    with pytest.raises(CheckpointError, match="another tokenizer"):
        train_dynamics.run(_args((str(other),), tmp_path / "c", init_from=first))
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").rglob("*.safetensors"))


def test_world_model_and_dreams_cover_both_rounds(tiny_dataset, tiny_tokenizer_run, tiny_world_model, second_round):
    r = second_round
    datasets = [tiny_dataset, r / "data"]
    out = package_world_model(tiny_tokenizer_run, tiny_world_model.parent / "dyn_run", datasets, r / "model2",
                              num_contexts=16)  # fmt: skip
    levels = json.loads((out / "levels.json").read_text())
    seeds1, seeds2 = dataset_level_seeds(tiny_dataset), dataset_level_seeds(r / "data")
    assert seeds2 - seeds1 and set(levels["level_seeds"]) == seeds1 | seeds2
    assert levels["frames"] == sum(read_manifest(d).counts["frames"] for d in datasets)

    # contexts are drawn from both datasets: the frames of each appear among them
    source = ContextSource.from_dataset(datasets, 1, "any", limit=10_000)
    only1 = ContextSource.from_dataset(tiny_dataset, 1, "any", limit=10_000)
    only2 = ContextSource.from_dataset(r / "data", 1, "any", limit=10_000)
    assert len(source) == len(only1) + len(only2)
    with pytest.raises(ValueError, match="no dataset directory"):
        ContextSource.from_dataset([], 1)

    cfg = AgentConfig(env="dream", world_model=str(out), context=tuple(map(str, datasets)), steps=128, num_envs=4,
                      n_steps=32, batch_size=64, n_epochs=1, horizon=8)  # fmt: skip
    train_agent(cfg, r / "agent2", progress=False)
    record = json.loads((r / "agent2" / "config.json").read_text())
    assert record["real_frames"] == levels["frames"]  # the budget counts both rounds
    venv = GenieCoinRunVectorEnv(2, world_model=str(out), context=[str(d) for d in datasets], reset_from="any")
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    venv.close()


def test_agent_configs_written_with_a_single_context_path_still_resume(tiny_world_model, tiny_dataset, tmp_path):
    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), context=str(tiny_dataset), steps=128,
                      num_envs=4, n_steps=32, batch_size=64, n_epochs=1, horizon=8)  # fmt: skip
    assert cfg.context == (str(tiny_dataset),)
    train_agent(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    record["config"]["context"] = str(tiny_dataset)  # as configs were written before several were allowed
    (tmp_path / "run" / "config.json").write_text(json.dumps(record))
    train_agent(dataclasses.replace(cfg, steps=256), tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["steps_done"] == 256


def test_pipeline_presets_validate_rounds_and_agent_features(tmp_path):
    from genie_env.cli.pipeline import Pipeline, PipelineArgs

    from genie_env.presets import PipelinePreset, pipeline_preset

    assert pipeline_preset("cpu").rounds == 2 and pipeline_preset("tiny").rounds == 2
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        PipelinePreset(frames=10, collect_envs=1, tokenizer="tiny", dynamics="tiny", agent_steps=8, rounds=0)
    with pytest.raises(ValueError, match="unknown agent_features 'resnet'"):
        PipelinePreset(frames=10, collect_envs=1, tokenizer="tiny", dynamics="tiny", agent_steps=8,
                       agent_features="resnet")  # fmt: skip
    # the shipped agent is an IMPALA CNN, so the preset that reproduces it trains IMPALA agents
    assert pipeline_preset("cpu").agent_features == "impala"
    cpu = Pipeline(PipelineArgs(preset="cpu", out=str(tmp_path / "cpu")))
    assert {cpu.agent_config(env, 8).features for env in ("dream", "real")} == {"impala"}


def test_one_tokenizer_check_accepts_the_exported_tokenizer_and_refuses_another(tiny_world_model):
    from genie_env.models import check_trained_on, tokenizer_identity

    dynamics = tiny_world_model.parent / "dyn_run"
    run = read_config(resolve_checkpoint(dynamics), kind="dynamics")["tokenizer"]["path"]
    exported = tiny_world_model / "tokenizer"  # float16, what a packaged (shipped) model holds
    assert tokenizer_identity(exported) != tokenizer_identity(run)
    for tokenizer in (run, exported):  # eval-dynamics, load_world_model and --init-from all run this check
        check_trained_on(dynamics, tokenizer_identity(tokenizer), str(tokenizer))
    with pytest.raises(CheckpointError, match=f"{dynamics} was trained on tokens of another tokenizer than mine"):
        check_trained_on(dynamics, {"0" * 64}, "mine")
