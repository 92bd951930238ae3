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


def test_the_table_keeps_the_third_decimal_that_2000_episode_means_have():
    from genie_env.agents.study import fmt_return, format_study_table

    assert [fmt_return(x) for x in (5.185, 5.08, 5.3, 4.665, 10.0, -0.005)] == [
        "5.185", "5.08", "5.30", "4.665", "10.00", "-0.005"]  # fmt: skip
    side = {"test_returns": [5.185, 5.08], "seed_mean": 5.1325, "picked_return": 5.185, "picked_ci": [4.965, 5.4],
            "picked_seed": 0}  # fmt: skip
    row = {"budget": 50_000, "dream": side, "real": {**side, "picked_seed": 1}, "picked_cis_apart": False}
    table = format_study_table([row], {"mean_return": 2.515, "return_ci": [2.33, 2.705]})
    assert "| 50,000 | 5.185, 5.08 | 5.133 |" in table and "5.185 [4.965, 5.40] (seed 1) | no |" in table
    assert "Random policy: 2.515 [2.33, 2.705]" in table


def test_tiny_study_end_to_end_and_resumed(tmp_path, capsys):
    out, carry = tmp_path / "study", tmp_path / "kept" / "carry"
    ship = tmp_path / "sample_efficiency"
    argv = ["--preset", "tiny", "--budgets", *map(str, BUDGETS), "--seeds", "1", "--out", str(out), "--carry",
            str(carry), "--val-episodes", "4", "--test-episodes", "4", "--ship-to", str(ship)]  # fmt: skip
    study.main(argv)
    stages = json.loads((out / "stages.json").read_text())["stages"]
    # each agent is evaluated as soon as it is trained, so what a lost machine takes with it is never figures
    per_budget = ["real_seed0", "eval/real_seed0_val", "eval/real_seed0_test",
                  "dream_seed0", "eval/dream_seed0_val", "eval/dream_seed0_test"]  # fmt: skip
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
        # real PPO: the whole rollouts (8 envs x 32 steps) that fit in the budget, never more
        assert budget - 8 * 32 < row["real"]["real_frames"][0] <= budget
        assert row["dream"]["picked_seed"] == row["real"]["picked_seed"] == 0
        test = json.loads((out / str(budget) / "eval" / "dream_seed0_test.json").read_text())
        assert test["episodes"] == 4 and test["start_level"] == 1_000_000 and test["excluded_levels"] > 0
    assert "| 1,000 |" in (out / "study.md").read_text() and (out / "study.png").stat().st_size > 1000
    # each budget's picked dream agent is shipped with its record, and `genie evaluate` reproduces its figure
    from genie_env.cli.evaluate import EvaluateArgs
    from genie_env.cli.evaluate import run as evaluate

    for budget, row in zip(BUDGETS, rows):
        shipped = ship / str(budget)
        agent = json.loads((shipped / "agent.json").read_text())
        assert agent["budget"] == budget and agent["picked"]["seed"] == row["dream"]["picked_seed"]
        assert agent["real_frames"] == row["dream"]["real_frames"][0] and agent["dream_frames"] > 0
        assert agent["picked"]["test_return"] == row["dream"]["picked_return"]
        assert (out / "ship" / str(budget) / "agent.zip").read_bytes() == (shipped / "agent.zip").read_bytes()
        again = evaluate(EvaluateArgs(str(shipped / "agent.zip"), episodes=4, exclude=(str(shipped / "levels.json"),),
                                      progress=False))  # fmt: skip
        assert again["mean_return"] == row["dream"]["picked_return"]
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
    # an agent that took more real frames than its budget (real PPO rounded budgets up to whole rollouts
    # before) is moved aside, not lost, and it and its evaluations are run again
    run = out / "1000" / "real_seed0"
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "real_frames": 1000 + 256}))
    study.main(argv)
    assert json.loads((out / "1000" / "real_seed0.over_budget" / "config.json").read_text())["real_frames"] == 1256
    assert json.loads((run / "config.json").read_text())["real_frames"] == config["real_frames"]
    after = json.loads((out / "stages.json").read_text())["stages"]
    assert {k for k in after if after[k] != again[k]} == {"1000/real_seed0", "1000/eval/real_seed0_val",
                                                          "1000/eval/real_seed0_test"}  # fmt: skip
    # a recipe measured on the same world models: only its dream agents train, nothing of the first is touched
    first = (out / "stages.json").read_text()
    other = tmp_path / "study_sampled"
    study.main(["--preset", "tiny", "--budgets", "1000", "--seeds", "1", "--out", str(other), "--val-episodes",
                "4", "--test-episodes", "4", "--world-models-from", str(out), "--dream-recipe",
                '{"temperature": 1.0}'])  # fmt: skip
    assert (out / "stages.json").read_text() == first and not (other / "1000" / "pipeline").exists()
    theirs = json.loads(first)["stages"]
    ours = json.loads((other / "stages.json").read_text())["stages"]
    assert list(ours) == ["eval/random_val", "eval/random_test", "1000/eval/real_seed0_val",
                          "1000/eval/real_seed0_test", "1000/dream_seed0", "1000/eval/dream_seed0_val",
                          "1000/eval/dream_seed0_test"]  # fmt: skip
    for key in ("agent", "mean_return", "return_ci", "episodes"):  # the same agent, scored again the same
        assert ours["1000/eval/real_seed0_test"]["result"][key] == theirs["1000/eval/real_seed0_test"]["result"][key]
    dream = json.loads((other / "1000" / "dream_seed0" / "config.json").read_text())["config"]
    assert dream["temperature"] == 1.0 and dream["world_model"] == str(out / "1000" / "pipeline" / "world_model_r2")
    # run again with other test episodes and levels: every test evaluation, and only those, runs again
    before = json.loads((out / "stages.json").read_text())["stages"]
    study.main([*argv[:-4], "--test-episodes", "6", "--test-num-levels", "600", *argv[-2:]])
    after = json.loads((out / "stages.json").read_text())["stages"]
    assert {k for k in after if after[k] != before[k]} == {k for k in after if k.endswith("_test")}
    tests = {(v["result"]["episodes"], v["result"]["num_levels"]) for k, v in after.items() if k.endswith("_test")}
    assert tests == {(6, 600)}
    assert json.loads((ship / "1000" / "agent.json").read_text())["picked"]["test_episodes"] == 6
    assert "6 episodes on test levels 1,000,000 .. 1,000,599" in (out / "study.md").read_text()
    # --records keeps a copy of the record that outlives the machine: on a new one (nothing under OUT), a
    # finished budget is tabled from the copy alone and keeps its shipped agent; in a budget with an
    # evaluation left to run, only the agent it evaluates trains again: the dream agent, recorded trained and
    # evaluated, is kept from the records, so the world model is not built again either
    argv = ["--preset", "tiny", "--budgets", *map(str, BUDGETS), "--seeds", "1", "--val-episodes", "4",
            "--test-episodes", "6", "--test-num-levels", "600", "--ship-to", str(ship)]  # fmt: skip
    records = tmp_path / "kept" / "stages.json"
    study.main([*argv, "--out", str(out), "--records", str(records), "--carry", str(carry)])
    assert json.loads(records.read_text()) == json.loads((out / "stages.json").read_text())
    kept = json.loads(records.read_text())
    del kept["stages"]["2000/eval/real_seed0_test"]
    records.write_text(json.dumps(kept))
    shipped = (ship / "1000" / "agent.zip").read_bytes()
    new = tmp_path / "new_machine"
    study.main([*argv, "--out", str(new), "--records", str(records)])
    after = json.loads((new / "stages.json").read_text())["stages"]
    assert {k for k in after if after[k] != kept["stages"].get(k)} == {
        "2000/real_seed0", "2000/eval/real_seed0_val", "2000/eval/real_seed0_test"}  # fmt: skip
    assert not (new / "1000").exists() and (new / "2000" / "real_seed0" / "agent.zip").exists()
    assert not (new / "2000" / "dream_seed0").exists()
    assert not any((new / "2000" / "pipeline" / name).exists() for name in ("data", "tokenizer", "world_model_r2"))
    assert (ship / "1000" / "agent.zip").read_bytes() == shipped
    assert json.loads(records.read_text())["stages"] == after
    assert "| 1,000 |" in (new / "study.md").read_text()
    assert (new / "ship" / "1000" / "agent.zip").read_bytes() == shipped  # copied from where it is shipped
    # a dream agent to train again on a new machine: its budget's world model goes on from --carry (the
    # trained tokenizer and dynamics copied back, without their TensorBoard logs; its data made again)
    kept = json.loads(records.read_text())
    del kept["stages"]["2000/eval/dream_seed0_test"]
    records.write_text(json.dumps(kept))
    third = tmp_path / "third_machine"
    study.main([*argv, "--out", str(third), "--records", str(records), "--carry", str(carry)])
    after = json.loads((third / "stages.json").read_text())["stages"]
    assert {k for k in after if after[k] != kept["stages"].get(k)} == {
        "2000/dream_seed0", "2000/eval/dream_seed0_val", "2000/eval/dream_seed0_test"}  # fmt: skip
    pipe = third / "2000" / "pipeline"
    assert (pipe / "data" / "manifest.json").exists() and (pipe / "world_model_r2" / "levels.json").exists()
    for name in ("tokenizer", "dynamics", "dynamics_self_forcing_r2"):
        assert (pipe / name / "latest.json").exists() and not (pipe / name / "tb").exists(), name
    # without --ship-to, the picked agents are shipped nowhere that outlived the machine: tabled, not shipped
    bare = [a for a in argv if a not in ("--ship-to", str(ship))]
    study.main([*bare, "--out", str(tmp_path / "bare_machine"), "--records", str(records)])
    assert "| 2,000 |" in (tmp_path / "bare_machine" / "study.md").read_text()
    assert not (tmp_path / "bare_machine" / "ship").exists()
    other_record = (other / "stages.json").read_text()
    with pytest.raises(SystemExit):  # a copy that is not this run's record is refused, not overwritten
        study.main([*argv, "--out", str(out), "--records", str(other / "stages.json")])
    assert (other / "stages.json").read_text() == other_record


