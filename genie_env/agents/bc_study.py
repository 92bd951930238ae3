"""The summary of Genie's CoinRun experiment (`genie bc-study`): policies cloned from action-free expert
videos through a latent action model, grounded by a few labelled transitions, against the oracle that
clones every real action, the expert itself and the random policy, all on held-out real levels.

Each side (oracle BC, LAM BC with N labels) is summarised as the sample-efficiency study summarises its
sides (`genie_env.agents.study.summarise_side`): every seed's test return, their mean with a CI over seeds,
and the seed picked on validation levels with its episode CI. The verdicts are the issue's: LAM BC with the
shipped number of labels reaches at least 90% of the oracle's seed mean, and both picked agents' CIs lie
above the random policy's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from genie_env._io import atomic_write_bytes, atomic_write_json
from genie_env.agents.study import SideSummary
from genie_env.viz import finish_plot

SHARE_OF_ORACLE = 0.9  # LAM BC's target: this share of oracle BC's mean return (Genie, App. E)


def bc_rows(sides: dict[str, tuple[int, SideSummary]]) -> list[dict[str, Any]]:
    """Table rows from each side's name -> (real action labels, summary), the oracle first."""
    return [{"name": name, "labels": labels, **asdict(side)} for name, (labels, side) in sides.items()]


def verdicts(rows: list[dict[str, Any]], shipped: str, random: dict[str, Any]) -> dict[str, Any]:
    """What the experiment asks: the shipped LAM BC against the oracle's seed mean, and both picked agents
    against the random policy (95% CIs apart)."""
    by_name = {row["name"]: row for row in rows}
    oracle, lam = by_name["oracle"], by_name[shipped]
    ratio = lam["seed_mean"] / oracle["seed_mean"] if oracle["seed_mean"] > 0 else float("nan")
    above = {name: by_name[name]["picked_ci"][0] > random["return_ci"][1] for name in ("oracle", shipped)}
    return {"shipped": shipped, "lam_over_oracle": round(ratio, 4), "target_share": SHARE_OF_ORACLE,
            "lam_reaches_share": bool(ratio >= SHARE_OF_ORACLE), "picked_above_random": above}  # fmt: skip


def _seeds(row: dict[str, Any]) -> str:
    return ", ".join(f"{r:.2f}" for r in row["test_returns"])


def format_bc_table(rows: list[dict[str, Any]], expert: dict[str, Any], random: dict[str, Any],
                    lam_eval: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Markdown: one row per cloned side (labels, every seed's test return, the seed mean, the picked agent),
    then the expert, the random policy and the LAM's own figures."""
    lines = [
        "| policy | real action labels | test return per seed | seed mean [95% CI] | picked on validation [95% CI] |",
        "|---|---:|---|---:|---:|",
    ]
    for row in rows:
        what = "oracle BC (every real action)" if row["name"] == "oracle" else f"LAM BC ({row['labels']:,} labels)"
        lo, hi = row["seed_mean_ci"]
        plo, phi = row["picked_ci"]
        lines.append(f"| {what} | {row['labels']:,} | {_seeds(row)} | {row['seed_mean']:.2f} [{lo:.2f}, {hi:.2f}] "
                     f"| {row['picked_return']:.2f} [{plo:.2f}, {phi:.2f}] (seed {row['picked_seed']}) |")  # fmt: skip
    for name, result in (("the expert (the videos' policy)", expert), ("random policy", random)):
        lo, hi = result["return_ci"]
        lines.append(f"| {name} | | | | {result['mean_return']:.2f} [{lo:.2f}, {hi:.2f}] |")
    if lam_eval is not None:
        trained, fresh = lam_eval["trained"], lam_eval["random_init"]
        lines.append(
            f"\nThe LAM on the videos' validation levels: NMI against CoinRun's movement classes "
            f"{trained['nmi_movement_classes']:.3f} (a randomly initialised LAM: {fresh['nmi_movement_classes']:.3f}), "
            f"against the 15 real actions {trained['nmi_real_actions']:.3f} ({fresh['nmi_real_actions']:.3f}); "
            f"next-frame PSNR {trained['psnr']:.2f} dB beside copy-last-frame's {trained['copy_last_psnr']:.2f} dB; "
            f"{trained['latent_actions_used']} of {trained['num_latent_actions']} latent actions used."
        )
    return "\n".join(lines)


def plot_bc(rows: list[dict[str, Any]], expert: dict[str, Any], random: dict[str, Any], path: Path) -> Path:
    """Return on held-out levels against the real action labels spent (log x): LAM BC's seeds as dots, its
    seed mean as a line, the picked agents with their CIs; the oracle, the expert and the random policy as
    horizontal lines. Written atomically as PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    lam = [row for row in rows if row["name"] != "oracle"]
    labels = np.array([row["labels"] for row in lam], float)
    for x, row in zip(labels, lam):
        ax.scatter([x] * len(row["test_returns"]), row["test_returns"], s=12, color="tab:blue", alpha=0.5)
    ax.plot(labels, [row["seed_mean"] for row in lam], color="tab:blue", label="LAM BC, seed mean")
    picked = np.array([row["picked_return"] for row in lam])
    err = np.array([[p - row["picked_ci"][0], row["picked_ci"][1] - p] for p, row in zip(picked, lam)])
    ax.errorbar(labels, picked, yerr=err.T, fmt="s", color="tab:blue", capsize=4,
                label="LAM BC, picked on validation (95% CI)")  # fmt: skip
    oracle = next(row for row in rows if row["name"] == "oracle")
    ax.axhline(oracle["seed_mean"], color="tab:green", label=f"oracle BC ({oracle['labels']:,} labels), seed mean")
    ax.axhline(SHARE_OF_ORACLE * oracle["seed_mean"], color="tab:green", ls=":", label="90% of the oracle")
    ax.axhline(expert["mean_return"], color="black", ls="-.", label="the expert")
    ax.axhline(random["mean_return"], color="gray", ls="--", label="random policy")
    return finish_plot(fig, ax, path, "transitions with a real action label (LAM BC)", "return on held-out real levels",
                       "CoinRun: acting from action-free videos (Genie's latent actions)", log_x=True)  # fmt: skip


def write_bc_study(rows: list[dict[str, Any]], expert: dict[str, Any], random: dict[str, Any], out: str | Path,
                   shipped: str, lam_eval: dict[str, Any] | None = None) -> dict[str, Path]:  # fmt: skip
    """OUT/bc_study.md, OUT/bc_study.json ({"rows", "expert", "random", "lam", "verdicts"}) and OUT/bc_study.png."""
    out = Path(out)
    paths = {"markdown": out / "bc_study.md", "json": out / "bc_study.json", "png": out / "bc_study.png"}
    record = {"rows": rows, "expert": expert, "random": random, "lam": lam_eval,
              "verdicts": verdicts(rows, shipped, random)}  # fmt: skip
    atomic_write_json(paths["json"], record)
    atomic_write_bytes(paths["markdown"], (format_bc_table(rows, expert, random, lam_eval) + "\n").encode())
    plot_bc(rows, expert, random, paths["png"])
    return paths
