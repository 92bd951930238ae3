"""Train the dynamics model on token shards (`genie train-dynamics --preset cpu --tokens DIR --out RUN`).

Every field of the preset can be overridden: `--model.action-mode add`, `--train.steps 2000`, ...
The token grid and vocabulary are read from the token dataset. `--resume` continues a killed run.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field

import tyro

from genie_env.data.dataset import WindowDataset
from genie_env.data.format import read_manifest
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, DynamicsObjective
from genie_env.presets import dynamics_preset
from genie_env.trainer import TrainConfig, Trainer, seed_everything
from training.presets import train_main

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainDynamicsArgs:
    """Arguments of `genie train-dynamics`."""

    tokens: str = tyro.MISSING
    """token dataset directory (from `genie tokenize`)"""
    out: str = tyro.MISSING
    """run directory: checkpoints, TensorBoard logs (tb/), metrics.jsonl"""
    preset: str = "cpu"
    """starting configuration: tiny, cpu or gpu"""
    model: DynamicsConfig = field(default_factory=DynamicsConfig)
    """dynamics architecture (codebook_size and grid are taken from the token dataset)"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimisation"""
    oversample_events: int = 8
    """windows holding a reward or termination appear this many times per epoch"""
    resume: bool = False
    """continue the run in --out from its last checkpoint"""


def default_args(preset: str) -> TrainDynamicsArgs:
    p = dynamics_preset(preset)
    return TrainDynamicsArgs(preset=preset, model=p.model, train=p.train, oversample_events=p.oversample_events)


def run(args: TrainDynamicsArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    manifest = read_manifest(args.tokens, kind="tokens")
    grid, vocab = manifest["token_grid"][0], manifest["codebook_size"]
    model_cfg = dataclasses.replace(args.model, grid=grid, codebook_size=vocab)
    if (args.model.grid, args.model.codebook_size) != (grid, vocab):
        logger.info("token grid %dx%d and %d codes taken from %s", grid, grid, vocab, args.tokens)
    seed_everything(args.train.seed)
    dataset = WindowDataset(
        args.tokens, "train", window=model_cfg.context_frames, oversample_events=args.oversample_events
    )
    trainer = Trainer(
        DynamicsObjective(DynamicsModel(model_cfg)), dataset, args.train, args.out, kind="dynamics",
        model_config=model_cfg, resume=args.resume,
        extra_config={"tokenizer": manifest["tokenizer"], "oversample_events": args.oversample_events,
                      "preset": args.preset},
    )  # fmt: skip
    return trainer.fit()


def main(argv: list[str] | None = None) -> None:
    train_main(
        TrainDynamicsArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-dynamics", __doc__
    )


if __name__ == "__main__":
    main()
