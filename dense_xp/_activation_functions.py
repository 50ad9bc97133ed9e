"""The built-in activations' functions: forward, backward and the derivative in ``z`` of each.

Written against the array API (``xp``), one module-level function each, so
the entries of :data:`dense_xp.activations.ACTIVATIONS` that hold them
pickle by name. A backward function takes the upstream gradient ``g`` and
what forward cached (``y`` or ``z``, see ``Activation.saves``) and returns
``g * act'(z)``; 16-bit inputs are computed in float32 (``in_float32``).
:mod:`dense_xp.activations` states their accuracy and how NaN propagates.
"""

from __future__ import annotations

from typing import Any

from ._checks import dtype_name
from ._precision import GELU_K1, GELU_K2, GELU_K3, in_float32, logistic

_LEAK = 0.01  # the slope of leaky_relu below 0
# |z| past which gelu' is exactly 0 or 1 in every dtype: z is clipped there, so z**2 stays finite
_GELU_SATURATED = 1e6


def _identity(z: Any, *, xp: Any) -> Any:
    return z


def _identity_backward(g: Any, _: Any, *, xp: Any) -> Any:
    return g


def _relu(z: Any, *, xp: Any) -> Any:
    return xp.where(z < 0, 0.0, z)  # NaN is not < 0: it stays NaN


def _relu_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * xp.sign(y)  # y >= 0, so sign(y) is relu'(z): 1, 0, or NaN for NaN


def _relu_backward_from_input(g: Any, z: Any, *, xp: Any) -> Any:
    return _relu_backward(g, _relu(z, xp=xp), xp=xp)


@in_float32
def _sigmoid(z: Any, *, xp: Any) -> Any:
    if dtype_name(z.dtype) == "float64":  # the reference layer's formula, bit for bit
        return 1.0 / (1.0 + xp.exp(-xp.clip(z, -500.0, 500.0)))
    e, _, d = logistic(z, xp)
    return e / d


@in_float32
def _sigmoid_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * (y * (1.0 - y))


@in_float32
def _sigmoid_backward_from_input(g: Any, z: Any, *, xp: Any) -> Any:
    e, f, d = logistic(z, xp)
    return g * ((e * f / d) / d)


@in_float32
def _tanh(z: Any, *, xp: Any) -> Any:
    return xp.tanh(z)


@in_float32
def _tanh_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * ((1.0 - y) * (1.0 + y))  # 1 - y*y would cancel: y*y is rounded near 1


@in_float32
def _tanh_backward_from_input(g: Any, z: Any, *, xp: Any) -> Any:
    t = xp.exp(-2.0 * xp.abs(z))  # 1 - tanh(z)**2 = 4 t / (1 + t)**2: no cancellation
    return g * ((4.0 * t / (1.0 + t)) / (1.0 + t))


def _leaky_relu(z: Any, *, xp: Any) -> Any:
    return xp.where(z > 0, z, _LEAK * z)


def _leaky_relu_backward(g: Any, y: Any, *, xp: Any) -> Any:
    # y > 0 exactly where z > 0: the same function takes y or z
    return xp.where(y > 0, g, xp.where(y <= 0, _LEAK * g, y))  # NaN in y: NaN out


@in_float32
def _gelu(z: Any, *, xp: Any) -> Any:
    # 0.5 z (1 + tanh(u)) = z sigmoid(2u): no cancellation in 1 + tanh(u) for z < 0
    e, _, d = logistic(z * (GELU_K1 + GELU_K2 * (z * z)), xp)
    return z * (e / d)


@in_float32
def _gelu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    z = xp.clip(z, -_GELU_SATURATED, _GELU_SATURATED)
    z2 = z * z
    e, f, d = logistic(z * (GELU_K1 + GELU_K2 * z2), xp)
    return g * (e / d + z * (GELU_K1 + GELU_K3 * z2) * ((e * f / d) / d))


@in_float32
def _softplus(z: Any, *, xp: Any) -> Any:
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): never overflows.
    return xp.where(z > 0, z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


@in_float32
def _softplus_backward(g: Any, y: Any, *, xp: Any) -> Any:
    return g * -xp.expm1(-y)  # softplus' = sigmoid = 1 - exp(-softplus): the derivative from the output


@in_float32
def _softplus_backward_from_input(g: Any, z: Any, *, xp: Any) -> Any:
    e, _, d = logistic(z, xp)
    return g * (e / d)


@in_float32
def _silu(z: Any, *, xp: Any) -> Any:
    e, _, d = logistic(z, xp)
    return z * (e / d)


@in_float32
def _silu_backward(g: Any, z: Any, *, xp: Any) -> Any:
    e, f, d = logistic(z, xp)
    return g * ((e / d) * (1.0 + z * (f / d)))
