"""What every loss and metric does first: targets checked against outputs, moved and shaped.

The loss classes of :mod:`dense_xp.losses` and the metrics of
:mod:`dense_xp._metrics` share these: the namespace and device of the outputs,
targets on that device in the outputs' dtype, ``(n,)`` read as ``(n, 1)``,
class labels checked without a device read, and an argmax that works where a
device lacks its index dtype.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _backend
from ._checks import dtype_name

__all__ = [
    "argmax_rows",
    "check_labels",
    "device_of",
    "host_or_device",
    "min_max",
    "prepare",
    "same_shape",
    "shape",
]


def shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def device_of(y_pred: Any) -> Any:
    """``y_pred``'s device (``None`` for what is not an array: :func:`prepare` refuses it)."""
    return array_api_compat.device(y_pred) if array_api_compat.is_array_api_obj(y_pred) else None


def prepare(y_pred: Any, y_true: Any, *, cast: bool, xp: Any = None) -> tuple[Any, Any]:
    """``(xp, y_true)`` with ``y_true`` on ``y_pred``'s device, in ``y_pred``'s dtype if ``cast``.

    ``xp`` given (a bound loss, see :meth:`Loss.bind`) skips the namespace
    lookup; ``y_pred`` must then be a 2-d floating array of ``xp``.
    """
    if xp is None:
        xp = array_api_compat.array_namespace(y_pred)
    if y_pred.ndim != 2 or not xp.isdtype(y_pred.dtype, "real floating"):
        got = f"{dtype_name(y_pred.dtype)} {shape(y_pred)}"
        msg = f"`y_pred` must be a real floating array of shape (n, k), got {got}"
        raise ValueError(msg)
    dev = array_api_compat.device(y_pred)
    dtype = y_pred.dtype if cast else None
    return xp, _backend.as_input(y_true, name="y_true", xp=xp, device=dev, dtype=dtype)


def same_shape(y_pred: Any, y_true: Any, *, xp: Any) -> Any:
    """``y_true`` with ``y_pred``'s shape; ``(n,)`` is taken as ``(n, 1)`` when ``k == 1``."""
    n, k = shape(y_pred)
    if shape(y_true) == (n, k):
        return y_true
    if k == 1 and shape(y_true) == (n,):
        return xp.reshape(y_true, (n, 1))
    also = f" or ({n},)" if k == 1 else ""
    msg = f"`y_true` must have y_pred's shape ({n}, {k}){also}, got shape {shape(y_true)}"
    raise ValueError(msg)


def host_or_device(y: Any) -> tuple[Any, Any]:
    """``(xp, y)``: an array stays where it is, other data becomes a host array."""
    if array_api_compat.is_array_api_obj(y):
        xp, dev = array_api_compat.array_namespace(y), array_api_compat.device(y)
    else:
        xp, dev = _backend.resolve_device("cpu")
    return xp, _backend.as_input(y, name="y", xp=xp, device=dev)


def min_max(y: Any, *, xp: Any) -> tuple[float, float]:
    """The smallest and largest value of ``y``, read with one transfer (NaN if any is NaN)."""
    both = _backend.to_numpy(xp.stack([xp.min(y), xp.max(y)]))
    return float(both[0]), float(both[1])


def check_labels(t: Any, n: int, k: int, *, xp: Any) -> None:
    """Cheap checks of class indices ``t`` (no device sync)."""
    if shape(t) != (n,):
        msg = f"`y_true` must be class indices of shape ({n},) or one-hot rows ({n}, {k}), got {shape(t)}"
        raise ValueError(msg)
    if not xp.isdtype(t.dtype, "integral"):
        msg = f"`y_true` as class indices of shape ({n},) must hold integers, got dtype {dtype_name(t.dtype)}"
        raise TypeError(msg)


def argmax_rows(x: Any, *, xp: Any) -> Any:
    """``argmax(x, axis=1)``; where the library's argmax fails for lack of its index dtype on the
    device (array-api-strict's ``no_x64``), the first maximum by comparison instead."""
    try:
        return xp.argmax(x, axis=1)
    except ValueError:
        dev = array_api_compat.device(x)
        index = xp.__array_namespace_info__().default_dtypes(device=dev)["indexing"]
        k = x.shape[1]
        first = xp.where(x == xp.max(x, axis=1, keepdims=True), xp.arange(k, dtype=index, device=dev), k)
        return xp.min(first, axis=1)
