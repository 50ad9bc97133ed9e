"""Activation functions as forward / backward pairs, written against the array API.

Each entry of :data:`ACTIVATIONS` holds

* ``forward(z, *, xp) -> y``: the activation of the pre-activation ``z``;
* ``backward(g, saved, *, xp) -> g * act'(z)``: the upstream gradient times
  the derivative, from what forward cached alone;
* ``saves``: what the layer caches for ``backward`` -- the output ``y``
  wherever the derivative can be written in ``y`` (cheaper than recomputing
  the activation, as a derivative in ``z`` would), else ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]

_LEAK = 0.01
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


class Activation(NamedTuple):
    """A named forward / backward pair (see the module docstring)."""

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    saves: str  # what backward takes: "output" (y), "input" (z) or "nothing"


def _sigmoid(z: Any, *, xp: Any) -> Any:
    # 1 / (1 + exp(-z)) as in the reference, with z clipped where exp(-z)
    # would overflow the dtype (|z| <= 500 in float64, as the reference clips).
    bound = min(500.0, math.floor(math.log(xp.finfo(z.dtype).max)) - 1.0)
    return 1.0 / (1.0 + xp.exp(-xp.clip(z, -bound, bound)))


def _softplus(z: Any, *, xp: Any) -> Any:
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): never overflows.
    return xp.where(z > 0, z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def _gelu_tanh(z: Any, *, xp: Any) -> Any:
    return xp.tanh(_GELU_C * (z + _GELU_A * z * z * z))


def _gelu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    t = _gelu_tanh(z, xp=xp)
    du = _GELU_C * (1.0 + 3.0 * _GELU_A * z * z)
    return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du)


def _silu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    s = _sigmoid(z, xp=xp)
    return g * (s * (1.0 + z * (1.0 - s)))


_TABLE = (
    Activation("linear", lambda z, *, xp: z, lambda g, _, *, xp: g, "nothing"),
    Activation(
        "relu",
        lambda z, *, xp: xp.where(z > 0, z, 0.0),
        lambda g, y, *, xp: xp.where(y > 0, g, 0.0),
        "output",
    ),
    Activation("sigmoid", _sigmoid, lambda g, y, *, xp: g * (y * (1.0 - y)), "output"),
    Activation("tanh", lambda z, *, xp: xp.tanh(z), lambda g, y, *, xp: g * (1.0 - y * y), "output"),
    Activation(
        "leaky_relu",
        lambda z, *, xp: xp.where(z > 0, z, _LEAK * z),
        lambda g, y, *, xp: xp.where(y > 0, g, _LEAK * g),
        "output",
    ),
    Activation("gelu", lambda z, *, xp: 0.5 * z * (1.0 + _gelu_tanh(z, xp=xp)), _gelu_backward, "input"),
    # softplus' = sigmoid = 1 - exp(-softplus): the derivative from the output
    Activation("softplus", _softplus, lambda g, y, *, xp: g * -xp.expm1(-y), "output"),
    Activation("silu", lambda z, *, xp: z * _sigmoid(z, xp=xp), _silu_backward, "input"),
)
ACTIVATIONS: dict[str | None, Activation] = {act.name: act for act in _TABLE}
ACTIVATIONS[None] = ACTIVATIONS["linear"]


def get_activation(activation: str | None) -> Activation:
    """Look up an activation by name (``None`` is ``"linear"``).

    Raises
    ------
    TypeError
        ``activation`` is neither a string nor ``None``.
    ValueError
        ``activation`` names no known activation; the message lists them.
    """
    if activation is not None and not isinstance(activation, str):
        msg = f"`activation` must be a string or None, got {type(activation).__name__} {activation!r}"
        raise TypeError(msg)
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        valid = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
        msg = f"`activation` must be None or one of {valid}; got {activation!r}"
        raise ValueError(msg) from None
