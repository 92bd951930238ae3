"""The end-to-end commands: `genie pipeline --preset tiny` and `genie demo`."""

from __future__ import annotations

import json
import shutil

import pytest
from genie_env.cli import demo, pipeline

from genie_env.checkpoint import read_config, resolve_checkpoint


def test_tiny_pipeline_runs_every_stage_and_skips_them_when_run_again(tmp_path, capsys):
    out, carry = tmp_path / "pipe", tmp_path / "kept" / "carry"
    pipeline.main(["--preset", "tiny", "--out", str(out), "--eval-episodes", "4", "--carry", str(carry)])
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
    pipeline.main(["--preset", "tiny", "--out", str(out), "--eval-episodes", "4", "--carry", str(carry)])
    assert "done" in capsys.readouterr().out
    assert json.loads((out / "pipeline.json").read_text()) == record  # nothing ran again
    # --carry kept the record and each trained model and agent, its last checkpoint without optimizer state
    assert json.loads((carry / "pipeline.json").read_text()) == record
    trained = ["tokenizer", "dynamics", "agent_dream", "dynamics_r2"]
    assert {p.name for p in carry.iterdir()} == {"pipeline.json", "agent_real", "agent_dream_r2",
                                                 "dynamics_self_forcing_r2", *trained}  # fmt: skip
    kept = resolve_checkpoint(carry / "tokenizer")
    assert {f.name for f in kept.iterdir()} == {"config.json", "model.safetensors", "trainer_state.json"}
    assert len(list((carry / "tokenizer" / "checkpoints").iterdir())) == 1 and not (carry / "tokenizer" / "tb").exists()
    # the machine is lost after the round-2 fine-tune: a new one copies back what was trained and makes again
    # the data, tokens and world models from them (the same frames and tokens), then trains only what is left;
    # round 1's dream agent was never carried (as a commit that left it out): it is trained again, and so is
    # the round-2 fine-tune after it, whose carried copy was fine-tuned on what the lost agent collected
    shutil.rmtree(carry / "agent_dream")
    lost = json.loads((carry / "pipeline.json").read_text())
    left = ["self_forcing_r2", "package_r2", "agent_dream_r2", "agent_real", "evaluate", "compare"]
    lost["stages"] = {k: v for k, v in lost["stages"].items() if k not in left}
    (carry / "pipeline.json").write_text(json.dumps(lost))
    new = tmp_path / "new_machine"
    pipeline.main(["--preset", "tiny", "--out", str(new), "--eval-episodes", "4", "--carry", str(carry)])
    again = json.loads((new / "pipeline.json").read_text())["stages"]
    assert set(again) == set(record["stages"])  # (the stages made again are recorded anew, last)
    for name in ("tokenizer", "dynamics"):  # copied back, not trained again
        assert (resolve_checkpoint(new / name) / "model.safetensors").read_bytes() == (
            resolve_checkpoint(out / name) / "model.safetensors").read_bytes()  # fmt: skip
        assert not (new / name / "tb").exists()
    assert (new / "agent_dream" / "tb").exists() and (new / "dynamics_r2" / "tb").exists()  # trained again
    for name in ("data", "tokens"):  # made again, the same
        assert json.loads((new / name / "manifest.json").read_text())["shards"] == json.loads(
            (out / name / "manifest.json").read_text())["shards"], name  # fmt: skip
    assert json.loads((carry / "pipeline.json").read_text())["stages"] == again


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
