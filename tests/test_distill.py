"""Distillation (`genie train-dynamics --distill-from`): the student learns the teacher's predictions,
the teacher stays frozen and unsaved, and a teacher of other tokens, actions or rewards is refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch
from genie_env.cli import train_dynamics

from genie_env.checkpoint import CheckpointError, read_config, resolve_checkpoint
from genie_env.data.dataset import token_windows
from genie_env.models import load_dynamics
from genie_env.models.distill import DistillObjective
from genie_env.models.dynamics import DynamicsModel


def _args(tokens, out, **kw):
    args = train_dynamics.default_args("tiny")
    train = dataclasses.replace(args.train, steps=kw.pop("steps", 4), checkpoint_every=2, lr=3e-3)
    return dataclasses.replace(args, tokens=(str(tokens),), out=str(out), train=train, **kw)


def _batch(tokens, teacher, n=8):
    windows = token_windows((str(tokens),), teacher.cfg.context_frames, 1)
    items = [windows[i] for i in range(min(n, len(windows)))]
    return {k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in items[0]}


def test_the_objective_is_the_teachers_entropy_for_its_copy_and_trains_only_the_student(tiny_world_model):
    teacher = load_dynamics(tiny_world_model / "dynamics")
    batch = _batch(tiny_world_model.parent / "tokens", teacher)
    torch.manual_seed(0)
    same = DistillObjective(copy.deepcopy(teacher).train(), teacher, dreamed=0.5)
    metrics = same(batch).metrics
    assert metrics["token_kl"].abs() < 1e-4 and metrics["teacher_agreement"] == 1.0
    assert 0.0 <= float(metrics["dreamed_fraction"]) < 1.0
    student = DynamicsModel(dataclasses.replace(teacher.cfg, kv_heads=1))
    objective = DistillObjective(student, teacher)
    result = objective(batch)
    assert result.metrics["token_kl"] > 0.01
    result.loss.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(name.startswith("teacher") for name in objective.state_dict())  # only the student is saved
    with pytest.raises(ValueError, match="num_actions 4 against 15"):
        DistillObjective(DynamicsModel(dataclasses.replace(teacher.cfg, num_actions=4)), teacher, teacher_name="T")


def test_a_distilled_student_comes_closer_to_its_teacher_and_records_it(tiny_world_model, tmp_path):
    tokens = tiny_world_model.parent / "tokens"
    run = tmp_path / "student"
    lean = dataclasses.replace(train_dynamics.default_args("tiny").model, kv_heads=1)
    train_dynamics.run(_args(tokens, run, model=lean, distill_from=str(tiny_world_model), steps=60))
    teacher = load_dynamics(tiny_world_model / "dynamics")
    student = load_dynamics(run)
    assert student.cfg.kv_heads == 1 and student.cfg.reward_values == teacher.cfg.reward_values
    batch = _batch(tokens, teacher, n=16)
    torch.manual_seed(1)
    trained = DistillObjective(student, teacher)(batch).metrics["token_kl"]
    torch.manual_seed(1)
    fresh = DistillObjective(DynamicsModel(student.cfg), teacher)(batch).metrics["token_kl"]
    assert trained < 0.7 * fresh
    meta = read_config(resolve_checkpoint(run), kind="dynamics")
    assert meta["distill_from"]["path"] == str(resolve_checkpoint(tiny_world_model / "dynamics"))
    assert meta["distill_from"]["dreamed"] == 0.5 and len(meta["distill_from"]["sha256"]) == 64


def test_distilling_refuses_self_forcing_and_a_teacher_of_another_tokenizer(tiny_world_model, tmp_path):
    tokens = tiny_world_model.parent / "tokens"
    with pytest.raises(ValueError, match="--distill-from and --self-forcing"):
        _args(tokens, tmp_path / "a", distill_from=str(tiny_world_model), self_forcing=0.5)
    with pytest.raises(ValueError, match="--distill-dreamed"):
        _args(tokens, tmp_path / "a", distill_from=str(tiny_world_model), distill_dreamed=2.0)
    other = tmp_path / "tokens_other"
    shutil.copytree(tokens, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"] = {**manifest["tokenizer"], "sha256": "0" * 64, "path": str(tmp_path / "gone")}
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="--distill-from .* another tokenizer than --tokens"):
        train_dynamics.run(_args(other, tmp_path / "b", distill_from=str(tiny_world_model)))
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").rglob("*.safetensors"))
