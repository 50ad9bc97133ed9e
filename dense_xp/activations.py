"""Activation functions as forward / backward pairs, written against the array API.

Each entry of :data:`ACTIVATIONS` holds

* ``forward(z, *, xp) -> y``: the activation of the pre-activation ``z``;
* ``backward(g, saved, *, xp) -> g * act'(z)``: the upstream gradient times
  the derivative, from what forward cached alone;
* ``saves``: what the layer caches for ``backward`` -- the output ``y``
  wherever the derivative can be written in ``y`` (cheaper than recomputing
  the activation, as a derivative in ``z`` would), else ``z``.

Every function is a module-level function, so layers pickle. NaN propagates
the same way on every backend and path (generic, NumPy fused, CUDA fused): a
NaN in ``z`` gives NaN in ``y``, and ``backward`` is the IEEE product
``g * act'(z)``, NaN wherever ``z`` or ``g`` is NaN (``relu'`` of NaN is NaN,
not 0). :func:`register_activation` adds activations of one's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["ACTIVATIONS", "BUILTIN_ACTIVATIONS", "Activation", "get_activation", "register_activation"]

_LEAK = 0.01
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_SAVES = ("input", "output")


class Activation(NamedTuple):
    """A named forward / backward pair (see the module docstring)."""

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    saves: str  # what backward takes: "output" (y), "input" (z) or "nothing"


def _identity(z: Any, *, xp: Any) -> Any:
    return z


def _identity_backward(g: Any, _: Any, *, xp: Any) -> Any:
    return g


def _relu(z: Any, *, xp: Any) -> Any:
    return xp.where(z < 0, 0.0, z)  # NaN is not < 0: it stays NaN


def _relu_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * xp.sign(y)  # y >= 0, so sign(y) is relu'(z): 1, 0, or NaN for NaN


def _sigmoid(z: Any, *, xp: Any) -> Any:
    # 1 / (1 + exp(-z)) as in the reference, with z clipped where exp(-z)
    # would overflow the dtype (|z| <= 500 in float64, as the reference clips).
    bound = min(500.0, math.floor(math.log(xp.finfo(z.dtype).max)) - 1.0)
    return 1.0 / (1.0 + xp.exp(-xp.clip(z, -bound, bound)))


def _sigmoid_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * (y * (1.0 - y))


def _tanh(z: Any, *, xp: Any) -> Any:
    return xp.tanh(z)


def _tanh_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * (1.0 - y * y)


def _leaky_relu(z: Any, *, xp: Any) -> Any:
    return xp.where(z > 0, z, _LEAK * z)


def _leaky_relu_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return xp.where(y > 0, g, xp.where(y <= 0, _LEAK * g, y))  # NaN in y: NaN out


def _gelu_tanh(z: Any, *, xp: Any) -> Any:
    return xp.tanh(_GELU_C * (z + _GELU_A * z * z * z))


def _gelu(z: Any, *, xp: Any) -> Any:
    return 0.5 * z * (1.0 + _gelu_tanh(z, xp=xp))


def _gelu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    t = _gelu_tanh(z, xp=xp)
    du = _GELU_C * (1.0 + 3.0 * _GELU_A * z * z)
    return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du)


def _softplus(z: Any, *, xp: Any) -> Any:
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): never overflows.
    return xp.where(z > 0, z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def _softplus_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * -xp.expm1(-y)  # softplus' = sigmoid = 1 - exp(-softplus): the derivative from the output


def _silu(z: Any, *, xp: Any) -> Any:
    return z * _sigmoid(z, xp=xp)


def _silu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    s = _sigmoid(z, xp=xp)
    return g * (s * (1.0 + z * (1.0 - s)))


_TABLE = (
    Activation("linear", _identity, _identity_backward, "nothing"),
    Activation("relu", _relu, _relu_backward, "output"),
    Activation("sigmoid", _sigmoid, _sigmoid_backward, "output"),
    Activation("tanh", _tanh, _tanh_backward, "output"),
    Activation("leaky_relu", _leaky_relu, _leaky_relu_backward, "output"),
    Activation("gelu", _gelu, _gelu_backward, "input"),
    Activation("softplus", _softplus, _softplus_backward, "output"),
    Activation("silu", _silu, _silu_backward, "input"),
)
ACTIVATIONS: dict[str | None, Activation] = {act.name: act for act in _TABLE}
ACTIVATIONS[None] = ACTIVATIONS["linear"]
BUILTIN_ACTIVATIONS = frozenset(act.name for act in _TABLE)


def get_activation(activation: str | None) -> Activation:
    """Look up an activation by name (``None`` is ``"linear"``).

    Raises
    ------
    TypeError
        ``activation`` is neither a string nor ``None``.
    ValueError
        ``activation`` names no built-in or registered activation; the message lists them.
    """
    if activation is not None and not isinstance(activation, str):
        msg = f"`activation` must be a string or None, got {type(activation).__name__} {activation!r}"
        raise TypeError(msg)
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        builtin = ", ".join(repr(k) for k in ACTIVATIONS if k in BUILTIN_ACTIVATIONS)
        custom = sorted(k for k in ACTIVATIONS if k is not None and k not in BUILTIN_ACTIVATIONS)
        msg = (
            f"`activation` names activation {activation!r}: it is not registered in this process "
            f"(built-in: {builtin}; registered: {custom or 'none'}); call "
            f"dense_xp.register_activation({activation!r}, forward, backward) first"
        )
        raise ValueError(msg) from None


def register_activation(
    name: str, forward: Callable[..., Any], backward: Callable[..., Any], *, saves: str = "input"
) -> Activation:
    """Make a custom activation usable by name in ``DenseLayer``, checkpoints and pickles.

    Parameters
    ----------
    name : str
        The name layers use (``DenseLayer(4, 3, name)``). It must not be a
        built-in name; registering a custom name again replaces it (layers
        built before keep the functions they were built with).
    forward : callable
        ``forward(z, *, xp) -> y``, elementwise on the ``(n, output_size)``
        pre-activation ``z``, written against the array namespace ``xp``.
    backward : callable
        ``backward(g, saved, *, xp) -> g * act'(z)``: the upstream gradient
        ``g`` (shape ``(n, output_size)``) times the derivative, computed from
        ``saved`` alone.
    saves : {"input", "output"}, default "input"
        What ``backward`` receives as ``saved``: ``z`` or the output ``y``.

    Returns
    -------
    Activation
        The registered entry of :data:`ACTIVATIONS`.

    Raises
    ------
    TypeError
        ``name`` is not a string, or ``forward``/``backward`` are not callable.
    ValueError
        ``name`` is empty or a built-in name, or ``saves`` is neither value.

    Notes
    -----
    Layers, checkpoints and pickles store the name only: register it in
    every process that builds, loads or unpickles such a layer.
    :func:`dense_xp.testing.check_gradients` checks ``backward`` against
    ``forward``.

    Examples
    --------
    >>> import dense_xp
    >>> def cube(z, *, xp):
    ...     return z * z * z
    >>> def cube_backward(g, z, *, xp):
    ...     return g * 3.0 * z * z
    >>> _ = dense_xp.register_activation("cube", cube, cube_backward, saves="input")
    >>> dense_xp.DenseLayer(2, 3, "cube").forward([[1.0, 2.0]]).shape
    (1, 3)
    """
    if not isinstance(name, str):
        msg = f"`name` must be a string, got {type(name).__name__} {name!r}"
        raise TypeError(msg)
    if not name.strip() or name in BUILTIN_ACTIVATIONS:
        msg = (
            f"`name` must be a new, non-empty name, not a built-in activation ({sorted(BUILTIN_ACTIVATIONS)})"
        )
        raise ValueError(f"{msg}; got {name!r}")
    for arg, func in (("forward", forward), ("backward", backward)):
        if not callable(func):
            msg = f"`{arg}` must be callable, got {type(func).__name__} {func!r}"
            raise TypeError(msg)
    if saves not in _SAVES:
        msg = f"`saves` must be 'input' or 'output', got {saves!r}"
        raise ValueError(msg)
    act = ACTIVATIONS[name] = Activation(name, forward, backward, saves)
    return act
