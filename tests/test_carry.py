"""--carry while a stage trains: the in-progress mirror (training/carry.py) and a pipeline stage that a lost
machine interrupted going on from it on a new one."""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest
from genie_env.cli import carry, study
from genie_env.cli.pipeline import Pipeline, PipelineArgs
from safetensors.torch import load_file

from genie_env import trainer as trainer_module
from genie_env._io import LOCK
from genie_env.checkpoint import OPTIMIZER, resolve_checkpoint


def _checkpoint(run, step: int, extra: str = "") -> None:
    """A trainer-like checkpoint at `step`: RUN/checkpoints/step_N/{model,optimizer,...}, latest.json."""
    ckpt = run / "checkpoints" / f"step_{step:07d}"
    ckpt.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", OPTIMIZER, "trainer_state.json"):
        (ckpt / name).write_text(f"{name} {step}{extra}")
    (run / "latest.json").write_text(json.dumps({"step": step, "path": f"checkpoints/step_{step:07d}"}))
    (run / "metrics.jsonl").write_text(f"up to {step}\n")


def test_snapshot_keeps_what_resuming_needs_and_nothing_else(tmp_path):
    run, target = tmp_path / "run", tmp_path / "carry" / "dynamics.in_progress"
    _checkpoint(run, 10)
    _checkpoint(run, 20)
    (run / "tb").mkdir()
    (run / "tb" / "events").write_text("x")
    (run / ".metrics.jsonl.tmp-1234").write_text("half written")
    (run / LOCK).write_text('{"pid": 1, "host": "the machine that went"}')
    assert carry.snapshot(run, target)
    kept = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert kept == {"latest.json", "metrics.jsonl", *(f"checkpoints/step_0000020/{n}" for n in
                    ("config.json", "model.safetensors", OPTIMIZER, "trainer_state.json"))}  # fmt: skip
    assert json.loads((target / "latest.json").read_text())["step"] == 20
    # the finished copy leaves the optimizer state out
    carry.carry_run(run, tmp_path / "carry" / "dynamics")
    assert not (tmp_path / "carry" / "dynamics" / "checkpoints" / "step_0000020" / OPTIMIZER).exists()
    # an agent's run: its checkpoint zip and sampler state under checkpoints/ are what resuming needs
    agent = tmp_path / "agent"
    (agent / "checkpoints").mkdir(parents=True)
    (agent / "config.json").write_text("{}")
    (agent / "checkpoints" / "latest.zip").write_text("zip")
    assert carry.snapshot(agent, tmp_path / "carry" / "agent.in_progress")
    assert (tmp_path / "carry" / "agent.in_progress" / "checkpoints" / "latest.zip").read_text() == "zip"


