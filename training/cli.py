"""The `genie` command: one subcommand per pipeline stage, each the `training/` script of that name.

genie collect ...      == python -m training.collect ...
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> module in training/, in pipeline order
COMMANDS = {
    "collect": "training.collect",
    "data": "training.data",
    "train-tokenizer": "training.train_tokenizer",
    "tokenize": "training.tokenize",
    "eval-tokenizer": "training.eval_tokenizer",
    "train-dynamics": "training.train_dynamics",
    "eval-dynamics": "training.eval_dynamics",
    "export": "training.export",
    "train-agent": "training.train_agent",
    "evaluate": "training.evaluate",
    "compare": "training.compare",
    "dream": "training.dream",
    "play": "training.play",
    "pipeline": "training.pipeline",
    "demo": "training.demo",
}


def _summary(module_name: str) -> str:
    doc = importlib.import_module(module_name).__doc__ or ""
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
    importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    main()
