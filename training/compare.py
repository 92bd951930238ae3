"""Compare agent evaluations (`genie compare random.json ppo.json [NAME=PATH ...] --out DIR`).

Reads `genie evaluate --out` results (NAME=PATH relabels one), writes DIR/compare.md (a markdown
table of returns and success rates with 95% CIs), DIR/compare.json and DIR/compare.png (mean
return per policy with CI error bars), and prints the table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import tyro

from genie_env.agents.compare import compare_results, load_result

from .common import cli_errors, fail


@dataclass(frozen=True)
class CompareArgs:
    """Arguments of `genie compare`."""

    results: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RESULT")]
    """evaluation JSONs, in table order; NAME=PATH overrides the name stored in the file"""
    out: str = "outputs/compare"
    """directory for compare.md, compare.json and compare.png"""


def split_name(arg: str) -> tuple[str | None, str]:
    """ "NAME=PATH" -> (NAME, PATH); "PATH" -> (None, PATH)."""
    name, sep, path = arg.partition("=")
    return (name, path) if sep and name else (None, arg)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = tyro.cli(CompareArgs, args=argv, prog="genie compare", description=__doc__)
    if not args.results:
        fail("give at least one evaluation JSON (from `genie evaluate AGENT --out FILE`)")
    with cli_errors():
        results = [load_result(path, name) for name, path in map(split_name, args.results)]
        paths = compare_results(results, args.out)
    print(paths["markdown"].read_text(), end="")
    print(f"\nwrote {paths['markdown']}, {paths['json']}, {paths['png']}", file=sys.stderr)


if __name__ == "__main__":
    main()
