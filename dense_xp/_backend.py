"""Backends and devices: the one module that knows NumPy from CuPy.

Everything library-specific lives here: turning a device request into an
``(xp, device)`` pair, probing CUDA without crashing on machines that have
CuPy but no driver, moving arrays between host and device, the host random
generator, writing ``.npz`` files and viewing the ``.npy`` data ``_npz`` reads
as host arrays, and the choice of fused kernels (NumPy and CuPy, in ``_fused``).
Layer, activation, loss and optimizer code only ever sees ``xp``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import operator
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

import array_api_compat
import array_api_compat.numpy
import numpy as np

from . import _checks, _fused

__all__ = [
    "CudaProblem",
    "DeviceUnavailableError",
    "array_bytes",
    "as_dataset",
    "as_input",
    "bytes_array",
    "device_batches",
    "device_spec",
    "float_errors_ignored",
    "from_host",
    "fused_ops",
    "get_default_device",
    "host_array",
    "host_rng",
    "matmul",
    "mover",
    "namespace_name",
    "on_device",
    "register_current_device",
    "resolve_device",
    "restore_device",
    "rows",
    "runs_on_device",
    "set_default_device",
    "split_rows",
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
_NATIVE: dict[int, type[Any]] = {id(_NUMPY_XP): np.ndarray}  # namespace -> its array type, for fast checks
_context: contextvars.ContextVar[Any] = contextvars.ContextVar("dense_xp_device", default=None)
_default: list[Any] = [None]


def _parse(spec: str, *, name: str = "device") -> tuple[str, int | None]:
    match = _SPEC.match(spec.strip().lower())
    if match is None or (match[1] != "cuda" and match[2] is not None):
        msg = f'`{name}` must be "cpu", "cuda", "cuda:N" or "auto", got {spec!r}'
        raise ValueError(msg)
    kind, index = match[1], match[2]
    return kind, (int(index) if index is not None else 0) if kind == "cuda" else None


def _is_cupy_device(device: Any) -> bool:
    cupy = sys.modules.get("cupy")  # a CuPy device object exists only once CuPy is imported
    return cupy is not None and isinstance(device, getattr(getattr(cupy, "cuda", None), "Device", ()))


def _check_request(device: Any, name: str, xp: Any = None) -> tuple[Any, Any]:
    """Validate a device request when it is made; returns ``(device, xp)`` to store.

    With ``xp`` the device is resolved in that namespace now (``None`` is its
    default device); without, only device strings and CuPy devices are requests.
    """
    if xp is not None:
        xp = _compat(xp)
        if device is None:
            return xp.__array_namespace_info__().default_device(), xp
        return _device_in(xp, device), xp
    if isinstance(device, str):
        _parse(device, name=name)
        return device, None
    if _is_cupy_device(device):
        return device, None
    library = type(device).__module__.partition(".")[0]
    if library not in ("builtins", "numpy") and device is not None:
        msg = (
            f"`{name}` {device!r} is a device object of {library}: pass `xp=` with its array "
            "namespace too, as in use_device(device, xp=...)"
        )
    else:
        msg = (
            f'`{name}` must be a device string ("cpu", "cuda", "cuda:N", "auto") or a device object '
            f"(a cupy.cuda.Device, or one of another library together with `xp=` its namespace), "
            f"got {device!r}"
        )
    raise TypeError(msg)


def set_default_device(device: Any, *, xp: Any = None) -> None:
    """Set the process-wide default device request.

    Parameters
    ----------
    device : str or device object or None
        ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a ``cupy.cuda.Device``; with
        ``xp``, a device of that namespace (``None``: its default device).
        ``None`` without ``xp`` clears the default.
    xp : namespace, optional
        The array namespace of ``device`` (``torch``, ``array_api_strict``...).

    The request is checked now: a value that could never be used raises
    ``TypeError`` or ``ValueError`` and leaves the default as it was. It is
    overridden by :func:`use_device` and by an explicit ``device=``, and
    itself overrides the ``DENSE_XP_DEVICE`` environment variable.
    """
    _default[0] = None if device is None and xp is None else _check_request(device, "device", xp)


def _request() -> tuple[Any, Any, str]:
    """``(device, xp or None, where it came from)`` of the request in force."""
    for request in (_context.get(), _default[0]):
        if request is not None:
            return (*request, "device")
    env = os.environ.get(ENV_VAR) or None
    return ("cpu", None, "device") if env is None else (env, None, ENV_VAR)


def get_default_device() -> Any:
    """The device request in force: ``use_device`` > default > env > ``"cpu"``.

    The value of ``DENSE_XP_DEVICE`` is returned as it is; it is checked when
    it is used (:func:`resolve_device` raises a ``ValueError`` naming it).
    """
    return _request()[0]


def use_device(device: Any, *, xp: Any = None) -> contextlib.AbstractContextManager[None]:
    """Within the ``with`` block, make ``device`` (of ``xp``) the default device request.

    ``device`` and ``xp`` are as for :func:`set_default_device` (``device=None``
    needs ``xp``). They are checked at the call: a request that could never be
    used raises ``TypeError`` or ``ValueError`` there.
    """
    return _using(_check_request(device, "device", xp))


@contextlib.contextmanager
def _using(request: tuple[Any, Any]) -> Iterator[None]:
    token = _context.set(request)
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
    request, name = device, "device"
    if device is None:
        request, default_xp, name = _request()
        if default_xp is not None and (xp is None or _compat(xp) is default_xp):
            return default_xp, request
    if xp is not None:
        xp = _compat(xp)
        if device is None:
            device = xp.__array_namespace_info__().default_device()
            if device is None:  # JAX: "no explicit device"; its arrays name the one they land on
                return xp, array_api_compat.device(xp.empty(0))
            return xp, device
        return xp, _device_in(xp, device)
    _check_request(request, name)
    if isinstance(request, str):
        kind, index = _parse(request, name=name)
        if kind == "auto":
            kind = "cuda" if cuda_unusable_reason(0) is None else "cpu"
        if kind == "cpu":
            return array_api_compat.numpy, "cpu"
        try:
            return _cuda(index or 0, request)
        except DeviceUnavailableError as exc:
            if name != ENV_VAR:
                raise
            msg = f"{exc} (requested by the environment variable {ENV_VAR}={request!r})"
            raise DeviceUnavailableError(msg) from None
    return _cuda(request.id, request)


# --------------------------------------------------------------------------
# Namespaces and devices by name, for pickling
# --------------------------------------------------------------------------
def device_spec(xp: Any, device: Any) -> tuple[str, Any]:
    """``(module name of xp, device spec)``: a picklable description of ``(xp, device)``.

    The spec is ``"cuda:N"`` for CuPy, ``str(device)`` for torch,
    ``"platform:id"`` for JAX, and the device itself elsewhere (strings,
    array-api-strict devices).
    """
    if array_api_compat.is_cupy_namespace(xp):
        return xp.__name__, f"cuda:{device.id}"
    if array_api_compat.is_torch_namespace(xp):
        return xp.__name__, str(device)
    if array_api_compat.is_jax_namespace(xp):
        return xp.__name__, f"{device.platform}:{device.id}"
    return xp.__name__, device


def _cpu_of(xp: Any) -> tuple[Any, Any]:
    """The CPU of ``xp`` (torch, JAX), of NumPy for CuPy, or ``xp``'s default device."""
    if array_api_compat.is_cupy_namespace(xp):
        return _NUMPY_XP, "cpu"
    if array_api_compat.is_torch_namespace(xp):
        return resolve_device(importlib.import_module("torch").device("cpu"), xp=xp)
    if array_api_compat.is_jax_namespace(xp):
        return resolve_device(importlib.import_module("jax").devices("cpu")[0], xp=xp)
    return resolve_device(xp=xp)


