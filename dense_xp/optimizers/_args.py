"""Argument checks of the optimizers and schedules: each names the parameter and the value received."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["arrays", "betas", "check_keywords", "optional_positive", "real", "suggest"]

# What users of Keras and other libraries type, and the dense_xp (torch.optim) name for it.
_OTHER_NAMES = {
    "learning_rate": "lr",
    "beta_1": "betas",
    "beta_2": "betas",
    "epsilon": "eps",
    "rho": "alpha",
    "clipnorm": "clip_norm",
    "global_clipnorm": "clip_norm",
    "clipvalue": "clip_value",
    "max_norm": "clip_norm",
}


def real(value: Any, name: str, rule: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float, when it is a finite real number satisfying ``ok``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"`{name}` must be a finite number {rule}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    number = float(value)
    if not (math.isfinite(number) and ok(number)):
        msg = f"`{name}` must be a finite number {rule}, got {value!r}"
        raise ValueError(msg)
    return number


def optional_positive(value: Any, name: str) -> float | None:
    """``None``, or ``value`` as a finite float > 0 (a clipping threshold)."""
    return None if value is None else real(value, name, "> 0 (or None)", lambda v: v > 0)


def betas(value: Any) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``, each in [0, 1)."""
    rule = "a pair of numbers (beta1, beta2), each in [0, 1)"
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    if not pair or any(isinstance(b, bool) or not isinstance(b, numbers.Real) for b in value):
        msg = f"`betas` must be {rule}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if not all(0 <= b < 1 for b in value):  # NaN fails too
        msg = f"`betas` must be {rule}, got {value!r}"
        raise ValueError(msg)
    return float(value[0]), float(value[1])


def arrays(values: Any, name: str) -> list[Any]:
    """``values`` as a list, when it is a sequence (a list or tuple of arrays)."""
    if isinstance(values, (Mapping, str)) or not isinstance(values, Sequence):
        msg = f"`{name}` must be a sequence (list or tuple) of arrays, got {type(values).__name__}"
        raise TypeError(msg)
    return list(values)


def suggest(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (difflib), or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


@functools.cache
def _parameters(cls: type) -> tuple[str, ...] | None:
    """The keywords ``cls()`` takes, or ``None`` where its ``__init__`` takes any (``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(name for name in params if name != "self")


def check_keywords(cls: type, kwargs: Mapping[str, Any]) -> None:
    """Refuse a keyword ``cls()`` does not take, naming the one it probably meant.

    Keras spells the learning rate ``learning_rate``; dense_xp spells it
    ``lr``, as ``torch.optim`` does, and says so instead of Python's bare
    "unexpected keyword argument".
    """
    known = _parameters(cls)
    if known is None:
        return
    for name in kwargs:
        if name in known:
            continue
        other = _OTHER_NAMES.get(name)
        if other in known:
            hint = f"; did you mean `{other}`? (dense_xp uses torch.optim's names)"
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else f"; it takes {', '.join(known)}"
        msg = f"{cls.__name__}() got an unexpected keyword argument {name!r}{hint}"
        raise TypeError(msg)
