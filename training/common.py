"""Small helpers every CLI script shares: logging set-up and JSON output."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def setup_logging(verbose: bool = False) -> None:
    """Log INFO (or DEBUG) to stderr with a short format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (what scripts and benchmarks emit for machines to read)."""
    print(json.dumps(obj, indent=2))


def fail(message: str, code: int = 1) -> None:
    """Print a clear error on stderr and exit with `code` (for bad input at the CLI boundary)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
