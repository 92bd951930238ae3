"""Collection: shards, manifest, splits, resume after a kill, export, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genie_env.agents.policies import StickyPolicy, make_policy
from genie_env.data.collect import CollectConfig, export_npy
from genie_env.data.format import load_shard, split_of, verify_dataset
from genie_env.data.manifest import DatasetError, read_manifest

from .conftest import TINY, collect_with_policy


def episodes_of(root: Path) -> dict[int, dict[str, np.ndarray]]:
    """Every episode of a dataset, by id, as arrays."""
    out = {}
    for info in read_manifest(root).shards:
        arrays = load_shard(root, info)
        ids = np.asarray(arrays["episode_ids"])
        for i in np.unique(ids):
            out[int(i)] = {k: np.asarray(v[ids == i]) for k, v in arrays.items()}
    return out


def test_collect_writes_verified_shards_with_whole_episodes(tiny_dataset):
    manifest = verify_dataset(tiny_dataset)
    assert manifest.complete and manifest.resume_state is None
    assert manifest.counts["frames"] >= TINY["frames"]
    assert manifest.counts["frames"] < TINY["frames"] + TINY["num_envs"]
    assert len(manifest.shards) >= 3
    for ep in episodes_of(tiny_dataset).values():
        ends = ep["terminations"] | ep["truncations"]
        assert ends[-1] and not ends[:-1].any()  # exactly one end, at the last row
        assert len(np.unique(ep["level_seeds"])) == 1
        assert ep["frames"].shape[1:] == (64, 64, 3) and ep["frames"].dtype == np.uint8
        assert set(np.unique(ep["rewards"])) <= {0.0, 10.0}
        assert (ep["rewards"][-1] == 10.0) <= bool(ep["terminations"][-1])


def test_train_and_val_splits_share_no_level(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    levels = {"train": set(), "val": set()}
    for info in manifest.shards:
        seeds = set(np.unique(load_shard(tiny_dataset, info)["level_seeds"]).tolist())
        levels[info.split] |= seeds
        assert all(split_of(s, TINY["val_fraction"]) == info.split for s in seeds)
    assert levels["train"] and levels["val"] and not levels["train"] & levels["val"]


def test_collection_is_deterministic_under_a_seed(tmp_path, tiny_dataset):
    again = tmp_path / "again"
    collect_with_policy(CollectConfig(out=str(again), **TINY))
    a, b = episodes_of(tiny_dataset), episodes_of(again)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[i][k], b[i][k]) for i in a for k in a[i])


def test_killed_collection_resumes_to_the_same_episodes(tmp_path, tiny_dataset):
    out = tmp_path / "killed"
    # a deterministic kill -9: the policy kills its own process at its 120th step (of about 190), so the
    # run always dies part-way, after some shards were handed to the writer, without any clean-up
    code = f"""
import os, signal
from genie_env.agents.policies import collection_policy
from genie_env.data.collect import CollectConfig, collect
cfg = CollectConfig(out={str(out)!r}, **{TINY!r})
policy, steps = collection_policy(cfg), [0]
act = policy.act
def killing_act(frames, first):
    steps[0] += 1
    if steps[0] == 120:
        os.kill(os.getpid(), signal.SIGKILL)
    return act(frames, first)
policy.act = killing_act
collect(cfg, policy)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    killed_at = read_manifest(out)
    assert not killed_at.complete, "the run finished before it could be killed"
    collect_with_policy(CollectConfig(out=str(out), resume=True, **TINY))
    verify_dataset(out)
    a, b = episodes_of(tiny_dataset), episodes_of(out)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[i][k], b[i][k]) for i in a for k in a[i])
    assert not list(out.glob("resume_*")) and not list(out.glob(".*tmp"))


