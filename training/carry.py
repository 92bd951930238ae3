"""What a pipeline or study keeps where the machine cannot take it (`--carry DIR`).

A finished training run is kept as `DIR/NAME`: its top-level files and the checkpoint its `latest.json` names,
without optimizer state (`carry_run`). A run still training is mirrored, every minute while it trains, into
`DIR/NAME.in_progress` with what resuming it needs (optimizer state, an agent's `checkpoints/latest.zip`), so a
stage longer than the machine lives goes on where the last mirror left it (`mirrored`, `restore`). The
in-progress copy is dropped once the finished one (or the record) makes it unneeded (`drop_in_progress`).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genie_env._io import LOCK, GenieError, atomic_dir, atomic_write_json, is_temp_name, read_json
from genie_env.checkpoint import OPTIMIZER, latest_checkpoint

logger = logging.getLogger(__name__)

IN_PROGRESS = ".in_progress"
MIRROR_EVERY_S = 60.0
"""how often a training run's directory is looked at for a new checkpoint to mirror"""


def in_progress(kept: Path) -> Path:
    """Where the carry mirrors the unfinished run that will end up as `kept`."""
    return kept.with_name(kept.name + IN_PROGRESS)


def _files(run: Path, resumable: bool) -> tuple[dict[str, Path], dict | None]:
    """What is kept of `run`, as {path relative to the kept copy: file} and its trainer's `latest.json` record
    (read once, so that the checkpoint copied is the one it names): the run's top-level files, the checkpoint
    latest.json names (with optimizer state when `resumable`), and when `resumable` the files directly under
    `checkpoints/` (an agent's latest.zip and sampler state). Writes under way and locks are left out (`_kept`)."""
    pointer = run / "latest.json"
    record = read_json(pointer, "run pointer") if pointer.exists() else None
    files = {f.name: f for f in run.iterdir() if f.is_file() and _kept(f.name) and f != pointer}
    if record is not None:
        latest = latest_checkpoint(run)
        for f in latest.iterdir():
            if f.is_file() and _kept(f.name) and (resumable or f.name != OPTIMIZER):
                files[str(f.relative_to(run))] = f
    if resumable and (run / "checkpoints").is_dir():
        for f in (run / "checkpoints").iterdir():
            if f.is_file() and _kept(f.name):
                files[str(f.relative_to(run))] = f
    return files, record


def _kept(name: str) -> bool:
    """Whether a file of that name is carried: not a write under way, not the lock of the process writing the
    run (on a new machine it would name a process of another host and keep the run locked)."""
    return not is_temp_name(name) and name != LOCK


def _copy_into(files: dict[str, Path], record: dict | None, dest: Path) -> None:
    for rel, f in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / rel)
    if record is not None:
        atomic_write_json(dest / "latest.json", record)


def carry_run(run: Path, kept: Path) -> None:
    """Copy what a new machine needs of the finished run `run` to `kept` (replacing it): its top-level files
    (an agent's agent.zip, config.json, levels.json; a trainer's latest.json) and the checkpoint latest.json
    names, without its optimizer state; no earlier checkpoints, no TensorBoard logs."""
    files, record = _files(run, resumable=False)
    with atomic_dir(kept) as tmp:
        _copy_into(files, record, tmp)


def _signature(run: Path) -> tuple:
    """Changes whenever a new checkpoint of `run` is written: its trainer's latest.json record and the files
    under `checkpoints/` a resumable copy takes, with their sizes and times (not the logs beside them, which
    change all the time); empty while `run` holds nothing to resume from."""
    try:
        files, record = _files(run, resumable=True)
        ckpt = sorted((rel, f.stat().st_size, f.stat().st_mtime_ns) for rel, f in files.items() if rel != f.name)
        return (str(record), *ckpt) if ckpt else ()
    except (OSError, GenieError):  # a checkpoint written or pruned meanwhile: looked at again next time
        return ()


def snapshot(run: Path, target: Path) -> bool:
    """Copy what resuming `run` needs into `target` (replacing it), unless `run` changed meanwhile (a
    checkpoint written or pruned during the copy: nothing replaced, and False)."""
    before = _signature(run)
    if not before:
        return False
    try:
        with atomic_dir(target) as tmp:
            _copy_into(*_files(run, resumable=True), tmp)
            if _signature(run) != before:
                raise _Changed(f"{run} changed")
    except (_Changed, OSError, GenieError) as e:
        logger.debug("%s changed while it was mirrored (%s): mirrored again later", run, e)
        return False
    return True


class _Changed(Exception):
    pass


@contextmanager
def mirrored(run: Path, target: Path, every: float | None = None) -> Iterator[None]:
    """While the block trains into `run`, copy it into `target` (`snapshot`) each time a new checkpoint
    appears, looking every `every` seconds (default `MIRROR_EVERY_S`), and once more when the block ends,
    however it ends."""
    every = MIRROR_EVERY_S if every is None else every
    stop = threading.Event()
    last: list[tuple] = [()]

    def mirror() -> None:
        now = _signature(run) if run.is_dir() else ()
        if now and now != last[0] and snapshot(run, target):
            last[0] = now
            logger.debug("mirrored %s into %s", run, target)

    def loop() -> None:
        while not stop.wait(every):
            try:
                mirror()
            except Exception:  # never kill training for a copy: logged, tried again next time
                logger.warning("could not mirror %s into %s", run, target, exc_info=True)

    thread = threading.Thread(target=loop, name=f"mirror {run.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        mirror()


def restore(run: Path, target: Path) -> bool:
    """Copy the mirrored unfinished run `target` back to `run` where `run` is gone; whether it did."""
    if run.exists() or not target.is_dir():
        return False
    logger.info("%s is gone: copied back from its mirror %s, and goes on from there", run, target)
    copy_back(target, run)
    return True


def copy_back(kept: Path, run: Path) -> None:
    """Put the carried copy `kept` (finished or a mirror) at `run`, atomically; never a lock: one copied by an
    older genie-env would name a process of another host and keep the run locked."""
    with atomic_dir(run) as tmp:
        shutil.copytree(kept, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK))


def drop_in_progress(kept: Path) -> None:
    """Remove the in-progress mirror of `kept` (written by this module) once it is not needed."""
    target = in_progress(kept)
    if target.is_dir():
        shutil.rmtree(target)
