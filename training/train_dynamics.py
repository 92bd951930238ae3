"""Train the dynamics model on token shards (`genie train-dynamics --preset cpu --tokens DIR --out RUN`).

Every field of the preset can be overridden: `--model.action-mode add`, `--train.steps 2000`, ...
The token grid and vocabulary are read from the token dataset. `--resume` continues a killed run.
`--actions joint` trains a latent action model together with the dynamics (genie_env/models/joint.py).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from genie_env.checkpoint import resolve_checkpoint, weights_sha256
from genie_env.data.dataset import paired_windows, reward_values, token_manifests, token_windows
from genie_env.data.manifest import dataset_identities
from genie_env.games import REWARD_VALUES
from genie_env.models import check_trained_on, init_config, init_weights, load_dynamics, tokenizer_identity
from genie_env.models.common import seed_everything
from genie_env.models.distill import DistillObjective
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, DynamicsObjective
from genie_env.models.joint import JointConfig, JointModel, JointObjective, split_joint
from genie_env.models.lam import LAMConfig
from genie_env.models.rewards import reward_support
from genie_env.presets import PresetName, dynamics_preset, lam_preset
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
    """dynamics architecture (codebook_size, grid, num_actions and reward_values are taken from the token
    datasets: the reward head predicts a distribution over the rewards their train split holds)"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimisation"""
    oversample_events: int = 8
    """windows holding a reward or termination appear this many times per epoch"""
    oversample_deaths: int = 1
    """windows holding a death (a termination without a reward) appear this many times more on top, so the
    termination head learns where agents die (1 = no more than other events)"""
    self_forcing: float = 0.0
    """probability that a window trains on its own dream: after a real prefix of 1..W-1 frames its
    previous-frame inputs are the model's greedy generations, scored against the real frames and events
    (0 = teacher forcing only). Use it to fine-tune a trained model so dreamed approaches still end in coins"""
    init_from: str | None = None
    """start from this dynamics checkpoint or run's weights (a fine-tuning round), with a fresh optimizer
    and schedule; its architecture must equal --model's and its tokenizer the tokens'"""
    actions: Literal["real", "latent", "joint"] = "real"
    """what conditions the model: the real actions; (latent) the latent actions a LAM labelled the tokens
    with (`genie tokenize --lam RUN`); or (joint) the latent actions of a LAM trained together with it,
    on the frames the tokens were made from (Jasmine's co-training, genie_env/models/joint.py; the run
    ends by writing OUT/lam and OUT/dynamics). With latent or joint the model never sees a real action"""
    lam: str | None = None
    """with --actions latent: the LAM run the tokens must have been labelled by"""
    lam_model: LAMConfig = field(default_factory=LAMConfig)
    """with --actions joint: the LAM trained together with the dynamics (its frames must cover
    --model.context-frames; the preset's LAM, with frames set to the window, by default)"""
    lam_weight: float = 1.0
    """with --actions joint: weight of the LAM's loss beside the dynamics'"""
    frames: tuple[str, ...] = ()
    """with --actions joint: the frame datasets the --tokens were tokenized from, one per --tokens directory
    (default: the paths their manifests record)"""
    distill_from: str | None = None
    """train a student of this dynamics model (a run, a checkpoint, or a world-model directory such as the
    shipped genie_env/assets/coinrun): it learns the teacher's predicted distributions of tokens, rewards and
    ends rather than the data's (genie_env/models/distill.py); --model sets the student's architecture,
    e.g. --model.temporal-every 4 --model.kv-heads 1, and the reward values are the teacher's"""
    distill_dreamed: float = 0.5
    """with --distill-from: probability that a window is the teacher's own greedy dream after a real
    prefix of 1..W-1 frames, so the student learns the teacher where dream agents go"""
    resume: bool = False
    """continue the run in --out from its last checkpoint"""

    def __post_init__(self) -> None:
        if (self.actions == "latent") != (self.lam is not None):
            raise ValueError("--actions latent needs --lam RUN (the LAM that labelled the tokens), and only it")
        if self.distill_from is not None and self.self_forcing:
            raise ValueError("--distill-from and --self-forcing: a student learns the teacher's dreams with "
                             "--distill-dreamed instead")  # fmt: skip
        if self.actions == "joint" and (self.distill_from or self.self_forcing or self.init_from):
            raise ValueError("--actions joint trains a LAM and a dynamics from scratch: not with --distill-from, "
                             "--self-forcing or --init-from")  # fmt: skip
        if self.frames and self.actions != "joint":
            raise ValueError("--frames is for --actions joint only (the tokens' frames the LAM learns from)")
        if not 0.0 <= self.distill_dreamed <= 1.0:
            raise ValueError(f"--distill-dreamed is a probability in [0, 1], got {self.distill_dreamed}")
        if isinstance(self.tokens, str):  # one directory given as a plain string (from Python)
            object.__setattr__(self, "tokens", (self.tokens,))


