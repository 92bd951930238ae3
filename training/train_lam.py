"""Train Genie's latent action model on frames alone (`genie train-lam --preset cpu --data DIR --out RUN`).

The dataset's actions are never read: the LAM learns `--model.num-actions` discrete latent actions
that explain each frame from the ones before it. Every field of the preset can be overridden
(`--model.num-actions 8`, `--train.steps 2000`); `--resume` continues a killed run exactly. TensorBoard
logs the reconstruction PSNR beside copy-last-frame's, and the latent actions' usage and perplexity.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import tyro

from genie_env.data.dataset import WindowDataset
from genie_env.data.manifest import dataset_identities, read_manifest
from genie_env.models.common import seed_everything
from genie_env.models.lam import LAMConfig, LAMObjective, LatentActionModel
from genie_env.presets import LAMPresetName, lam_preset
from genie_env.trainer import TrainConfig, Trainer

from .presets import train_main


@dataclass(frozen=True)
class TrainLAMArgs:
    """Arguments of `genie train-lam`."""

    data: str = tyro.MISSING
    """frame dataset directory (from `genie collect`; its actions are not used)"""
    out: str = tyro.MISSING
    """run directory: checkpoints, TensorBoard logs (tb/), metrics.jsonl"""
    preset: LAMPresetName = "cpu"
    """starting configuration: tiny, cpu or gpu"""
    model: LAMConfig = field(default_factory=LAMConfig)
    """latent action model architecture"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimisation"""
    window: int = 8
    """frames per training clip"""
    resume: bool = False
    """continue the run in --out from its last checkpoint"""

    def __post_init__(self) -> None:
        if not 2 <= self.window <= self.model.frames:
            raise ValueError(f"--window must be in 2..--model.frames ({self.model.frames}), got {self.window}")


def default_args(preset: str) -> TrainLAMArgs:
    p = lam_preset(preset)
    return TrainLAMArgs(preset=preset, model=p.model, train=p.train, window=p.window)


def run(args: TrainLAMArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    seed_everything(args.train.seed)
    manifest = read_manifest(args.data, kind="frames")
    dataset = WindowDataset(args.data, split="train", window=args.window)
    trainer = Trainer(
        LAMObjective(LatentActionModel(args.model)), dataset, args.train, args.out, kind="lam",
        model_config=args.model, resume=args.resume,
        extra_config={"window": args.window, "preset": args.preset, "datasets": dataset_identities([args.data]),
                      "game": manifest.game},
    )  # fmt: skip
    return trainer.fit()


def main(argv: list[str] | None = None) -> None:
    train_main(TrainLAMArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-lam", __doc__)


if __name__ == "__main__":
    main()
