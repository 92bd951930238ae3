"""Train the video tokenizer (`genie train-tokenizer --preset cpu --data DIR --out RUN`).

Every field of the preset can be overridden: `--model.patch 4`, `--train.steps 2000`, ...
`--resume` continues a killed run exactly from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from genie_env.checkpoint import resolve_checkpoint
from genie_env.data.dataset import WindowDataset
from genie_env.data.manifest import dataset_identities, read_manifest
from genie_env.models import load_tokenizer, tokenizer_identity
from genie_env.models.common import seed_everything
from genie_env.models.tokenizer import (
    DecoderObjective,
    Tokenizer,
    TokenizerConfig,
    TokenizerObjective,
    reconstruction_grid,
)
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
    decoder_for: str | None = None
    """train only a new decoder for this conv tokenizer (a run, checkpoint, or a world-model directory's
    tokenizer): its encoder and codebook are kept frozen, so its tokens, token datasets and dynamics
    models all still fit; --model.decoder-channels and --model.decoder-blocks shape the new decoder (e.g.
    a lighter one: decoding is a fifth of a dream step), every other --model field is the tokenizer's"""
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
    extra = {"window": args.window, "preset": args.preset, "datasets": dataset_identities([args.data]),
             "game": manifest.game}  # fmt: skip
    if args.decoder_for:
        model, record = decoder_for(args)
        objective, extra = DecoderObjective(model), {**extra, **record}
    else:
        objective = TokenizerObjective(Tokenizer(args.model))
    trainer = Trainer(
        objective, dataset, args.train, args.out, kind="tokenizer", model_config=objective.model.cfg,
        resume=args.resume, images_fn=reconstruction_grid, extra_config=extra,
    )  # fmt: skip
    return trainer.fit()


def decoder_for(args: TrainTokenizerArgs) -> tuple[Tokenizer, dict]:
    """A tokenizer with --decoder-for's encoder and codebook (loaded) and a fresh decoder of --model's
    decoder shape, and what its checkpoints record: the tokenizer it decodes for and the sha256s its tokens
    are known by (`tokenizer_identity`)."""
    path = Path(args.decoder_for)
    path = path / "tokenizer" if (path / "tokenizer" / "config.json").exists() else path
    ckpt = resolve_checkpoint(path)
    frozen = load_tokenizer(ckpt)
    if frozen.cfg.kind != "conv":
        raise ValueError(
            f"--decoder-for {args.decoder_for} is a {frozen.cfg.kind} tokenizer: new decoders are for conv"
        )
    cfg = dataclasses.replace(frozen.cfg, decoder_channels=args.model.decoder_channels,
                              decoder_blocks=args.model.decoder_blocks)  # fmt: skip
    model = Tokenizer(cfg)
    kept = {k: v for k, v in frozen.state_dict().items() if not k.startswith("decoder.")}
    missing = model.load_state_dict(kept, strict=False).missing_keys
    if any(not k.startswith("decoder.") for k in missing):
        raise ValueError(f"--decoder-for {args.decoder_for}: its encoder or codebook lacks {missing}")
    return model, {"decoder_for": str(ckpt), "tokens_of": sorted(tokenizer_identity(ckpt))}


def main(argv: list[str] | None = None) -> None:
    train_main(
        TrainTokenizerArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-tokenizer", __doc__
    )


if __name__ == "__main__":
    main()
