"""Evaluate a latent action model on held-out levels (`genie eval-lam --lam RUN --data DIR`).

Prints one JSON object and writes it to --out-dir/eval_lam.json, with --out-dir/latent_actions.png
(each row: a frame, then what each latent action makes of it):
- the contingency table of latent actions against the real actions and against CoinRun's movement
  classes, each with its normalized mutual information (the real actions are read only here);
- each latent action's mean horizontal scene shift, in pixels;
- the next-frame PSNR (from the mean MSE over all frames) beside copy-last-frame's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env._io import atomic_write_json
from genie_env.data.manifest import Split
from genie_env.evaluate.lam import evaluate_lam
from genie_env.models import load_lam

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class EvalLAMArgs:
    """Arguments of `genie eval-lam`."""

    lam: str
    """latent action model run or checkpoint directory"""
    data: str
    """frame dataset directory"""
    split: Split = "val"
    """dataset split (val holds levels the LAM never trained on)"""
    window: int = 0
    """frames per evaluated clip (0 = the model's longest)"""
    max_windows: int = 0
    """evaluate only the first N clips (0 = all)"""
    batch_size: int = 32
    """clips per batch"""
    out_dir: str = "outputs/eval_lam"
    """where eval_lam.json and latent_actions.png go"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(EvalLAMArgs, args=argv, prog="genie eval-lam", description=__doc__)
    out = Path(args.out_dir)
    with cli_errors():
        model = load_lam(args.lam)
        result = evaluate_lam(model, args.data, args.split, args.window or None, args.max_windows, args.batch_size,
                              grid_path=out / "latent_actions.png")  # fmt: skip
    result = {"lam": args.lam, "data": args.data, "split": args.split, **result}
    atomic_write_json(out / "eval_lam.json", result)
    print_json(result)


if __name__ == "__main__":
    main()