def restore_device(name: str, spec: Any) -> tuple[Any, Any]:
    """The ``(xp, device)`` pair :func:`device_spec` described, or a CPU where that device is gone.

    A device that no longer answers (no CUDA device N, no GPU platform in
    JAX) becomes the CPU of the same library, or NumPy's for CuPy; a library
    that no longer imports becomes NumPy. No warning is given.
    """
    try:
        xp = importlib.import_module(name)
    except ImportError:
        return _NUMPY_XP, "cpu"
    try:
        if array_api_compat.is_cupy_namespace(xp):
            return resolve_device(spec)
        if array_api_compat.is_torch_namespace(xp):
            return resolve_device(importlib.import_module("torch").device(spec), xp=xp)
        if array_api_compat.is_jax_namespace(xp):
            platform, index = spec.rsplit(":", 1)
            devices = importlib.import_module("jax").devices(platform)
            return resolve_device(next(d for d in devices if d.id == int(index)), xp=xp)
        return resolve_device(spec, xp=xp)
    except (DeviceUnavailableError, ValueError, RuntimeError, StopIteration):
        return _cpu_of(xp)


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
        host: np.ndarray = x.get()
        return host
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        host = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()  # Any without torch
        return host
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


def as_dataset(x: Any, *, name: str, xp: Any, device: Any, check_finite: bool = False) -> Any:
    """Keep an array of ``xp`` on ``device`` as it is; anything else becomes a host NumPy array.

    Training data stays where the user put it: host data is moved to the
    device batch by batch (:func:`rows`), so it may be larger than device memory.
    With ``check_finite``, floating data holding NaN or infinity raises a
    ValueError naming ``name`` (one reduction, and one transfer of a flag).
    """
    on_host = isinstance(x, (np.ndarray, np.generic)) or not array_api_compat.is_array_api_obj(x)
    if on_host and not array_api_compat.is_numpy_namespace(xp):
        data = _host_array(x, name)
    else:
        data = as_input(x, name=name, xp=xp, device=device)
    if check_finite:
        _check_finite(data, name)
    return data


