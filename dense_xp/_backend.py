"""Backends and devices: the one module that knows NumPy from CuPy.

Everything library-specific lives here: turning a device request into an
``(xp, device)`` pair, probing CUDA without crashing on machines that have
CuPy but no driver, moving arrays between host and device, the host random
generator and ``.npz`` I/O, and the choice of fused kernels (NumPy and CuPy, in ``_fused``).
Layer, activation, loss and optimizer code only ever sees ``xp``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import re
from collections.abc import Iterator
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from . import _checks, _fused

__all__ = [
    "DeviceUnavailableError",
    "array_bytes",
    "as_dataset",
    "as_input",
    "bytes_array",
    "device_spec",
    "float_errors_ignored",
    "from_host",
    "fused_ops",
    "get_default_device",
    "host_rng",
    "mover",
    "namespace_name",
    "read_npz",
    "resolve_device",
    "restore_device",
    "rows",
    "set_default_device",
    "to_numpy",
    "use_device",
    "write_npz",
]

ENV_VAR = "DENSE_XP_DEVICE"
_CUDA_FIX = (
    'install a CUDA build of CuPy with `pip install "dense-xp[cuda12]"` (or '
    '"dense-xp[cuda13]"), or pass device="auto" to fall back to the CPU'
)
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
@functools.cache
def _cupy() -> tuple[Any, str | None]:
    """``(cupy module or None, reason it is unusable or None)``."""
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    except Exception as exc:  # a broken CUDA install can fail in many ways
        return None, f"CuPy failed to import ({type(exc).__name__}: {exc})"
    return cupy, None


@functools.cache
def cuda_device_count() -> tuple[int, str | None]:
    """``(number of CUDA devices, reason there are none or None)``."""
    cupy, reason = _cupy()
    if cupy is None:
        return 0, reason
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError without a driver
        return 0, f"no usable CUDA driver ({type(exc).__name__}: {exc})"
    return count, None if count else "the CUDA driver reports no device"


@functools.cache
def cuda_unusable_reason(index: int) -> str | None:
    """Why CUDA device ``index`` cannot be used, or ``None`` when it answers."""
    count, reason = cuda_device_count()
    if reason is not None:
        return reason
    if index >= count:
        return f"there is no CUDA device {index} (this machine has {count})"
    cupy = _cupy()[0]
    try:
        with cupy.cuda.Device(index):
            float(cupy.arange(4, dtype=cupy.float32).sum())
    except Exception as exc:
        return f"CUDA device {index} failed a test allocation ({type(exc).__name__}: {exc})"
    return None


def _cuda(index: int, request: Any) -> tuple[Any, Any]:
    reason = cuda_unusable_reason(index)
    if reason is not None:
        msg = f"device {request!r} is unavailable: {reason}. To fix it, {_CUDA_FIX}."
        raise DeviceUnavailableError(msg)
    cupy, xp = _cupy()[0], importlib.import_module("array_api_compat.cupy")
    _NATIVE[id(xp)] = cupy.ndarray
    return xp, cupy.cuda.Device(index)


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
        try:  # the namespace is the judge of its own devices
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
            device = xp.__array_namespace_info__().default_device()
            if device is None:  # JAX: "no explicit device"; its arrays name the one they land on
                return xp, array_api_compat.device(xp.empty(0))
            return xp, device
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
    """
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
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
    x = _host_array(x, name)
    if dtype is None and xp is not _NUMPY_XP:  # in a dtype the device holds
        x = _host_dtype_for(x, xp=xp, device=device)
    return from_host(x, xp=xp, device=device, dtype=dtype)


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


@functools.cache
def _cupy_ops() -> Any:
    return _fused.CupyOps(_cupy()[0])


def cuda_report() -> dict[str, Any]:
    """CuPy's version, the usable CUDA devices and, when there are none, why."""
    cupy, reason = _cupy()
    report: dict[str, Any] = {"version": getattr(cupy, "__version__", None), "devices": []}
    count, reason = cuda_device_count() if cupy is not None else (0, reason)
    for index in range(count):
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        unusable = cuda_unusable_reason(index)
        gib = props["totalGlobalMem"] / 2**30
        report["devices"].append(
            f"cuda:{index} ({name}, {gib:.0f} GiB)" + (f" unusable: {unusable}" if unusable else "")
        )
    if cupy is not None and reason is None:
        report["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        report["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    report["available"] = reason is None and cuda_unusable_reason(0) is None
    report["reason"] = reason if reason is not None else cuda_unusable_reason(0)
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


def read_npz(path: Any) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (or open binary file), read with ``allow_pickle=False``.

    Raises whatever NumPy raises for a damaged file (``ValueError``,
    ``OSError``, ``zipfile.BadZipFile``, ``EOFError``); callers translate.
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
