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
