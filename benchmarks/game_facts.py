"""Measure each Procgen game's reward facts from random play and check `games.ENDS_ON_REWARD` against them.

    python benchmarks/game_facts.py [--steps 3000] [--envs 64] [--seed 0]

Prints JSON: per game, the reward values seen (with counts), how many rewards came on an episode's last
step and how many mid-episode, whether every reward ended its episode (`ENDS_ON_REWARD`'s claim), and any
reward value `REWARD_VALUES` lacks.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from genie_env.games import ENDS_ON_REWARD, NUM_ACTIONS, PROCGEN_GAMES, REWARD_VALUES, LevelConfig, make_procgen


def game_facts(game: str, steps: int, envs: int, seed: int = 0) -> dict:
    env = make_procgen(envs, seed, LevelConfig(game=game))
    rng = np.random.default_rng(seed)
    values: dict[float, int] = {}
    at_end = midway = episodes = 0
    try:
        for _ in range(steps):
            env.act(rng.integers(0, NUM_ACTIONS, envs).astype(np.int32))
            reward, _, first = env.observe()  # first: the step ended an episode (a new one starts)
            for v, n in zip(*np.unique(reward, return_counts=True)):
                values[float(v)] = values.get(float(v), 0) + int(n)
            at_end += int(((reward != 0) & first).sum())
            midway += int(((reward != 0) & ~first).sum())
            episodes += int(first.sum())
    finally:
        env.close()
    return {
        "reward_values": {f"{v:g}": n for v, n in sorted(values.items())},
        "rewards_at_episode_end": at_end, "rewards_midway": midway, "episodes_ended": episodes,
        "every_reward_ends_episode": midway == 0 and at_end > 0, "table_says": game in ENDS_ON_REWARD,
        "values_missing_from_table": sorted(
            v for v in values if v != 0 and not np.isclose(v, REWARD_VALUES[game], rtol=1e-6).any()
        ),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps of random play per game (each of --envs)")
    parser.add_argument("--envs", type=int, default=64, help="procgen envs stepped together")
    parser.add_argument("--seed", type=int, default=0, help="procgen rand_seed and the random policy's seed")
    args = parser.parse_args()
    facts = {game: game_facts(game, args.steps, args.envs, args.seed) for game in PROCGEN_GAMES}
    agree = all(f["every_reward_ends_episode"] == f["table_says"] for f in facts.values())
    covered = not any(f["values_missing_from_table"] for f in facts.values())
    report = {"steps_per_env": args.steps, "envs": args.envs, "seed": args.seed, "ends_table_agrees": agree,
              "reward_table_covers": covered, "games": facts}  # fmt: skip
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
