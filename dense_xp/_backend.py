"""Backends and devices: the one module that knows NumPy from CuPy.

Everything library-specific lives here: turning a device request into an
``(xp, device)`` pair, probing CUDA without crashing on machines that have
CuPy but no driver, moving arrays between host and device, the host random
generator and ``.npz`` I/O, and the choice of fused kernels (NumPy and CuPy, in ``_fused``).
Layer, activation, loss and optimizer code only ever sees ``xp``.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import functools
import importlib
import math
import operator
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

import array_api_compat
import array_api_compat.numpy
import numpy as np

from . import _fused

__all__ = [
    "CudaProblem",
    "DeviceUnavailableError",
    "NpzError",
    "NpzReader",
    "array_bytes",
    "as_dataset",
    "as_input",
    "bytes_array",
    "float_errors_ignored",
    "from_host",
    "fused_ops",
    "get_default_device",
    "host_rng",
    "matmul",
    "mover",
    "namespace_name",
    "on_device",
    "register_current_device",
    "resolve_device",
    "rows",
    "runs_on_device",
    "set_default_device",
    "to_numpy",
    "use_device",
    "write_npz",
]

ENV_VAR = "DENSE_XP_DEVICE"
_SPEC = re.compile(r"^(cpu|auto|cuda)(?::(\d+))?$")


class DeviceUnavailableError(RuntimeError):
    """A requested device exists in name but cannot be used on this machine."""


# --------------------------------------------------------------------------
# Device requests: explicit > use_device() > set_default_device() > env > cpu
# --------------------------------------------------------------------------
_NUMPY_XP = array_api_compat.numpy
_NATIVE: dict[int, type] = {id(_NUMPY_XP): np.ndarray}  # namespace -> its array type, for fast checks
_context: contextvars.ContextVar[Any] = contextvars.ContextVar("dense_xp_device", default=None)
_default: list[Any] = [None]


def _parse(spec: str, *, name: str = "device") -> tuple[str, int | None]:
    match = _SPEC.match(spec.strip().lower())
    if match is None or (match[1] != "cuda" and match[2] is not None):
        msg = f'`{name}` must be "cpu", "cuda", "cuda:N" or "auto", got {spec!r}'
        raise ValueError(msg)
    kind, index = match[1], match[2]
    return kind, (int(index) if index is not None else 0) if kind == "cuda" else None


def _check_request(device: Any, name: str) -> None:
    if isinstance(device, str):
        _parse(device, name=name)
    elif device is None or isinstance(device, (bool, int, float)):
        msg = f"`{name}` must be a device string or a device object, got {device!r}"
        raise TypeError(msg)


def set_default_device(device: Any) -> None:
    """Set the process-wide default device (``"cpu"``, ``"cuda[:N]"``, ``"auto"``).

    It is overridden by :func:`use_device` and by an explicit ``device=``, and
    itself overrides the ``DENSE_XP_DEVICE`` environment variable. ``None``
    clears it.
    """
    if device is not None:
        _check_request(device, "device")
    _default[0] = device


def get_default_device() -> Any:
    """The device request in force: ``use_device`` > default > env > ``"cpu"``."""
    for request in (_context.get(), _default[0], os.environ.get(ENV_VAR) or None):
        if request is not None:
            return request
    return "cpu"


@contextlib.contextmanager
def use_device(device: Any) -> Iterator[None]:
    """Within the ``with`` block, make ``device`` the default device request."""
    _check_request(device, "device")
    token = _context.set(device)
    try:
        yield
    finally:
        _context.reset(token)


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


def _cuda(index: int, request: Any) -> tuple[Any, Any]:
    problem = cuda_problem(index)
    if problem is not None:
        msg = (
            f"device {request!r} is unavailable: {problem.reason}. To fix it, {problem.fix}; "
            'or pass device="auto" to fall back to the CPU.'
        )
        raise DeviceUnavailableError(msg)
    cupy, xp = _cupy()[0], importlib.import_module("array_api_compat.cupy")
    _NATIVE[id(xp)] = cupy.ndarray
    register_current_device(cupy.cuda.Device, _cuda_current)
    return xp, cupy.cuda.Device(index)


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


# --------------------------------------------------------------------------
# The current device: CuPy computes on it, whatever `device=` says
# --------------------------------------------------------------------------
_NO_CONTEXT = contextlib.nullcontext()
_MAKE_CURRENT: dict[type, Callable[[Any], contextlib.AbstractContextManager[Any]]] = {}


def register_current_device(
    device_type: type, make_current: Callable[[Any], contextlib.AbstractContextManager[Any]]
) -> None:
    """Declare a library whose arrays go to a *current* device, whatever ``device=`` says.

    This is the one seam through which dense_xp treats a namespace like CuPy:
    CuPy allocates (array-api-compat's ``zeros``, ``full``... ignore
    ``device=``), runs cuBLAS and launches kernels on the current device, so
    :func:`on_device` makes a layer's device current around all of its work.
    CuPy registers itself when a CUDA device is first resolved; the test
    suite's CPU simulation of CuPy (``tests/cupylike.py``) registers through
    here too.

    Parameters
    ----------
    device_type : type
        The library's device class (``cupy.cuda.Device``).
    make_current : callable
        ``make_current(device)`` returns a context manager that makes
        ``device`` current for the calling thread and restores the previous
        one on exit.
    """
    _MAKE_CURRENT[device_type] = make_current


def on_device(device: Any) -> contextlib.AbstractContextManager[Any]:
    """A context manager running its block with ``device`` current (see :func:`register_current_device`).

    For libraries without a current device (NumPy, torch, JAX, array-api-strict)
    it does nothing, for the cost of one dictionary lookup.
    """
    make_current = _MAKE_CURRENT.get(type(device))
    return _NO_CONTEXT if make_current is None else make_current(device)


_F = TypeVar("_F", bound=Callable[..., Any])


def runs_on_device(method: _F) -> _F:
    """Decorate a method of an object with a ``device`` attribute: it runs with that device current."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with on_device(self.device):
            return method(self, *args, **kwargs)

    return cast(_F, run)


