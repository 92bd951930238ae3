"""Atomic file and directory writes, and sha256: the one place every writer in the package goes through.

A writer never leaves a half-written file or directory under its final name. Files go to a unique temp
name beside the target (so two writers never share one), are fsynced, then renamed over the target.
A directory is replaced by a swap: the new one is written aside, the old one renamed aside, the new one
renamed in, the old one removed. A kill at any point leaves the old version or the new one under the
final name (at worst with a hidden `.NAME.old-*` or `.NAME.tmp-*` beside it). Between the two renames
of a swap the old directory waits as `.NAME.old-*`; `recover_dir` puts it back, and every swap, checkpoint
read and shard read starts with it, so a kill there loses nothing either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class GenieError(Exception):
    """The base of every error genie-env raises for bad input (a file, a flag, a directory): each CLI catches
    it and prints one `error:` line instead of a traceback."""


class LockedError(GenieError):
    """Another process holds the lock on a directory this one would write."""


TEMP_MARK = ".tmp-"  # in the name of every temp file or directory this module creates
OLD_MARK = ".old-"  # in the name of a replaced directory on its way out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temp path beside `path` to write to; renamed onto `path` when the block ends without an
    error, removed otherwise. The temp name keeps the suffix, for writers that choose a format by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}{TEMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode a plain open() would
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` (creating its directory) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path`, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def temp_dir_beside(path: str | Path) -> Path:
    """A new, empty, uniquely named hidden directory beside `path`, to fill and then `swap_dir` into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TEMP_MARK}", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700: give it the mode a plain mkdir would
    return tmp


def swap_dir(new: Path, path: str | Path) -> Path:
    """Put the filled directory `new` (from `temp_dir_beside`) at `path`, replacing what is there, so a kill
    at any point leaves either the old or the new directory at `path`. Returns `path`."""
    path = Path(path)
    recover_dir(path)
    for f in new.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    if path.exists():
        old = path.with_name(f".{path.name}{OLD_MARK}{uuid.uuid4().hex[:12]}")
        os.replace(path, old)  # moved aside whole: `path` is briefly absent, `old` holds it
        os.replace(new, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old)
    else:
        os.replace(new, path)
        _fsync_dir(path.parent)
    return path


def recover_dir(path: str | Path) -> bool:
    """If a swap was killed between its renames (`path` missing, the old directory aside), put the old
    directory back at `path`. Returns whether it did."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    for aside in sorted(path.parent.glob(f".{path.name}{OLD_MARK}*")):
        if aside.is_dir():
            os.replace(aside, path)
            return True
    return False


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temp directory to fill; swapped in at `path` (`swap_dir`) when the block ends without an error,
    removed otherwise."""
    tmp = temp_dir_beside(path)
    try:
        yield tmp
        swap_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def is_temp_name(name: str) -> bool:
    """Whether a file or directory name is one of this module's temp or outgoing names."""
    return name.startswith(".") and (TEMP_MARK in name or OLD_MARK in name)


def read_json(path: str | Path, what: str, error: type[Exception] = GenieError) -> Any:
    """The JSON in `path` (a `what`: "manifest", "checkpoint config", ...); `error` naming the file when it is
    truncated, not JSON or not UTF-8. The one reader of every JSON file the package writes."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"corrupt {what} {path}: {e} (truncated or not JSON)") from e


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


LOCK = ".genie.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


class DirLock:
    """An exclusive lock on a directory that a command writes: DIR/.genie.lock holds the holder's pid, host
    and command line. A second writer is refused with LockedError naming the holder; a lock left by a
    process that has died (on this host) is stale and taken over. The same process may take it again
    (a pipeline's stage writing into the pipeline's own directory). Use as a context manager."""

    def __init__(self, root: str | Path) -> None:
        self.root, self.path, self.mine = Path(root), Path(root) / LOCK, False

    def holder(self) -> dict[str, Any] | None:
        """The lock file's record, or None if there is none (or it cannot be read: a half-written lock)."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def __enter__(self) -> DirLock:
        self.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500]}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                held = self.holder()
                if held is None and _age(self.path) < 10:  # being written this instant by its holder
                    raise LockedError(
                        f"{self.root} is being written by another process (its lock is being taken)"
                    ) from None
                if held and held.get("host") == me["host"] and held.get("pid") == me["pid"]:
                    return self  # ours already: re-entered
                if held and (held.get("host") != me["host"] or _alive(int(held.get("pid", -1)))):
                    raise LockedError(
                        f"{self.root} is being written by another process (pid {held.get('pid')} on "
                        f"{held.get('host')}: {held.get('command')}); wait for it, or use another output directory"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone (or it was never written whole)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.mine = True
            return self
        raise LockedError(f"could not take the lock {self.path}: it keeps reappearing")

    def __exit__(self, *exc) -> None:
        if self.mine:
            self.path.unlink(missing_ok=True)
            self.mine = False
