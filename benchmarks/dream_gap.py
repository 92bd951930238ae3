"""Does an agent farm the dream's errors? From the same real states, its H-step return in the real game
against its H-step return in the dream, for one or more agents (for example checkpoints along one run).

    python benchmarks/dream_gap.py --agent runs/levers/base/seed0/agent.zip [--agent ...] \
        [--world-model DIR] [--states 512] [--horizon 20] [--out docs/dream_gap.json]

States: `--states` real states on the validation levels (2,000,000 .. 2,000,999 by default, as the levers
and the study pick on), each reached by playing `--warmup-agent` (default: the first `--agent`) for a
uniform 0..`--max-warmup` steps from a level start, so they are states that agent visits. Each agent then
plays `--horizon` steps from every state twice, with sampled actions: in the real game (procgen's state
restored exactly, `ProcgenVectorEnv.set_states`) and in the dream started from that state's frame (the
world model's one-frame context, the dream's rewards and ends as its training had them: `--events`). An
episode that ends inside the horizon stops counting there.

If the dream return rises above the real one as an agent trains longer in the dream, the agent is learning
the dream's errors, not the game: the gap, not the real return alone, says why longer dreams stop
teaching. Prints JSON (also `--out`): per agent the mean H-step return in each world with its 95% CI, their
paired gap (dream - real) with its CI, their per-state correlation, how often each world pays a coin that
the other does not, and how often each kills the agent (an end without a coin) where the other does not;
beside them, the same disagreements between two real plays from each state with other action draws (the
agent's own randomness: the floor below which the dream cannot be judged).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genie_env._io import atomic_write_json
from genie_env.agents.evaluate import check_disjoint, held_out_levels
from genie_env.agents.policies import SB3Policy
from genie_env.data.context import ContextSource
from genie_env.envs.dream import EVENT_MODES, GenieProcgenVectorEnv
from genie_env.envs.real import ProcgenVectorEnv
from genie_env.metrics import bootstrap_ci
from genie_env.world_model import WorldModel, load_world_model, shipped_model_dir

AGAIN = 1_000_003  # seed offset of the second real play's action draws


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", action="append", required=True, help="a saved SB3 agent (.zip); repeatable")
    p.add_argument("--warmup-agent", default=None, help="the agent whose play reaches the states (default: the first)")
    p.add_argument("--world-model", default=None, help="world-model directory (default: the shipped one of --game)")
    p.add_argument("--game", default="coinrun", help="the Procgen game")
    p.add_argument("--distribution-mode", default="easy", choices=("easy", "hard"), help="difficulty")
    p.add_argument("--states", type=int, default=512, help="real states the agents start from")
    p.add_argument("--horizon", type=int, default=20, help="steps played from each state (the dream agents' 20)")
    p.add_argument("--max-warmup", type=int, default=300, help="most steps played from a level start to a state")
    p.add_argument("--start-level", type=int, default=2_000_000, help="first level of the range played")
    p.add_argument("--num-levels", type=int, default=1000, help="levels in that range")
    p.add_argument("--events", default="expected", choices=EVENT_MODES, help="the dream's rewards and ends")
    p.add_argument("--precision", default="auto", help="dream precision: auto, fp32, bf16 or int8")
    p.add_argument("--batch", type=int, default=64, help="states played together")
    p.add_argument("--seed", type=int, default=0, help="seed of the levels, the warm-up lengths and the actions")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.states < 1 or args.horizon < 1 or args.max_warmup < 0 or args.batch < 1:
        p.error("--states, --horizon and --batch must be >= 1 and --max-warmup >= 0")
    return args


def reach_states(args: argparse.Namespace, batch: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """`batch` real states and their frames uint8 (batch, 64, 64, 3): env i plays the warm-up agent for a
    uniform 0..--max-warmup steps from a level start (autoresetting, so a state may be in a later level)."""
    venv = ProcgenVectorEnv(batch, args.distribution_mode, args.start_level, args.num_levels, game=args.game)
    frames = venv.reset(seed=seed)[0]
    policy = SB3Policy(args.warmup_agent or args.agent[0], batch, seed)
    stop = np.random.default_rng(seed).integers(0, args.max_warmup + 1, batch)
    states: list[bytes] = [b""] * batch
    out = np.zeros_like(frames)
    first = np.ones(batch, bool)
    for t in range(int(stop.max()) + 1):
        if (here := np.flatnonzero(stop == t)).size:
            now = venv.get_states()
            for i in here:
                states[i], out[i] = now[i], frames[i]
        if t < stop.max():
            frames, _, terminated, truncated, _ = venv.step(policy.act(frames, first))
            first = terminated | truncated
    venv.close()
    return states, out


class Outcome(NamedTuple):
    """What B agents' H steps from B states came to: the return float (B,), whether a coin came bool (B,),
    and whether the episode ended without one (in CoinRun a death: lava, a saw or a fall) bool (B,)."""

    returns: np.ndarray
    coins: np.ndarray
    deaths: np.ndarray

    @staticmethod
    def cat(outcomes: list[Outcome]) -> Outcome:
        return Outcome(*(np.concatenate(parts) for parts in zip(*outcomes)))


def play_real(args: argparse.Namespace, agent: str, states: list[bytes], seed: int) -> Outcome:
    """The agent's H steps in the real game from `states` (a coin: a positive reward)."""
    venv = ProcgenVectorEnv(len(states), args.distribution_mode, args.start_level, args.num_levels, game=args.game)
    venv.reset(seed=seed)
    frames = venv.set_states(states)
    outcome = _play(agent, len(states), seed, args.horizon, frames, venv.step, lambda rewards, info: rewards > 0)
    venv.close()
    return outcome


