"""The typed manifest: one parser and writer for frame and token datasets, with errors that name the file."""

from __future__ import annotations

import json

import pytest

from genie_env.data.manifest import DatasetError, Manifest, ShardInfo, read_manifest, write_manifest

SHARDS = (
    ShardInfo("shard_000000_train", "train", 30, 2, {"frames.npy": "a" * 64}),
    ShardInfo("shard_000001_val", "val", 5, 1, {"frames.npy": "b" * 64}),
)


def test_manifest_round_trips_and_derives_per_split_counts(tmp_path):
    manifest = Manifest(kind="frames", shards=SHARDS, complete=True, env={"distribution_mode": "easy"})
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path, kind="frames")
    assert again == manifest
    assert again.counts == {"frames": 35, "episodes": 3, "train_frames": 30, "train_episodes": 2,
                            "val_frames": 5, "val_episodes": 1}  # fmt: skip
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == again.counts
    assert [s.name for s in again.shards_of("val")] == ["shard_000001_val"]


def test_token_manifests_get_the_same_counts_and_keep_their_grid(tmp_path):
    tokens = Manifest(kind="tokens", shards=SHARDS, token_grid=(8, 8), codebook_size=1024,
                      tokenizer={"path": "t", "sha256": "c" * 64}, source={"path": "d", "counts": {}})  # fmt: skip
    write_manifest(tmp_path, tokens)
    again = read_manifest(tmp_path, kind="tokens")
    assert again.token_grid == (8, 8) and again.counts["val_frames"] == 5


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["shards"][0].pop("split"), "shard entry 'shard_000000_train' has no split"),
        (lambda d: d["shards"][1].update(split="test"), "has split 'test'"),
        (lambda d: d.update(surprise=1), "unexpected keys \\['surprise'\\]"),
        (lambda d: d.update(format_version=9), "format_version 9"),
        (lambda d: d.update(kind="audio"), "unknown dataset kind 'audio'"),
        (lambda d: d.pop("shards"), "missing key 'shards'"),
    ],
)
def test_a_bad_manifest_names_the_file_and_the_problem(tmp_path, change, message):
    write_manifest(tmp_path, Manifest(kind="frames", shards=SHARDS))
    data = json.loads((tmp_path / "manifest.json").read_text())
    change(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as e:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(e.value)


def test_a_manifest_that_is_not_utf8_json_is_named(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DatasetError, match="corrupt manifest .*manifest.json"):
        read_manifest(tmp_path)
