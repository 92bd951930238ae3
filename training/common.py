"""Small helpers every CLI script shares: logging set-up, JSON output, and the record of finished stages."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def setup_logging(verbose: bool = False) -> None:
    """Log INFO (or DEBUG) to stderr with a short format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (what scripts and benchmarks emit for machines to read)."""
    print(json.dumps(obj, indent=2))


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """The boundary every command shares: bad input (a genie-env error naming the file, flag or directory,
    a ValueError, or an OSError such as a missing file, a full disk or a read-only output) ends the command
    with one `error:` line and exit code 1, never a traceback. SIGTERM (what stops a command run in the
    background, which ignores SIGINT) ends it the way Ctrl-C does: every `finally` runs (locks are released,
    half-written files removed, a `--carry` mirror takes the last checkpoint), and the exit code is 143."""
    from genie_env._io import GenieError

    with _terminated_as_exit():
        try:
            yield
        except (GenieError, ValueError, OSError) as e:
            fail(str(e))


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread while the block runs (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum, _frame) -> None:
        print("stopped (SIGTERM): run the same command again to go on", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fail(message: str, code: int = 1) -> None:
    """Print a clear error on stderr and exit with `code` (for bad input at the CLI boundary)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


class StageRecord:
    """The stages of a long command (`genie pipeline`, `genie study`) that have finished, kept in one JSON
    file (`path`) so the command can be stopped and run again any number of times: each stage runs once,
    and its wall time and result are recorded. `header` (e.g. the preset) must match what the file holds,
    else ValueError naming both, so one directory never mixes two recipes. `mirror`: a second copy kept up
    to date after every stage (somewhere that outlives the machine, e.g. a file in the repository), taken
    as the record where `path` does not exist yet."""

    def __init__(self, path: Path, header: dict[str, Any], legacy: dict[str, Any] | None = None,
                 mirror: Path | None = None) -> None:  # fmt: skip
        """`legacy`: the values of header keys that files written before the key existed did not record."""
        from genie_env._io import atomic_write_json

        self.path, self._atomic_write = Path(path), atomic_write_json
        self.mirror = None if mirror is None else Path(mirror)
        copy = json.loads(self.mirror.read_text()) if self.mirror is not None and self.mirror.exists() else None
        if self.path.exists():
            self.record: dict[str, Any] = json.loads(self.path.read_text())
            if copy is not None and not set(copy.get("stages", {})) <= set(self.record.get("stages", {})):
                raise ValueError(f"{self.mirror} records stages that {self.path} does not: it is not a copy of "
                                 "this run's record (move one of them)")  # fmt: skip
        elif copy is not None:
            logger.info("%s is missing: starting from its copy %s", self.path, self.mirror)
            self.record = copy
        else:
            self.record = dict(header)
        for record, where in ((self.record, self.path.parent), (copy or {}, self.mirror)):
            for key, value in header.items():
                if record and record.setdefault(key, (legacy or {}).get(key)) != value:
                    raise ValueError(f"{where} holds a --{key.replace('_', '-')} {record.get(key)} run, not {value}: "
                                     "use another --out")  # fmt: skip
        self.record.setdefault("stages", {})
        if self.mirror is not None and copy != self.record:
            self._save()  # the copy is whole from the start

    def _save(self) -> None:
        for path in (self.path, self.mirror) if self.mirror is not None else (self.path,):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(path, self.record)

    def done(self, name: str) -> bool:
        return name in self.record["stages"]

    def forget(self, *names: str) -> None:
        """Mark stages as not done, so they run again (what they wrote is the caller's to move aside)."""
        forgotten = [name for name in names if self.record["stages"].pop(name, None) is not None]
        if forgotten:
            self._save()

    def stage(self, name: str, fn: Callable[[], Any], current: Callable[[Any], bool] | None = None) -> Any:
        """Run stage `name` unless it already finished; record its wall time and result; return the result.
        `current`: whether a recorded result still answers what is asked now (e.g. an evaluation of as many
        episodes on the same levels); one that does not runs again."""
        if self.done(name) and current is not None and not current(self.record["stages"][name]["result"]):
            logger.info("%s: %s was done with other settings: running it again", self.path.name, name)
            self.forget(name)
        if self.done(name):
            logger.info("%s: %s already done", self.path.name, name)
            return self.record["stages"][name]["result"]
        logger.info("%s: %s", self.path.name, name)
        start = time.time()
        result = fn()
        self.record["stages"][name] = {"wall_s": round(time.time() - start, 1), "result": result}
        self._save()
        return result
