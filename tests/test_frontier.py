"""`benchmarks/frontier.py` at a tiny scale: every configuration timed beside the shipped model in one run,
its quality read from where it says, and the verdicts against the issue's rule."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "frontier.py"


def _frontier():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("frontier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["frontier"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_frontier_times_every_configuration_and_reads_its_quality(tiny_world_model, tmp_path):
    frontier = _frontier()
    evals = tmp_path / "eval.json"
    evals.write_text(json.dumps({"mean_return": 4.0, "return_ci": [3.5, 4.5], "episodes": 8}))
    dyn = tmp_path / "eval_dynamics.json"
    dyn.write_text(json.dumps({"psnr": {"1": 21.0, "4": 18.0, "16": 13.0}}))
    shipped = json.dumps({"psnr": {"1": 21.2, "16": 13.5}, "val_return": [4.2, 3.9, 4.5], "source": "test"})
    configs = (("trained", json.dumps({"world_model": str(tiny_world_model), "eval_dynamics": str(dyn),
                                       "agent_eval": str(evals)})),
               ("lean", json.dumps({"changes": {"kv_heads": 1}})),
               ("light_decoder", json.dumps({"tokenizer_changes": {"decoder_channels": 8}})))  # fmt: skip
    out = tmp_path / "frontier"
    args = frontier.Args(out=str(out), config=configs, shipped=str(tiny_world_model), shipped_quality=shipped,
                         precision="fp32", seconds=0.05, rounds=2)  # fmt: skip
    result = frontier.main(args)
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == ["shipped", "trained", "lean", "light_decoder"] and rows["shipped"]["ratio_to_shipped"] == 1.0
    light = rows["light_decoder"]
    assert light["tokenizer_changes"] == {"decoder_channels": 8} and not light["trained"]
    assert all(row["steps_per_s_64"] == round(max(row["timings"]), 1) for row in rows.values())  # the best round
    assert all(len(row["timings"]) == 2 and row["steps_per_s_64"] > 0 for row in rows.values())
    assert rows["trained"]["psnr_1"] == 21.0 and rows["trained"]["val_return"] == [4.0, 3.5, 4.5]
    assert rows["trained"]["as_good"] is True  # 21.0 >= 21.2 - 0.5 and 4.0 >= the shipped CI's 3.9
    assert rows["lean"]["psnr_1"] is None and rows["lean"]["as_good"] is None and rows["lean"]["changes"] == {
        "kv_heads": 1}  # fmt: skip
    table = (tmp_path / "frontier.md").read_text()
    assert "**shipped** (shipped)" in table and "| lean |" in table and "not measured" in table
    assert (tmp_path / "frontier.png").stat().st_size > 1000 and json.loads((tmp_path / "frontier.json").read_text())
    with pytest.raises(ValueError, match="--config both: give a trained 'world_model' or the 'changes'"):
        frontier.main(frontier.Args(out=str(out), shipped=str(tiny_world_model), precision="fp32", seconds=0.05,
                                    config=(("both", json.dumps({"world_model": "x", "changes": {}})),)))  # fmt: skip


def test_the_verdict_is_the_issue_s_rule():
    frontier = _frontier()
    shipped = {"psnr_1": 26.1, "val_return": [5.3, 5.0, 5.6]}

    def row(ratio, psnr, ret):
        return {"ratio_to_shipped": ratio, "psnr_1": psnr, "val_return": ret}

    assert frontier.verdict(row(1.9, 25.7, [5.1, 4.8, 5.4]), shipped) == {
        "as_good": True, "dominates": True, "meets_target": True}  # fmt: skip
    assert frontier.verdict(row(1.5, 25.7, [5.1, 4.8, 5.4]), shipped)["meets_target"] is False
    assert frontier.verdict(row(2.0, 25.5, [5.1, 4.8, 5.4]), shipped)["as_good"] is False  # 0.6 dB worse
    assert frontier.verdict(row(2.0, 26.0, [4.9, 4.6, 5.2]), shipped)["as_good"] is False  # below the CI
    assert frontier.verdict(row(0.9, 26.5, [5.5, 5.2, 5.8]), shipped)["dominates"] is False  # slower
    assert frontier.verdict(row(2.0, None, None), shipped)["dominates"] is None
