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
    "check_bool",
    "check_int",
    "check_lr",
    "check_seed",
    "check_weight_memory",
    "device_float_names",
    "dtype_name",
    "dtype_policy",
    "resolve_dtype",
]

_FLOAT_NAMES = ("float16", "float32", "float64")  # parameter dtypes: those a checkpoint holds
_COMPUTE_NAMES = ("bfloat16", *_FLOAT_NAMES)  # compute dtypes, narrowest first
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


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a bool (0, 1 and None are refused: a flag is spelled True or False)."""
    if not isinstance(value, bool):
        msg = f"`{name}` must be True or False, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    return value


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
    returned as it is written, for the caller to refuse. Names are remembered
    per dtype object: the hot paths of training ask for them every step.
    """
    key = (type(dtype), dtype)
    try:
        return _NAMES[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable spelling
        return _dtype_name(dtype)
    name = _dtype_name(dtype)
    if len(_NAMES) < 4096:
        _NAMES[key] = name
    return name


_NAMES: dict[tuple[type, Any], str] = {}


def _dtype_name(dtype: Any) -> str:
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


def _float_name(dtype: Any, keyword: str, names: tuple[str, ...]) -> str:
    name = dtype_name(dtype)
    if name not in names:
        msg = (
            f"`{keyword}` must be one of {', '.join(names)} (a name, a scalar type such as numpy.float32, "
            f"or a dtype object of any library), got {dtype!r}"
        )
        raise ValueError(msg)
    return name


def device_float_names(*, xp: Any, device: Any, names: tuple[str, ...] = _FLOAT_NAMES) -> tuple[str, ...]:
    """The floating dtypes of ``names`` that ``xp`` can create on ``device``, narrowest first.

    ``("float32", "float64")`` for array-api-strict's default device. float16
    and bfloat16 are outside the array API standard: they count wherever the
    namespace has them (torch and JAX have both, NumPy and CuPy float16).
    """
    present = [name for name in names if getattr(xp, name, None) is not None]
    try:
        listed = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
    except Exception:  # a namespace without a per-device dtype list: trust the attributes
        return tuple(present)
    return tuple(name for name in present if name in listed or name not in ("float32", "float64"))


def resolve_dtype(
    dtype: Any,
    *,
    xp: Any,
    device: Any,
    keyword: str = "dtype",
    compute: bool = False,
    owner: str | None = None,
) -> Any:
    """The floating dtype object of ``xp`` for ``dtype``, checked against what ``device`` supports.

    ``None`` is the namespace's default real floating dtype on ``device``
    (float32 where the device has no float64). Any spelling that
    :func:`dtype_name` reads is accepted; ``compute=True`` also accepts
    bfloat16. A dtype the device cannot hold (float64 on
    ``array_api_strict.Device("no_float64")``, or in JAX without x64) raises
    ValueError naming ``keyword`` (or, where ``owner`` kept the dtype rather
    than a keyword asking for it, ``owner``) and the dtypes the device has: it
    is never converted silently.
    """
    if dtype is None:
        return xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    names = _COMPUTE_NAMES if compute else _FLOAT_NAMES
    name = _float_name(dtype, keyword, names)
    available = device_float_names(xp=xp, device=device, names=names)
    if name in available:
        return getattr(xp, name)
    namespace = getattr(xp, "__name__", xp)
    what = f"`{keyword}` {name}" if owner is None else f"{owner}'s {keyword} {name}"
    if getattr(xp, name, None) is None:
        where = f"by this array namespace ({namespace})"
    else:
        where = f"on device {device!r} of {namespace}"
    suggest = [n for n in available if n != name and (n != "bfloat16" or compute)]
    if compute and suggest:  # the narrowest other: a compute dtype is narrower than the parameters
        hint = f"pass {keyword}={suggest[0]!r}"
    else:
        hint = f"pass {keyword}={suggest[-1]!r}" if suggest else "use another device"
    if name == "bfloat16" and getattr(xp, name, None) is None:
        hint += ", or use torch or JAX, which have bfloat16"
    if name == "float64" and array_api_compat.is_jax_namespace(xp):
        hint += ', or enable float64 in JAX with jax.config.update("jax_enable_x64", True)'
    msg = (
        f"{what} is not supported {where}: it has {', '.join(available) or 'none'}; {hint} "
        "(nothing is converted silently)"
    )
    raise ValueError(msg)


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
    names of ``owner``, a layer being moved or loaded); an unset
    ``compute_dtype`` is the parameter dtype, or ``keep[1]`` where that
    differs from ``keep[0]``: a mixed-precision layer stays mixed. Each dtype
    must exist on ``device`` (see :func:`resolve_dtype`) and the compute dtype
    may not be wider than the parameter dtype.
    """
    if dtype is not None and (param_dtype is not None or compute_dtype is not None):
        msg = (
            "`dtype` sets both `param_dtype` and `compute_dtype`: pass it alone or those two, got "
            f"dtype={dtype!r}, param_dtype={param_dtype!r}, compute_dtype={compute_dtype!r}"
        )
        raise TypeError(msg)
    if dtype is not None:
        param = resolve_dtype(dtype, xp=xp, device=device)
        return param, param
    if param_dtype is None and keep is not None:
        param = resolve_dtype(keep[0], xp=xp, device=device, owner=owner)
    else:
        param = resolve_dtype(param_dtype, xp=xp, device=device, keyword="param_dtype")
    if compute_dtype is not None:
        compute = resolve_dtype(compute_dtype, xp=xp, device=device, keyword="compute_dtype", compute=True)
    elif keep is not None and keep[1] != keep[0]:
        compute = resolve_dtype(
            keep[1], xp=xp, device=device, keyword="compute_dtype", compute=True, owner=owner
        )
    else:
        return param, param
    if compute != param and xp.finfo(compute).bits >= xp.finfo(param).bits:
        msg = (
            f"`compute_dtype` {dtype_name(compute)} must be narrower than `param_dtype` "
            f"{dtype_name(param)} (or the same): the parameters are the master copy"
        )
        raise ValueError(msg)
    return param, compute