def _check_finite(data: Any, name: str) -> None:
    if isinstance(data, np.ndarray):
        if data.dtype.kind != "f" or np.isfinite(data).all():
            return
        bad = ~np.isfinite(data)
    else:
        xp = array_api_compat.array_namespace(data)
        if not xp.isdtype(data.dtype, "real floating") or bool(xp.all(xp.isfinite(data))):
            return
        bad = ~np.isfinite(to_numpy(data))
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    msg = (
        f"`{name}` must hold finite numbers, got {int(bad.sum())} NaN or infinite value(s), the first at "
        f"index {first}; clean the data, or pass check_finite=False to skip this check"
    )
    raise ValueError(msg)


def rows(data: Any, index: Any, *, xp: Any, device: Any) -> Any:
    """``data[index]`` for a slice or a host integer index array, wherever ``data`` lives.

    A host batch for another library's device comes back in a dtype that
    device holds (float64 data becomes the device's default float where it has
    no float64, int64 labels its default integer where it has no int64). An
    index array goes to the device in the namespace's index dtype there.
    """
    if isinstance(data, np.ndarray):
        batch = data[index]
        return batch if xp is _NUMPY_XP else _host_dtype_for(batch, xp=xp, device=device)
    if isinstance(index, slice):  # the array API leaves out-of-bounds stops unspecified
        return data[index.start : min(index.stop, data.shape[0]), ...]
    indexing = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    return xp.take(data, from_host(index, xp=xp, device=device, dtype=indexing), axis=0)


_HOLDS: dict[tuple[Any, ...], bool] = {}


def _host_dtype_for(batch: np.ndarray, *, xp: Any, device: Any) -> np.ndarray:
    """``batch``, cast on the host to the device's default dtype of its kind if the device lacks its own."""
    kind = {"f": "real floating", "i": "integral", "u": "integral"}.get(batch.dtype.kind)
    if kind is None:
        return batch
    info = xp.__array_namespace_info__()
    default = _checks.dtype_name(info.default_dtypes(device=device)[kind])
    if batch.dtype.name == default:
        return batch
    key = (id(xp), repr(device), batch.dtype.name, default)  # the default follows JAX's x64 switch
    holds = _HOLDS.get(key)
    if holds is None:
        holds = _HOLDS[key] = batch.dtype.name in info.dtypes(device=device, kind=kind)
    return batch if holds else batch.astype(default)


def as_input(x: Any, *, name: str, xp: Any, device: Any, dtype: Any = None) -> Any:
    """``x`` as an array of ``xp`` on ``device`` with ``dtype``, moving host data there.

    ``dtype=None`` keeps the (real or integer) dtype of ``x``, or for host
    data one the device holds (see :func:`rows`).

    Host data (NumPy arrays, nested lists, scalars) is moved to the device.
    Arrays of another library, or on another device, are refused with a
    ValueError that names both devices. A torch tensor that requires grad is
    detached: nothing computed from it joins an autograd graph. Bool, complex, string and object data
    raise TypeError.
    """
    if type(x) is _NATIVE.get(id(xp)) and x.dtype == dtype and (xp is _NUMPY_XP or x.device == device):
        return x  # the hot path: already an array of the layer, in its dtype, on its device
    host = isinstance(x, (np.ndarray, np.generic)) and not array_api_compat.is_numpy_namespace(xp)
    if array_api_compat.is_array_api_obj(x) and not host:
        if array_api_compat.is_torch_array(x) and x.requires_grad:
            x = x.detach()  # parameters must never join an autograd graph
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
    x = _host_array(x, name)
    if dtype is None and xp is not _NUMPY_XP:  # in a dtype the device holds
        x = _host_dtype_for(x, xp=xp, device=device)
    return from_host(x, xp=xp, device=device, dtype=dtype)


