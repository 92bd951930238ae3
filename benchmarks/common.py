"""Shared by the benchmarks: the machine's measured matmul peak and FLOP counting, for MFU figures."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

EMULATED_BELOW = 0.1
"""a precision whose matmul peak measures under this fraction of the best one's is emulated on this CPU (bf16
and int8 on an AVX2-only CPU: about 100x below fp32): benchmarks do not time work in it"""


def matmul_peak_flops(dtype: torch.dtype = torch.float32, device: str = "cpu", n: int = 2048, reps: int = 10) -> float:
    """FLOP/s (for int8, OP/s) of a large square matmul on this device: the practical peak MFU figures are
    relative to. int8 is `torch._int_mm` (int8 x int8 -> int32, what int8 quantised Linear layers run)."""
    matmul = torch._int_mm if dtype == torch.int8 else torch.matmul
    while True:  # a smaller matrix where one product takes over a second (bf16 or int8 emulated on old CPUs)
        if dtype == torch.int8:
            a, b = (torch.randint(-128, 128, (n, n), device=device, dtype=torch.int8) for _ in range(2))
        else:
            a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        start = time.perf_counter()
        matmul(a, b)
        sync(device)
        if time.perf_counter() - start < 1.0 or n <= 256:
            break
        n //= 2
        reps = 3
    for _ in range(2):
        matmul(a, b)
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        matmul(a, b)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (matmuls and convolutions, as torch's FlopCounterMode counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_per_call(fn: Callable[[], object], device: str = "cpu", warmup: int = 2, min_seconds: float = 1.0,
                  min_calls: int = 3) -> float:  # fmt: skip
    """Median seconds per call of `fn` over at least `min_seconds` and `min_calls` calls after warm-up
    (the median shrugs off a call slowed by another process on a shared machine)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine() -> dict[str, object]:
    """What ran the benchmark."""
    info: dict[str, object] = {"machine": platform.machine(), "cpu_model": cpu_model(),
                               "torch_threads": torch.get_num_threads()}  # fmt: skip
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
