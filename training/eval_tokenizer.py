"""Evaluate a tokenizer on the validation split (`genie eval-tokenizer --tokenizer RUN --data DIR`).

Prints one JSON object (PSNR from the mean MSE, SSIM, codebook usage and perplexity, encode+decode
ms per frame) and writes it, with a PNG grid of originals over reconstructions, to --out-dir.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env._io import atomic_write_json
from genie_env.data.manifest import Split
from genie_env.evaluate.tokenizer import evaluate_tokenizer
from genie_env.models import load_tokenizer

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class EvalTokenizerArgs:
    """Arguments of `genie eval-tokenizer`."""

    tokenizer: str
    """tokenizer run or checkpoint directory"""
    data: str
    """frame dataset directory"""
    split: Split = "val"
    """dataset split to evaluate on (val holds levels the tokenizer never trained on)"""
    max_frames: int = 0
    """evaluate only the first N frames of the split (0 = all)"""
    batch_size: int = 256
    """frames per encode/decode batch"""
    out_dir: str = "outputs/eval_tokenizer"
    """where eval_tokenizer.json and reconstructions.png go"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(EvalTokenizerArgs, args=argv, prog="genie eval-tokenizer", description=__doc__)
    out = Path(args.out_dir)
    with cli_errors():
        tokenizer = load_tokenizer(args.tokenizer)
        result = evaluate_tokenizer(tokenizer, args.data, args.split, args.max_frames, args.batch_size,
                                    grid_path=out / "reconstructions.png")  # fmt: skip
    result = {"tokenizer": args.tokenizer, "data": args.data, **result, "grid": str(out / "reconstructions.png")}
    atomic_write_json(out / "eval_tokenizer.json", result)
    print_json(result)


if __name__ == "__main__":
    main()