def float_errors_ignored() -> contextlib.AbstractContextManager[Any]:
    """Silence overflow/invalid warnings of NumPy (and the libraries built on it, such as
    array-api-strict) where the caller checks for non-finite values itself."""
    return np.errstate(over="ignore", invalid="ignore")


def device_batches(arrays: tuple[Any, ...], batches: Iterable[Any], *, xp: Any, device: Any) -> Iterator[Any]:
    """Yield, for each index of ``batches``, the rows :func:`rows` gives of every array in ``arrays``.

    On CuPy, host (NumPy) arrays are gathered into pinned memory and copied to
    the device on a side stream, so that the copy of batch ``k + 1`` overlaps
    the compute of batch ``k``; arrays already on the device are indexed there.
    Elsewhere the rows are what :func:`rows` returns (host rows move to the
    device in the layer, as before).
    """
    if not array_api_compat.is_cupy_namespace(xp) or not any(isinstance(a, np.ndarray) for a in arrays):
        for index in batches:
            with on_device(device):
                batch = tuple(rows(a, index, xp=xp, device=device) for a in arrays)
            yield batch  # outside the block: the consumer's current device is its own
        return
    cupy = _cupy()[0]
    with on_device(device):  # streams belong to a device
        compute, side = cupy.cuda.get_current_stream(), cupy.cuda.Stream(non_blocking=True)

    def stage(index: Any) -> tuple[tuple[Any, ...], Any, list[np.ndarray]]:
        out, pinned = [], []
        with on_device(device):
            # The side stream first waits for the compute queued so far: the buffers allocated
            # below (on the compute stream) may reuse memory that queued kernels still read.
            side.wait_event(compute.record())
            for a in arrays:
                if not isinstance(a, np.ndarray):
                    out.append(rows(a, index, xp=xp, device=device))
                    continue
                part = a[index]
                host = np.frombuffer(cupy.cuda.alloc_pinned_memory(part.nbytes), part.dtype, part.size)
                host = host.reshape(part.shape)
                host[...] = part
                target = cupy.empty(part.shape, dtype=part.dtype)
                target.set(host, stream=side)  # asynchronous: the source is pinned
                out.append(target)
                pinned.append(host)
            return tuple(out), side.record(), pinned

    pending = None
    for index in batches:
        staged = stage(index)  # the copy of this batch is queued before the previous batch is computed
        if pending is not None:
            yield from _handed_over(pending, compute)
        pending = staged
    if pending is not None:
        yield from _handed_over(pending, compute)


def _handed_over(staged: tuple[tuple[Any, ...], Any, list[np.ndarray]], compute: Any) -> Iterator[Any]:
    batch, copied, pinned = staged
    compute.wait_event(copied)  # the compute stream waits for the copy; the host does not
    yield batch
    copied.synchronize()  # long done by now: only then may the pinned buffers go back to the pool
    pinned.clear()


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
    little: dict[str, Any] = {
        k: np.asarray(a, dtype=np.asarray(a).dtype.newbyteorder("<")) for k, a in arrays.items()
    }
    np.savez(file, **little)


def bytes_array(data: bytes) -> np.ndarray:
    """``data`` as a 1-D uint8 host array."""
    return np.frombuffer(bytes(data), dtype=np.uint8).copy()


def array_bytes(arr: Any) -> bytes:
    """The raw bytes of a 1-D uint8 host array."""
    return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def host_array(buffer: bytearray, descr: str, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    """The ``.npy`` data ``buffer`` (as :meth:`._npz.NpzReader.read` returns it) as a writeable host array.

    The array views ``buffer`` without copying it; ``fortran`` says the data
    is in column-major order.
    """
    dtype = np.dtype(descr)
    if not dtype.itemsize:  # S0, U0, V0: no bytes to view
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    flat = np.frombuffer(buffer, dtype=dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


# --------------------------------------------------------------------------
# Host row indices for data split in blocks (Dask chunks)
# --------------------------------------------------------------------------
def split_rows(index: Any, starts: list[int]) -> list[tuple[int, Any]]:
    """Group host row numbers by the block holding them.

    ``starts`` are the first row of each block, ascending, and ``index`` is a
    1-D host integer array of rows. Returns ``(block, local rows)`` for each
    block that holds some of them, the local rows ascending.
    """
    rows = np.sort(np.asarray(index))
    cuts = np.searchsorted(rows, [*starts, np.iinfo(np.int64).max]).tolist()
    return [
        (block, rows[cuts[block] : cuts[block + 1]] - start)
        for block, start in enumerate(starts)
        if cuts[block + 1] > cuts[block]
    ]
