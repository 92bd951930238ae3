"""`genie study` at a tiny scale: two budgets, one seed a side, every stage for real, and a resumed study
that skips what is done."""

from __future__ import annotations

import json
import os

import pytest
from genie_env.cli import study

from genie_env.presets import pipeline_preset

BUDGETS = (1000, 2000)


def test_budget_preset_keeps_the_total_within_the_budget_and_the_rounds_shares():
    cpu = study.budget_preset(pipeline_preset("cpu"), 50_000)
    assert cpu.rounds == 2 and cpu.frames + cpu.round_frames + 2 * (cpu.collect_envs - 1) == 50_000
    assert cpu.round_frames + cpu.collect_envs - 1 == 10_000  # the shipped recipe: one frame in five in round 2
    with pytest.raises(ValueError, match="too small"):
        study.budget_preset(pipeline_preset("tiny"), 20)


def test_tiny_study_end_to_end_and_resumed(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["--preset", "tiny", "--budgets", *map(str, BUDGETS), "--seeds", "1", "--out", str(out),
            "--val-episodes", "4", "--test-episodes", "4"]  # fmt: skip
    study.main(argv)
    stages = json.loads((out / "stages.json").read_text())["stages"]
    per_budget = ["real_seed0", "dream_seed0"] + [f"eval/{s}_seed0_{split}" for s in ("dream", "real")
                                                  for split in ("val", "test")]  # fmt: skip
    assert list(stages) == ["eval/random_val", "eval/random_test"] + [f"{b}/{name}" for b in BUDGETS
                                                                      for name in per_budget]  # fmt: skip
    rows = json.loads((out / "study.json").read_text())["rows"]
    assert [row["budget"] for row in rows] == list(BUDGETS)
    for budget, row in zip(BUDGETS, rows):
        # each world model saw at most its budget's real frames over both rounds, tokenizer included
        levels = json.loads((out / str(budget) / "pipeline" / "world_model_r2" / "levels.json").read_text())
        data = [out / str(budget) / "pipeline" / d for d in ("data", "data_r2")]
        assert levels["frames"] <= budget and levels["datasets"] == [str(d) for d in data]
        tokenizer_data = json.loads((out / str(budget) / "pipeline" / "tokens" / "manifest.json").read_text())
        assert tokenizer_data["source"]["path"] == str(data[0])
        assert row["dream"]["real_frames"] == [levels["frames"]]  # the dream agent's frames are the world model's
        assert row["real"]["real_frames"][0] >= budget  # real PPO: the budget, rounded up to whole rollouts
        assert row["dream"]["picked_seed"] == row["real"]["picked_seed"] == 0
        test = json.loads((out / str(budget) / "eval" / "dream_seed0_test.json").read_text())
        assert test["episodes"] == 4 and test["start_level"] == 1_000_000 and test["excluded_levels"] > 0
    assert "| 1,000 |" in (out / "study.md").read_text() and (out / "study.png").stat().st_size > 1000
    # run again: every stage is skipped; with a stage's record lost, its finished agent is kept, not retrained
    agent = out / "1000" / "real_seed0" / "agent.zip"
    before = os.stat(agent).st_mtime_ns
    record = json.loads((out / "stages.json").read_text())
    del record["stages"]["1000/real_seed0"]
    (out / "stages.json").write_text(json.dumps(record))
    capsys.readouterr()
    study.main(argv)
    assert os.stat(agent).st_mtime_ns == before
    again = json.loads((out / "stages.json").read_text())["stages"]
    assert {k: v for k, v in again.items() if k != "1000/real_seed0"} == {k: v for k, v in stages.items()
                                                                          if k != "1000/real_seed0"}  # fmt: skip
    assert "| 2,000 |" in capsys.readouterr().out
