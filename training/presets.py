"""Parsing a CLI whose defaults come from a named preset (`--preset cpu` then any field override)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

T = TypeVar("T")


def parse_with_preset(cls: type[T], make_default: Callable[[str], T], argv: list[str], prog: str, doc: str) -> T:
    """Read `--preset NAME` first, then parse every flag of `cls` with that preset's values as defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cpu")
    known, _ = pre.parse_known_args(argv)
    try:
        default = make_default(known.preset)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    return tyro.cli(cls, default=default, args=argv, prog=prog, description=doc)


def train_main(cls: type[T], make_default: Callable[[str], T], run: Callable[[T], dict], argv: list[str],
               prog: str, doc: str) -> None:  # fmt: skip
    """The body of every `genie train-*` command: parse from a preset, train, print the last metrics as
    JSON; a bad dataset, checkpoint, config or a NaN loss ends with a clear error and exit code 1."""

    from .common import cli_errors, print_json, setup_logging

    setup_logging()
    args = parse_with_preset(cls, make_default, argv, prog, doc)
    with cli_errors():
        metrics = run(args)
    print_json({"out": args.out, **metrics})
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker: the trainer has torn the process group down, but gloo's threads can still abort
        # the interpreter's teardown ("terminate called without an active exception", SIGABRT) after a
        # finished run. Nothing is left to clean up, so leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
