"""Ship a finished pipeline as a game's assets (`genie pipeline ... --ship genie_env/assets/GAME`): the final
world model, its dream agent, the comparison and a model card written from the pipeline's own records,
laid out as `genie_env/assets/coinrun/` is, so `gymnasium.make("GenieProcgen-v0", game=GAME)` loads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

SHIP_RECORD = "ship.json"  # marks a directory this command wrote, and so may replace
WORLD_MODEL_PARTS = ("tokenizer", "dynamics", "contexts.npz", "agent_contexts.npz", "levels.json", "action_map.json")
COMPARE_PARTS = ("compare.md", "compare.json", "compare.png")


def ship(pipe: Any, target: str | Path) -> Path:
    """Write `target` from the finished pipeline `pipe` (a `Pipeline` whose compare stage is done), by a
    directory swap; a `target` that exists and was not written by this command is refused."""
    from genie_env._io import atomic_dir, atomic_write_bytes, atomic_write_json

    target = Path(target)
    if target.exists() and not (target / SHIP_RECORD).exists():
        raise ValueError(f"--ship {target} exists and was not written by --ship: refusing to replace it")
    rounds = pipe.preset.rounds
    world_model, agent = pipe.path("world_model", rounds), pipe.path("agent_dream", rounds)
    with atomic_dir(target) as tmp:
        for part in WORLD_MODEL_PARTS:
            if (world_model / part).is_dir():
                shutil.copytree(world_model / part, tmp / part)
            elif (world_model / part).exists():
                shutil.copy2(world_model / part, tmp / part)
        shutil.copy2(agent / "agent.zip", tmp / "agent.zip")
        shutil.copy2(agent / "config.json", tmp / "agent.json")
        for part in COMPARE_PARTS:
            shutil.copy2(pipe.path("compare") / part, tmp / part)
        record = {"kind": "shipped_game", "game": pipe.game, "pipeline": str(pipe.out), "preset": pipe.args.preset,
                  "seed": pipe.args.seed, "distribution_mode": pipe.args.distribution_mode}  # fmt: skip
        atomic_write_json(tmp / SHIP_RECORD, record)
        atomic_write_bytes(tmp / "MODEL_CARD.md", model_card(pipe, tmp, target).encode())
    return target


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _mib(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return f"{size / 2**20:.1f} MiB"


def _notes(args: Any) -> list[str]:
    """The card's "Why this game" section: the text of --ship-notes (none without it)."""
    if not getattr(args, "ship_notes", None):
        return []
    path = Path(args.ship_notes)
    if not path.is_file():
        raise FileNotFoundError(f"--ship-notes {path} does not exist (a markdown file)")
    return ["## Why this game", "", path.read_text().strip(), ""]


def model_card(pipe: Any, root: Path, target: Path) -> str:
    """MODEL_CARD.md of a shipped game: what each file is, how it was made (the command, every stage's
    wall time) and the comparison on held-out real levels, all from the pipeline's records."""
    from genie_env.checkpoint import read_config

    tok = read_config(root / "tokenizer", kind="tokenizer")["config"]
    dyn = read_config(root / "dynamics", kind="dynamics")["config"]
    levels = json.loads((root / "levels.json").read_text())
    agent = json.loads((root / "agent.json").read_text())
    args, game = pipe.args, pipe.game
    grid = tok["frame_size"] // tok["patch"]
    rewards = ", ".join(f"{v:g}" for v in dyn["reward_values"])
    rows = [
        ("`tokenizer/`", f"{tok['kind']} VQ-VAE, {grid}x{grid} tokens a frame, {tok['codebook_size']} codes "
                         f"({_mib(root / 'tokenizer')})"),
        ("`dynamics/`", f"ST-transformer MaskGIT dynamics, width {dyn['dim']}, {_count(dyn['depth'], 'block')}, "
                        f"a reward head over the values {rewards} and a termination head "
                        f"({_mib(root / 'dynamics')})"),
        ("`contexts.npz`", "real level starts, where `GenieProcgen-v0` episodes start by default"),
        ("`levels.json`", f"the {len(levels['level_seeds']):,} real level seeds and {levels['frames']:,} real "
                          f"frames the world model was trained on, over {_count(pipe.preset.rounds, 'round')}"),
        ("`agent.zip`, `agent.json`", f"PPO ({agent['config']['features']} CNN) trained only in the dream for "
                                      f"{agent['dream_frames']:,} dreamed steps, and its training record"),
        ("`compare.md`, `compare.json`, `compare.png`", "the dream agent, PPO on the real game with the same real "
                                                        "frames and the random policy on held-out real levels"),
    ]  # fmt: skip
    if (root / "agent_contexts.npz").exists():
        rows.insert(3, ("`agent_contexts.npz`", "real frames from anywhere in the training episodes, where "
                                                "dream agents start their short dreams"))  # fmt: skip
    stages = pipe.record["stages"]
    hours = sum(s["wall_s"] for s in stages.values()) / 3600
    command = (f"genie pipeline --preset {args.preset} --game {game} --seed {args.seed} --distribution-mode "
               f"{args.distribution_mode} --out {pipe.out} --ship {target}"
               + (f" --ship-notes {args.ship_notes}" if getattr(args, "ship_notes", None) else ""))  # fmt: skip
    lines = [
        f"# genie-env {game} world model — model card", "",
        f"What ships here (`{target}`), made with the project's own commands, every stage recorded in "
        f"`{pipe.out}/pipeline.json`:", "", "| file | what |", "|---|---|",
        *(f"| {name} | {what} |" for name, what in rows), "",
        *_notes(args), "## How it was made", "", "```bash", command, "```", "",
        f"{hours:.2f} hours of wall time in all, on the machine that ran it ({args.distribution_mode} levels):", "",
        "| stage | minutes |", "|---|---:|",
        *(f"| {name} | {s['wall_s'] / 60:.1f} |" for name, s in stages.items()), "",
        "## On held-out real levels", "",
        "Every policy on the same held-out levels, checked disjoint from every level behind the world models "
        "and the agents (`genie evaluate --exclude`); 95% bootstrap CIs over episodes:", "",
        (root / "compare.md").read_text().strip(), "",
        "Use it:", "", "```python", "import gymnasium, genie_env",
        f'env = gymnasium.make("GenieProcgen-v0", game="{game}")  # when this lies in genie_env/assets/{game}/',
        "```", "",
    ]  # fmt: skip
    return "\n".join(lines)