# --------------------------------------------------------------------------
# Resolution to an (xp, device) pair
# --------------------------------------------------------------------------
def namespace_name(xp: Any) -> str:
    """A short, readable name for an array namespace (``"numpy"``, ``"torch"``...)."""
    name = getattr(xp, "__name__", type(xp).__name__)
    return name.removeprefix("array_api_compat.")


def _compat(xp: Any) -> Any:
    """The array-API-compatible namespace for a library module or namespace."""
    if not isinstance(getattr(xp, "__name__", None), str):
        msg = f"`xp` must be an array API namespace, got {xp!r}"
        raise TypeError(msg)
    for kind, module in (
        ("numpy", "numpy"),
        ("cupy", "cupy"),
        ("torch", "torch"),
        ("dask", "dask.array"),
    ):
        if getattr(array_api_compat, f"is_{kind}_namespace")(xp):
            return importlib.import_module(f"array_api_compat.{module}")
    if not hasattr(xp, "__array_namespace_info__"):
        msg = f"`xp` must be an array API namespace, got {xp!r}"
        raise TypeError(msg)
    return xp


def _device_in(xp: Any, device: Any) -> Any:
    """Validate ``device`` (object or string) as a device of namespace ``xp``."""
    if array_api_compat.is_numpy_namespace(xp):
        if device in ("cpu", "auto"):
            return "cpu"
    elif array_api_compat.is_cupy_namespace(xp):
        if isinstance(device, str):
            kind, index = _parse(device)
            if kind != "cpu":
                return _cuda(index or 0, device)[1]
        elif isinstance(device, _cupy()[0].cuda.Device):
            return _cuda(device.id, device)[1]
    else:
        try:  # the namespace is the judge of its own devices; a CuPy-like one allocates on the current
            with on_device(device):
                probe = xp.empty(0, device=device)
        except Exception as exc:
            known = ""
            if not array_api_compat.is_torch_namespace(xp):
                known = f" (it has {list(xp.__array_namespace_info__().devices())})"
            msg = f"`device` {device!r} is not a usable device of {namespace_name(xp)}{known}: {exc}"
            raise ValueError(msg) from None
        return array_api_compat.device(probe)
    msg = f"`device` {device!r} is not a device of {namespace_name(xp)}"
    raise ValueError(msg)