def default_args(preset: str) -> TrainDynamicsArgs:
    p = dynamics_preset(preset)
    lam = dataclasses.replace(lam_preset(preset).model, frames=p.model.context_frames)  # for --actions joint
    return TrainDynamicsArgs(preset=preset, model=p.model, train=p.train, oversample_events=p.oversample_events,
                             lam_model=lam)  # fmt: skip


def run(args: TrainDynamicsArgs) -> dict[str, float]:
    """Train and return the last logged metrics."""
    manifest = token_manifests(args.tokens)[0]
    joint = args.actions == "joint"
    if not joint:
        check_actions_match(args, manifest.actions)
    grid, vocab = manifest.token_grid[0], manifest.codebook_size
    # Procgen's 15, a user's game's, or a LAM's latent actions (the one trained alongside, with joint)
    num_actions = args.lam_model.num_actions if joint else manifest.num_actions
    model_cfg = dataclasses.replace(args.model, grid=grid, codebook_size=vocab, num_actions=num_actions)
    if (args.model.grid, args.model.codebook_size) != (grid, vocab):
        logger.info("token grid %dx%d and %d codes taken from %s", grid, grid, vocab, args.tokens[0])
    seed_everything(args.train.seed)
    window = model_cfg.context_frames
    if joint:
        dataset = paired_windows(args.tokens, args.frames, window, args.oversample_events, args.oversample_deaths)
    else:
        dataset = token_windows(args.tokens, window, args.oversample_events, args.oversample_deaths)
    teacher = load_teacher(args, manifest.tokenizer) if args.distill_from else None
    support = teacher.cfg.reward_values if teacher else reward_head_support(args, reward_values(dataset), manifest.game)
    model_cfg = dataclasses.replace(model_cfg, reward_values=tuple(support))
    extra = {"tokenizer": manifest.tokenizer, "oversample_events": args.oversample_events, "preset": args.preset,
             "datasets": dataset_identities(args.tokens), "game": manifest.game}  # fmt: skip
    if args.oversample_deaths > 1:  # recorded only when used, so runs from before the option still resume
        extra["oversample_deaths"] = args.oversample_deaths
    if joint:
        return train_joint(args, JointConfig(args.lam_model, model_cfg, args.lam_weight), dataset, extra)
    model = DynamicsModel(model_cfg)
    if manifest.actions:  # recorded only for latent actions, so runs from before still resume
        extra["actions"] = manifest.actions
    if args.self_forcing:  # recorded only when used, so runs from before the option still resume
        extra["self_forcing"] = args.self_forcing
    if args.init_from:  # recorded on resume too; the weights then come from the run's own checkpoint
        extra["init_from"] = init_weights(model, args.init_from, manifest.tokenizer, load=not args.resume)
    if teacher is not None:  # recorded only when used, so runs from before the option still resume
        ckpt = resolve_checkpoint(teacher_path(args.distill_from))
        extra["distill_from"] = {"path": str(ckpt), "sha256": weights_sha256(ckpt), "dreamed": args.distill_dreamed}
        objective = DistillObjective(model, teacher, args.distill_dreamed, args.distill_from)
    else:
        objective = DynamicsObjective(model, args.self_forcing)
    trainer = Trainer(
        objective, dataset, args.train, args.out, kind="dynamics",
        model_config=model_cfg, resume=args.resume, extra_config=extra,
    )  # fmt: skip
    return trainer.fit()


