"""Device requests and their resolution to an ``(xp, device)`` pair, and back to a picklable name."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from . import _cuda
from ._current import on_device, register_current_device

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


def parse_request(spec: str, *, name: str = "device") -> tuple[str, int | None]:
    """``("cpu" | "auto" | "cuda", index or None)`` of a device string; a ValueError names ``name``."""
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
        parse_request(device, name=name)
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


def _cuda_device(index: int, request: Any) -> tuple[Any, Any]:
    problem = _cuda.cuda_problem(index)
    if problem is not None:
        msg = (
            f"device {request!r} is unavailable: {problem.reason}. To fix it, {problem.fix}; "
            'or pass device="auto" to fall back to the CPU.'
        )
        raise DeviceUnavailableError(msg)
    cupy, xp = _cuda._cupy()[0], importlib.import_module("array_api_compat.cupy")
    _NATIVE[id(xp)] = cupy.ndarray
    register_current_device(cupy.cuda.Device, _cuda._cuda_current)
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
            kind, index = parse_request(device)
            if kind != "cpu":
                return _cuda_device(index or 0, device)[1]
        elif isinstance(device, _cuda._cupy()[0].cuda.Device):
            return _cuda_device(device.id, device)[1]
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
        kind, index = parse_request(request, name=name)
        if kind == "auto":
            kind = "cuda" if _cuda.cuda_unusable_reason(0) is None else "cpu"
        if kind == "cpu":
            return array_api_compat.numpy, "cpu"
        try:
            return _cuda_device(index or 0, request)
        except DeviceUnavailableError as exc:
            if name != ENV_VAR:
                raise
            msg = f"{exc} (requested by the environment variable {ENV_VAR}={request!r})"
            raise DeviceUnavailableError(msg) from None
    return _cuda_device(request.id, request)


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