def resolve_device(device: Any = None, *, xp: Any = None) -> tuple[Any, Any]:
    """Turn a device request into an ``(xp, device)`` pair.

    Parameters
    ----------
    device : str or device object, optional
        ``"cpu"`` (NumPy), ``"cuda"`` / ``"cuda:N"`` (CuPy), ``"auto"`` (CUDA
        when a device answers, else CPU), or -- together with ``xp`` -- any
        device object of that namespace. ``None`` takes
        :func:`get_default_device`, or ``xp``'s default device when ``xp`` is
        given.
    xp : namespace, optional
        Any array API namespace (``array_api_strict``, ``torch``, ``jax.numpy``,
        ``numpy``, ``cupy``...).

    Returns
    -------
    xp, device
        An array-API-compatible namespace and a device object of it.

    Raises
    ------
    DeviceUnavailableError
        ``"cuda"`` was requested but cannot work here; the message says why.
    """
    if xp is not None:
        xp = _compat(xp)
        if device is None:
            return xp, xp.__array_namespace_info__().default_device()
        return xp, _device_in(xp, device)
    request = get_default_device() if device is None else device
    _check_request(request, "device")
    if isinstance(request, str):
        kind, index = _parse(request)
        if kind == "auto":
            kind = "cuda" if cuda_unusable_reason(0) is None else "cpu"
        if kind == "cpu":
            return array_api_compat.numpy, "cpu"
        return _cuda(index or 0, request)
    cupy = _cupy()[0]
    if cupy is not None and isinstance(request, cupy.cuda.Device):
        return _cuda(request.id, request)
    msg = f"`device` {request!r} is not a device string; pass `xp=` with a device object of that namespace"
    raise TypeError(msg)


