"""Inspect and check datasets (`genie data info DIR`, `genie data verify DIR`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import tyro

from genie_env.data.format import verify_dataset
from genie_env.data.stats import dataset_summary, format_summary

from .common import cli_errors, print_json


def info(root: Annotated[Path, tyro.conf.Positional], json: bool = False) -> None:
    """Print a dataset's summary: frames, episodes, returns, lengths, success rate, action histogram.

    Args:
        root: the dataset directory
        json: print the summary as one JSON object instead of a table
    """
    summary = dataset_summary(root)
    if json:
        print_json(summary)
    else:
        print(format_summary(summary))


def verify(root: Annotated[Path, tyro.conf.Positional]) -> None:
    """Check every shard's checksums, shapes and episode layout; names the first bad shard.

    Args:
        root: the dataset directory
    """
    manifest = verify_dataset(root)
    state = "OK" if manifest.complete else "INCOMPLETE (the writer has not finished: resume it with --resume)"
    print(f"{root}: {state} ({len(manifest.shards)} shards, {manifest.counts['frames']} frames, checksums verified)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    with cli_errors():
        tyro.extras.subcommand_cli_from_dict({"info": info, "verify": verify}, args=argv, prog="genie data")


if __name__ == "__main__":
    main()
