"""Compare agent evaluations side by side: a markdown table, its rows as JSON and a bar plot.

Each input is a result of `genie evaluate` (see `genie_env.evaluate.agent.evaluate_policy`).
Optional keys shown when present: `real_frames` / `dream_frames` (the frames the agent trained
on) and `note`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from genie_env._io import atomic_path, atomic_write_bytes, atomic_write_json, read_json

REQUIRED_KEYS = ("name", "episodes", "mean_return", "return_ci", "success_rate", "success_ci", "mean_length")
DASH = "—"


def check_result(result: Any, where: str) -> dict[str, Any]:
    """Return `result` if it is an evaluation dict with every required key; else ValueError naming `where`."""
    if not isinstance(result, dict):
        raise ValueError(f"{where}: expected a JSON object from `genie evaluate`")
    for key in REQUIRED_KEYS:
        if key not in result:
            raise ValueError(f"{where}: missing key {key!r} (is it a `genie evaluate --out` result?)")
    name = result["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "|\n\r"):
        raise ValueError(f"{where}: name {name!r} must be non-empty text without '|' or line breaks (a table row)")
    for key in ("mean_return", "success_rate", "mean_length", "return_ci", "success_ci"):
        values = result[key] if key.endswith("_ci") else [result[key]]
        if key.endswith("_ci") and (not isinstance(values, list) or len(values) != 2):
            raise ValueError(f"{where}: {key} must be a [low, high] pair, got {values!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ValueError(f"{where}: {key} must be finite numbers, got {result[key]!r}")
    if not isinstance(result["episodes"], int) or isinstance(result["episodes"], bool) or result["episodes"] < 1:
        raise ValueError(f"{where}: episodes must be a positive integer, got {result['episodes']!r}")
    return result


def load_result(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Read one evaluation JSON, optionally relabelled `name`; raises FileNotFoundError or ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} does not exist")
    result = read_json(path, "evaluation result", ValueError)
    if isinstance(result, dict) and name is not None:
        result["name"] = name
    return check_result(result, str(path))


def _count(n: int) -> str:
    """A frame count in short form: 950, 100k, 2.5M."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return str(n)


def to_row(result: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of one result: name, episodes, the means with their CIs, frames, note."""
    frames = [f"{kind} {_count(int(result[f'{kind}_frames']))}" for kind in ("real", "dream")
              if result.get(f"{kind}_frames") is not None]  # fmt: skip
    return {
        "name": result["name"],
        "episodes": int(result["episodes"]),
        "mean_return": float(result["mean_return"]),
        "return_ci": [float(x) for x in result["return_ci"]],
        "success_rate": float(result["success_rate"]),
        "success_ci": [float(x) for x in result["success_ci"]],
        "mean_length": float(result["mean_length"]),
        "train_frames": " + ".join(frames) if frames else None,
        "note": result.get("note"),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `to_row` rows, in the given order; the note column only if a row has a note."""
    with_note = any(row["note"] for row in rows)
    header = ["policy", "episodes", "mean return [95% CI]", "success rate [95% CI]", "mean length", "train frames"]
    header += ["note"] if with_note else []
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * 4 + ["---"] * (len(header) - 5)) + "|",
    ]
    for row in rows:
        (r_lo, r_hi), (s_lo, s_hi) = row["return_ci"], row["success_ci"]
        cells = [
            row["name"],
            str(row["episodes"]),
            f"{row['mean_return']:.2f} [{r_lo:.2f}, {r_hi:.2f}]",
            f"{row['success_rate']:.1%} [{s_lo:.1%}, {s_hi:.1%}]",
            f"{row['mean_length']:.1f}",
            row["train_frames"] or DASH,
        ]
        cells += [row["note"] or DASH] if with_note else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_returns(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar plot of each row's mean return with its CI as error bars, written atomically as PNG.

    A dashed line marks the return of the row named "random", if there is one.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 1.5), 4.0), layout="constrained")
    ax = fig.subplots()
    means = [row["mean_return"] for row in rows]
    errors = [[m - row["return_ci"][0] for m, row in zip(means, rows)],
              [row["return_ci"][1] - m for m, row in zip(means, rows)]]  # fmt: skip
    ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(rows)), [row["name"] for row in rows], rotation=20, ha="right")
    ax.set_ylabel("mean return (95% CI)")
    ax.set_title("Real CoinRun: mean return per policy")
    for row in rows:
        if row["name"] == "random":
            ax.axhline(row["mean_return"], ls="--", color="gray", label="random")
            ax.legend()
            break
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def compare_results(results: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write compare.md, compare.json ({"rows": [...]}) and compare.png to `out_dir`.

    Rows keep the order of `results`. Returns {"markdown", "json", "png"} -> path. Raises
    ValueError for no results or a result missing a required key.
    """
    if not results:
        raise ValueError("nothing to compare: give at least one evaluation result")
    rows = [to_row(check_result(r, f"result {i}")) for i, r in enumerate(results)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "compare.md", "json": out / "compare.json", "png": out / "compare.png"}
    atomic_write_json(paths["json"], {"rows": rows})
    atomic_write_bytes(paths["markdown"], (format_table(rows) + "\n").encode())
    plot_returns(rows, paths["png"])
    return paths
