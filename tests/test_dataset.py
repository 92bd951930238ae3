"""The windowed dataset and the shard format's building blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genie_env._io import file_sha256
from genie_env.data.dataset import WindowDataset, episode_bounds, make_dataloader
from genie_env.data.format import save_array


def test_windows_never_cross_episode_boundaries(tiny_dataset):
    ds = WindowDataset(tiny_dataset, split="train", window=8)
    assert len(ds) > 0
    for s, t in ds.index:
        ids = np.asarray(ds.shards[s]["episode_ids"][t : t + 8])
        assert len(ids) == 8 and (ids == ids[0]).all()
    # every valid window is present: one per start position of each long-enough episode
    expected = sum(max(0, b - a - 7) for arrays in ds.shards for a, b in zip(*episode_bounds(arrays["episode_ids"])))
    assert len(ds) == expected


def test_window_items_match_the_shards(tiny_dataset):
    ds = WindowDataset(tiny_dataset, split="val", window=4)
    item = ds[len(ds) // 2]
    s, t = ds.index[len(ds) // 2]
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (4, 64, 64, 3)
    assert item["actions"].dtype == torch.int64 and item["rewards"].dtype == torch.float32
    assert item["terminations"].dtype == torch.bool
    assert np.array_equal(item["frames"].numpy(), ds.shards[s]["frames"][t : t + 4])
    assert np.array_equal(item["actions"].numpy(), ds.shards[s]["actions"][t : t + 4])


def test_dataloader_batches_and_seeded_order(tiny_dataset):
    ds = WindowDataset(tiny_dataset, window=4)
    batches = [next(iter(make_dataloader(ds, batch_size=6, seed=3, num_workers=0))) for _ in range(2)]
    assert batches[0]["frames"].shape == (6, 4, 64, 64, 3)
    assert torch.equal(batches[0]["actions"], batches[1]["actions"])
    workers = next(iter(make_dataloader(ds, batch_size=6, seed=3, num_workers=2)))
    assert torch.equal(workers["frames"], batches[0]["frames"])


def test_window_longer_than_every_episode_is_refused(tiny_dataset):
    with pytest.raises(ValueError, match="has 5000 steps"):
        WindowDataset(tiny_dataset, window=5000)
    with pytest.raises(ValueError, match="unknown split"):
        WindowDataset(tiny_dataset, split="test")


@settings(max_examples=40, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int64, np.float32, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    )
)
def test_save_array_round_trips_and_its_hash_is_the_file_hash(tmp_path_factory, arr):
    path = tmp_path_factory.mktemp("arr") / "a.npy"
    digest = save_array(path, arr)
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == arr.dtype and loaded.shape == arr.shape
    np.testing.assert_array_equal(loaded, arr)
    assert digest == file_sha256(path)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 20), min_size=0, max_size=12))
def test_episode_bounds_recover_contiguous_episodes(lengths):
    ids = np.concatenate([np.full(n, i * 3 + 1) for i, n in enumerate(lengths)]) if lengths else np.zeros(0, int)
    starts, ends = episode_bounds(ids)
    assert (ends - starts).tolist() == lengths
    assert all((ids[a:b] == ids[a]).all() for a, b in zip(starts, ends))


def _copy_with(root, tmp_path, shard_index: int, key: str, change) -> tuple:
    """A copy of dataset `root` where `change(array)` rewrote one array of one shard; returns (copy, shard)."""
    import shutil

    from genie_env.data.format import load_shard
    from genie_env.data.manifest import read_manifest, write_manifest

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    manifest = read_manifest(copy)
    info = manifest.shards[shard_index]
    arr = np.array(load_shard(copy, info)[key])
    path = copy / info.name / f"{key}.npy"
    digest = save_array(path, change(arr))
    return copy, info, manifest, path, digest, write_manifest


def test_training_refuses_a_bit_flipped_shard_naming_it(tiny_dataset, tmp_path):
    from genie_env.data.manifest import DatasetError

    def flip(frames):
        frames[3, 10, 10, 0] ^= 0xFF
        return frames

    copy, info, *_ = _copy_with(tiny_dataset, tmp_path, 0, "frames", flip)  # the manifest keeps the old sha256
    with pytest.raises(DatasetError, match=f"shard {info.name}: checksum mismatch in .*frames.npy"):
        WindowDataset(copy, split=info.split, window=2)
    assert len(WindowDataset(copy, split=info.split, window=2, verify=False)) > 0  # opt-out, for benchmarks


def test_training_names_the_shard_of_an_out_of_range_action(tiny_dataset, tmp_path):
    import dataclasses

    from genie_env.data.manifest import DatasetError

    def bad(actions):
        actions[5] = 17
        return actions

    copy, info, manifest, path, digest, write_manifest = _copy_with(tiny_dataset, tmp_path, 1, "actions", bad)
    shards = tuple(dataclasses.replace(s, sha256={**s.sha256, "actions.npy": digest}) if s.name == info.name else s
                   for s in manifest.shards)  # fmt: skip
    write_manifest(copy, dataclasses.replace(manifest, shards=shards))  # checksums fine, value out of range
    with pytest.raises(DatasetError, match=f"shard {info.name}: action 17 out of range"):
        WindowDataset(copy, split=info.split, window=2)


def test_data_verify_says_when_a_dataset_is_incomplete(tiny_dataset, tmp_path, capsys):
    import dataclasses
    import shutil

    from genie_env.cli.data import verify

    from genie_env.data.manifest import read_manifest, write_manifest

    verify(tiny_dataset)
    assert capsys.readouterr().out.startswith(f"{tiny_dataset}: OK (")
    copy = tmp_path / "unfinished"
    shutil.copytree(tiny_dataset, copy)
    write_manifest(copy, dataclasses.replace(read_manifest(copy), complete=False))
    verify(copy)
    assert "INCOMPLETE" in capsys.readouterr().out


def test_death_windows_are_oversampled_on_top_of_the_events(tiny_dataset, tmp_path):
    from genie_env.data.manifest import read_manifest

    train = [i for i, s in enumerate(read_manifest(tiny_dataset).shards) if s.split == "train"][0]

    def die(terminations):  # two deaths (ends without a coin) in the tiny collection, which has none
        terminations[[10, 30]] = True
        return terminations

    copy = _copy_with(tiny_dataset, tmp_path, train, "terminations", die)[0]
    over = {"window": 4, "verify": False}
    base = WindowDataset(copy, **over)
    events = WindowDataset(copy, oversample_events=3, **over)
    both = WindowDataset(copy, oversample_events=3, oversample_deaths=4, **over)

    def kind(ds, i):
        item = ds[i]
        ended, rewarded = item["terminations"].numpy(), item["rewards"].numpy() != 0
        return bool((ended & ~rewarded).any()), bool((ended | rewarded).any())

    labels = [kind(base, i) for i in range(len(base))]
    deaths, with_events = sum(d for d, _ in labels), sum(e for _, e in labels)
    assert 2 <= deaths <= 8  # the windows holding step 10 or step 30 (of episodes at least 4 steps long)
    assert len(events) == len(base) + 2 * with_events
    assert len(both) == len(events) + 3 * deaths
    labelled = [kind(both, i) for i in range(len(both))]
    assert sum(d for d, _ in labelled) == (3 + 3) * deaths  # a death is an event too: 3 copies, then 3 more
    assert sum(e and not d for d, e in labelled) == 3 * (with_events - deaths)  # other events: as before
    with pytest.raises(ValueError, match="oversample_deaths must be >= 1"):
        WindowDataset(tiny_dataset, window=4, oversample_deaths=0)
