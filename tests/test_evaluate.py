"""Agent evaluation: bootstrap CIs, unbiased episode counting, held-out levels, compare, CLIs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from genie_env.cli import compare as compare_cli
from genie_env.cli import evaluate as evaluate_cli
from genie_env.cli.cli import COMMANDS

from genie_env.agents.compare import compare_results, format_table, load_result, to_row
from genie_env.agents.evaluate import (
    DEFAULT_EVAL_START_LEVEL,
    check_disjoint,
    episode_quotas,
    evaluate_policy,
    held_out_levels,
)
from genie_env.data.collect import CollectConfig
from genie_env.data.manifest import read_manifest
from genie_env.metrics import bootstrap_ci

from .conftest import collect_with_policy

NOOP, RIGHT_UP = 4, 8  # NOOP never reaches the coin (cut at 1000 steps); RIGHT+UP ends episodes fast


class PerEnvPolicy:
    """Plays a fixed action per env: actions int (num_envs,)."""

    def __init__(self, actions: list[int]) -> None:
        self.actions = np.array(actions, np.int64)

    def act(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
        assert frames.shape == (len(self.actions), 64, 64, 3) and frames.dtype == np.uint8
        return self.actions.copy()


@pytest.fixture(scope="module")
def eval_range_dataset(tmp_path_factory) -> Path:
    """A 300-frame dataset collected on levels 1,000,000..1,000,009, inside the default evaluation range."""
    root = tmp_path_factory.mktemp("eval_data") / "ds"
    collect_with_policy(CollectConfig(out=str(root), frames=300, num_envs=4, shard_frames=100, max_episode_frames=100,
                          start_level=DEFAULT_EVAL_START_LEVEL, num_levels=10, progress=False))  # fmt: skip
    return root


def result_fixture(name: str, mean: float, ci: tuple[float, float], success: float, **extra) -> dict:
    """A `genie evaluate` result with 100 episodes, a +-0.1 success CI and mean length 250."""
    success_ci = [max(0.0, success - 0.1), min(1.0, success + 0.1)]
    return {"name": name, "episodes": 100, "mean_return": mean, "return_ci": list(ci), "success_rate": success,
            "success_ci": success_ci, "mean_length": 250.0, **extra}  # fmt: skip


# bootstrap CIs


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(5.0, 2.0, 50), rng.normal(5.0, 2.0, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # width ~ 1/sqrt(n): 2000 vs 50 values is ~6x narrower
    assert bootstrap_ci(large, confidence=0.5)[1] - bootstrap_ci(large, confidence=0.5)[0] < hi_l - lo_l


def test_bootstrap_ci_is_deterministic_under_a_seed():
    values = np.random.default_rng(2).random(40)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_of_constant_values_is_exactly_the_constant():
    assert bootstrap_ci([0.1] * 30) == (0.1, 0.1)
    assert bootstrap_ci([7.0]) == (7.0, 7.0)


def test_bootstrap_ci_rejects_empty_values_and_bad_confidence():
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="confidence must be in"):
        bootstrap_ci([1.0, 2.0], confidence=95)


# evaluate_policy


def test_episode_quotas_split_evenly_over_at_most_episodes_envs():
    assert episode_quotas(10, 4).tolist() == [3, 3, 2, 2]
    assert episode_quotas(3, 8).tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert episode_quotas(8, 8).tolist() == [1] * 8


def test_evaluate_policy_counts_each_envs_quota_so_long_episodes_are_not_dropped():
    # env 0 idles through 1000-step episodes while envs 1..3 finish in ~100 steps: taking the first 8
    # finished episodes would count none of env 0's; per-env quotas count exactly 2 of each.
    result = evaluate_policy(PerEnvPolicy([NOOP, RIGHT_UP, RIGHT_UP, RIGHT_UP]), episodes=8, num_envs=4,
                             progress=False)  # fmt: skip
    per = result["per_episode"]
    assert result["episodes"] == 8 and len(per["returns"]) == 8
    assert np.bincount(per["envs"], minlength=4).tolist() == [2, 2, 2, 2]
    lengths = np.array(per["lengths"])
    assert (lengths[np.array(per["envs"]) == 0] == 1000).all()
    assert (lengths[np.array(per["envs"]) != 0] < 1000).all()
    assert result["mean_length"] == pytest.approx(lengths.mean())


def test_evaluate_policy_with_uneven_quota_plays_the_exact_number_of_episodes():
    result = evaluate_policy(PerEnvPolicy([RIGHT_UP] * 4), episodes=10, num_envs=4, seed=5, progress=False)
    per = result["per_episode"]
    assert result["episodes"] == 10
    assert np.bincount(per["envs"], minlength=4).tolist() == [3, 3, 2, 2]
    # success <=> the coin's +10, and every counted level lies in the evaluation range
    assert all((r == 10.0) == s for r, s in zip(per["returns"], per["successes"]))
    assert result["success_rate"] == pytest.approx(np.mean(per["successes"]))
    assert all(DEFAULT_EVAL_START_LEVEL <= s < DEFAULT_EVAL_START_LEVEL + 500 for s in per["level_seeds"])
    assert result["distinct_levels"] == len(set(per["level_seeds"]))
    json.dumps(result)  # JSON-serialisable as promised


def test_evaluate_policy_idle_agent_never_succeeds_and_writes_a_300_frame_gif(tmp_path):
    gif = tmp_path / "eval.gif"
    result = evaluate_policy(PerEnvPolicy([NOOP] * 2), episodes=2, num_envs=2, gif_path=gif, progress=False)
    assert result["mean_return"] == 0.0 and result["success_rate"] == 0.0
    assert result["return_ci"] == [0.0, 0.0] and result["success_ci"] == [0.0, 0.0]
    assert result["per_episode"]["lengths"] == [1000, 1000] and result["mean_length"] == 1000.0
    assert len(imageio.mimread(gif)) == 300


def test_evaluate_policy_is_deterministic_under_a_seed():
    from genie_env.agents.policies import RandomPolicy

    a = evaluate_policy(RandomPolicy(4, seed=1), episodes=4, num_envs=4, seed=9, progress=False)
    b = evaluate_policy(RandomPolicy(4, seed=1), episodes=4, num_envs=4, seed=9, progress=False)
    assert a["per_episode"] == b["per_episode"]
    assert a["per_episode"]["lengths"] != [1000] * 4  # a random agent ends some episodes early


# held-out levels


def test_held_out_levels_reads_a_levels_file_and_a_directory_holding_one(tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "levels.json").write_text(json.dumps({"level_seeds": [5, 6, 7]}))
    (tmp_path / "more.json").write_text(json.dumps({"level_seeds": [7, 8], "other": 1}))
    assert held_out_levels([tmp_path / "agent"]) == {5, 6, 7}
    assert held_out_levels([tmp_path / "agent", str(tmp_path / "more.json")]) == {5, 6, 7, 8}


def test_held_out_levels_reads_every_shard_of_a_dataset(eval_range_dataset):
    expected = set()
    for info in read_manifest(eval_range_dataset).shards:
        expected |= set(np.load(eval_range_dataset / info.name / "level_seeds.npy").tolist())
    seen = held_out_levels([eval_range_dataset])
    assert seen == expected and len(seen) >= 2
    assert all(DEFAULT_EVAL_START_LEVEL <= s < DEFAULT_EVAL_START_LEVEL + 10 for s in seen)


def test_held_out_levels_names_a_missing_or_unrecognised_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        held_out_levels([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds neither a dataset \(manifest.json\) nor a levels.json"):
        held_out_levels([tmp_path / "empty"])
    (tmp_path / "bad.json").write_text(json.dumps({"levels": [1]}))
    with pytest.raises(ValueError, match="bad.json has no 'level_seeds' key"):
        held_out_levels([tmp_path / "bad.json"])


def test_check_disjoint_names_how_many_and_which_levels_overlap():
    check_disjoint(100, 50, {1, 99, 150, 10**9})  # the range [100, 150) is untouched
    with pytest.raises(
        ValueError, match=r"3 of the 50 evaluation levels \[100, 150\) were seen in training \(100, 120, 149\)"
    ):
        check_disjoint(100, 50, {1, 100, 120, 149, 150})
    with pytest.raises(ValueError, match=r"7 of the 10 .*\(0, 1, 2, 3, 4, \.\.\.\)"):
        check_disjoint(0, 10, set(range(7)))
    with pytest.raises(ValueError, match="unbounded levels cannot be shown disjoint"):
        check_disjoint(0, 0, set())


# compare


def test_format_table_keeps_the_given_order_and_formats_cis():
    rows = [to_row(result_fixture("random", 2.5, (1.5, 3.25), 0.25)),
            to_row(result_fixture("ppo-dream", 6.0, (5.0, 7.0), 0.6, dream_frames=2_500_000, real_frames=100_000,
                                  note="trained only in the dream"))]  # fmt: skip
    assert format_table(rows).splitlines() == [
        "| policy | episodes | mean return [95% CI] | success rate [95% CI] | mean length | train frames | note |",
        "|---|---:|---:|---:|---:|---|---|",
        "| random | 100 | 2.50 [1.50, 3.25] | 25.0% [15.0%, 35.0%] | 250.0 | — | — |",
        "| ppo-dream | 100 | 6.00 [5.00, 7.00] | 60.0% [50.0%, 70.0%] | 250.0 | real 100k + dream 2.5M "
        "| trained only in the dream |",
    ]  # fmt: skip
    assert "note" not in format_table(rows[:1])


def test_compare_results_writes_markdown_json_and_png(tmp_path):
    results = [result_fixture("ppo", 6.0, (5.0, 7.0), 0.6), result_fixture("random", 2.5, (1.5, 3.5), 0.25)]
    paths = compare_results(results, tmp_path / "cmp")
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [r["name"] for r in rows] == ["ppo", "random"]
    assert rows[1]["return_ci"] == [1.5, 3.5] and rows[0]["train_frames"] is None
    assert paths["markdown"].read_text().splitlines()[2].startswith("| ppo | 100 | 6.00 [5.00, 7.00]")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_results([], tmp_path / "none")


def test_load_result_names_the_file_and_the_missing_key(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(
        json.dumps({k: v for k, v in result_fixture("a", 1.0, (0.0, 2.0), 0.1).items() if k != "success_ci"})
    )
    with pytest.raises(ValueError, match=r"partial.json: missing key 'success_ci'"):
        load_result(path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(result_fixture("a", 1.0, (0.0, 2.0), 0.1)))
    assert load_result(good, name="renamed")["name"] == "renamed"


# CLIs


def test_genie_dispatches_evaluate_and_compare_to_their_scripts():
    assert importlib.import_module(COMMANDS["evaluate"], "genie_env.cli").main is evaluate_cli.main
    assert importlib.import_module(COMMANDS["compare"], "genie_env.cli").main is compare_cli.main


def test_policy_spec_treats_a_bare_path_as_an_sb3_model():
    from genie_env.agents.policies import default_name, policy_spec

    assert policy_spec("runs/agent/ppo.zip") == "sb3:runs/agent/ppo.zip"
    assert policy_spec("sticky") == "sticky"
    assert default_name("sb3:ppo:runs/agent/ppo_dream.zip") == "ppo_dream"


def test_evaluate_and_compare_cli_round_trip(tmp_path, eval_range_dataset, capsys):
    out = tmp_path / "random.json"
    evaluate_cli.main(["random", "--episodes", "4", "--num-envs", "4", "--start-level", "2000000", "--num-levels",
                       "20", "--exclude", str(eval_range_dataset), "--out", str(out), "--no-progress"])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["name"] == "random" and printed["episodes"] == 4 and "per_episode" not in printed
    assert len(saved["per_episode"]["returns"]) == 4 and saved["excluded_levels"] >= 2
    assert all(2_000_000 <= s < 2_000_020 for s in saved["per_episode"]["level_seeds"])
    compare_cli.main([str(out), f"baseline={out}", "--out", str(tmp_path / "cmp")])
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("| random | 4 |") and table[3].startswith("| baseline | 4 |")
    assert (tmp_path / "cmp" / "compare.png").exists()


def test_evaluate_cli_refuses_levels_seen_in_training_before_playing(eval_range_dataset, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["random", "--episodes", "4", "--exclude", str(eval_range_dataset), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 1
    assert "of the 500 evaluation levels [1000000, 1000500) were seen in training" in err
    assert "choose another --start-level" in err


def test_evaluate_cli_names_a_missing_agent_file_and_an_unknown_policy(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main([str(tmp_path / "nope.zip"), "--episodes", "2", "--no-progress"])
    assert e.value.code == 1 and f"agent {tmp_path / 'nope.zip'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["greedy", "--episodes", "2", "--no-progress"])
    assert e.value.code == 1 and "unknown policy 'greedy'" in capsys.readouterr().err


def test_compare_cli_names_a_result_missing_a_key(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(SystemExit) as e:
        compare_cli.main([str(bad), "--out", str(tmp_path / "cmp")])
    assert e.value.code == 1 and "bad.json: missing key 'episodes'" in capsys.readouterr().err
