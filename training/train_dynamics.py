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

from genie_env.data.dataset import token_manifests, token_windows
from genie_env.data.manifest import dataset_identities
from genie_env.models import init_weights
from genie_env.models.common import seed_everything
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, DynamicsObjective
from genie_env.presets import PresetName, dynamics_preset
from genie_env.trainer import TrainConfig, Trainer

from .presets import train_main

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainDynamicsArgs:
    """Arguments of `genie train-dynamics`."""

    tokens: tuple[str, ...] = tyro.MISSING
    """token dataset directories (from `genie tokenize`, all with the same tokenizer): several train on
    their windows together, e.g. the original data and the data a later round's agent collected"""
    out: str = tyro.MISSING
    """run directory: checkpoints, TensorBoard logs (tb/), metrics.jsonl"""
    preset: PresetName = "cpu"
    """starting configuration: tiny, cpu or gpu"""
    model: DynamicsConfig = field(default_factory=DynamicsConfig)
    """dynamics architecture (codebook_size and grid are taken from the token dataset)"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimisation"""
    oversample_events: int = 8
    """windows holding a reward or termination appear this many times per epoch"""
    self_forcing: float = 0.0
    """probability that a window trains on its own dream: after a real prefix of 1..W-1 frames its
    previous-frame inputs are the model's greedy generations, scored against the real frames and events
    (0 = teacher forcing only). Use it to fine-tune a trained model so dreamed approaches still end in coins"""
    init_from: str | None = None
    """start from this dynamics checkpoint or run's weights (a fine-tuning round), with a fresh optimizer
    and schedule; its architecture must equal --model's and its tokenizer the tokens'"""
    resume: bool = False
    """continue the run in --out from its last checkpoint"""

    def __post_init__(self) -> None:
        if isinstance(self.tokens, str):  # one directory given as a plain string (from Python)
            object.__setattr__(self, "tokens", (self.tokens,))


def default_args(preset: str) -> TrainDynamicsArgs:
    p = dynamics_preset(preset)
    return TrainDynamicsArgs(preset=preset, model=p.model, train=p.train, oversample_events=p.oversample_events)


def run(args: TrainDynamicsArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    manifest = token_manifests(args.tokens)[0]
    grid, vocab = manifest.token_grid[0], manifest.codebook_size
    model_cfg = dataclasses.replace(args.model, grid=grid, codebook_size=vocab)
    if (args.model.grid, args.model.codebook_size) != (grid, vocab):
        logger.info("token grid %dx%d and %d codes taken from %s", grid, grid, vocab, args.tokens[0])
    seed_everything(args.train.seed)
    dataset = token_windows(args.tokens, model_cfg.context_frames, args.oversample_events)
    model = DynamicsModel(model_cfg)
    extra = {"tokenizer": manifest.tokenizer, "oversample_events": args.oversample_events, "preset": args.preset,
             "datasets": dataset_identities(args.tokens), "game": manifest.game}  # fmt: skip
    if args.self_forcing:  # recorded only when used, so runs from before the option still resume
        extra["self_forcing"] = args.self_forcing
    if args.init_from:  # recorded on resume too; the weights then come from the run's own checkpoint
        extra["init_from"] = init_weights(model, args.init_from, manifest.tokenizer, load=not args.resume)
    trainer = Trainer(
        DynamicsObjective(model, args.self_forcing), dataset, args.train, args.out, kind="dynamics",
        model_config=model_cfg, resume=args.resume, extra_config=extra,
    )  # fmt: skip
    return trainer.fit()


def main(argv: list[str] | None = None) -> None:
    train_main(
        TrainDynamicsArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-dynamics", __doc__
    )


if __name__ == "__main__":
    main()
