"""Export a trained model for inference (`genie export --checkpoint RUN --out DIR`): weights cast to
float16 (or kept) and its config.json, no optimizer state. This is the form models ship in."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import tyro

from genie_env.checkpoint import export_checkpoint, resolve_checkpoint

from .common import cli_errors, setup_logging


@dataclass(frozen=True)
class ExportArgs:
    """Arguments of `genie export`."""

    checkpoint: str
    """run or checkpoint directory to export"""
    out: str
    """directory to write (new, empty, or an earlier export with --force; replaced atomically)"""
    fp16: bool = True
    """store floating weights as float16 (half the size); --no-fp16 keeps them as trained"""
    force: bool = False
    """replace --out if it already holds an exported checkpoint (anything else there is never replaced)"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(ExportArgs, args=argv, prog="genie export", description=__doc__)
    with cli_errors():
        out = export_checkpoint(resolve_checkpoint(args.checkpoint), args.out, torch.float16 if args.fp16 else None,
                                args.force)  # fmt: skip
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"exported {args.checkpoint} to {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
