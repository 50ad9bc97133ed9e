"""Argument checks shared by the public API: each names the parameter and the value received."""

from __future__ import annotations

import math
import numbers
import operator
import os
import sys
from typing import Any, Literal, overload

__all__ = ["check_int", "check_lr", "check_seed", "check_weight_memory", "resolve_dtype"]

_FLOAT_NAMES = ("float16", "float32", "float64")


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
    """``"float32"`` for ``numpy.float32``, ``torch.float32``, ``xp.float32``..."""
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
