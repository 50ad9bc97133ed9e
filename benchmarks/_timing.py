"""Timing, peak-memory and machine-report helpers for the benchmarks.

Timing follows :mod:`timeit`: a warm-up, an inner loop long enough that one
sample lasts at least :data:`MIN_SAMPLE_S`, then as many samples as fit the
time budget (bounded below and above); the device is synchronised before the
clock is read, and the garbage collector is paused while samples are taken.
The caller pools the samples of several passes and takes their median.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import math
import os
import platform
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "MIN_SAMPLE_S",
    "cpu_model",
    "cupy_peak_bytes",
    "machine_info",
    "measure",
    "numpy_peak_bytes",
    "require",
    "summarize",
    "torch_cuda_peak_bytes",
    "wait_for_idle",
]

MIN_SAMPLE_S = 2e-3  # one timed sample runs the step this long at least


def require(module: str, extra: str = "bench") -> Any:
    """Import ``module`` or exit with a message naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{module} is needed here: pip install 'dense-xp[{extra}]' (or pip install {module})"
        raise SystemExit(msg) from None


def measure(
    step: Callable[[], Any],
    sync: Callable[[], None],
    *,
    budget_s: float,
    min_repeat: int,
    max_repeat: int,
    min_warmup: int = 2,
) -> list[float]:
    """Time ``step`` (synchronised by ``sync``): per-call milliseconds of each sample.

    Warm-up calls (``min_warmup`` at least, and ``budget_s / 4`` seconds up to 0.25 s),
    then ``number`` calls per sample so that a sample lasts >= ``MIN_SAMPLE_S``,
    then as many samples as fit ``budget_s``, clipped to ``[min_repeat, max_repeat]``.
    """
    warm_s, calls, first = min(0.25, budget_s / 4), [], time.perf_counter()
    while len(calls) < max(min_warmup, 1) or time.perf_counter() - first < warm_s:
        start = time.perf_counter()
        step()
        sync()
        calls.append(time.perf_counter() - start)
    estimate = max(min(calls[1:] or calls), 1e-7)
    number = max(1, math.ceil(MIN_SAMPLE_S / estimate))
    repeat = min(max_repeat, max(min_repeat, int(budget_s / (number * estimate))))
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                step()
            sync()
            samples.append((time.perf_counter() - start) / number * 1e3)
    finally:
        gc.enable()
    return samples


def summarize(samples: list[float]) -> dict[str, Any]:
    """Median, quartiles and minimum (ms) of the samples of one case, and their count."""
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return {
        "ms": statistics.median(samples),
        "ms_q1": quartiles[0],
        "ms_q3": quartiles[2],
        "ms_min": min(samples),
        "samples": len(samples),
    }


def _cpu_times() -> tuple[float, float] | None:
    """(ticks the CPUs were busy on other processes' work, all ticks), from ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    own = os.times()  # this process's threads, e.g. BLAS workers still spinning
    own_ticks = (own.user + own.system) * os.sysconf("SC_CLK_TCK")
    return sum(fields) - fields[3] - fields[4] - own_ticks, sum(fields)


def wait_for_idle(max_wait_s: float, threshold: float = 0.3, interval_s: float = 0.25) -> float | None:
    """Sleep until the CPUs are busy less than ``threshold`` of the time, ``max_wait_s`` at most.

    The busy fraction over ``interval_s`` comes from ``/proc/stat``, less this
    process's own CPU time: it is other processes' load. Returns the last
    fraction seen (``None`` where ``/proc/stat`` cannot be read).
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = _cpu_times()
        time.sleep(interval_s)
        after = _cpu_times()
        if before is None or after is None:
            return None
        busy = max(0.0, (after[0] - before[0]) / max(after[1] - before[1], 1))
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 3)


def numpy_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak bytes allocated by one call of ``step`` and alive at once (tracemalloc).

    NumPy reports its data buffers to tracemalloc; blocks allocated before the
    call are not counted, nor are their frees subtracted.
    """
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak - base


def cupy_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak bytes that one call of ``step`` takes from CuPy's memory pool, alive at once.

    A memory hook follows the pool: blocks allocated during the call are added
    when they are taken and removed when they are given back; blocks taken
    before the call are not counted, as with :func:`numpy_peak_bytes`.
    """
    cupy = importlib.import_module("cupy")

    class PeakHook(cupy.cuda.MemoryHook):
        name = "BenchPeakHook"

        def __init__(self) -> None:
            self.live: dict[int, int] = {}
            self.current = self.peak = 0

        def malloc_postprocess(self, **kw: Any) -> None:
            self.live[kw["mem_ptr"]] = kw["mem_size"]
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw: Any) -> None:
            self.current -= self.live.pop(kw["mem_ptr"], 0)

    cupy.cuda.get_current_stream().synchronize()
    hook = PeakHook()
    with hook:
        out = step()
        cupy.cuda.get_current_stream().synchronize()
    del out
    return hook.peak


def torch_cuda_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak bytes above the starting allocation during one call of ``step`` (torch's CUDA allocator)."""
    torch = importlib.import_module("torch")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (with family/model numbers), else ``platform``'s."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.processor() or platform.machine())
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = fields.get("flags", "").split()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name}, {' '.join(simd)}" if simd else name


def _source() -> dict[str, Any] | None:
    """The git commit of the dense_xp being measured and its uncommitted changes, when in a checkout."""
    import dense_xp

    root = Path(dense_xp.__file__).resolve().parents[1]
    try:
        git = lambda *a: subprocess.run(
            ["git", *a], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        return {
            "commit": git("rev-parse", "HEAD"),
            "modified": git("status", "--porcelain", "--", "dense_xp"),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:
        return None


def _torch_info() -> dict[str, Any] | None:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    config = torch.__config__.show()
    blas = next(
        (p.split("=", 1)[1] for p in config.replace(",", " ").split() if p.startswith("BLAS_INFO=")), None
    )
    return {
        "version": torch.__version__,
        "blas": blas,
        "mkl": torch.backends.mkl.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def machine_info(device: str, threads: int) -> dict[str, Any]:
    """Platform, CPU, library versions, BLAS pools (threadpoolctl) and, on CUDA, the GPU."""
    import dense_xp

    threadpoolctl = require("threadpoolctl")
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "loadavg_at_start": _loadavg(),
        "dense_xp_source": _source(),
        "versions": {
            name: _version(name)
            for name in ("dense_xp", "numpy", "array_api_compat", "cupy", "threadpoolctl", "matplotlib")
        },
        "torch": _torch_info(),
        "blas": threadpoolctl.threadpool_info(),
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "CUPY_", "CUDA_VISIBLE", "NVIDIA_TF32"))
        },
    }
    if device.startswith("cuda"):
        cupy_entry = next(e for e in dense_xp.backend_info() if e["name"] == "cupy")
        info["gpu"] = {
            "devices": cupy_entry["devices"],
            "cupy": cupy_entry["version"],
            "cuda_runtime": cupy_entry.get("cuda_runtime"),
            "cuda_driver": cupy_entry.get("cuda_driver"),
        }
    return info
