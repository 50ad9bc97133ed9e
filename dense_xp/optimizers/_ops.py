"""In-place-where-possible arithmetic of the updates."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["add", "div", "mul", "sub"]

Op = Callable[[Any, Any, bool], Any]


def _maybe_inplace(name: str) -> Op:
    """``f(a, b, inplace)``: ``a <op>= b`` (returning ``a``) when ``inplace``, else ``a <op> b``."""
    iop, op = getattr(operator, "i" + name), getattr(operator, name)
    return lambda a, b, inplace: iop(a, b) if inplace else op(a, b)


add, sub, mul, div = (_maybe_inplace(name) for name in ("add", "sub", "mul", "truediv"))
