"""Evaluation helpers of the activations: 16-bit dtypes computed in float32, an overflow-free logistic,
and gelu's constants."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from ._checks import dtype_name

__all__ = ["GELU_K1", "GELU_K2", "GELU_K3", "NARROW_DTYPES", "in_float32", "logistic"]

NARROW_DTYPES = frozenset({"float16", "bfloat16"})
"""Compute dtypes evaluated in float32 and rounded once, whose layers cache ``z`` for backward."""

# gelu (tanh approximation): 0.5 z (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z**3), is z * sigmoid(2u)
# with 2u = z * (K1 + K2 * z**2); its derivative has 2u' = K1 + K3 * z**2.
GELU_K1 = 2.0 * math.sqrt(2.0 / math.pi)
GELU_K2 = GELU_K1 * 0.044715
GELU_K3 = 3.0 * GELU_K2


def in_float32(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` of arrays of one dtype, computed in float32 and rounded once for a 16-bit dtype."""

    @functools.wraps(func)
    def wrapper(*arrays: Any, xp: Any) -> Any:
        dtype = arrays[0].dtype
        if dtype_name(dtype) not in NARROW_DTYPES:
            return func(*arrays, xp=xp)
        return xp.astype(func(*(xp.astype(a, xp.float32) for a in arrays), xp=xp), dtype)

    return wrapper


def logistic(z: Any, xp: Any) -> tuple[Any, Any, Any]:
    """``(e, f, d)`` with ``sigmoid(z) = e / d``, ``sigmoid(-z) = f / d`` and ``sigmoid'(z) = (e*f / d) / d``.

    ``e = exp(min(z, 0))`` and ``f = exp(-max(z, 0))``: one is ``t = exp(-|z|)``
    and the other 1, so no exponential overflows and ``e * f`` is ``t``
    exactly; ``d = 1 + t``. (``xp.where`` would select the same, several times
    slower in NumPy.)
    """
    e, f = xp.exp(xp.clip(z, max=0.0)), xp.exp(-xp.clip(z, min=0.0))
    return e, f, 1.0 + e * f
