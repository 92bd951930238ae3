"""Whether `torch.compile`'s inductor backend can build kernels here, asked before anything is compiled.

On CPU inductor writes C++ and builds it with the machine's C++ compiler (g++ or clang). Without one, a
compiled model fails only at its first call, deep in a training or a dream, with inductor's own error.
`require_inductor` compiles and runs a tiny probe first and turns such a failure into a RuntimeError that
says what needed the compiler and what to use instead.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import torch


@functools.cache
def _probe() -> None:
    """A tiny function compiled and run: cached once it has passed (one compile per process), never when it
    raised. A fresh constant per process, so no kernel cached on disk by an earlier process can stand in for
    building one here."""
    salt = random.random()
    torch.compile(lambda x: x * 2 + salt, dynamic=False)(torch.ones(4))


def require_inductor(feature: str, instead: str, probe: Callable[[], object] = _probe) -> None:
    """Return where `probe` (by default a tiny compiled function, run once per process) compiles and
    runs; else a RuntimeError naming `feature`, inductor's error, and `instead`."""
    try:
        probe()
    except Exception as err:  # inductor raises several types where no C++ toolchain is found
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = " ".join(line for line in lines if not line.startswith("Set TORCHDYNAMO_VERBOSE"))  # not advice
        raise RuntimeError(
            f"{feature} compiles with torch.compile (inductor), which failed here ({type(err).__name__}: "
            f"{detail}); install a C++ compiler (g++ or clang) or {instead}"
        ) from err
