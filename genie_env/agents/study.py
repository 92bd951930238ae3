"""The sample-efficiency study's summary: at each real-frame budget, dream agents against real-game PPO with
the same frames and the same CNN, every seed on held-out test levels, the shipped seed of each side picked
on separate validation levels; a markdown table, its rows as JSON, and a plot of real return against real
frames.

Each input is a `genie evaluate` result (`genie_env.agents.evaluate.evaluate_policy`), which records the
real frames the agent cost (`real_frames`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genie_env._io import atomic_write_bytes, atomic_write_json
from genie_env.metrics import bootstrap_ci
from genie_env.viz import finish_plot

SIDES = ("dream", "real")
# PPO on the real game with 2,826,560 frames (IMPALA CNN), 500 episodes on the test levels: the shipped
# model card's large-budget reference (genie_env/assets/coinrun/MODEL_CARD.md)
REFERENCE = {"name": "PPO on the real game, 2.83M frames", "real_frames": 2_826_560, "mean_return": 7.62,
             "return_ci": [7.24, 7.98]}  # fmt: skip


@dataclass(frozen=True)
class SideSummary:
    """One side (dream or real) at one budget: every seed's test return, their mean with a 95% bootstrap CI
    over seeds, the seed picked on validation and its test return with its episode-bootstrap CI."""

    seeds: list[int]
    test_returns: list[float]
    val_returns: list[float]
    real_frames: list[int]
    seed_mean: float
    seed_mean_ci: list[float]
    picked_seed: int
    picked_return: float
    picked_ci: list[float]


def summarise_side(val: dict[int, dict[str, Any]], test: dict[int, dict[str, Any]]) -> SideSummary:
    """The summary of one side from its evaluations by seed (validation and test results)."""
    if sorted(val) != sorted(test) or not test:
        raise ValueError(f"validation seeds {sorted(val)} and test seeds {sorted(test)} must be the same, non-empty")
    seeds = sorted(test)
    returns = [float(test[s]["mean_return"]) for s in seeds]
    picked = max(seeds, key=lambda s: float(val[s]["mean_return"]))  # on validation levels only
    return SideSummary(
        seeds=seeds, test_returns=returns, val_returns=[float(val[s]["mean_return"]) for s in seeds],
        real_frames=[int(test[s].get("real_frames") or 0) for s in seeds], seed_mean=float(np.mean(returns)),
        seed_mean_ci=list(bootstrap_ci(returns)), picked_seed=picked,
        picked_return=float(test[picked]["mean_return"]), picked_ci=[float(x) for x in test[picked]["return_ci"]],
    )  # fmt: skip


def budget_row(budget: int, sides: dict[str, SideSummary]) -> dict[str, Any]:
    """A table row: the budget, both sides, and the verdicts the study asks for."""
    dream, real = sides["dream"], sides["real"]
    return {
        "budget": budget, "dream": asdict(dream), "real": asdict(real),
        "seed_means_dream_at_least_real": dream.seed_mean >= real.seed_mean,
        "picked_cis_apart": dream.picked_ci[0] > real.picked_ci[1],
    }  # fmt: skip


def fmt_return(value: float) -> str:
    """A return as the table writes it: two decimals, or three where the third is not 0 (a mean of 2,000
    CoinRun episodes is a multiple of 0.005, which two decimals would round: 5.185, not 5.18)."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def _seeds(side: dict[str, Any]) -> str:
    return ", ".join(fmt_return(r) for r in side["test_returns"])


def _picked(side: dict[str, Any]) -> str:
    lo, hi = side["picked_ci"]
    return f"{fmt_return(side['picked_return'])} [{fmt_return(lo)}, {fmt_return(hi)}] (seed {side['picked_seed']})"


def format_study_table(rows: list[dict[str, Any]], random: dict[str, Any] | None = None) -> str:
    """Markdown: per budget, each side's seeds on the test levels, the seed mean, the picked agent with its CI."""
    lines = [
        "| real frames | dream agents: test return per seed | dream seed mean | real PPO: test return per seed "
        "| real seed mean | picked dream [95% CI] | picked real [95% CI] | dream CI above real CI |",
        "|---:|---|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        d, r = row["dream"], row["real"]
        lines.append(
            f"| {row['budget']:,} | {_seeds(d)} | {fmt_return(d['seed_mean'])} | {_seeds(r)} "
            f"| {fmt_return(r['seed_mean'])} | {_picked(d)} | {_picked(r)} "
            f"| {'yes' if row['picked_cis_apart'] else 'no'} |"
        )
    if random is not None:
        lo, hi = random["return_ci"]
        mean = fmt_return(random["mean_return"])
        lines.append(f"\nRandom policy: {mean} [{fmt_return(lo)}, {fmt_return(hi)}] on the same test levels.")
        if "start_level" in random:
            first, n = random["start_level"], random["num_levels"]
            lines.append(f"Every agent played {random['episodes']:,} episodes on test levels {first:,} .. "
                         f"{first + n - 1:,}.")  # fmt: skip
    return "\n".join(lines)


def plot_study(rows: list[dict[str, Any]], path: Path, random: dict[str, Any] | None = None,
               reference: dict[str, Any] = REFERENCE) -> Path:  # fmt: skip
    """Real return against real frames (log x): each seed as a dot, the seed mean as a line, the picked
    agent with its 95% CI as an error bar, for dream and real; the random policy as a dashed line and the
    large-budget real PPO as a point. Written atomically as PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    budgets = np.array([row["budget"] for row in rows], float)
    for side, color, shift in (("dream", "tab:blue", 0.97), ("real", "tab:orange", 1.03)):
        label = {"dream": "PPO in the dream", "real": "PPO on the real game"}[side]
        for b, row in zip(budgets, rows):
            ax.scatter([b * shift] * len(row[side]["test_returns"]), row[side]["test_returns"], s=12, color=color,
                       alpha=0.5)  # fmt: skip
        ax.plot(budgets, [row[side]["seed_mean"] for row in rows], color=color, label=f"{label}, seed mean")
        picked = np.array([row[side]["picked_return"] for row in rows])
        err = np.array([[p - row[side]["picked_ci"][0], row[side]["picked_ci"][1] - p] for p, row in zip(picked, rows)])
        ax.errorbar(budgets * shift, picked, yerr=err.T, fmt="s", color=color, capsize=4,
                    label=f"{label}, picked on validation (95% CI)")  # fmt: skip
    if random is not None:
        ax.axhline(random["mean_return"], ls="--", color="gray", label="random policy")
    mean, (lo, hi) = reference["mean_return"], reference["return_ci"]
    ax.errorbar([reference["real_frames"]], [mean], yerr=[[mean - lo], [hi - mean]], fmt="*", ms=10, color="black",
                capsize=4, label=reference["name"])  # fmt: skip
    return finish_plot(fig, ax, path, "real frames (world model and agent together)", "return on held-out real levels",
                       "CoinRun (easy): sample efficiency, dream against real", log_x=True)  # fmt: skip


def write_study(rows: list[dict[str, Any]], out: str | Path, random: dict[str, Any] | None = None) -> dict[str, Path]:
    """OUT/study.md, OUT/study.json ({"rows", "random", "reference"}) and OUT/study.png; returns their paths."""
    out = Path(out)
    paths = {"markdown": out / "study.md", "json": out / "study.json", "png": out / "study.png"}
    atomic_write_json(paths["json"], {"rows": rows, "random": random, "reference": REFERENCE})
    atomic_write_bytes(paths["markdown"], (format_study_table(rows, random) + "\n").encode())
    plot_study(rows, paths["png"], random)
    return paths