def test_only_a_new_checkpoint_makes_a_new_mirror(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("step 1\n")
    assert carry._signature(run) == ()  # nothing to resume from yet: nothing mirrored
    assert not carry.snapshot(run, tmp_path / "mirror") and not (tmp_path / "mirror").exists()
    _checkpoint(run, 10)
    first = carry._signature(run)
    (run / "metrics.jsonl").write_text("step 11\n")  # logs change all the time: no new copy for them
    assert carry._signature(run) == first
    _checkpoint(run, 20)
    assert carry._signature(run) not in ((), first)


def test_a_mirror_holding_a_lock_is_copied_back_without_it(tmp_path):
    mirror = tmp_path / "mirror"
    _checkpoint(mirror, 10)
    (mirror / LOCK).write_text('{"pid": 1, "host": "the machine that went"}')  # as an older genie-env kept it
    assert carry.restore(tmp_path / "run", mirror)
    assert not (tmp_path / "run" / LOCK).exists() and (tmp_path / "run" / "latest.json").exists()


def test_a_run_that_changes_during_the_copy_is_not_mirrored(tmp_path, monkeypatch):
    run, target = tmp_path / "run", tmp_path / "mirror"
    _checkpoint(run, 10)
    assert carry.snapshot(run, target)
    _checkpoint(run, 20)
    signatures = iter([("before",), ("after",)])
    monkeypatch.setattr(carry, "_signature", lambda _run: next(signatures))
    assert not carry.snapshot(run, target)
    assert json.loads((target / "latest.json").read_text())["step"] == 10  # the older mirror is kept whole
    assert [p.name for p in target.parent.iterdir()] == ["mirror", "run"]  # no temp directory left


def test_mirrored_follows_new_checkpoints_and_copies_once_more_at_the_end(tmp_path):
    run, target = tmp_path / "run", tmp_path / "mirror"
    run.mkdir()
    with pytest.raises(RuntimeError, match="machine lost"), carry.mirrored(run, target, every=0.01):
        _checkpoint(run, 10)
        deadline = time.monotonic() + 30
        while not (target / "latest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert json.loads((target / "latest.json").read_text())["step"] == 10  # seen while it trained
        _checkpoint(run, 20, extra=" last")
        raise RuntimeError("machine lost")
    # however the block ended, the mirror holds its last checkpoint
    assert (target / "checkpoints" / "step_0000020" / OPTIMIZER).read_text() == f"{OPTIMIZER} 20 last"
    assert carry.restore(tmp_path / "new_machine", target)
    assert not carry.restore(tmp_path / "new_machine", target)  # never over a run that is there
    assert json.loads((tmp_path / "new_machine" / "latest.json").read_text())["step"] == 20


def _tokenizer_stage(pipe: Pipeline):
    pipe.stage("collect", pipe.collect, ("data", 1))
    return pipe.stage("train_tokenizer", lambda: pipe.train("tokenizer", pipe.preset.tokenizer), ("tokenizer", 1))


def test_a_training_stage_cut_off_with_its_machine_goes_on_from_the_carry(tmp_path, monkeypatch, caplog):
    kept = tmp_path / "kept"
    whole = Pipeline(PipelineArgs(preset="tiny", out=str(tmp_path / "whole")))
    _tokenizer_stage(whole)  # the same stage, never interrupted

    save = trainer_module.Trainer.save

    def save_then_lose_the_machine(self):
        path = save(self)
        if self.step == 10:  # the tiny tokenizer's first checkpoint, half way through its 20 steps
            raise KeyboardInterrupt("machine lost")
        return path

    monkeypatch.setattr(trainer_module.Trainer, "save", save_then_lose_the_machine)
    first = Pipeline(PipelineArgs(preset="tiny", out=str(tmp_path / "first"), carry=str(kept)))
    with pytest.raises(KeyboardInterrupt):
        _tokenizer_stage(first)
    mirror = kept / "tokenizer.in_progress"
    assert json.loads((mirror / "latest.json").read_text())["step"] == 10
    assert (mirror / "checkpoints" / "step_0000010" / OPTIMIZER).exists()
    assert not (kept / "tokenizer").exists() and "train_tokenizer" not in json.loads(
        (kept / "pipeline.json").read_text())["stages"]  # fmt: skip

    shutil.rmtree(tmp_path / "first")  # the machine is gone; a new one runs the same command
    monkeypatch.setattr(trainer_module.Trainer, "save", save)
    caplog.set_level(logging.INFO)
    _tokenizer_stage(Pipeline(PipelineArgs(preset="tiny", out=str(tmp_path / "first"), carry=str(kept))))
    assert "goes on from there" in caplog.text and "at step 10" in caplog.text
    # it went on from step 10 and ended where the uninterrupted run did, weights and all
    ended, reference = resolve_checkpoint(tmp_path / "first" / "tokenizer"), resolve_checkpoint(whole.path("tokenizer"))
    assert ended.name == reference.name == "step_0000020"
    a, b = load_file(ended / "model.safetensors"), load_file(reference / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    # the finished run is carried without optimizer state, and the in-progress mirror is gone
    assert not mirror.exists()
    assert {f.name for f in resolve_checkpoint(kept / "tokenizer").iterdir()} == {
        "config.json", "model.safetensors", "trainer_state.json"}  # fmt: skip


class _Stop(Exception):
    pass


def test_a_study_agent_trained_but_not_evaluated_when_its_machine_went_is_not_trained_again(tmp_path, monkeypatch,
                                                                                            caplog):  # fmt: skip
    out, kept = tmp_path / "study", tmp_path / "kept"
    argv = [
        "--preset",
        "tiny",
        "--budgets",
        "1000",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--records",
        str(kept / "stages.json"),
        "--carry",
        str(kept / "carry"),
        "--val-episodes",
        "2",
        "--test-episodes",
        "2",
    ]

    def lost(*_args, **_kwargs):
        raise KeyboardInterrupt("machine lost")

    monkeypatch.setattr(study.Study, "evaluate_agent", lost)
    with pytest.raises(KeyboardInterrupt):
        study.main(argv)
    mirror = kept / "carry" / "1000" / "real_seed0.in_progress"
    assert (mirror / "agent.zip").exists() and (mirror / "checkpoints" / "latest.zip").exists()

    shutil.rmtree(out)  # a new machine: the real agent is copied back whole and evaluated, not trained again
    monkeypatch.undo()
    monkeypatch.setattr(Pipeline, "build_world_model", lambda _self: (_ for _ in ()).throw(_Stop()))
    caplog.set_level(logging.INFO)
    with pytest.raises(_Stop):
        study.main(argv)
    assert "goes on from there" in caplog.text and "real_seed0 already done" in caplog.text
    assert "training it again" not in caplog.text
    stages = json.loads((kept / "stages.json").read_text())["stages"]
    assert {"1000/real_seed0", "1000/eval/real_seed0_val", "1000/eval/real_seed0_test"} <= set(stages)
    assert not mirror.exists()  # its figures are recorded: the mirror went
