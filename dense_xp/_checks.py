"""Argument checks shared by the public API: each names the parameter and the value received."""

from __future__ import annotations

import math
import numbers
import operator
import os
import sys
from typing import Any, Literal, overload

import array_api_compat

__all__ = [
    "check_int",
    "check_lr",
    "check_seed",
    "check_weight_memory",
    "device_float_names",
    "dtype_name",
    "resolve_dtype",
]

_FLOAT_NAMES = ("float16", "float32", "float64")
_ALIASES = {
    "half": "float16",
    "f2": "float16",
    "e": "float16",
    "single": "float32",
    "f4": "float32",
    "f": "float32",
    "double": "float64",
    "float": "float64",
    "f8": "float64",
    "d": "float64",
}


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
    value = check_int(seed, name, minimum=0)
    if value >= 2**32:
        msg = f"`{name}` must be None or an integer in [0, 2**32), got {value!r}"
        raise ValueError(msg)
    return value


@overload
def check_lr(lr: Any, name: str = ..., *, allow_none: Literal[False]) -> float: ...
@overload
def check_lr(lr: Any, name: str = ..., *, allow_none: bool = ...) -> float | None: ...
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


def _host_memory() -> tuple[int, str]:
    """``(bytes, description)``: the machine's physical memory, or the address space where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"
    except (AttributeError, ValueError, OSError):
        return sys.maxsize, "what a process can address"


def _bytes(n: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    power = min(max(0, (n.bit_length() - 1) // 10), len(units) - 1)
    return f"{n / 1024**power:.1f} {units[power]}"


def check_weight_memory(input_size: int, output_size: int) -> None:
    """Refuse a weight matrix larger than the host memory, before anything is allocated.

    Weights are drawn on the host in float64, so ``8 * input_size * output_size``
    bytes must fit in the machine's physical memory.
    """
    need = 8 * input_size * output_size
    limit, what = _host_memory()
    if need > limit:
        msg = (
            f"`input_size` x `output_size` = {input_size} x {output_size} weights need {_bytes(need)} "
            f"(float64, drawn on the host), more than {what} ({_bytes(limit)})"
        )
        raise ValueError(msg)


def dtype_name(dtype: Any) -> str:
    """The name of a dtype in any spelling: ``"float32"`` for ``"f4"``, ``numpy.float32``,
    ``numpy.dtype("float32")``, ``torch.float32``, ``jax.numpy.float32``, ``xp.float32``...

    Names are lower-cased and NumPy's aliases and type codes (``"single"``,
    ``"double"``, ``"half"``, ``"float"``, ``"<f8"``...) map to the sized name;
    Python's ``float`` is ``"float64"``, as in NumPy. An unknown spelling is
    returned as it is written, for the caller to refuse.
    """
    if dtype is float:
        return "float64"
    if isinstance(dtype, str):
        text = dtype.strip().lower()
        return _ALIASES.get(text.lstrip("<>=|"), text)
    name = getattr(dtype, "name", None)  # numpy.dtype (also CuPy's and JAX's dtypes)
    if isinstance(name, str):
        return name
    if isinstance(dtype, type):  # scalar types: numpy.float32 (= cupy.float32), jax.numpy.float32
        return str(getattr(dtype, "__name__", dtype))
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32, array_api_strict.float32


def _float_name(dtype: Any) -> str:
    name = dtype_name(dtype)
    if name not in _FLOAT_NAMES:
        msg = (
            f"`dtype` must be one of {', '.join(_FLOAT_NAMES)} (a name, a scalar type such as numpy.float32, "
            f"or a dtype object of any library), got {dtype!r}"
        )
        raise ValueError(msg)
    return name


def device_float_names(*, xp: Any, device: Any) -> tuple[str, ...]:
    """The floating dtypes ``xp`` can create on ``device``, by name (``("float32", "float64")``)."""
    names = [name for name in _FLOAT_NAMES if getattr(xp, name, None) is not None]
    try:
        listed = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
    except Exception:  # a namespace without a per-device dtype list: trust the attributes
        return tuple(names)
    # float16 is outside the array API standard: namespaces that have it do not list it
    return tuple(name for name in names if name in listed or name not in ("float32", "float64"))


def resolve_dtype(dtype: Any, *, xp: Any, device: Any) -> Any:
    """The floating dtype object of ``xp`` for ``dtype``, checked against what ``device`` supports.

    ``None`` is the namespace's default real floating dtype on ``device``
    (float32 where the device has no float64). Any spelling that
    :func:`dtype_name` reads is accepted. A dtype the device cannot hold
    (float64 on ``array_api_strict.Device("no_float64")``, or in JAX without
    x64) raises ValueError: it is never silently downcast.
    """
    info = xp.__array_namespace_info__()
    if dtype is None:
        return info.default_dtypes(device=device)["real floating"]
    name = _float_name(dtype)
    available = device_float_names(xp=xp, device=device)
    if name not in available:
        namespace = getattr(xp, "__name__", xp)
        if getattr(xp, name, None) is None:
            where = f"by this array namespace ({namespace})"
        else:
            where = f"on device {device!r} of {namespace}"
        hint = f"pass dtype={available[-1]!r}" if available else "use another device"
        if name == "float64" and array_api_compat.is_jax_namespace(xp):
            hint += ', or enable float64 in JAX with jax.config.update("jax_enable_x64", True)'
        msg = f"`dtype` {name} is not supported {where}: it has {', '.join(available) or 'none'}; {hint}"
        raise ValueError(msg)
    return getattr(xp, name)
