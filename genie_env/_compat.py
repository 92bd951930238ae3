"""Quiet imports of the legacy `gym` 0.26 that procgen and SB3's compatibility shim pull in."""

from __future__ import annotations

import contextlib
import io
import warnings


def import_gym_quietly() -> None:
    """Import gym 0.26 with its stderr notice and warnings swallowed (we only use gymnasium;
    procgen needs gym installed, and SB3 imports it when present). Later imports are cached."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            import gym  # noqa: F401
        except ImportError:
            pass
