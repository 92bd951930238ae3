"""The `genie` command: one subcommand per pipeline stage, each the `training/` script of that name.

The repo's `training/` folder installs as `genie_env.cli`, so from an installed package or the repo root:
genie collect ...      == python -m genie_env.cli.collect ...   (== python -m training.collect ... in the repo)
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> module in training/, in pipeline order
COMMANDS = {
    "collect": ".collect",
    "data": ".data",
    "train-tokenizer": ".train_tokenizer",
    "tokenize": ".tokenize",
    "eval-tokenizer": ".eval_tokenizer",
    "train-dynamics": ".train_dynamics",
    "eval-dynamics": ".eval_dynamics",
    "train-lam": ".train_lam",
    "eval-lam": ".eval_lam",
    "export": ".export",
    "train-agent": ".train_agent",
    "train-bc": ".train_bc",
    "map-actions": ".map_actions",
    "evaluate": ".evaluate",
    "compare": ".compare",
    "dream": ".dream",
    "play": ".play",
    "serve": ".serve",
    "pipeline": ".pipeline",
    "study": ".study",
    "bc-study": ".bc_study",
    "demo": ".demo",
}


def _module(name: str):
    """The module of a COMMANDS entry (relative to this package: `genie_env.cli` installed, `training` in the repo)."""
    return importlib.import_module(name, __package__)


def _summary(module_name: str) -> str:
    doc = _module(module_name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    """The top-level help text listing every subcommand."""
    lines = ["usage: genie COMMAND [ARGS...]   (genie COMMAND --help for a command's flags)", "", "commands:"]
    lines += [f"  {name:<16}{_summary(module)}" for name, module in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    _module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    main()
