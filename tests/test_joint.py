"""The LAM and the dynamics trained together (`genie train-dynamics --actions joint`): the dynamics loss
trains the LAM's encoder, the split into RUN/lam and RUN/dynamics computes what the joint model does,
the run resumes under its nested config, and what the split gives plays as a latent world model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from genie_env.checkpoint import CheckpointError
from genie_env.data.manifest import DatasetError
from genie_env.models import load_dynamics, load_lam
from genie_env.models.joint import JointConfig, JointModel, load_joint
from genie_env.presets import dynamics_preset, lam_preset


@pytest.fixture(scope="module")
def tokens(tiny_dataset, tiny_tokenizer_run, tmp_path_factory):
    from genie_env.models.tokenize import tokenize_dataset

    out = tmp_path_factory.mktemp("joint") / "tokens"
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, out, progress=False)
    return out


def joint_args(tokens, out, **changes):
    from genie_env.cli.train_dynamics import default_args

    fields = {"tokens": (str(tokens),), "out": str(out), "preset": "tiny", "actions": "joint", **changes}
    return dataclasses.replace(default_args("tiny"), **fields)


@pytest.fixture(scope="module")
def joint_run(tokens, tmp_path_factory):
    from genie_env.cli.train_dynamics import run

    out = tmp_path_factory.mktemp("joint") / "run"
    metrics = run(joint_args(tokens, out))
    return out, metrics


def tiny_joint(lam_weight: float = 1.0) -> JointModel:
    lam = dataclasses.replace(lam_preset("tiny").model, frames=4)
    dynamics = dataclasses.replace(dynamics_preset("tiny").model, num_actions=lam.num_actions)
    return JointModel(JointConfig(lam, dynamics, lam_weight))


def paired_batch(b: int = 2, w: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.randint(0, 256, (b, w, 64, 64, 3), generator=g, dtype=torch.uint8),
        "tokens": torch.randint(0, 32, (b, w, 4, 4), generator=g),
        "rewards": torch.zeros(b, w),
        "terminations": torch.zeros(b, w, dtype=torch.bool),
    }


def test_the_dynamics_loss_trains_the_lam_s_encoder():
    torch.manual_seed(0)
    model = tiny_joint(lam_weight=0.0)  # only the dynamics' loss
    model.loss(paired_batch()).loss.backward()
    encoder = [p.grad for p in model.lam.encoder.parameters()]
    assert all(g is not None for g in encoder) and sum(float(g.abs().sum()) for g in encoder) > 0
    decoder = [p.grad for p in model.lam.decoder.parameters()]
    assert all(g is None or float(g.abs().sum()) == 0 for g in decoder)  # the LAM's decoder: its own loss only


def test_a_config_that_cannot_work_is_refused():
    lam = lam_preset("tiny").model
    with pytest.raises(ValueError, match="--lam-model.frames 4 must be >= --model.context-frames 8"):
        JointConfig(lam, dataclasses.replace(dynamics_preset("tiny").model, num_actions=4, context_frames=8))
    with pytest.raises(ValueError, match="takes 15 actions but the LAM has 4 latent actions"):
        JointConfig(lam, dynamics_preset("tiny").model)


def test_joint_training_splits_into_a_lam_and_a_dynamics_that_compute_what_it_did(joint_run):
    run, metrics = joint_run
    assert {f"joint/{k}" for k in ("mask_ce", "lam_psnr", "lam_action_usage", "dynamics_loss")} <= set(metrics)
    joint, meta, ckpt = load_joint(run)
    assert meta["kind"] == "joint" and meta["config"]["lam"]["num_actions"] == 4 and "frames" in meta
    lam, dynamics = load_lam(run / "lam"), load_dynamics(run / "dynamics")
    record = json.loads((run / "dynamics" / "config.json").read_text())
    lam_record = json.loads((run / "lam" / "config.json").read_text())
    assert record["actions"]["kind"] == "latent" and record["actions"]["num_actions"] == 4
    assert record["actions"]["lam"]["path"] == str(run / "lam") and record["joint"]["path"] == str(ckpt)
    assert record["tokenizer"] == meta["tokenizer"] and lam_record["joint"]["sha256"] == record["joint"]["sha256"]
    assert dynamics.cfg.num_actions == 4 and dynamics.cfg == joint.cfg.dynamics
    for name, p in lam.state_dict().items():
        assert torch.equal(p, joint.lam.state_dict()[name])
    # the split dynamics, given latent action indices, computes what the joint model did from their codes
    g = torch.Generator().manual_seed(1)
    prev = torch.randint(0, 32, (3, 4, 16), generator=g)
    current = torch.where(torch.rand(3, 4, 16, generator=g) < 0.5, prev, torch.full_like(prev, 32))
    codes = torch.randint(0, 4, (3, 4), generator=g)
    with torch.no_grad():
        ours = dynamics(prev, current, codes)
        theirs = joint.dynamics(prev, current, joint.action_table()[codes])
    torch.testing.assert_close(ours.logits, theirs.logits)
    torch.testing.assert_close(ours.events, theirs.events)
    with pytest.raises(CheckpointError, match="'joint' checkpoint, expected a 'dynamics' .*pass its split"):
        load_dynamics(run)


def test_joint_runs_resume_under_their_nested_config_and_refuse_a_changed_one(tokens, tmp_path):
    from genie_env.cli.train_dynamics import run

    args = joint_args(tokens, tmp_path / "run")
    run(args)
    pointer = tmp_path / "run" / "latest.json"
    done = json.loads(pointer.read_text())
    assert done["step"] == 20 and (tmp_path / "run" / "checkpoints" / "step_0000010").exists()
    pointer.write_text(json.dumps({"step": 10, "path": "checkpoints/step_0000010"}))  # as if killed at step 10
    weights = (tmp_path / "run" / "dynamics" / "model.safetensors").read_bytes()
    run(dataclasses.replace(args, resume=True))
    assert json.loads(pointer.read_text()) == done  # it took up the run at step 10 and finished it
    assert (tmp_path / "run" / "dynamics" / "model.safetensors").read_bytes() == weights  # exactly
    changed = dataclasses.replace(args.lam_model, latent_dim=args.lam_model.latent_dim * 2)
    with pytest.raises(CheckpointError, match=r"model\.lam\.latent_dim"):
        run(dataclasses.replace(args, lam_model=changed, resume=True))


def test_joint_training_refuses_frames_the_tokens_were_not_made_from(tokens, tmp_path, tiny_dataset):
    import shutil

    from genie_env.cli.train_dynamics import run

    other = shutil.copytree(tiny_dataset, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:-1]  # another dataset: one shard fewer
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=f"{other} is not the frame dataset {tokens} was tokenized from"):
        run(joint_args(tokens, tmp_path / "run", frames=(str(other),)))
    with pytest.raises(ValueError, match="--frames is for --actions joint only"):
        joint_args(tokens, tmp_path / "run", frames=(str(other),), actions="real")


def test_the_split_plays_as_a_latent_world_model(joint_run, tiny_dataset, tiny_tokenizer_run, tmp_path):
    import gymnasium

    from genie_env.evaluate.dynamics import evaluate_dynamics
    from genie_env.models import load_tokenizer
    from genie_env.models.tokenize import tokenize_dataset
    from genie_env.world_model import package_world_model

    run, _ = joint_run
    labelled = tmp_path / "latent_tokens"
    manifest = tokenize_dataset(tiny_dataset, tiny_tokenizer_run, labelled, progress=False, lam=run / "lam")
    record = json.loads((run / "dynamics" / "config.json").read_text())
    assert manifest.actions["lam"]["sha256"] == record["actions"]["lam"]["sha256"]
    dynamics, tokenizer = load_dynamics(run / "dynamics"), load_tokenizer(tiny_tokenizer_run)
    result = evaluate_dynamics(dynamics, tokenizer, labelled, tiny_dataset, context=2, horizon=4, windows=4,
                               dreamed_leads=(), progress=False)  # fmt: skip
    assert result["actions"]["kind"] == "latent" and set(result["delta_t_psnr"]) == {4}
    model_dir = package_world_model(tiny_tokenizer_run, run / "dynamics", tiny_dataset, tmp_path / "wm",
                                    num_contexts=4)  # fmt: skip
    env = gymnasium.make("GenieEnv-v0", world_model=str(model_dir))
    assert env.action_space == gymnasium.spaces.Discrete(4)
    env.reset(seed=0)
    frame, *_ = env.step(2)
    assert frame.shape == (64, 64, 3)
