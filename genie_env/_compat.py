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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (/proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fast_bf16(device: str) -> bool:
    """Whether bf16 arithmetic is fast on `device`: a CUDA GPU that supports it, or a CPU with AVX512-BF16
    or AMX (on other CPUs PyTorch emulates bf16, several times slower than fp32)."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def fast_int8(device: str) -> bool:
    """Whether int8 matmuls are fast on `device`: a CPU with int8 dot-product instructions (AVX512-VNNI,
    AVX-VNNI or AMX); without them they are slower than fp32 (the README's "int8 and `torch.compile`")."""
    return not str(device).startswith("cuda") and bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
