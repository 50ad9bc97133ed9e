"""Fused elementwise kernels for the layer's hot path, per library.

``forward(z, b, name)`` applies bias and activation, overwriting ``z`` where
the derivative only needs the output, and returns ``(z_after_bias, y)``;
``backward(g, saved, name)`` returns ``g * act'(z)`` as a new array. Either
returns ``None`` for an activation it does not fuse, and the layer then runs
the generic array API code of :mod:`dense_xp.activations`, which is also the
reference these kernels are tested against. The library module is handed in by
:func:`dense_xp._backend.fused_ops`, the one place that knows NumPy from CuPy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .activations import ACTIVATIONS

__all__ = ["CUDA_BODIES", "CupyOps", "NumpyOps", "kernel_spec"]


class NumpyOps:
    """NumPy ufunc chains with ``out=``: fewer passes over memory and no temporaries."""

    def __init__(self, np: Any) -> None:
        self.np = np

    def forward(self, z: Any, b: Any, name: str | None) -> tuple[Any, Any] | None:
        np, act = self.np, ACTIVATIONS[name]
        if act.name not in ("linear", "relu", "sigmoid", "tanh"):
            return None
        if b is not None:
            np.add(z, b, out=z)
        if act.name == "relu":
            np.maximum(z, 0, out=z)
        elif act.name == "tanh":
            np.tanh(z, out=z)
        elif act.name == "sigmoid":
            bound = min(500.0, math.floor(math.log(np.finfo(z.dtype).max)) - 1.0)
            np.clip(z, -bound, bound, out=z)
            np.negative(z, out=z)
            np.exp(z, out=z)
            z += 1
            np.reciprocal(z, out=z)
        return z, z

    def backward(self, g: Any, saved: Any, name: str | None) -> Any:
        np, act = self.np, ACTIVATIONS[name]
        if act.name == "relu":
            dz = np.sign(saved, out=np.empty_like(g))  # relu'(z) from y >= 0: 1, 0, or NaN for NaN
        elif act.name == "sigmoid":
            dz = np.subtract(1, saved, out=np.empty_like(g))
            dz *= saved
        elif act.name == "tanh":
            dz = np.multiply(saved, saved, out=np.empty_like(g))
            np.subtract(1, dz, out=dz)
        else:
            return None
        dz *= g
        return dz


# CUDA C bodies: forward reads ``v`` (z + b) and writes ``r``; backward reads
# ``gv`` (upstream gradient) and ``sv`` (what forward saved) and writes ``r``.
# ``A`` is the accumulation type (double for float64, float otherwise) and
# ``B`` the bound that keeps exp() finite in it. NaN propagates as in the
# array API code (see dense_xp.activations): comparisons pass NaN through,
# where fmax/fmin (and ``v > 0 ? v : 0``) would map it to a number.
_SIGMOID = "(A)1 / ((A)1 + exp(-(v < -B ? -B : (v > B ? B : v))))"
_GELU_T = "tanh((A)0.7978845608028654 * (v + (A)0.044715 * v * v * v))"
CUDA_BODIES = {
    "linear": ("r = v;", None),
    "relu": ("r = v < (A)0 ? (A)0 : v;", "r = sv > (A)0 ? gv : gv * sv;"),
    "leaky_relu": (
        "r = v > (A)0 ? v : (A)0.01 * v;",
        "r = sv > (A)0 ? gv : (sv <= (A)0 ? (A)0.01 * gv : sv);",
    ),
    "sigmoid": (f"r = {_SIGMOID};", "r = gv * sv * ((A)1 - sv);"),
    "tanh": ("r = tanh(v);", "r = gv * ((A)1 - sv * sv);"),
    "softplus": ("r = fmax(v, (A)0) + log1p(exp(-fabs(v)));", "r = -gv * expm1(-sv);"),
    "gelu": (
        f"A t = {_GELU_T}; r = (A)0.5 * v * ((A)1 + t);",
        "A v = sv; A t = " + _GELU_T + "; A du = (A)0.7978845608028654 * ((A)1 + (A)0.134145 * v * v);"
        " r = gv * ((A)0.5 * ((A)1 + t) + (A)0.5 * v * ((A)1 - t * t) * du);",
    ),
    "silu": (
        f"r = v * {_SIGMOID};",
        f"A v = sv; A sg = {_SIGMOID}; r = gv * sg * ((A)1 + v * ((A)1 - sg));",
    ),
}


def kernel_spec(name: str, kind: str, *, double: bool) -> tuple[str, str, str, str]:
    """``(in_params, out_params, operation, preamble)`` of one CuPy ``ElementwiseKernel``.

    ``kind`` is ``"forward"`` (y may be z itself: in place), ``"forward_keep"``
    (z + b stays in z for a derivative written in z) or ``"backward"``.
    """
    acc, bound = ("double", "500.0") if double else ("float", "87.0")
    preamble = f"typedef {acc} A; static const A B = {bound};"
    forward, backward = CUDA_BODIES[name]
    if kind == "forward":
        return "T z, T b", "T y", f"A v = (A)z + (A)b; A r; {forward} y = (T)r;", preamble
    if kind == "forward_keep":
        return "T z, T b", "T zb, T y", f"A v = (A)z + (A)b; A r; {forward} zb = (T)v; y = (T)r;", preamble
    return "T g, T s", "T dz", f"A gv = (A)g; A sv = (A)s; A r; {backward} dz = (T)r;", preamble


class CupyOps:
    """One CuPy ``ElementwiseKernel`` per activation and direction, compiled on first use."""

    def __init__(self, cupy: Any) -> None:
        self.cupy = cupy

    @functools.cache  # noqa: B019 - one instance per process, kernels live as long
    def _kernel(self, name: str, kind: str, double: bool) -> Any:
        params, out, op, preamble = kernel_spec(name, kind, double=double)
        return self.cupy.ElementwiseKernel(params, out, op, f"dense_xp_{name}_{kind}", preamble=preamble)

    def forward(self, z: Any, b: Any, name: str | None) -> tuple[Any, Any] | None:
        act = ACTIVATIONS[name]
        if act.name not in CUDA_BODIES:  # a registered activation: the generic path
            return None
        double = z.dtype == self.cupy.float64
        bias = 0 if b is None else b
        if act.saves == "input":
            y = self.cupy.empty_like(z)
            self._kernel(act.name, "forward_keep", double)(z, bias, z, y)
            return z, y
        self._kernel(act.name, "forward", double)(z, bias, z)
        return z, z

    def backward(self, g: Any, saved: Any, name: str | None) -> Any:
        act = ACTIVATIONS[name]
        if act.name not in CUDA_BODIES:
            return None
        if CUDA_BODIES[act.name][1] is None:
            return g
        return self._kernel(act.name, "backward", g.dtype == self.cupy.float64)(g, saved)