def play_dream(args: argparse.Namespace, agent: str, wm: WorldModel, frames: np.ndarray, seed: int) -> Outcome:
    """The agent's H steps in the dream from each state's frame (a coin: reward probability >= 0.5)."""
    venv = GenieProcgenVectorEnv(len(frames), world_model=wm, context=ContextSource(frames[:, None]),
                                 max_episode_steps=args.horizon + 1, events=args.events, game=args.game)  # fmt: skip
    venv.set_context_sampler(_InOrder(len(frames)))
    start = venv.reset(seed=seed)[0]
    outcome = _play(agent, len(frames), seed, args.horizon, start, venv.step,
                    lambda rewards, info: info["reward_prob"] >= 0.5)  # fmt: skip
    venv.close()
    return outcome


class _InOrder:
    """A context sampler that starts dream i from context i (later autoresets wrap around, uncounted)."""

    def __init__(self, size: int) -> None:
        self.size, self.next = size, 0

    def sample(self, rng: np.random.Generator) -> int:
        index, self.next = self.next % self.size, self.next + 1
        return index


def _play(agent: str, n: int, seed: int, horizon: int, frames: np.ndarray, step, coin) -> Outcome:
    policy = SB3Policy(agent, n, seed)
    returns, coins, ended, alive = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool)
    first = np.ones(n, bool)
    for _ in range(horizon):
        frames, rewards, terminated, truncated, info = step(policy.act(frames, first))
        returns += np.where(alive, rewards, 0.0)
        coins |= alive & coin(rewards, info)
        ended |= alive & terminated
        first = terminated | truncated
        alive &= ~first
    return Outcome(returns, coins, ended & ~coins)


def summarise(real: Outcome, dream: Outcome, again: Outcome) -> dict[str, Any]:
    """The two worlds compared state by state; `again` is the real game played a second time with other
    action draws: how often two real plays disagree is the floor for the dream's disagreements."""

    def mean_ci(values: np.ndarray) -> dict[str, Any]:
        return {"mean": round(float(values.mean()), 4), "ci": [round(v, 4) for v in bootstrap_ci(values)]}

    def rate(values: np.ndarray) -> float:
        return round(float(values.mean()), 4)

    varied = real.returns.std() > 0 and dream.returns.std() > 0
    return {
        "real_return": mean_ci(real.returns), "dream_return": mean_ci(dream.returns),
        "gap": mean_ci(dream.returns - real.returns),
        "correlation": round(float(np.corrcoef(real.returns, dream.returns)[0, 1]), 4) if varied else None,
        "real_coin_rate": rate(real.coins), "dream_coin_rate": rate(dream.coins),
        "dreamed_coin_not_real": rate(dream.coins & ~real.coins),
        "real_coin_not_dreamed": rate(real.coins & ~dream.coins),
        "real_death_rate": rate(real.deaths), "dream_death_rate": rate(dream.deaths),
        "died_real_not_dreamed": rate(real.deaths & ~dream.deaths),
        "died_dreamed_not_real": rate(dream.deaths & ~real.deaths),
        "real_again": {
            "gap": mean_ci(again.returns - real.returns),
            "coin_not_again": rate(real.coins & ~again.coins), "died_not_again": rate(real.deaths & ~again.deaths),
        },
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.time()
    wm_dir = Path(args.world_model or shipped_model_dir(args.game))
    trained_on = [wm_dir, *(Path(a).parent for a in args.agent if (Path(a).parent / "levels.json").exists())]
    try:  # the states must come from levels neither the world model nor an agent was trained on
        check_disjoint(args.start_level, args.num_levels, held_out_levels(trained_on))
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: --start-level {args.start_level} --num-levels {args.num_levels}: {err}") from None
    wm = load_world_model(wm_dir, precision=args.precision)
    per_agent: dict[str, tuple[list[Outcome], ...]] = {agent: ([], [], []) for agent in args.agent}
    for b, first in enumerate(range(0, args.states, args.batch)):
        seed = args.seed + b
        states, frames = reach_states(args, min(args.batch, args.states - first), seed)
        for agent, (real, dream, again) in per_agent.items():
            real.append(play_real(args, agent, states, seed))
            dream.append(play_dream(args, agent, wm, frames, seed))
            again.append(play_real(args, agent, states, seed + AGAIN))
    result = {
        "benchmark": "dream_gap",
        "world_model": str(args.world_model or "shipped"),
        "agents": {agent: summarise(*map(Outcome.cat, parts)) for agent, parts in per_agent.items()},
        "states": args.states, "horizon": args.horizon, "events": args.events, "precision": wm.precision,
        "levels": [args.start_level, args.start_level + args.num_levels], "max_warmup": args.max_warmup,
        "warmup_agent": args.warmup_agent or args.agent[0], "wall_s": round(time.time() - started, 1),
        "command": "python benchmarks/dream_gap.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    if args.out:
        atomic_write_json(Path(args.out), result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
