"""Tokenizing a dataset, evaluating a tokenizer, and their CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genie_env.data.dataset import WindowDataset
from genie_env.data.format import load_shard, schema_of, verify_dataset
from genie_env.data.manifest import DatasetError, read_manifest
from genie_env.evaluate.tokenizer import evaluate_tokenizer
from genie_env.models import load_tokenizer
from genie_env.models.tokenize import tokenize_dataset

from .test_cli import genie


def test_tokenize_round_trip(tiny_dataset, tiny_tokenizer_run, tmp_path):
    out = tmp_path / "tokens"
    manifest = tokenize_dataset(tiny_dataset, tiny_tokenizer_run, out, progress=False)
    verify_dataset(out)
    source = read_manifest(tiny_dataset)
    assert manifest.kind == "tokens" and manifest.complete
    assert manifest.counts["frames"] == source.counts["frames"]
    assert [s.name for s in manifest.shards] == [s.name for s in source.shards]
    tokenizer = load_tokenizer(tiny_tokenizer_run)
    info = manifest.shards[0]
    tokens = load_shard(out, info, schema_of(manifest))
    frames = load_shard(tiny_dataset, source.shards[0])
    assert tokens["tokens"].dtype == np.uint16 and tokens["tokens"].shape[1:] == (4, 4)
    expected = tokenizer.encode(torch.from_numpy(np.array(frames["frames"][:50]))[:, None])[:, 0]
    assert np.array_equal(tokens["tokens"][:50], expected.numpy())
    for key in ("actions", "rewards", "terminations", "episode_ids", "level_seeds"):
        assert np.array_equal(tokens[key], frames[key])
    window = WindowDataset(out, window=4)[0]
    assert window["tokens"].dtype == torch.int64 and window["tokens"].shape == (4, 4, 4)
    # re-running into the same directory is a no-op, not a duplicate
    again = tokenize_dataset(tiny_dataset, tiny_tokenizer_run, out, progress=False)
    assert again.shards == manifest.shards


def test_tokenize_refuses_mismatches(tiny_dataset, tiny_tokenizer_run, tmp_path):
    out = tmp_path / "tokens"
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, out, progress=False)
    from genie_env.checkpoint import save_checkpoint

    model = load_tokenizer(tiny_tokenizer_run)  # another tokenizer: same config, other codes
    with torch.no_grad():
        model.quantizer.codebook += 1.0
    other = save_checkpoint(tmp_path / "other_tokenizer", model, "tokenizer", model.cfg)
    with pytest.raises(DatasetError, match="holds tokens of tokenizer .* not of"):
        tokenize_dataset(tiny_dataset, other, out, progress=False)
    with pytest.raises(DatasetError, match="is a 'tokens' dataset, expected a 'frames' dataset"):
        tokenize_dataset(out, tiny_tokenizer_run, tmp_path / "x", progress=False)


def test_evaluate_tokenizer_reports_psnr_from_mean_mse(tiny_dataset, tiny_tokenizer_run, tmp_path):
    result = evaluate_tokenizer(load_tokenizer(tiny_tokenizer_run), tiny_dataset, "val", grid_path=tmp_path / "g.png")
    assert result["frames"] > 0 and 0 < result["codebook_usage"] <= 1
    assert result["psnr"] == pytest.approx(-10 * np.log10(result["mse"]), abs=1e-3)
    assert (tmp_path / "g.png").stat().st_size > 500


def test_tokenizer_clis_smoke(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    out = genie("train-tokenizer", "--preset", "tiny", "--data", str(tiny_dataset), "--out", str(run)).stdout
    assert "tokenizer/loss" in json.loads(out)
    ev = json.loads(genie("eval-tokenizer", "--tokenizer", str(run), "--data", str(tiny_dataset),
                          "--out-dir", str(tmp_path / "ev")).stdout)  # fmt: skip
    assert ev["psnr"] > 0 and (tmp_path / "ev" / "eval_tokenizer.json").exists()
    assert "as 4x4 tokens" in genie("tokenize", "--data", str(tiny_dataset), "--tokenizer", str(run),
                                    "--out", str(tmp_path / "tok")).stdout  # fmt: skip
    bad = genie("train-tokenizer", "--preset", "huge", "--data", str(tiny_dataset), "--out", str(run), check=False)
    assert bad.returncode != 0 and "unknown preset 'huge'" in bad.stderr
    again = genie("train-tokenizer", "--preset", "tiny", "--data", str(tiny_dataset), "--out", str(run), check=False)
    assert again.returncode == 1 and "pass --resume" in again.stderr


def test_dynamics_clis_smoke(tiny_dataset, tiny_tokenizer_run, tmp_path):
    tokens = tmp_path / "tokens"
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, tokens, progress=False)
    run = tmp_path / "dyn"
    out = json.loads(genie("train-dynamics", "--preset", "tiny", "--tokens", str(tokens), "--out", str(run)).stdout)
    assert "dynamics/mask_ce" in out and "dynamics/termination_bce" in out
    ev = json.loads(genie("eval-dynamics", "--dynamics", str(run), "--tokens", str(tokens), "--windows", "4",
                          "--context", "2", "--horizon", "4", "--dreamed-leads", "1", "3",
                          "--out-dir", str(tmp_path / "ev")).stdout)  # fmt: skip
    assert set(ev["psnr"]) == {"1", "4"} and set(ev["copy_last_frame_psnr"]) == {"1", "4"}
    assert "auc" in ev["termination"] and (tmp_path / "ev" / "rollout.gif").exists()
    assert set(ev["dreamed_events"]) == {"1", "3"} and "auc" in ev["dreamed_events"]["3"]["reward"]
    assert (tmp_path / "ev" / "psnr_vs_horizon.png").exists()
    bad = genie("eval-dynamics", "--dynamics", str(run), "--tokens", str(tokens), "--context", "9", check=False)
    assert bad.returncode == 1 and "longer than the model's window" in bad.stderr