def test_a_dream_recipe_changes_the_dream_agents_and_dynas_frames_come_out_of_the_budget(tmp_path):
    out = tmp_path / "study"
    dyna = study.Study(study.StudyArgs(preset="tiny", out=str(out), dream_recipe='{"real_envs": 2, "horizon": 8}'))
    # tiny: 512 steps of 8 envs, 2 of them real: 128 real frames the world model does not get
    assert dyna.dyna_frames == 128
    cfg = dyna.dream_config(dyna.base_agent(), seed=3)
    assert (cfg.real_envs, cfg.horizon, cfg.seed) == (2, 8, 3)
    pipe = dyna.pipeline(1000)
    assert pipe.preset.frames + pipe.preset.round_frames + 2 * (pipe.preset.collect_envs - 1) <= 1000 - 128
    assert pipe.record["budget"] == 1000 - 128
    dyna.stages.stage("eval/random_val", lambda: {})  # the recipe is recorded with the first stage
    with pytest.raises(ValueError, match="holds a --dream-recipe .*real_envs.* run, not {}"):
        study.Study(study.StudyArgs(preset="tiny", out=str(out)))
    # a study from before recipes were recorded is one without a recipe
    old = tmp_path / "old"
    old.mkdir()
    (old / "stages.json").write_text(json.dumps({"preset": "tiny", "seed": 0, "stages": {}}))
    assert study.Study(study.StudyArgs(preset="tiny", out=str(old))).dyna_frames == 0
    with pytest.raises(ValueError, match="holds a --dream-recipe {} run"):
        study.Study(study.StudyArgs(preset="tiny", out=str(old), dream_recipe='{"entropy_limit": 2.5}'))
    for recipe, message in (
        ('{"heat": 1}', "unknown AgentConfig fields"),
        ('{"seed": 1}', "the study sets seed"),
        ("[1]", "JSON object"),
        ("{", "not JSON"),
        ('{"real_envs": 8}', "--real-envs 8"),
    ):
        with pytest.raises(ValueError, match=message):
            study.Study(study.StudyArgs(preset="tiny", out=str(tmp_path / "bad"), dream_recipe=recipe))