def test_resume_refuses_different_settings_and_fresh_run_refuses_existing_dataset(tiny_dataset):
    cfg = {**TINY, "seed": 8}
    with pytest.raises(DatasetError, match="different settings.*seed"):
        collect_with_policy(CollectConfig(out=str(tiny_dataset), resume=True, **cfg))
    with pytest.raises(DatasetError, match="already holds a dataset: pass --resume"):
        collect_with_policy(CollectConfig(out=str(tiny_dataset), **TINY))
    verify_dataset(tiny_dataset)  # nothing already written was lost


def test_export_npy_writes_the_first_frames_as_one_array(tiny_dataset, tmp_path):
    arr = export_npy(tiny_dataset, tmp_path / "training_data.npy", 500)
    loaded = np.load(tmp_path / "training_data.npy")
    assert loaded.shape == (500, 64, 64, 3) and loaded.dtype == np.uint8
    first = load_shard(tiny_dataset, read_manifest(tiny_dataset).shards[0])["frames"]
    assert np.array_equal(loaded, arr) and np.array_equal(loaded[:10], first[:10])
    with pytest.raises(DatasetError, match="holds only"):
        export_npy(tiny_dataset, tmp_path / "x.npy", 10**6)


def test_corrupted_shard_is_named_by_verify(tiny_dataset, tmp_path):
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(tiny_dataset, root)
    bad = read_manifest(root).shards[1]
    path = root / bad.name / "frames.npy"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"shard {bad.name}: checksum mismatch in .*frames.npy"):
        verify_dataset(root)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated file: unreadable, not just wrong
    with pytest.raises(DatasetError, match=f"corrupt file .*{bad.name}.*frames.npy"):
        load_shard(root, bad)


def test_truncated_or_missing_manifest_gives_clear_error(tiny_dataset, tmp_path):
    import shutil

    root = tmp_path / "trunc"
    shutil.copytree(tiny_dataset, root)
    text = (root / "manifest.json").read_text()
    (root / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(DatasetError, match=r"corrupt manifest .*manifest.json.*truncated"):
        read_manifest(root)
    with pytest.raises(DatasetError, match="no dataset at .*genie collect"):
        read_manifest(tmp_path / "nowhere")


def test_long_episodes_are_split_and_marked_truncated(tmp_path):
    root = tmp_path / "split"
    collect_with_policy(CollectConfig(out=str(root), frames=400, num_envs=2, max_episode_frames=50, progress=False))
    for ep in episodes_of(root).values():
        assert len(ep["actions"]) <= 50
        if len(ep["actions"]) == 50:
            assert ep["truncations"][-1] or ep["terminations"][-1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames": 0}, "--frames must be >= 1"),
        ({"distribution_mode": "medium"}, "unknown distribution_mode"),
        ({"policy": "greedy"}, "unknown --policy"),
        ({"val_fraction": 1.0}, "--val-fraction"),
    ],
)
def test_bad_collect_settings_give_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CollectConfig(**kwargs)


def test_sticky_policy_repeats_and_restarts_on_new_episodes():
    policy = StickyPolicy(num_envs=1000, seed=0, repeat_prob=0.75)
    first = policy.act(None, np.ones(1000, bool))
    second = policy.act(None, np.zeros(1000, bool))
    repeat = (first == second).mean()
    assert 0.7 < repeat < 0.85  # 0.75 kept + 0.25 * 1/15 redrawn equal
    state = policy.get_state()
    a = policy.act(None, np.zeros(1000, bool))
    policy.set_state(json.loads(json.dumps(state)))
    assert np.array_equal(a, policy.act(None, np.zeros(1000, bool)))
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", 2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_policy("sb3:/no/such/model.zip", 2)


def test_resume_of_a_finished_collection_still_exports_the_npy(tmp_path):
    out = tmp_path / "ds"
    cfg = dict(frames=120, num_envs=2, max_episode_frames=50, progress=False)
    collect_with_policy(CollectConfig(out=str(out), **cfg))
    collect_with_policy(CollectConfig(out=str(out), resume=True, export_npy=str(tmp_path / "x.npy"), **cfg))
    assert np.load(tmp_path / "x.npy").shape == (120, 64, 64, 3)
