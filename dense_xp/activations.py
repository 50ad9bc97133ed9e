"""Activation functions as forward / backward pairs, written against the array API.

Each entry of :data:`ACTIVATIONS` holds

* ``forward(z, *, xp) -> y``: the activation of the pre-activation ``z``;
* ``backward(g, saved, *, xp) -> g * act'(z)``: the upstream gradient times
  the derivative, from what forward cached alone;
* ``saves``: what the layer caches for ``backward`` -- the output ``y``
  wherever the derivative can be written in ``y`` (cheaper than recomputing
  the activation, as a derivative in ``z`` would), else ``z``;
* ``backward_from_input(g, z, *, xp) -> g * act'(z)``: the derivative written
  in ``z``, or ``None``.

:meth:`Activation.backward_for` tells the layer, for one compute dtype, what
to cache and which of the two backward functions to call on it. In float16
and bfloat16 the output is too coarse for a derivative (``sigmoid(10)``
rounds to 1 in float16, so ``y * (1 - y)`` is 0 where ``act'(z)`` is
4.5e-5): there the layer caches ``z`` and calls ``backward_from_input``.

Accuracy: float16 and bfloat16 are computed in float32 and rounded once, so
forward and ``backward_from_input`` are within 1 ulp of the exact values at
the same ``z``; float32 and float64 within a few ulps, except where the
function itself is ill-conditioned (the tails of ``gelu``, where its
exponent is a cubic, and the zeros of the derivatives of ``gelu`` and
``silu``). In float64 ``sigmoid`` is the reference formula
``1 / (1 + exp(-clip(z, -500, 500)))`` and ``relu`` is ``max(0, z)``, bit for
bit.

Every function is a module-level function, so layers pickle. NaN propagates
the same way on every backend and path (generic, NumPy fused, CUDA fused): a
NaN in ``z`` gives NaN in ``y``, and ``backward`` is the IEEE product
``g * act'(z)``, NaN wherever ``z`` or ``g`` is NaN (``relu'`` of NaN is NaN,
not 0). :func:`register_activation` adds activations of one's own.

This module holds the entries (:class:`Activation`), the table and the
lookup and registration of names; the built-in functions themselves live
in ``dense_xp._activation_functions``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._activation_functions import (
    _gelu,
    _gelu_backward,
    _identity,
    _identity_backward,
    _leaky_relu,
    _leaky_relu_backward,
    _relu,
    _relu_backward,
    _relu_backward_from_input,
    _sigmoid,
    _sigmoid_backward,
    _sigmoid_backward_from_input,
    _silu,
    _silu_backward,
    _softplus,
    _softplus_backward,
    _softplus_backward_from_input,
    _tanh,
    _tanh_backward,
    _tanh_backward_from_input,
)
from ._checks import dtype_name
from ._precision import NARROW_DTYPES

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_ACTIVATIONS",
    "NARROW_DTYPES",
    "Activation",
    "Backward",
    "get_activation",
    "register_activation",
]

_SAVES = ("input", "output")


class Backward(NamedTuple):
    """What the layer caches in forward, and the function backward calls on it."""

    saves: str  # "input" (z), "output" (y) or "nothing"
    backward: Callable[..., Any]  # backward(g, saved, *, xp) -> g * act'(z)


class Activation(NamedTuple):
    """A named forward / backward pair (see the module docstring)."""

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    saves: str  # what backward takes: "output" (y), "input" (z) or "nothing"
    backward_from_input: Callable[..., Any] | None = None  # g * act'(z) from z

    def backward_for(self, dtype: Any) -> Backward:
        """What to cache and which backward to call in the compute dtype ``dtype``.

        Parameters
        ----------
        dtype : str or dtype object
            The compute dtype: a name (``"float16"``) or a dtype object of any library.

        Returns
        -------
        Backward
            ``(saves, backward)``: ``("input", backward_from_input)`` for an
            activation that saves its output, in a dtype of
            :data:`NARROW_DTYPES`, where it has a derivative in ``z``;
            ``(saves, backward)`` of the activation everywhere else.
        """
        if (
            self.saves == "output"
            and self.backward_from_input is not None
            and dtype_name(dtype) in NARROW_DTYPES
        ):
            return Backward("input", self.backward_from_input)
        return Backward(self.saves, self.backward)


_TABLE = (
    Activation("linear", _identity, _identity_backward, "nothing"),
    Activation("relu", _relu, _relu_backward, "output", _relu_backward_from_input),
    Activation("sigmoid", _sigmoid, _sigmoid_backward, "output", _sigmoid_backward_from_input),
    Activation("tanh", _tanh, _tanh_backward, "output", _tanh_backward_from_input),
    Activation("leaky_relu", _leaky_relu, _leaky_relu_backward, "output", _leaky_relu_backward),
    Activation("gelu", _gelu, _gelu_backward, "input", _gelu_backward),
    Activation("softplus", _softplus, _softplus_backward, "output", _softplus_backward_from_input),
    Activation("silu", _silu, _silu_backward, "input", _silu_backward),
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
    name: str,
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *,
    saves: str = "input",
    backward_from_input: Callable[..., Any] | None = None,
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
    backward_from_input : callable, optional
        ``backward_from_input(g, z, *, xp) -> g * act'(z)``, the derivative
        in ``z``, for an activation that saves its output: layers computing
        in float16 or bfloat16 cache ``z`` and call it (see
        :meth:`Activation.backward_for`). Without it they call ``backward``
        on the output in every dtype.

    Returns
    -------
    Activation
        The registered entry of :data:`ACTIVATIONS`.

    Raises
    ------
    TypeError
        ``name`` is not a string, or ``forward``/``backward`` (or a given
        ``backward_from_input``) are not callable.
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
    funcs = [("forward", forward), ("backward", backward)]
    if backward_from_input is not None:
        funcs.append(("backward_from_input", backward_from_input))
    for arg, func in funcs:
        if not callable(func):
            msg = f"`{arg}` must be callable, got {type(func).__name__} {func!r}"
            raise TypeError(msg)
    if saves not in _SAVES:
        msg = f"`saves` must be 'input' or 'output', got {saves!r}"
        raise ValueError(msg)
    act = ACTIVATIONS[name] = Activation(name, forward, backward, saves, backward_from_input)
    return act