def train_joint(args: TrainDynamicsArgs, cfg: JointConfig, dataset, extra: dict) -> dict[str, float]:
    """--actions joint: the LAM and the dynamics trained together, then split into OUT/lam and OUT/dynamics."""
    frames = [part.frames.root for part in getattr(dataset, "datasets", [dataset])]
    extra = {**extra, "frames": dataset_identities(frames)}
    trainer = Trainer(JointObjective(JointModel(cfg)), dataset, args.train, args.out, kind="joint", model_config=cfg,
                      resume=args.resume, extra_config=extra)  # fmt: skip
    metrics = trainer.fit()
    if trainer.rank == 0:
        lam, dynamics = split_joint(args.out, args.out)
        logger.info("split into %s and %s", lam, dynamics)
    return metrics


def teacher_path(path: str) -> Path:
    """A dynamics run or checkpoint, or the dynamics of a world-model directory."""
    return Path(path) / "dynamics" if (Path(path) / "dynamics" / "config.json").exists() else Path(path)


def load_teacher(args: TrainDynamicsArgs, tokenizer: dict) -> DynamicsModel:
    """The --distill-from model, checked to have been trained on tokens of the tokens' tokenizer."""
    path = teacher_path(args.distill_from)
    known = {tokenizer["sha256"]}
    if Path(tokenizer["path"]).exists():  # an exported tokenizer is also known by its source's sha256
        known |= tokenizer_identity(tokenizer["path"])
    check_trained_on(path, known, f"--tokens {args.tokens[0]}", dynamics_name=f"--distill-from {args.distill_from}")
    return load_dynamics(path)  # on CPU: the objective moves it to the training device


def reward_head_support(args: TrainDynamicsArgs, seen: np.ndarray, game: str) -> tuple[float, ...]:
    """The reward head's support: the rewards the tokens hold and those the game is known to give
    (`games.REWARD_VALUES`), or (fine-tuning) the --init-from model's, which the new rewards then train on
    clipped to its range and split between its values."""
    support = reward_support(np.union1d(seen, np.array(REWARD_VALUES.get(game, ()), np.float32)))
    if args.init_from:
        kept = init_config(args.init_from).reward_values
        new = sorted(set(support) - set(kept))
        if new:
            logger.warning("--tokens hold rewards %s that --init-from %s does not predict: they train as the two-hot "
                           "targets between its values %s", new, args.init_from, kept)  # fmt: skip
        support = kept
    logger.info("reward head over %d values: %s", len(support), ", ".join(f"{v:g}" for v in support))
    return support


def check_actions_match(args: TrainDynamicsArgs, actions: dict | None) -> None:
    """--actions/--lam must say what the tokens hold: real actions, or those of that very LAM."""
    from genie_env.models.tokenize import describe_actions

    if args.actions == "real" and actions is not None:
        raise ValueError(f"--tokens {args.tokens[0]} holds {describe_actions(actions)}: pass --actions latent "
                         f"--lam {actions['lam']['path']}")  # fmt: skip
    if args.actions == "latent":
        if actions is None:
            raise ValueError(f"--tokens {args.tokens[0]} holds the real actions: label them first with "
                             f"genie tokenize --lam {args.lam}")  # fmt: skip
        if weights_sha256(resolve_checkpoint(args.lam)) != actions["lam"]["sha256"]:
            raise ValueError(
                f"--tokens {args.tokens[0]} holds {describe_actions(actions)}, not those of --lam {args.lam}"
            )


def main(argv: list[str] | None = None) -> None:
    train_main(
        TrainDynamicsArgs, default_args, run, sys.argv[1:] if argv is None else argv, "genie train-dynamics", __doc__
    )


if __name__ == "__main__":
    main()
