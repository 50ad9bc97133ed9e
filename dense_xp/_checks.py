"""Argument checks shared by the public API: each names the parameter and the value received."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = [
    "check_int",
    "check_lr",
    "check_seed",
    "device_dtypes",
    "dtype_policy",
    "resolve_compute_dtype",
    "resolve_dtype",
]

_FLOAT_NAMES = ("float16", "float32", "float64")
_COMPUTE_NAMES = ("bfloat16", *_FLOAT_NAMES)  # narrowest first


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"`{name}` must be an integer >= {minimum}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return operator.index(value)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """``None`` or an int in ``[0, 2**32)``, the range NumPy's legacy generator takes."""
    if seed is None:
        return None
    seed = check_int(seed, name, minimum=0)
    if seed >= 2**32:
        msg = f"`{name}` must be None or an integer in [0, 2**32), got {seed!r}"
        raise ValueError(msg)
    return seed


def check_lr(lr: Any, name: str = "lr", *, allow_none: bool = True) -> float | None:
    """A finite, non-negative learning rate (or ``None`` where allowed)."""
    if type(lr) is float and 0.0 <= lr < math.inf:  # the common case, checked cheaply
        return lr
    if lr is None and allow_none:
        return None
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        msg = f"`{name}` must be a finite number >= 0, got {type(lr).__name__} {lr!r}"
        raise TypeError(msg)
    if not math.isfinite(lr) or lr < 0:
        msg = f"`{name}` must be a finite number >= 0, got {lr!r}"
        raise ValueError(msg)
    return float(lr)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``numpy.float32``, ``torch.float32``, ``xp.float32``..."""
    if isinstance(dtype, type):  # NumPy's scalar types, such as numpy.float32 itself
        return dtype.__name__
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]


def resolve_dtype(dtype: Any, *, xp: Any, device: Any) -> Any:
    """The floating dtype object of ``xp`` for ``dtype``.

    ``None`` is the namespace's default real floating dtype on ``device``;
    a name (``"float32"``) or a dtype object of any library maps by name.
    """
    if dtype is None:
        return xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name not in _FLOAT_NAMES:
        msg = f"`dtype` must be one of {', '.join(_FLOAT_NAMES)} (or a dtype object), got {dtype!r}"
        raise ValueError(msg)
    resolved = getattr(xp, name, None)
    if resolved is None:
        msg = f"`dtype` {name} is not supported by this array namespace ({getattr(xp, '__name__', xp)})"
        raise ValueError(msg)
    return resolved


def device_dtypes(xp: Any, device: Any) -> dict[str, Any]:
    """The floating dtypes ``xp`` has on ``device``, by name, narrowest first.

    The array API lists float32 and float64 per device; float16 and bfloat16,
    outside the standard, count where the namespace has them.
    """
    listed = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
    extra = {name: getattr(xp, name, None) for name in ("bfloat16", "float16")}
    found = {name: dtype for name, dtype in extra.items() if dtype is not None} | dict(listed)
    return {name: found[name] for name in _COMPUTE_NAMES if name in found}


def _on_device(dtype: Any, keyword: str, *, xp: Any, device: Any, owner: str | None = None) -> None:
    """Refuse a dtype ``device`` lacks, naming the dtypes it has and the keyword that asks for another.

    ``owner`` ("the layer"...) says the dtype was kept, not asked for.
    """
    has = device_dtypes(xp, device)
    name = dtype_name(dtype)
    if name in has:
        return
    what = f"`{keyword}` {name}" if owner is None else f"{owner}'s {keyword} {name}"
    widest = [n for n in has if n in _FLOAT_NAMES][-1]
    msg = (
        f"{what} is not available on device {device!r} of {getattr(xp, '__name__', xp)}, which has "
        f"{', '.join(has)}; nothing is converted silently: ask for one with {keyword}={widest!r}"
    )
    raise ValueError(msg)


def resolve_compute_dtype(compute_dtype: Any, *, xp: Any, device: Any) -> Any:
    """The floating dtype object of ``xp`` for a compute dtype: a float name, or ``"bfloat16"``.

    bfloat16 exists in torch and JAX; NumPy, CuPy and array-api-strict have none.
    """
    name = compute_dtype if isinstance(compute_dtype, str) else dtype_name(compute_dtype)
    if name not in _COMPUTE_NAMES:
        msg = (
            f"`compute_dtype` must be one of {', '.join(_COMPUTE_NAMES)} (or a dtype object), "
            f"got {compute_dtype!r}"
        )
        raise ValueError(msg)
    resolved = getattr(xp, name, None)
    if resolved is None:
        where = "torch and JAX have it; " if name == "bfloat16" else ""
        other = next(n for n in ("float16", "float32") if n != name and getattr(xp, n, None) is not None)
        msg = (
            f"`compute_dtype` {name} is not a dtype of {getattr(xp, '__name__', xp)} ({where}"
            f"ask for one it has, such as compute_dtype={other!r})"
        )
        raise ValueError(msg)
    return resolved


def dtype_policy(
    dtype: Any,
    param_dtype: Any,
    compute_dtype: Any,
    *,
    xp: Any,
    device: Any,
    keep: tuple[str, str] | None = None,
    owner: str = "the layer",
) -> tuple[Any, Any]:
    """``(param dtype, compute dtype)`` objects of ``xp`` on ``device`` from the three dtype keywords.

    ``dtype`` sets both and goes alone. An unset ``param_dtype`` is the
    namespace's default floating dtype on ``device``, or ``keep[0]`` (the
    names of ``owner``, a layer being moved or loaded); an unset ``compute_dtype`` is the
    parameter dtype, or ``keep[1]`` where that differs from ``keep[0]``: a
    mixed-precision layer stays mixed. Each dtype must exist on ``device``
    (never converted silently) and the compute dtype may not be wider than
    the parameter dtype.
    """
    if dtype is not None and (param_dtype is not None or compute_dtype is not None):
        msg = (
            "`dtype` sets both `param_dtype` and `compute_dtype`: pass it alone or those two, got "
            f"dtype={dtype!r}, param_dtype={param_dtype!r}, compute_dtype={compute_dtype!r}"
        )
        raise TypeError(msg)
    keyword = "dtype" if dtype is not None or param_dtype is None else "param_dtype"
    if dtype is not None:
        param_dtype = compute_dtype = dtype
    kept = param_dtype is None and keep is not None
    try:
        param = resolve_dtype(keep[0] if kept else param_dtype, xp=xp, device=device)  # type: ignore[index]
    except ValueError as exc:  # name the keyword that was used, or whose dtype was kept
        if kept:
            raise ValueError(f"{exc}; it is {owner}'s dtype: ask for another with dtype='float32'") from None
        raise ValueError(str(exc).replace("`dtype`", f"`{keyword}`", 1)) from None
    _on_device(param, keyword, xp=xp, device=device, owner=owner if kept else None)
    if compute_dtype is None and keep is not None and keep[1] != keep[0]:
        compute = resolve_compute_dtype(keep[1], xp=xp, device=device)
        _on_device(compute, "compute_dtype", xp=xp, device=device, owner=owner)
    elif compute_dtype is None or dtype is not None:
        return param, param
    else:
        compute = resolve_compute_dtype(compute_dtype, xp=xp, device=device)
        _on_device(compute, "compute_dtype", xp=xp, device=device)
    if compute != param and xp.finfo(compute).bits >= xp.finfo(param).bits:
        msg = (
            f"`compute_dtype` {dtype_name(compute)} must be narrower than `param_dtype` "
            f"{dtype_name(param)} (or the same): the parameters are the master copy"
        )
        raise ValueError(msg)
    return param, compute
