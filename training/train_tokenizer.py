"""Train the video tokenizer (`genie train-tokenizer --preset cpu --data DIR --out RUN`).

Every field of the preset can be overridden: `--model.patch 4`, `--train.steps 2000`, ...
`--resume` continues a killed run exactly from its last checkpoint.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import tyro

from genie_env.data.dataset import WindowDataset
from genie_env.data.manifest import dataset_identities, read_manifest
from genie_env.models.common import seed_everything
from genie_env.models.tokenizer import Tokenizer, TokenizerConfig, TokenizerObjective, reconstruction_grid
from genie_env.presets import TokenizerPresetName, tokenizer_preset
from genie_env.trainer import TrainConfig, Trainer

from .presets import train_main


@dataclass(frozen=True)
class TrainTokenizerArgs:
    """Arguments of `genie train-tokenizer`."""

    data: str = tyro.MISSING
    """frame dataset directory (from `genie collect`)"""
    out: str = tyro.MISSING
    """run directory: checkpoints, TensorBoard logs (tb/), metrics.jsonl"""
    preset: TokenizerPresetName = "cpu"
    """starting configuration: tiny, cpu, cpu16 or gpu"""
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    """tokenizer architecture"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimisation"""
    window: int = 1
    """frames per training sample (1 for conv; clips for stvivit)"""
    resume: bool = False
    """continue the run in --out from its last checkpoint"""


def default_args(preset: str) -> TrainTokenizerArgs:
    p = tokenizer_preset(preset)
    return TrainTokenizerArgs(preset=preset, model=p.model, train=p.train, window=p.window)


def run(args: TrainTokenizerArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    seed_everything(args.train.seed)
    manifest = read_manifest(args.data, kind="frames")  # a token dataset here is an error naming both kinds
    dataset = WindowDataset(args.data, split="train", window=args.window)
    trainer = Trainer(
        TokenizerObjective(Tokenizer(args.model)), dataset, args.train, args.out, kind="tokenizer",
        model_config=args.model, resume=args.resume, images_fn=reconstruction_grid,
        extra_config={"window": args.window, "preset": args.preset, "datasets": dataset_identities([args.data]),
                      "game": manifest.game},
    )  # fmt: skip
    return trainer.fit()


def main(argv: list[str] | None = None) -> None:
    train_main(
        TrainTokenizerArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-tokenizer", __doc__
    )


if __name__ == "__main__":
    main()
