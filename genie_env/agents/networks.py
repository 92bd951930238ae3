"""The agents' CNN features extractors: SB3's NatureCNN (its `CnnPolicy`) or the Procgen paper's IMPALA CNN.

The IMPALA residual block computes what the tokenizer's `ResBlock` computes, but its parameter names
(`conv0`, `conv1`) are part of every saved agent file, the shipped `agent.zip` among them, so it keeps
its own class rather than share the tokenizer's (`conv1`, `conv2`).
"""

from __future__ import annotations

import functools
from typing import Literal, get_args

import torch
from torch import nn

from genie_env._compat import fast_bf16, import_gym_quietly

import_gym_quietly()
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402

Features = Literal["nature", "impala"]
TrainPrecision = Literal["auto", "fp32", "bf16"]
"""what an agent's CNN trains in (rollouts and updates): bf16 autocast (the weights, heads, losses and optimizer
stay fp32; on 2 AVX512-BF16 cores a PPO minibatch of 2048 IMPALA-CNN frames, forward and backward, runs 2.2x
faster), fp32, or auto: bf16 where bf16 is fast (`_compat.fast_bf16`), fp32 elsewhere"""
FEATURES: tuple[str, ...] = get_args(Features)
"""the agents' CNN features extractors: nature (SB3's CnnPolicy) or impala (the Procgen paper's IMPALA CNN)"""


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(BaseFeaturesExtractor):
    """The IMPALA CNN of the Procgen paper: per stage a conv, a 3x3 stride-2 max-pool and two residual
    blocks (16, 32, 32 channels), then a 256-unit linear layer. Input float (B, 3, 64, 64) in [0, 1]
    (SB3 scales uint8 frames and moves channels first)."""

    def __init__(self, observation_space, features_dim: int = 256, depths: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__(observation_space, features_dim)
        layers: list[nn.Module] = []
        channels = observation_space.shape[0]
        for depth in depths:
            layers += [
                nn.Conv2d(channels, depth, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(depth),
                _ResidualBlock(depth),
            ]
            channels = depth
        self.cnn = nn.Sequential(*layers, nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # channels-last input: oneDNN's convolutions and max-pool run 1.4x faster on it on CPU (a PPO
        # minibatch of 2048 frames, forward and backward: 12.7 s against 8.97 s on 2 AVX2 cores), same values
        return self.linear(self.cnn(observations.contiguous(memory_format=torch.channels_last)))


def policy_kwargs(features: str) -> dict:
    """SB3's `policy_kwargs` for a `CnnPolicy` with the named features extractor."""
    if features not in FEATURES:
        raise ValueError(f"unknown features extractor {features!r}: use one of {FEATURES} (--features)")
    return {"features_extractor_class": ImpalaCNN} if features == "impala" else {}


def resolve_train_precision(precision: str, device: str, what: str = "--train-precision") -> str:
    """fp32 or bf16 for `precision` (`TrainPrecision`) on `device`; ValueError naming `what` for an unknown
    name."""
    if precision not in get_args(TrainPrecision):
        raise ValueError(f"unknown {what} {precision!r}: use one of {get_args(TrainPrecision)}")
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


def autocast_features(policy: nn.Module, precision: str) -> None:
    """Run every features extractor of the SB3 `policy` (the CNN: nearly all of an agent's arithmetic) under
    bf16 autocast when `precision` is "bf16", returning float32 features to the fp32 heads; "fp32" puts the
    plain forward back. Nothing is saved with the agent: its file, state dict and spaces are those of fp32."""
    for module in policy.modules():
        if isinstance(module, BaseFeaturesExtractor):
            module.__dict__.pop("forward", None)  # the class's own forward again
            if precision == "bf16":
                module.forward = functools.partial(_bf16_forward, module.forward)


def _bf16_forward(forward, observations: torch.Tensor) -> torch.Tensor:
    with torch.autocast(observations.device.type, dtype=torch.bfloat16):
        return forward(observations).float()
