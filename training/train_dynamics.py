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
from torch.utils.data import ConcatDataset, Dataset

from genie_env.checkpoint import CheckpointError, config_diff, config_to_dict, load_weights, read_config
from genie_env.data.dataset import WindowDataset
from genie_env.data.format import read_manifest
from genie_env.models import resolve_checkpoint
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, DynamicsObjective
from genie_env.presets import dynamics_preset
from genie_env.trainer import TrainConfig, Trainer, seed_everything
from training.presets import train_main

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainDynamicsArgs:
    """Arguments of `genie train-dynamics`."""

    tokens: tuple[str, ...] = tyro.MISSING
    """token dataset directories (from `genie tokenize`, all with the same tokenizer): several train on
    their windows together, e.g. the original data and the data a later round's agent collected"""
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


def token_manifests(roots: tuple[str, ...]) -> list[dict]:
    """The manifests of the token datasets; ValueError unless they share one token grid, vocabulary and tokenizer."""
    if not roots:
        raise ValueError("--tokens: give at least one token dataset directory")
    manifests = [read_manifest(r, kind="tokens") for r in roots]
    first = manifests[0]
    for root, m in zip(roots[1:], manifests[1:]):
        for key in ("token_grid", "codebook_size"):
            if m[key] != first[key]:
                raise ValueError(f"--tokens: {root} has {key} {m[key]}, {roots[0]} has {first[key]}")
        if m["tokenizer"]["sha256"] != first["tokenizer"]["sha256"]:
            raise ValueError(f"--tokens: {root} and {roots[0]} were tokenized with different tokenizers")
    return manifests


def token_windows(roots: tuple[str, ...], window: int, oversample_events: int) -> Dataset:
    """The train windows of every token dataset, together (each window drawn as often as in its own dataset)."""
    parts = [WindowDataset(root, "train", window=window, oversample_events=oversample_events) for root in roots]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def init_weights(model: DynamicsModel, path: str, tokenizer: dict, load: bool = True) -> str:
    """Load the weights of the dynamics checkpoint (or run) `path` into `model` to fine-tune it; its config must
    equal the model's and it must have been trained on tokens of `tokenizer`. Returns the checkpoint used."""
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt, kind="dynamics")
    diff = config_diff(meta["config"], config_to_dict(model.cfg))
    if diff:
        raise CheckpointError(f"--init-from {path}: its architecture differs from --model's in {', '.join(diff)}")
    trained_with = meta.get("tokenizer", {}).get("sha256")
    if trained_with != tokenizer["sha256"]:
        raise CheckpointError(f"--init-from {path} was trained on tokens of another tokenizer than --tokens")
    if load:
        load_weights(model, ckpt)
    return str(ckpt)


def run(args: TrainDynamicsArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    manifest = token_manifests(args.tokens)[0]
    grid, vocab = manifest["token_grid"][0], manifest["codebook_size"]
    model_cfg = dataclasses.replace(args.model, grid=grid, codebook_size=vocab)
    if (args.model.grid, args.model.codebook_size) != (grid, vocab):
        logger.info("token grid %dx%d and %d codes taken from %s", grid, grid, vocab, args.tokens[0])
    seed_everything(args.train.seed)
    dataset = token_windows(args.tokens, model_cfg.context_frames, args.oversample_events)
    model = DynamicsModel(model_cfg)
    extra = {"tokenizer": manifest["tokenizer"], "oversample_events": args.oversample_events, "preset": args.preset}
    if args.self_forcing:  # recorded only when used, so runs from before the option still resume
        extra["self_forcing"] = args.self_forcing
    if args.init_from:  # recorded on resume too; the weights then come from the run's own checkpoint
        extra["init_from"] = init_weights(model, args.init_from, manifest["tokenizer"], load=not args.resume)
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
