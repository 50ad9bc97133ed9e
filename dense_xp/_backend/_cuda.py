"""CUDA through CuPy: probed once per device, never raising on import, with advice that follows the cause."""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple


# --------------------------------------------------------------------------
# CUDA through CuPy: probed once per device, never raising on import
# --------------------------------------------------------------------------
class CudaProblem(NamedTuple):
    """Why CUDA cannot be used here, and the fix for that cause."""

    reason: str
    fix: str


_MIN_DRIVER = {12: "525.60", 13: "580.65"}  # Linux driver a CUDA major needs (CUDA release notes)
_INSTALL = (
    'install CuPy with `pip install "dense-xp[cuda13]"` (NVIDIA driver >= 580) or '
    '`pip install "dense-xp[cuda12]"` (driver >= 525); each brings CuPy and the CUDA libraries it needs'
)


def _visible() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "CUDA_VISIBLE_DEVICES is not set" if value is None else f"CUDA_VISIBLE_DEVICES={value!r}"


@functools.cache
def _cupy() -> tuple[Any, CudaProblem | None]:
    """``(cupy module or None, why it is unusable or None)``."""
    try:
        import cupy
    except ImportError:
        return None, CudaProblem("CuPy is not installed", _INSTALL)
    except Exception as exc:  # a broken CUDA install can fail in many ways
        reason = f"CuPy failed to import ({type(exc).__name__}: {exc})"
        fix = "keep exactly one CuPy build (`pip list | grep -i cupy`) and reinstall it: " + _INSTALL
        return None, CudaProblem(reason, fix)
    return cupy, None


def _cuda_version(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def _driver_problem(runtime: Any, exc: Exception) -> CudaProblem:
    """Tell a missing driver from one too old for this CuPy build, and from hidden devices."""
    cause = f"{type(exc).__name__}: {exc}"
    if "NoDevice" in cause:
        return CudaProblem(f"no CUDA device is visible ({cause})", f"check `nvidia-smi`; {_visible()}")
    try:
        built, driver = int(runtime.runtimeGetVersion()), int(runtime.driverGetVersion())
    except Exception:
        built, driver = 0, 0
    major = built // 1000
    need = f"driver >= {_MIN_DRIVER[major]}" if major in _MIN_DRIVER else "a matching driver"
    if driver == 0:
        reason = f"no NVIDIA driver was found ({cause})"
        fix = f"install the NVIDIA driver: this CuPy is built for CUDA {_cuda_version(built)} ({need})"
    elif driver // 1000 < major:
        reason = (
            f"the NVIDIA driver supports CUDA {_cuda_version(driver)}, older than the CUDA "
            f"{_cuda_version(built)} this CuPy is built for ({cause})"
        )
        fix = (
            f"update the driver ({need}), or replace cupy-cuda{major}x with the build for the driver: "
            f'`pip uninstall cupy-cuda{major}x && pip install "dense-xp[cuda{driver // 1000}]"`'
        )
    else:
        reason = f"the CUDA driver failed ({cause})"
        fix = "check `nvidia-smi` and the driver's logs"
    return CudaProblem(reason, fix)


@functools.cache
def cuda_device_count() -> tuple[int, CudaProblem | None]:
    """``(number of CUDA devices, why there are none or None)``."""
    cupy, problem = _cupy()
    if cupy is None:
        return 0, problem
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError without a driver
        return 0, _driver_problem(cupy.cuda.runtime, exc)
    if count == 0:
        return 0, CudaProblem("the CUDA driver reports no device", f"check `nvidia-smi`; {_visible()}")
    return count, None


@functools.cache
def cuda_problem(index: int) -> CudaProblem | None:
    """Why CUDA device ``index`` cannot be used, with the fix, or ``None`` when it answers.

    The probe allocates and runs a reduction, which compiles a kernel: a CuPy
    without NVRTC or CUDA headers fails here, not in the middle of training.
    """
    count, problem = cuda_device_count()
    if problem is not None:
        return problem
    if index >= count:
        reason = f"there is no CUDA device {index} (this machine shows {count}: cuda:0 to cuda:{count - 1})"
        return CudaProblem(
            reason, f"pick one of those; {_visible()}, and it renumbers the visible devices from 0"
        )
    cupy = _cupy()[0]
    try:
        with cupy.cuda.Device(index):
            float(cupy.arange(4, dtype=cupy.float32).sum())
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exc}"
        if "nvrtc" in cause.lower() or "compil" in cause.lower():
            reason = f"CuPy cannot compile kernels for CUDA device {index} ({cause})"
            fix = (
                "install CuPy with its CUDA Toolkit wheels (the dense-xp[cuda12] and [cuda13] extras bring "
                "cupy-cudaXXx[ctk]), or install a CUDA Toolkit and set CUDA_PATH"
            )
            return CudaProblem(reason, fix)
        reason = f"CUDA device {index} failed a test allocation ({cause})"
        return CudaProblem(
            reason, "check `nvidia-smi`: the device may be busy in exclusive mode, full, or failed"
        )
    return None


def cuda_unusable_reason(index: int) -> str | None:
    """Why CUDA device ``index`` cannot be used, or ``None`` when it answers."""
    problem = cuda_problem(index)
    return None if problem is None else problem.reason


class _cuda_current:
    """Make a ``cupy.cuda.Device`` current for this thread, and restore the caller's on exit.

    Not ``with device:``: CuPy keeps that stack on the Device object, which
    threads sharing one layer would share.
    """

    __slots__ = ("index", "previous")

    def __init__(self, device: Any) -> None:
        self.index = device.id

    def __enter__(self) -> None:
        runtime = _cupy()[0].cuda.runtime
        self.previous = runtime.getDevice()
        if self.previous != self.index:
            runtime.setDevice(self.index)

    def __exit__(self, *exc: object) -> None:
        if self.previous != self.index:
            _cupy()[0].cuda.runtime.setDevice(self.previous)


def cuda_report() -> dict[str, Any]:
    """CuPy's version, the CUDA devices, CuPy's memory pool, and why CUDA is unusable with the fix."""
    cupy, problem = _cupy()
    report: dict[str, Any] = {"version": getattr(cupy, "__version__", None), "devices": []}
    count, problem = cuda_device_count() if cupy is not None else (0, problem)
    for index in range(count):
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        unusable = cuda_unusable_reason(index)
        gib = props["totalGlobalMem"] / 2**30
        report["devices"].append(
            f"cuda:{index} ({name}, {gib:.0f} GiB)" + (f" unusable: {unusable}" if unusable else "")
        )
    if cupy is not None and problem is None:
        report["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        report["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        pool = cupy.get_default_memory_pool()  # per current device: report device 0's
        report["memory_pool"] = {
            "used_bytes": int(pool.used_bytes()),
            "held_bytes": int(pool.total_bytes()),
            "limit_bytes": int(pool.get_limit()) or None,  # 0 means no limit
        }
    problem = problem if problem is not None else cuda_problem(0)
    report["available"] = problem is None
    report["reason"] = None if problem is None else problem.reason
    report["fix"] = None if problem is None else problem.fix
    return report
