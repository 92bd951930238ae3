"""The end-to-end commands: `genie pipeline --preset tiny` and `genie demo`."""

from __future__ import annotations

import json

import pytest
from genie_env.cli import demo, pipeline

from genie_env.checkpoint import read_config, resolve_checkpoint


def test_tiny_pipeline_runs_every_stage_and_skips_them_when_run_again(tmp_path, capsys):
    out = tmp_path / "pipe"
    pipeline.main(["--preset", "tiny", "--out", str(out), "--eval-episodes", "4"])
    record = json.loads((out / "pipeline.json").read_text())
    assert list(record["stages"]) == [
        "collect", "train_tokenizer", "tokenize", "train_dynamics", "package", "agent_dream",
        "collect_r2", "tokenize_r2", "train_dynamics_r2", "self_forcing_r2", "package_r2", "agent_dream_r2",
        "agent_real", "evaluate", "compare",
    ]  # fmt: skip
    rows = json.loads((out / "compare" / "compare.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["random", "ppo_real_same_frames", "ppo_dream_round1", "ppo_dream"]
    assert all(r["episodes"] == 4 for r in rows)
    # round 2 was collected by round 1's dream agent and fine-tuned from round 1's dynamics
    manifest2 = json.loads((out / "data_r2" / "manifest.json").read_text())
    assert manifest2["collect"]["policy"] == f"sb3:{out / 'agent_dream' / 'agent.zip'}"
    # then went on with self-forcing from that fine-tune, and round 2's world model is the self-forced one
    dyn2 = json.loads((out / "world_model_r2" / "dynamics" / "config.json").read_text())
    assert dyn2["self_forcing"] == 0.75 and dyn2["init_from"].startswith(str(out / "dynamics_r2" / "checkpoints"))
    finetune = read_config(resolve_checkpoint(out / "dynamics_r2"), kind="dynamics")
    assert "self_forcing" not in finetune and finetune["init_from"].startswith(str(out / "dynamics" / "checkpoints"))
    # the same-budget real agent spent at most as many real frames as the final world model was trained on,
    # both rounds (the whole rollouts that fit); the dream agents spent none beyond them
    frames = record["stages"]["collect"]["result"]["frames"] + record["stages"]["collect_r2"]["result"]["frames"]
    real = json.loads((out / "eval" / "ppo_real_same_frames.json").read_text())
    dream = json.loads((out / "eval" / "ppo_dream.json").read_text())
    first = json.loads((out / "eval" / "ppo_dream_round1.json").read_text())
    assert frames - 8 * 32 < real["real_frames"] <= frames and dream["real_frames"] == frames
    assert first["real_frames"] == record["stages"]["collect"]["result"]["frames"]
    assert dream["dream_frames"] == 512
    # the evaluation levels are disjoint from the world models' and all agents' (evaluate checked it)
    seen = set(json.loads((out / "world_model_r2" / "levels.json").read_text())["level_seeds"])
    seen |= set(json.loads((out / "agent_real" / "levels.json").read_text())["level_seeds"])
    assert not seen & set(dream["per_episode"]["level_seeds"])
    assert (out / "compare" / "compare.png").stat().st_size > 1000
    assert (out / "eval" / "ppo_dream_on_real.gif").stat().st_size > 1000
    capsys.readouterr()
    pipeline.main(["--preset", "tiny", "--out", str(out), "--eval-episodes", "4"])
    assert "done" in capsys.readouterr().out
    assert json.loads((out / "pipeline.json").read_text()) == record  # nothing ran again


def test_pipeline_refuses_a_directory_of_another_preset(tmp_path, capsys):
    (tmp_path / "pipeline.json").write_text(json.dumps({"preset": "cpu", "stages": {}}))
    with pytest.raises(SystemExit):
        pipeline.main(["--preset", "tiny", "--out", str(tmp_path)])
    assert "holds a --preset cpu run, not tiny" in capsys.readouterr().err


def test_demo_writes_the_gif_the_table_and_the_plot(tiny_world_model, tiny_agent, tmp_path, capsys):
    out = tmp_path / "outputs"
    paths = demo.run(demo.DemoConfig(out=str(out), episodes=4, dream_steps=6, world_model=str(tiny_world_model),
                                     agent=str(tiny_agent)))  # fmt: skip
    printed = capsys.readouterr().out
    assert "| ppo_dream (shipped) | 4 |" in printed and "| random | 4 |" in printed
    assert paths["gif"].stat().st_size > 1000 and paths["png"].stat().st_size > 1000
    result = json.loads((out / "eval" / "ppo_dream.json").read_text())
    assert result["excluded"] == [str(tiny_world_model)] and result["excluded_levels"] > 0


def test_demo_without_an_agent_says_how_to_train_one(tiny_world_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), "--world-model", str(tiny_world_model), "--agent", str(tmp_path / "x.zip")])
    assert "genie train-agent --env dream" in capsys.readouterr().err