# --------------------------------------------------------------------------
# Host <-> device
# --------------------------------------------------------------------------
def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` (an array of any supported library, on any device) as a NumPy array.

    The result may share memory with ``x`` when ``x`` already lives on the host.
    A torch bfloat16 tensor, a dtype NumPy lacks, comes back as float32.
    """
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    if array_api_compat.is_array_api_obj(x) and not array_api_compat.is_jax_array(x):
        with contextlib.suppress(Exception):
            return np.from_dlpack(x)
    return np.asarray(x)


def host_rng(seed: int | None) -> np.random.RandomState:
    """A private legacy generator: ``host_rng(s).randn`` matches ``np.random.seed(s); np.random.randn``."""
    return np.random.RandomState(seed)


def from_host(x: Any, *, xp: Any, device: Any, dtype: Any = None, copy: bool | None = None) -> Any:
    """Move host data (a NumPy array or nested sequence) to ``device`` of ``xp``."""
    return xp.asarray(x, dtype=dtype, device=device, copy=copy)


def mover(src_xp: Any, src_device: Any, xp: Any, device: Any, dtype: Any) -> Any:
    """A function moving arrays of ``src_xp`` on ``src_device`` to ``device`` of ``xp`` as ``dtype``.

    Within one library the move is direct; between libraries it goes through
    the host. The result never shares memory with its source.
    """

    def move(a: Any) -> Any:
        if a is None:
            return None
        if src_xp is xp and a.dtype != dtype:  # cast where a is: the target device may lack its dtype
            with on_device(src_device):
                a = xp.astype(a, dtype)
            return array_api_compat.to_device(a, device)
        if src_xp is xp:
            return xp.astype(array_api_compat.to_device(a, device), dtype, copy=True)
        return from_host(to_numpy(a), xp=xp, device=device, dtype=dtype, copy=True)

    return move


def _describe(x: Any) -> str:
    try:
        where = array_api_compat.device(x)
    except Exception:
        where = "?"
    return f"an array of {namespace_name(array_api_compat.array_namespace(x))} on device {where!r}"


def _host_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        msg = f"`{name}` must be a rectangular array of real numbers, got {type(x).__name__}: {exc}"
        raise ValueError(msg) from None
    if arr.dtype.kind not in "iuf":
        msg = f"`{name}` must hold real numbers, got dtype {arr.dtype} ({type(x).__name__})"
        raise TypeError(msg)
    return arr


def as_dataset(x: Any, *, name: str, xp: Any, device: Any) -> Any:
    """Keep an array of ``xp`` on ``device`` as it is; anything else becomes a host NumPy array.

    Training data stays where the user put it: host data is moved to the
    device batch by batch (:func:`rows`), so it may be larger than device memory.
    """
    on_host = isinstance(x, (np.ndarray, np.generic)) or not array_api_compat.is_array_api_obj(x)
    if on_host and not array_api_compat.is_numpy_namespace(xp):
        return _host_array(x, name)
    return as_input(x, name=name, xp=xp, device=device)


def rows(data: Any, index: Any, *, xp: Any, device: Any) -> Any:
    """``data[index]`` for a slice or a host integer index array, wherever ``data`` lives."""
    if isinstance(index, slice) or isinstance(data, np.ndarray):
        return data[index]
    return xp.take(data, from_host(index, xp=xp, device=device), axis=0)


def as_input(x: Any, *, name: str, xp: Any, device: Any, dtype: Any = None) -> Any:
    """``x`` as an array of ``xp`` on ``device`` with ``dtype``, moving host data there.

    ``dtype=None`` keeps the (real or integer) dtype of ``x``.

    Host data (NumPy arrays, nested lists, scalars) is moved to the device.
    Arrays of another library, or on another device, are refused with a
    ValueError that names both devices. Bool, complex, string and object data
    raise TypeError.
    """
    if type(x) is _NATIVE.get(id(xp)) and x.dtype == dtype and (xp is _NUMPY_XP or x.device == device):
        return x  # the hot path: already an array of the layer, in its dtype, on its device
    host = isinstance(x, (np.ndarray, np.generic)) and not array_api_compat.is_numpy_namespace(xp)
    if array_api_compat.is_array_api_obj(x) and not host:
        if array_api_compat.array_namespace(x) is not xp or array_api_compat.device(x) != device:
            msg = (
                f"`{name}` is {_describe(x)}, but the layer lives on device {device!r} "
                f"of {namespace_name(xp)}; pass host data or dense_xp.to_numpy({name}), "
                f"or move the layer with .to(...)"
            )
            raise ValueError(msg)
        if not xp.isdtype(x.dtype, ("integral", "real floating")):
            msg = f"`{name}` must hold real numbers, got dtype {x.dtype}"
            raise TypeError(msg)
        return x if dtype is None or x.dtype == dtype else xp.astype(x, dtype)
    return from_host(_host_array(x, name), xp=xp, device=device, dtype=dtype)


def float_errors_ignored() -> contextlib.AbstractContextManager[Any]:
    """Silence overflow/invalid warnings of NumPy (and the libraries built on it, such as
    array-api-strict) where the caller checks for non-finite values itself."""
    return np.errstate(over="ignore", invalid="ignore")


def fused_ops(xp: Any) -> Any:
    """Fused hot-path kernels for ``xp`` (NumPy ufunc chains, CuPy elementwise kernels), or ``None``."""
    if array_api_compat.is_numpy_namespace(xp):
        return _NUMPY_OPS
    if array_api_compat.is_cupy_namespace(xp):
        return _cupy_ops()
    return None


_NUMPY_OPS = _fused.NumpyOps(np)


def matmul(xp: Any, dtype: Any) -> Callable[[Any, Any], Any]:
    """``a @ b`` for operands of ``xp`` in ``dtype``: NumPy float16 products go through float32 BLAS.

    NumPy has no float16 BLAS: its own float16 loop rounds the float32 sum
    of products to float16, which BLAS in float32 computes ~40x faster.
    """
    if array_api_compat.is_numpy_namespace(xp) and dtype == np.float16:
        return _half_matmul
    return operator.matmul


def _half_matmul(a: Any, b: Any) -> Any:
    return np.matmul(a, b, dtype=np.float32).astype(np.float16)


@functools.cache
def _cupy_ops() -> Any:
    return _fused.CupyOps(_cupy()[0])


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


# --------------------------------------------------------------------------
# Host files: .npz without pickle
# --------------------------------------------------------------------------
def write_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (host arrays, stored little-endian) to an open binary ``file``."""
    np.savez(
        file, **{k: np.asarray(a, dtype=np.asarray(a).dtype.newbyteorder("<")) for k, a in arrays.items()}
    )


def bytes_array(data: bytes) -> np.ndarray:
    """``data`` as a 1-D uint8 host array."""
    return np.frombuffer(bytes(data), dtype=np.uint8).copy()


def array_bytes(arr: Any) -> bytes:
    """The raw bytes of a 1-D uint8 host array."""
    return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


class NpzError(ValueError):
    """An ``.npz`` member refused, or the archive damaged; the message reads after "cannot load ...: "."""


NPY_HEADER_MAX = 4096  # bytes before an .npy member's data: magic, version, length, header dict
_NPY_DESCR = re.compile(r"[<>|=]?(?:[biufcSUV]\d{1,6}|O)")  # plain dtypes only, as numpy writes them
_NPZ_CHUNK = 2**20
_NPZ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, KeyError, NotImplementedError, RuntimeError)
_NPZ_ERRORS += (ValueError, OverflowError, zipfile.BadZipFile, zlib.error, struct.error)


@contextlib.contextmanager
def _npz_errors() -> Iterator[None]:
    """Anything a damaged zip makes the readers raise, as an NpzError."""
    try:
        yield
    except NpzError:
        raise
    except _NPZ_ERRORS as exc:
        msg = f"it is truncated or damaged ({type(exc).__name__}: {exc})"
        raise NpzError(msg) from None


def _npy_header(fp: Any, member: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset of the ``.npy`` stream ``fp``; reads the header only."""
    magic = fp.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
        msg = f"member {member!r} is not a .npy array (it starts with {magic[:8]!r})"
        raise NpzError(msg)
    if magic[6] not in (1, 2, 3):
        msg = f"member {member!r} has .npy format version {magic[6]}.{magic[7]}, not 1, 2 or 3"
        raise NpzError(msg)
    width = 2 if magic[6] == 1 else 4
    length = int.from_bytes(fp.read(width), "little")
    if 8 + width + length > NPY_HEADER_MAX:
        msg = f"member {member!r} claims a header of {length} bytes; a .npy header has at most"
        raise NpzError(f"{msg} {NPY_HEADER_MAX}")
    text = fp.read(length)
    bad = f"member {member!r} has an invalid .npy header {text[:200]!r}"
    try:
        header = ast.literal_eval(text.decode("utf-8" if magic[6] == 3 else "latin1"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise NpzError(bad) from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpzError(f"{bad}: it needs exactly the keys 'descr', 'fortran_order' and 'shape'")
    shape, fortran, descr = header["shape"], header["fortran_order"], header["descr"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise NpzError(f"{bad}: its shape must be a tuple of integers >= 0")
    if not isinstance(fortran, bool) or not isinstance(descr, str) or not _NPY_DESCR.fullmatch(descr):
        raise NpzError(f"{bad}: fortran_order must be a bool and descr a plain dtype")
    try:
        dtype = np.dtype(descr)
    except TypeError:
        raise NpzError(f"{bad}: unknown dtype {descr!r}") from None
    if dtype.hasobject:
        msg = (
            f"member {member!r} holds a pickled object array; checkpoints never load Python objects (pickle)"
        )
        raise NpzError(msg)
    return shape, dtype, fortran, 8 + width + length


class NpzReader:
    """The arrays of an open ``.npz``, each read only once its ``.npy`` header has been accepted.

    Opening reads only the zip directory: ``sizes`` maps each member's name
    to the uncompressed size the directory states (a member never yields
    more). No member is decompressed until :meth:`read` asks for it.
    """

    def __init__(self, file: Any) -> None:
        with _npz_errors():
            total = file.seek(0, os.SEEK_END)
            file.seek(0)
            self._zip = zipfile.ZipFile(file)
            infos = self._zip.infolist()
        self.sizes: dict[str, int] = {}
        for info in infos:
            if info.filename in self.sizes:
                raise NpzError(f"it lists member {info.filename!r} twice")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                msg = f"member {info.filename!r} uses zip compression method {info.compress_type}; only"
                raise NpzError(f"{msg} stored (0) and deflated (8) members are read")
            if info.header_offset + info.compress_size > total:
                msg = f"member {info.filename!r} claims {info.compress_size} bytes from offset"
                raise NpzError(f"{msg} {info.header_offset}, past the end of the {total}-byte file")
            self.sizes[info.filename] = info.file_size

    def read(self, member: str, accept: Callable[[tuple[int, ...], str], None]) -> np.ndarray:
        """The array in ``member``, read only after ``accept(shape, dtype_str)`` returns.

        Only the header is read before ``accept``, and what ``accept`` raises
        reaches the caller unchanged. Then header and data must fill the
        member exactly, and the data is read in 1 MiB steps into one new array.
        Any other problem raises :class:`NpzError`.
        """
        size = self.sizes[member]
        with _npz_errors():
            fp = self._zip.open(member)
        with fp:
            with _npz_errors():
                shape, dtype, fortran, offset = _npy_header(fp, member)
            accept(shape, dtype.str)  # what it raises goes to the caller as it is
            nbytes = math.prod(shape) * dtype.itemsize
            if offset + nbytes != size:
                msg = f"member {member!r} holds {size} bytes; its header ({shape} {dtype.str}) says"
                raise NpzError(f"{msg} {offset + nbytes}")
            flat = np.empty(math.prod(shape), dtype=dtype)
            done = 0
            with _npz_errors():
                view = flat.view(np.uint8) if nbytes else flat
                while done < nbytes:
                    chunk = fp.read(min(_NPZ_CHUNK, nbytes - done))
                    if not chunk:
                        raise NpzError(f"member {member!r} ends after {offset + done} of its {size} bytes")
                    view[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                    done += len(chunk)
                fp.read(1)  # at the end: the CRC check
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
