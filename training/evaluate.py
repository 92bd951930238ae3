"""Evaluate an agent on held-out real CoinRun levels (`genie evaluate AGENT --exclude data/coinrun`).

AGENT is random, sticky, sb3:PATH or a bare path to a saved SB3 model (.zip). Plays --episodes
episodes on the level range [--start-level, --start-level + --num-levels), after checking that no
level of it is in the --exclude datasets or levels.json files. Prints the result JSON (without the
per-episode lists, which --out keeps).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from genie_env._io import atomic_write_json
from genie_env.agents.evaluate import (
    DEFAULT_EVAL_NUM_LEVELS,
    DEFAULT_EVAL_START_LEVEL,
    check_disjoint,
    evaluate_policy,
    held_out_levels,
)
from genie_env.agents.policies import agent_budget, agent_game, default_name, make_policy, policy_spec
from genie_env.games import DEFAULT_GAME, NUM_ACTIONS, DistributionMode, is_user_game
from genie_env.user_game import parse_env_kwargs, user_game_record

from .common import cli_errors, print_json, setup_logging

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateArgs:
    """Arguments of `genie evaluate`."""

    agent: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="AGENT")]
    """the policy: random, sticky, sb3:PATH, sb3:ALGO:PATH, or a path to a saved SB3 model"""
    episodes: int = 500
    """episodes to play (split evenly over the envs, so short episodes are not favoured)"""
    start_level: int = DEFAULT_EVAL_START_LEVEL
    """first level seed of the evaluation range"""
    num_levels: int = DEFAULT_EVAL_NUM_LEVELS
    """number of levels in the evaluation range (> 0 when --exclude is given)"""
    distribution_mode: DistributionMode = "easy"
    """difficulty: easy or hard"""
    game: str = DEFAULT_GAME
    """the game to play: a Procgen game (one of the 16), or the Gymnasium env id of your own (its levels are
    reset seeds)"""
    env_kwargs: str = "{}"
    """with --game the env id of your own game: its gymnasium.make kwargs, as a JSON object"""
    num_envs: int = 64
    """levels stepped together"""
    seed: int = 0
    """seed of the envs and the policy"""
    exclude: tuple[str, ...] = ()
    """datasets or levels.json files whose levels must not be in the evaluation range"""
    out: str | None = None
    """write the full result JSON (with per-episode lists) here"""
    gif: str | None = None
    """write a GIF of env 0's first ~300 frames here"""
    name: str | None = None
    """label of this policy in the result (default: the agent spec, or the model file's name)"""
    progress: bool = True
    """show a progress bar"""


def run(args: EvaluateArgs) -> dict:
    """Check the level range, evaluate the policy and return the full result (raises on bad input)."""
    spec = policy_spec(args.agent)
    trained_for = agent_game(spec)
    if trained_for is not None and trained_for != args.game:
        raise ValueError(f"{args.agent} was trained for {trained_for}: evaluate it with --game {trained_for}, "
                         f"not {args.game}")  # fmt: skip
    if args.exclude:
        seen = held_out_levels(list(args.exclude))
        check_disjoint(args.start_level, args.num_levels, seen)
    else:
        logger.warning("no --exclude given: not checking that the evaluation levels were unseen in training")
    num_envs = max(1, min(args.num_envs, args.episodes))  # more envs than episodes would play uncounted
    num_actions = user_game_record(args.game, parse_env_kwargs(args.env_kwargs))["num_actions"] if (
        is_user_game(args.game)) else NUM_ACTIONS  # fmt: skip
    policy = make_policy(spec, num_envs, args.seed, num_actions=num_actions)
    result = evaluate_policy(policy, args.episodes, args.start_level, args.num_levels, args.distribution_mode,
                             num_envs, args.seed, args.gif, args.progress, game=args.game,
                             env_kwargs=args.env_kwargs)  # fmt: skip
    head = {"name": args.name or default_name(spec), "agent": spec, **agent_budget(spec)}
    if args.exclude:
        head |= {"excluded": list(args.exclude), "excluded_levels": len(seen)}
    if args.gif:
        head["gif"] = args.gif
    return {**head, **result}


@dataclass(frozen=True)
class HeldOutSplits:
    """The two held-out level ranges of a study: validation levels pick the seed that ships, test levels
    (`genie evaluate`'s default range) give the figures reported."""

    val_start_level: int = 2_000_000
    """first level of the validation range (picks the seed that ships)"""
    val_num_levels: int = 1000
    """levels in the validation range"""
    val_episodes: int = 1024
    """validation episodes per agent"""
    test_episodes: int = 500
    """test episodes per agent (what the table reports)"""
    test_num_levels: int = DEFAULT_EVAL_NUM_LEVELS
    """levels in the test range, from level 1,000,000 (`genie evaluate`'s default range)"""

    def split(self, split: str) -> dict[str, int]:
        """The episodes and the level range of the validation or test split."""
        if split == "val":
            return {"episodes": self.val_episodes, "start_level": self.val_start_level,
                    "num_levels": self.val_num_levels}  # fmt: skip
        return {"episodes": self.test_episodes, "start_level": DEFAULT_EVAL_START_LEVEL,
                "num_levels": self.test_num_levels}  # fmt: skip

    def asked(self, result: dict, split: str) -> bool:
        """Whether a recorded evaluation played the split as it is asked now (its episodes and levels), so a
        study run again with other --val-*/--test-* settings evaluates again rather than reuse it."""
        return all(result.get(key) == value for key, value in self.split(split).items())

    def evaluate(self, agent: str, split: str, exclude: tuple[str, ...], out: Path, distribution_mode: str = "easy",
                 seed: int = 0) -> dict:  # fmt: skip
        """`agent` on the validation or test levels, checked disjoint from `exclude`; the full result is written to
        `out` and the summary (without the per-episode lists) returned."""
        result = run(EvaluateArgs(agent, distribution_mode=distribution_mode, seed=seed, exclude=exclude,
                                  progress=False, **self.split(split)))  # fmt: skip
        atomic_write_json(out, result)
        return {k: v for k, v in result.items() if k != "per_episode"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(EvaluateArgs, args=argv, prog="genie evaluate", description=__doc__)
    with cli_errors():
        result = run(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out), result)
    print_json({k: v for k, v in result.items() if k != "per_episode"})


if __name__ == "__main__":
    main()
