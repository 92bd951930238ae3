"""Atomic writes (`genie_env._io`) and the writers built on them: a kill at any point leaves the old or the
new version, never nothing, and two writers never share a temp name."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genie_env import _io
from genie_env.checkpoint import CheckpointError, export_checkpoint, read_config, save_checkpoint
from genie_env.data.format import SCHEMAS, load_shard, write_shard


def _fail_on_call(monkeypatch, n: int) -> None:
    """Make the n-th `os.replace` from now raise, as a kill at that point would stop the writer."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == n:
            raise KeyboardInterrupt("killed")
        return real(src, dst)

    monkeypatch.setattr(_io.os, "replace", replace)


def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    _io.atomic_write_json(path, {"v": 1})
    _fail_on_call(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write_json(path, {"v": 2})
    assert path.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # the temp file is gone too


def test_temp_names_are_unique_per_writer(tmp_path):
    path = tmp_path / "x.zip"
    with _io.atomic_path(path) as a, _io.atomic_path(path) as b:
        assert a != b and a.suffix == b.suffix == ".zip" and _io.is_temp_name(a.name)
        a.write_bytes(b"first")
        b.write_bytes(b"second")
    assert path.read_bytes() == b"first"  # the outer block ends last: the last rename wins, whole


@pytest.mark.parametrize("killed_at", [1, 2])
def test_a_directory_swap_killed_at_any_rename_loses_nothing(tmp_path, monkeypatch, killed_at):
    target = tmp_path / "ckpt"
    with _io.atomic_dir(target) as tmp:
        (tmp / "f").write_text("old")
    _fail_on_call(monkeypatch, killed_at)
    with pytest.raises(KeyboardInterrupt), _io.atomic_dir(target) as tmp:
        (tmp / "f").write_text("new")
    monkeypatch.undo()
    if killed_at == 2:  # between the renames: the old directory waits aside until the next reader or writer
        assert not target.exists()
    _io.recover_dir(target)
    assert (target / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with _io.atomic_dir(target) as tmp:
        (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "new"


def test_checkpoint_and_shard_writers_keep_the_old_version_when_killed(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, "toy", _Cfg())
    export_checkpoint(ckpt, tmp_path / "export")
    rows = {k: np.zeros((3, *row), dtype) for k, (dtype, row) in SCHEMAS["frames"].items()}
    info = write_shard(tmp_path, "shard_000000_train", "train", rows)
    for kill in (lambda: save_checkpoint(ckpt, model, "toy", _Cfg(3)),
                 lambda: export_checkpoint(ckpt, tmp_path / "export", force=True),
                 lambda: write_shard(tmp_path, "shard_000000_train", "train", rows)):  # fmt: skip
        _fail_on_call(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            kill()
        monkeypatch.undo()
    assert read_config(ckpt)["config"] == {"x": 1}  # reading recovers a swap killed between its renames
    assert read_config(tmp_path / "export")["kind"] == "toy"
    assert len(load_shard(tmp_path, info)["frames"]) == 3


@dataclass(frozen=True)
class _Cfg:
    x: int = 1


def _holding(root, seconds=30):
    """A process that holds the lock on `root` until killed; returns it once the lock is taken."""
    import subprocess
    import sys
    import time

    code = f"from genie_env._io import DirLock; import time\nwith DirLock({str(root)!r}):\n    time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not (root / _io.LOCK).exists() and time.time() < deadline:
        time.sleep(0.05)
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken(tmp_path):
    from genie_env.data.collect import CollectConfig

    from .conftest import TINY, collect_with_policy

    out = tmp_path / "ds"
    proc = _holding(out)
    try:
        with pytest.raises(_io.LockedError, match=rf"{out} is being written by another process \(pid {proc.pid} on"):
            collect_with_policy(CollectConfig(out=str(out), **{**TINY, "frames": 50}))
        assert not (out / "manifest.json").exists()  # refused before it wrote anything
    finally:
        proc.kill()
        proc.wait()
    assert (out / _io.LOCK).exists()  # kill -9: the lock stays behind, stale
    with _io.DirLock(out), _io.DirLock(out):  # taken over; the same process may take it again
        assert json.loads((out / _io.LOCK).read_text())["pid"] == os.getpid()
    assert not (out / _io.LOCK).exists()


def test_every_cli_reports_a_locked_directory_in_one_line(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ds"
    proc = _holding(out)
    try:
        r = subprocess.run([sys.executable, "-m", "genie_env.cli.collect", "--out", str(out), "--frames", "50"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == 1 and r.stderr.startswith(f"error: {out} is being written by another process")
    assert "Traceback" not in r.stderr


def test_export_never_replaces_what_it_did_not_write(tmp_path):
    ckpt = save_checkpoint(tmp_path / "ckpt", torch.nn.Linear(2, 2), "toy", _Cfg())
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    for out, message in ((notes, "is not an exported checkpoint"), (ckpt, "holds the checkpoint being exported"),
                         (tmp_path, "holds the checkpoint being exported")):  # fmt: skip
        with pytest.raises(CheckpointError, match=message):
            export_checkpoint(ckpt, out)
    assert (notes / "todo.txt").read_text() == "mine" and read_config(ckpt)["config"] == {"x": 1}
    export_checkpoint(ckpt, tmp_path / "export")
    with pytest.raises(CheckpointError, match="already holds an exported checkpoint: pass --force"):
        export_checkpoint(ckpt, tmp_path / "export")
    export_checkpoint(ckpt, tmp_path / "export", force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        export_checkpoint(ckpt, tmp_path / "file")


def test_a_resumed_collection_deletes_only_its_own_leftovers(tmp_path):
    from genie_env.data.collect import CollectConfig
    from genie_env.data.format import remove_orphans
    from genie_env.data.manifest import read_manifest

    from .conftest import TINY, collect_with_policy

    out = tmp_path / "ds"
    collect_with_policy(CollectConfig(out=str(out), **{**TINY, "frames": 300}))
    manifest = read_manifest(out)
    mine = ["shard_notes.txt", "resume_me.txt", "notes.tmp", "shard_000099_train_backup"]
    for name in mine:
        (out / name).write_text("the user's")
    user_dir = out / "shard_000098_train"  # a shard's name, but not a shard's files
    user_dir.mkdir()
    (user_dir / "readme.md").write_text("the user's")
    leftover = write_shard(out, "shard_000097_val", "val", load_shard(out, manifest.shards[0]))  # unlisted: ours
    (out / "resume_000042.npz").write_bytes(b"")
    (out / ".shard_000096_train.tmp").mkdir()  # an older version's temp name
    removed = remove_orphans(out, manifest)
    assert sorted(removed) == [".shard_000096_train.tmp", "resume_000042.npz", leftover.name]
    assert all((out / name).read_text() == "the user's" for name in mine) and (user_dir / "readme.md").exists()


def test_atomic_writes_get_the_modes_plain_writes_get(tmp_path):
    mask = os.umask(0o022)
    try:
        _io.atomic_write_bytes(tmp_path / "f.bin", b"x")
        with _io.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "g").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others can read it
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
