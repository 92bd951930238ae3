"""Map the real actions onto a latent world model's (`genie map-actions --world-model DIR --data DATA`).

    genie map-actions --world-model runs/latent_world_model --data data/coinrun --labelled 200
    gymnasium.make("GenieProcgen-v0", world_model="runs/latent_world_model")   # then plays it with the 15

A world model trained with `genie train-dynamics --actions latent` never saw a real action. From
--labelled transitions of --data whose real actions are kept, its LAM's latent action of each is found,
and every real action maps to the latent action it was seen as most often (a real action no labelled
transition shows maps to the commonest latent one). DIR/action_map.json records the map, the counts
table, the labels it cost and how often the map agrees with the LAM over all train transitions; the
Procgen dream envs then take the real actions and agents trained there play the real game as they are.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import tyro

from genie_env.agents.bc import map_actions

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class MapActionsArgs:
    """Arguments of `genie map-actions`."""

    world_model: str
    """world-model directory of latent actions (`package_world_model` of a `--actions latent` dynamics run)"""
    data: tuple[str, ...]
    """frame datasets of the model's game with real actions (only --labelled of their transitions are used)"""
    labelled: int = 200
    """transitions whose real action is used (Genie grounds its latent actions with about 200)"""
    seed: int = 0
    """seed of the draw of the labelled transitions"""
    lam: str | None = None
    """the LAM run or checkpoint (default: the one the world model records; a different one is refused)"""
    device: str = "cpu"
    """torch device of the LAM"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(MapActionsArgs, args=argv, prog="genie map-actions", description=__doc__)
        record = map_actions(args.world_model, args.data, args.labelled, args.seed, args.lam, args.device)
    print_json({k: record[k] for k in ("real_to_latent", "labelled", "agreement")} | {"world_model": args.world_model})


if __name__ == "__main__":
    main()
