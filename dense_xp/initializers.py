"""Weight initializers, drawn on the host from the layer's seed.

Every initializer draws float64 values from a private legacy NumPy generator
(``dense_xp`` never touches NumPy's global random state); the layer then casts
and moves them, so one seed gives the same weights on every library and device.
``"seed"`` (the default) is ``0.01 * randn(fan_in, fan_out)``, bit for bit what
``np.random.seed(seed); np.random.randn(fan_in, fan_out) * 0.01`` gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["INITIALIZERS", "draw"]


def _normal(scale: Callable[[int, int], float]) -> Callable[..., Any]:
    return lambda rng, fan_in, fan_out: rng.randn(fan_in, fan_out) * scale(fan_in, fan_out)


def _uniform(limit: Callable[[int, int], float]) -> Callable[..., Any]:
    def draw_uniform(rng: Any, fan_in: int, fan_out: int) -> Any:
        bound = limit(fan_in, fan_out)
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))

    return draw_uniform


INITIALIZERS: dict[str, Callable[..., Any]] = {
    "seed": _normal(lambda i, o: 0.01),
    "glorot_uniform": _uniform(lambda i, o: math.sqrt(6.0 / (i + o))),
    "glorot_normal": _normal(lambda i, o: math.sqrt(2.0 / (i + o))),
    "he_normal": _normal(lambda i, o: math.sqrt(2.0 / i)),
    "he_uniform": _uniform(lambda i, o: math.sqrt(6.0 / i)),
    "lecun_normal": _normal(lambda i, o: math.sqrt(1.0 / i)),
    "zeros": _uniform(lambda i, o: 0.0),
}


def draw(init: str, rng: Any, fan_in: int, fan_out: int) -> Any:
    """A ``(fan_in, fan_out)`` float64 host array drawn by initializer ``init``.

    Raises
    ------
    TypeError, ValueError
        ``init`` is not a string, or names no known initializer.
    """
    if not isinstance(init, str):
        msg = f"`init` must be a string, got {type(init).__name__} {init!r}"
        raise TypeError(msg)
    try:
        initializer = INITIALIZERS[init]
    except KeyError:
        msg = f"`init` must be one of {', '.join(map(repr, INITIALIZERS))}; got {init!r}"
        raise ValueError(msg) from None
    return initializer(rng, fan_in, fan_out)
