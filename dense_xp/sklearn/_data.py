"""Where the estimators compute, and how arrays get there and back.

With scikit-learn's array API dispatch on, the input ``X`` decides: its
namespace and device (``sklearn.utils._array_api.get_namespace_and_device``).
With it off, inputs are NumPy. ``device=`` of the estimator, when given,
overrides the place of computation; the outputs always go back to the
namespace and device of the validated input.
"""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat

from .. import _backend

__all__ = ["host", "move", "resolve"]


def resolve(device: Any, xp_in: Any, device_in: Any) -> tuple[Any, Any]:
    """``(xp, device)`` to compute on: ``device`` (the estimator's parameter), or else the input's.

    ``device_in`` is ``None`` when dispatch is off (NumPy on the CPU).

    Raises
    ------
    dense_xp.DeviceUnavailableError
        ``device="cuda"`` where CUDA cannot work; the message says why.
    ValueError
        ``device`` is no device dense_xp knows.
    """
    if device is None:
        if device_in is None:
            return _backend.resolve_device("cpu")
        return _backend.resolve_device(device_in, xp=xp_in)
    if isinstance(device, str):
        return _backend.resolve_device(device)
    module = type(device).__module__.split(".")[0]  # a device object: torch.device, cupy's Device...
    try:
        xp = None if module == "cupy" else importlib.import_module(module)
        return _backend.resolve_device(device, xp=xp)
    except (ImportError, TypeError, ValueError) as exc:
        msg = (
            "`device` must be None, 'cpu', 'cuda', 'cuda:N', 'auto' or a device object of an array API "
            f"library, got {type(device).__name__} {device!r} ({exc})"
        )
        raise ValueError(msg) from None


def move(a: Any, xp: Any, device: Any) -> Any:
    """``a`` as an array of ``xp`` on ``device`` (itself when it is one already); ``None`` stays."""
    if a is None:
        return None
    src = array_api_compat.array_namespace(a)
    if src is xp and array_api_compat.device(a) == device:
        return a
    with _backend.on_device(device):
        if src is xp:
            return array_api_compat.to_device(a, device)
        return _backend.from_host(_backend.to_numpy(a), xp=xp, device=device)


def host(a: Any) -> Any:
    """``a`` on the host: array API arrays of other libraries become NumPy arrays; the rest stays."""
    if array_api_compat.is_array_api_obj(a) and not array_api_compat.is_numpy_array(a):
        return _backend.to_numpy(a)
    return a