def test_world_models_are_taken_only_from_a_study_that_can_give_them(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "stages.json").write_text(json.dumps({"preset": "tiny", "seed": 0, "stages": {}}))

    def make(**changes):
        return study.Study(study.StudyArgs(preset="tiny", out=str(tmp_path / "out"), **changes))

    with pytest.raises(ValueError, match="takes 128 real frames \\(Dyna\\): its world models get fewer"):
        make(world_models_from=str(source), dream_recipe='{"real_envs": 2}')
    with pytest.raises(ValueError, match="is a --seed 0 study, not 1"):
        make(world_models_from=str(source), seed=1)
    with pytest.raises(ValueError, match="no study there"):
        make(world_models_from=str(tmp_path / "nothing"))
    taker = make(world_models_from=str(source))
    with pytest.raises(ValueError, match="has no world model of budget 1,000 yet"):
        taker.budget(1000)
    (source / "1000" / "pipeline").mkdir(parents=True)
    (source / "1000" / "pipeline" / "pipeline.json").write_text(json.dumps({"preset": "tiny", "budget": 1000,
                                                                             "stages": {}}))  # fmt: skip
    with pytest.raises(ValueError, match="its real PPO .*real_seed0 is not done: finish it there"):
        taker.budget(1000)
    with pytest.raises(ValueError, match="stage collect is not done: finish that study's world models first"):
        taker.pipeline(1000).finished_world_model()
    assert sorted(p.name for p in source.rglob("*")) == ["1000", "pipeline", "pipeline.json", "stages.json"]
