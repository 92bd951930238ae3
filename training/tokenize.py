"""Tokenize a frame dataset with a trained tokenizer (`genie tokenize --data DIR --tokenizer RUN --out TOKENS`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import tyro

from genie_env.models.tokenize import tokenize_dataset

from .common import cli_errors, setup_logging


@dataclass(frozen=True)
class TokenizeArgs:
    """Arguments of `genie tokenize`."""

    data: str
    """frame dataset directory (from `genie collect`)"""
    tokenizer: str
    """tokenizer run or checkpoint directory (from `genie train-tokenizer`)"""
    out: str
    """token dataset directory to write (re-running continues an interrupted run)"""
    batch_size: int = 256
    """frames encoded per batch"""
    device: str = "cpu"
    """torch device: cpu or cuda"""
    lam: str | None = None
    """label every transition with this latent action model's actions instead of the real ones (the
    tokens then train a dynamics model from video alone: genie train-dynamics --actions latent --lam RUN)"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(TokenizeArgs, args=argv, prog="genie tokenize", description=__doc__)
    with cli_errors():
        manifest = tokenize_dataset(args.data, args.tokenizer, args.out, args.batch_size, args.device, lam=args.lam)
    grid = "x".join(map(str, manifest.token_grid))
    digest = manifest.tokenizer["sha256"][:12]
    print(f"{args.out}: {manifest.counts['frames']} frames as {grid} tokens (tokenizer {digest})")


if __name__ == "__main__":
    main()
