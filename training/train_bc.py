"""Behaviour cloning from expert videos, with real or latent action labels (`genie train-bc --out RUN`).

    genie collect --policy sb3:runs/expert/agent.zip --frames 100000 --out runs/expert_videos
    genie train-bc --data runs/expert_videos --labels real --out runs/oracle_bc              # every real action
    genie train-bc --data runs/expert_videos --labels latent --lam runs/lam --labelled 200 --out runs/lam_bc

RUN/agent.zip loads with `stable_baselines3.PPO.load`; `genie evaluate RUN/agent.zip` plays it on
held-out real levels. RUN/config.json records the labels it cost, the latent-to-real map and the
validation accuracy against the real actions.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import tyro

from genie_env.agents.bc import BCConfig, train_bc

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class TrainBCArgs(BCConfig):
    """Arguments of `genie train-bc`: the BC config plus where it goes."""

    out: str = "runs/bc"
    """run directory: agent.zip, config.json"""
    progress: bool = True
    """show a progress bar"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(TrainBCArgs, args=argv, prog="genie train-bc", description=__doc__)
        cfg = BCConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BCConfig)})
        path = train_bc(cfg, args.out, progress=args.progress)
    print_json({"agent": str(path), "out": args.out})


if __name__ == "__main__":
    main()
