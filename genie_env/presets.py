"""Named configurations: `tiny` (tests, seconds), `cpu` (the default, 2 CPU cores), `gpu` (one H100-class GPU).

A preset is a set of config instances, not a script: the CLIs start from a preset and let any
field be overridden (`--model.patch 4`, `--train.steps 100`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from genie_env.agents.networks import FEATURES, Features
from genie_env.models.dynamics import DynamicsConfig
from genie_env.models.lam import LAMConfig
from genie_env.models.tokenizer import TokenizerConfig
from genie_env.trainer import TrainConfig

T = TypeVar("T")
PresetName = Literal["tiny", "cpu", "gpu"]
TokenizerPresetName = Literal["tiny", "cpu", "cpu16", "gpu"]
LAMPresetName = Literal["tiny", "cpu", "gpu"]


@dataclass(frozen=True)
class TokenizerPreset:
    """A tokenizer model, how to train it, and the clip length it trains on."""

    model: TokenizerConfig
    train: TrainConfig
    window: int = 1
    """frames per training sample (1 for conv; stvivit learns from clips)"""


TOKENIZER_PRESETS: dict[str, TokenizerPreset] = {
    # seconds on a laptop: for tests and the tiny pipeline
    "tiny": TokenizerPreset(
        TokenizerConfig(patch=16, channels=16, blocks=1, embed_dim=8, codebook_size=32, dead_code_steps=10),
        TrainConfig(
            steps=20,
            batch_size=8,
            lr=2e-3,
            warmup_steps=2,
            log_every=5,
            image_every=10,
            checkpoint_every=10,
            num_workers=0,
        ),
    ),
    # the default: an 8x8 token grid (64 tokens a frame, so the dynamics model stays cheap), patchified
    # straight to 8x8 and worked on there; 2.5M params. Precision auto: bf16 autocast on cores with AVX512-BF16
    # (faster than fp32 with the same loss curve, README "The tokenizer"), fp32 where bf16 would be emulated
    "cpu": TokenizerPreset(
        TokenizerConfig(kind="conv", patch=8, channels=128, blocks=4, embed_dim=64, codebook_size=1024),
        TrainConfig(
            steps=26_000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=300,
            min_lr_ratio=0.05,
            precision="auto",
            checkpoint_every=500,
            image_every=1000,
            num_workers=1,
            max_minutes=60,
        ),
    ),
    # the seed's 16x16 grid (patch 4): 4x the tokens per frame, ~4x the cost per frame
    "cpu16": TokenizerPreset(
        TokenizerConfig(kind="conv", patch=4, channels=128, blocks=4, embed_dim=64, codebook_size=1024),
        TrainConfig(
            steps=6_000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=200,
            min_lr_ratio=0.05,
            precision="auto",
            checkpoint_every=250,
            image_every=500,
            num_workers=1,
            max_minutes=60,
        ),
    ),
    # one H100-class GPU: an ST-ViViT close to Jafar's CoinRun tokenizer (patch 4, width 512, 8 blocks)
    "gpu": TokenizerPreset(
        TokenizerConfig(
            kind="stvivit", patch=4, channels=512, blocks=8, heads=8, max_frames=16, embed_dim=32, codebook_size=1024
        ),
        TrainConfig(
            steps=100_000,
            batch_size=48,
            lr=3e-4,
            warmup_steps=2000,
            weight_decay=1e-4,
            checkpoint_every=2000,
            num_workers=4,
        ),
        window=16,
    ),
}


def _named(presets: dict[str, T], name: str) -> T:
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}: use one of {sorted(presets)}")
    return presets[name]


def tokenizer_preset(name: str) -> TokenizerPreset:
    """The named tokenizer preset; ValueError listing the names if unknown."""
    return _named(TOKENIZER_PRESETS, name)


@dataclass(frozen=True)
class DynamicsPreset:
    """A dynamics model and how to train it (its token grid and vocabulary come from the tokenizer)."""

    model: DynamicsConfig
    train: TrainConfig
    oversample_events: int = 8
    """windows holding a reward or termination appear this many times per epoch"""


DYNAMICS_PRESETS: dict[str, DynamicsPreset] = {
    "tiny": DynamicsPreset(
        DynamicsConfig(codebook_size=32, grid=4, dim=32, depth=1, heads=2, context_frames=4),
        TrainConfig(
            steps=20,
            batch_size=4,
            lr=2e-3,
            warmup_steps=2,
            log_every=5,
            image_every=0,
            checkpoint_every=10,
            num_workers=0,
        ),
    ),
    # for the 8x8 cpu tokenizer: width 256, 4 ST blocks, 16-frame windows, precision auto (bf16 on fast-bf16
    # CPUs); 3.3M params.
    # Width 128 trains and dreams about twice as fast, but its dream-trained agents score a point lower on
    # validation levels, so 256 stays (the README's speed paragraph has the figures)
    "cpu": DynamicsPreset(
        DynamicsConfig(dim=256, depth=4, heads=4, context_frames=16),
        TrainConfig(
            steps=4_000,
            batch_size=8,
            lr=1e-3,
            warmup_steps=200,
            min_lr_ratio=0.1,
            weight_decay=0.01,
            precision="auto",
            checkpoint_every=250,
            image_every=0,
            num_workers=1,
            max_minutes=90,
        ),
    ),
    # one H100-class GPU, close to Jafar's CoinRun dynamics model (width 512, 12 blocks, 16 frames)
    "gpu": DynamicsPreset(
        DynamicsConfig(dim=512, depth=12, heads=8, context_frames=16),
        TrainConfig(
            steps=100_000,
            batch_size=48,
            lr=3e-4,
            warmup_steps=2000,
            weight_decay=0.05,
            checkpoint_every=2000,
            image_every=0,
            num_workers=4,
        ),
    ),
}


def dynamics_preset(name: str) -> DynamicsPreset:
    """The named dynamics preset; ValueError listing the names if unknown."""
    return _named(DYNAMICS_PRESETS, name)


@dataclass(frozen=True)
class LAMPreset:
    """A latent action model, how to train it, and the clip length it trains on."""

    model: LAMConfig
    train: TrainConfig
    window: int
    """frames per training clip (window - 1 transitions)"""


LAM_PRESETS: dict[str, LAMPreset] = {
    # seconds: tests
    "tiny": LAMPreset(
        LAMConfig(num_actions=4, latent_dim=8, patch=16, dim=32, depth=1, heads=2, frames=4, dead_code_steps=10),
        TrainConfig(
            steps=20,
            batch_size=4,
            lr=2e-3,
            warmup_steps=2,
            log_every=5,
            image_every=0,
            checkpoint_every=10,
            num_workers=0,
        ),  # fmt: skip
        window=4,
    ),
    # 2 CPU cores: 8x8 patches, width 192, 3 blocks each side, clips of 8 frames; precision auto
    "cpu": LAMPreset(
        LAMConfig(num_actions=6, latent_dim=32, patch=8, dim=192, depth=3, heads=4, frames=8),
        TrainConfig(
            steps=6_000,
            batch_size=16,
            lr=6e-4,
            warmup_steps=200,
            min_lr_ratio=0.1,
            weight_decay=0.01,
            precision="auto",
            checkpoint_every=250,
            image_every=0,
            num_workers=1,
        ),  # fmt: skip
        window=8,
    ),
    # one H100-class GPU, close to Jafar's LAM (width 512, 8 blocks, 16 frames)
    "gpu": LAMPreset(
        LAMConfig(num_actions=6, latent_dim=32, patch=4, dim=512, depth=8, heads=8, frames=16),
        TrainConfig(
            steps=100_000,
            batch_size=36,
            lr=3e-4,
            warmup_steps=2000,
            weight_decay=0.05,
            checkpoint_every=2000,
            image_every=0,
            num_workers=4,
        ),  # fmt: skip
        window=16,
    ),
}


def lam_preset(name: str) -> LAMPreset:
    """The named LAM preset; ValueError listing the names if unknown."""
    return _named(LAM_PRESETS, name)


@dataclass(frozen=True)
class PipelinePreset:
    """The budgets of `genie pipeline`: real data, the model presets, the agents and their evaluation."""

    frames: int
    """real frames collected for the world model (also the same-budget real PPO's steps)"""
    collect_envs: int
    """levels collected at once"""
    tokenizer: str
    """tokenizer preset"""
    dynamics: str
    """dynamics preset"""
    agent_steps: int
    """steps the agent trains in the dream"""
    agent_envs: int = 64
    """dreams (and real levels) an agent trains on at once"""
    agent_n_steps: int = 128
    """rollout length per env between updates"""
    agent_batch: int = 2048
    """PPO minibatch"""
    agent_features: Features = "nature"
    """CNN of every agent, dream and real alike: nature (SB3's CnnPolicy) or impala (the Procgen paper's)"""
    eval_episodes: int = 500
    """held-out real episodes per evaluated policy"""
    device: str = "cpu"
    """device of every stage"""
    rounds: int = 1
    """rounds of the loop (IRIS-style): each round after the first collects `round_frames` more real frames
    with the previous round's dream agent, fine-tunes the dynamics on every round's data and retrains the
    agent in the new dream from scratch"""
    round_frames: int = 50_000
    """real frames the agent collects in each round after the first"""
    finetune_steps: int = 2_000
    """optimizer steps of each fine-tuning round of the dynamics"""
    finetune_lr: float = 3e-4
    """peak learning rate of the fine-tuning rounds"""
    finetune_oversample_events: int = 4
    """event-window oversampling in fine-tuning (the agent's data holds far more coins and ends)"""
    self_forcing_steps: int = 0
    """after each fine-tuning round, this many more steps with self-forcing (windows trained on the model's
    own dreams, so dreamed approaches end in coins); 0 = none"""
    self_forcing: float = 0.75
    """fraction of the windows dreamed in those steps"""
    self_forcing_oversample_events: int = 48
    """event-window oversampling in those steps: about one window in ten then ends in a coin"""

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.agent_features not in FEATURES:
            raise ValueError(f"unknown agent_features {self.agent_features!r}: use one of {FEATURES}")


PIPELINE_PRESETS: dict[str, PipelinePreset] = {
    # every stage for real, at budgets that run end to end in minutes (the models need not transfer)
    # (two rounds, so the second round's collection by the agent and fine-tuning run too)
    "tiny": PipelinePreset(frames=1500, collect_envs=8, tokenizer="tiny", dynamics="tiny", agent_steps=512,
                           agent_envs=8, agent_n_steps=32, agent_batch=64, eval_episodes=16, rounds=2,
                           round_frames=500, finetune_steps=10, finetune_lr=1e-3, self_forcing_steps=4),
    # the shipped model: 200k sticky-random real frames, the cpu presets, then a second round of 50k frames
    # collected by the first dream agent, fine-tuned teacher-forced and then with self-forcing; IMPALA-CNN
    # agents; 2 CPU cores
    "cpu": PipelinePreset(frames=200_000, collect_envs=64, tokenizer="cpu", dynamics="cpu", agent_steps=163_840,
                          rounds=2, round_frames=50_000, finetune_steps=2_000, finetune_lr=3e-4,
                          self_forcing_steps=1_500, agent_features="impala"),
    # one H100-class GPU: 1M real frames, the gpu presets
    "gpu": PipelinePreset(frames=1_000_000, collect_envs=64, tokenizer="gpu", dynamics="gpu",
                          agent_steps=5_000_000, device="cuda"),
}  # fmt: skip


def pipeline_preset(name: str) -> PipelinePreset:
    """The named pipeline preset; ValueError listing the names if unknown."""
    return _named(PIPELINE_PRESETS, name)
