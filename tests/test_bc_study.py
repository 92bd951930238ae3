"""`genie bc-study` (Genie's CoinRun experiment) at a tiny scale: every stage for real, from a scripted
expert's videos to the shipped policies, and a rerun that skips what is done."""

from __future__ import annotations

import json

import pytest
from genie_env.cli import bc_study

from genie_env.agents.bc_study import verdicts

ARGV = ["--expert", "sticky", "--videos", "2000", "--video-envs", "8", "--val-fraction", "0.5", "--lam-preset",
        "tiny", "--labelled", "20", "--ship-labels", "20", "--seeds", "1", "--bc-steps", "4", "--bc-features",
        "nature", "--val-episodes", "4", "--test-episodes", "4"]  # fmt: skip


def test_tiny_bc_study_end_to_end_shipped_and_resumed(tmp_path, capsys):
    out, ship = tmp_path / "bc", tmp_path / "assets_lam"
    bc_study.main([*ARGV, "--out", str(out), "--ship-to", str(ship)])
    stages = json.loads((out / "stages.json").read_text())["stages"]
    sides = [f"{side}_seed0" for side in ("oracle", "lam_20")]
    assert list(stages) == ["expert", "videos", "lam", "eval_lam", "eval_lam_random", "eval/random_val",
                            "eval/random_test", "eval/expert_val", "eval/expert_test",
                            *(f"{kind}/{s}{split}" for s in sides for kind, split in
                              (("bc", ""), ("eval", "_val"), ("eval", "_test")))]  # fmt: skip
    study = json.loads((out / "bc_study.json").read_text())
    rows = {row["name"]: row for row in study["rows"]}
    assert list(rows) == ["oracle", "lam_20"] and rows["lam_20"]["labels"] == 20
    videos = json.loads((out / "videos" / "manifest.json").read_text())
    assert rows["oracle"]["labels"] == sum(s["num_frames"] for s in videos["shards"])  # every real action
    for name, row in rows.items():  # every seed on the test levels, disjoint from the videos' levels
        test = json.loads((out / "eval" / f"{name}_seed0_test.json").read_text())
        assert test["episodes"] == 4 and test["start_level"] == 1_000_000 and test["excluded_levels"] > 0
        assert row["test_returns"] == [test["mean_return"]] and row["picked_seed"] == 0
    lam = study["lam"]
    assert lam["trained"]["num_latent_actions"] == lam["random_init"]["num_latent_actions"] == 4
    assert (out / "lam_eval" / "latent_actions.png").stat().st_size > 1000
    assert "LAM BC (20 labels)" in (out / "bc_study.md").read_text() and (out / "bc_study.png").stat().st_size > 1000
    # shipped: both policies with their records (which `genie evaluate` reads), the LAM, the table, a card
    for target in (out / "ship", ship):
        record = json.loads((target / "lam_bc.json").read_text())
        assert record["bc"]["labelled"] == 20 and record["real_action_labels"] == 20 and record["picked"]["seed"] == 0
        assert json.loads((target / "oracle_bc.json").read_text())["bc"]["labels"] == "real"
        assert (target / "lam" / "config.json").exists() and "LAM BC (lam_20) reaches" in (
            target / "MODEL_CARD.md").read_text()  # fmt: skip
    from genie_env.cli.evaluate import EvaluateArgs
    from genie_env.cli.evaluate import run as evaluate

    again = evaluate(EvaluateArgs(str(ship / "lam_bc.zip"), episodes=4, exclude=(str(out / "videos"),), progress=False))
    assert again["mean_return"] == rows["lam_20"]["picked_return"] and again["real_action_labels"] == 20
    # a rerun trains and evaluates nothing again
    before = (out / "stages.json").read_text()
    bc_study.main([*ARGV, "--out", str(out)])
    assert (out / "stages.json").read_text() == before
    with pytest.raises(SystemExit):  # another recipe in the same --out is refused
        bc_study.main([*ARGV, "--out", str(out), "--videos", "3000"])
    assert "holds a --videos 2000 run, not 3000" in capsys.readouterr().err


def test_a_directory_it_did_not_write_is_never_replaced(tmp_path):
    foreign = tmp_path / "lam_assets"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    study = bc_study.BCStudy(bc_study.BCStudyArgs(out=str(tmp_path / "out"), expert="sticky", ship_to=str(foreign)))
    with pytest.raises(ValueError, match="was not written by genie bc-study: refusing to replace it"):
        study.ship([], "lam_200", "unused", {})
    assert (foreign / "keep.txt").read_text() == "mine"


def test_the_verdicts_are_the_issue_s():
    def row(name, mean, ci):
        return {"name": name, "seed_mean": mean, "picked_ci": ci}

    random = {"return_ci": [2.1, 2.9]}
    v = verdicts([row("oracle", 6.0, [5.5, 6.5]), row("lam_200", 5.5, [3.0, 6.0])], "lam_200", random)
    assert v["lam_over_oracle"] == pytest.approx(5.5 / 6.0, abs=1e-4) and v["lam_reaches_share"]
    assert v["picked_above_random"] == {"oracle": True, "lam_200": True}
    v = verdicts([row("oracle", 6.0, [5.5, 6.5]), row("lam_200", 5.0, [2.5, 6.0])], "lam_200", random)
    assert not v["lam_reaches_share"] and v["picked_above_random"]["lam_200"] is False
    with pytest.raises(ValueError, match="--ship-labels 100 must be one of --labelled"):
        bc_study.BCStudyArgs(ship_labels=100)
