"""Collect real Procgen episodes (CoinRun unless --game says otherwise) into a sharded dataset (`genie collect`).

    genie collect --out data/coinrun --frames 100000 --num-envs 64 --policy sticky
    genie collect --game starpilot --out data/starpilot --frames 100000
    genie collect --out data/coinrun --frames 100000 --resume      # continue a killed run
    genie collect                                                  # the original default job

With no flags at all it runs the original Genie-Opt job: 5000 frames into coinrun_data/ and the
single (5000, 64, 64, 3) uint8 array coinrun_data/training_data.npy.
"""

from __future__ import annotations

import sys

import tyro

from genie_env.agents.policies import collection_policy
from genie_env.data.collect import CollectConfig, collect

from .common import cli_errors, setup_logging

DEFAULT_JOB = ["--export-npy", "coinrun_data/training_data.npy"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        cfg = tyro.cli(CollectConfig, args=argv or DEFAULT_JOB, prog="genie collect", description=__doc__)
        manifest = collect(cfg, collection_policy(cfg))
    counts = manifest.counts
    print(
        f"{cfg.out}: {counts['frames']} frames, {counts['episodes']} episodes "
        f"(train {counts['train_frames']}, val {counts['val_frames']} frames)"
        + (f"; exported {cfg.export_npy}" if cfg.export_npy else "")
    )


if __name__ == "__main__":
    main()
