"""Train an SB3 agent in the dream or in the real game (`genie train-agent --env dream|real --out RUN`).

    genie train-agent --env dream --steps 500000 --out runs/agent_dream        # the shipped world model
    genie train-agent --env dream --world-model runs/world_model --context data/coinrun --out runs/agent_dream
    genie train-agent --env real --steps 200000 --out runs/agent_real          # the same real-frame budget
    genie train-agent --env real --algo a2c --features impala --out runs/a2c   # any SB3 on-policy algorithm
    genie train-agent --out runs/agent_dream --resume                          # continue a killed run

RUN/agent.zip loads with `stable_baselines3.PPO.load`; `genie evaluate RUN/agent.zip` plays it on
held-out real levels. Progress, TensorBoard logs (RUN/tb) and atomic checkpoints every
--checkpoint-every steps; --eval-every adds evaluations on held-out real levels during training.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import tyro

from genie_env.agents.train import AgentConfig, train_agent

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class TrainAgentArgs(AgentConfig):
    """Arguments of `genie train-agent`: the agent config plus where it goes."""

    out: str = "runs/agent"
    """run directory: agent.zip, config.json, levels.json, checkpoints/, tb/"""
    resume: bool = False
    """continue the run in --out from its latest checkpoint"""


def agent_config(args: TrainAgentArgs) -> AgentConfig:
    """The AgentConfig part of the arguments."""
    return AgentConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(AgentConfig)})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(TrainAgentArgs, args=argv, prog="genie train-agent", description=__doc__)
        path = train_agent(agent_config(args), args.out, resume=args.resume)
    print_json({"agent": str(path), "out": args.out})


if __name__ == "__main__":
    main()
