"""Shared fixtures: tiny real datasets collected by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: each keeps to one thread (and so do the commands the tests
    # start), or the workers' thread pools fight over the two cores (a test then took 5x its time alone)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from genie_env.agents.policies import collection_policy  # noqa: E402
from genie_env.data.collect import CollectConfig, collect  # noqa: E402
from genie_env.data.manifest import Manifest  # noqa: E402

TINY = dict(frames=1500, num_envs=8, shard_frames=200, max_episode_frames=100, seed=7, progress=False, val_fraction=0.3)


@pytest.fixture(scope="session", autouse=True)
def _sb3_logs_in_tmp(tmp_path_factory) -> None:
    """SB3 makes an (empty) `SB3-<date>` folder in the system's temp dir for every `learn()` without a
    TensorBoard folder; the tests' (and the examples they run) go to pytest's temp dir instead."""
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))


def collect_with_policy(cfg: CollectConfig) -> Manifest:
    """`collect` with the behaviour policy the config names (what `genie collect` runs)."""
    return collect(cfg, collection_policy(cfg))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 1500-frame real CoinRun dataset in several small shards, both splits non-empty."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    collect_with_policy(CollectConfig(out=str(root), **TINY))
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer_run(tiny_dataset, tmp_path_factory) -> Path:
    """A `tiny`-preset tokenizer trained for a few steps on the tiny dataset (a run directory)."""
    from genie_env.cli.train_tokenizer import default_args, run

    out = tmp_path_factory.mktemp("runs") / "tokenizer_tiny"
    args = default_args("tiny")
    run(type(args)(data=str(tiny_dataset), out=str(out), preset="tiny", model=args.model, train=args.train))
    return out


@pytest.fixture(scope="session")
def tiny_world_model(tiny_dataset, tiny_tokenizer_run, tmp_path_factory) -> Path:
    """A packaged tiny world model (tokenizer + dynamics + start contexts) trained in seconds."""
    from genie_env.cli.train_dynamics import default_args, run

    from genie_env.models.tokenize import tokenize_dataset
    from genie_env.world_model import package_world_model

    root = tmp_path_factory.mktemp("world")
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, root / "tokens", progress=False)
    args = default_args("tiny")
    run(type(args)(tokens=str(root / "tokens"), out=str(root / "dyn_run"), preset="tiny", model=args.model,
                   train=args.train))  # fmt: skip
    return package_world_model(tiny_tokenizer_run, root / "dyn_run", tiny_dataset, root / "model", num_contexts=16)


@pytest.fixture(scope="session")
def tiny_agent(tiny_world_model, tmp_path_factory) -> Path:
    """A PPO agent trained for two updates in the tiny world model's dream (RUN/agent.zip)."""
    from genie_env.agents.train import AgentConfig, train_agent

    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), steps=256, num_envs=4, n_steps=32,
                      batch_size=64, n_epochs=1, horizon=8, precision="fp32")  # fmt: skip
    return train_agent(cfg, tmp_path_factory.mktemp("agents") / "dream", progress=False)
