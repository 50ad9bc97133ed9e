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
from typing import Any

from ._precision import GELU_K1, GELU_K2, GELU_K3
from .activations import ACTIVATIONS

__all__ = ["CUDA_BACKWARD_FROM_INPUT", "CUDA_BODIES", "CupyOps", "NumpyOps", "kernel_spec"]


class NumpyOps:
    """NumPy ufunc chains with ``out=``: fewer passes over memory and no temporaries.

    They fuse linear, relu, sigmoid and tanh where the layer caches their
    output (:meth:`dense_xp.activations.Activation.backward_for`), and relu
    where it caches ``z`` (float16: ``y`` then is a new array); elsewhere
    (sigmoid and tanh in float16, computed in float32) the generic code runs.
    The kernel of each activation and dtype is chosen once
    (:meth:`forward_kernel`, :meth:`backward_kernel`): a training step that
    planned its buffers calls it with no lookup.
    """

    def __init__(self, np: Any) -> None:
        self.np = np

    def forward(self, z: Any, b: Any, name: str | None) -> tuple[Any, Any] | None:
        kernel = self.forward_kernel(name, z.dtype)
        return None if kernel is None else kernel(z, b)

    def backward(self, g: Any, saved: Any, name: str | None, out: Any = None) -> Any:
        kernel = self.backward_kernel(name, g.dtype)
        return None if kernel is None else kernel(g, saved, out)

    @functools.lru_cache(maxsize=64)  # noqa: B019 -- one instance per library, kept for the process
    def forward_kernel(self, name: str | None, dtype: Any) -> Any:
        """``kernel(z, b) -> (z_after_bias, y)``, overwriting ``z``; ``None`` where it does not fuse."""
        np, act = self.np, ACTIVATIONS[name]
        keep = act.backward_for(dtype).saves == "input"
        if act.name not in ("linear", "relu", "sigmoid", "tanh") or (keep and act.name != "relu"):
            return None
        wide = np.dtype(dtype) == np.float64
        function, add, maximum = _NUMPY_FORWARD[act.name], np.add, np.maximum

        def kernel(z: Any, b: Any) -> tuple[Any, Any]:
            if b is not None:
                add(z, b, out=z)
            if keep:  # relu, z kept for backward
                return z, maximum(z, 0)
            function(np, z, wide)
            return z, z

        def relu(z: Any, b: Any) -> tuple[Any, Any]:  # the commonest, without a call per step
            if b is not None:
                add(z, b, out=z)
            maximum(z, 0, out=z)
            return z, z

        return relu if act.name == "relu" and not keep else kernel

    @functools.lru_cache(maxsize=64)  # noqa: B019
    def backward_kernel(self, name: str | None, dtype: Any) -> Any:
        """``kernel(g, saved, out) -> g * act'(z)``, into ``out`` (a new array if ``None``); or ``None``."""
        np, act = self.np, ACTIVATIONS[name]
        keep = act.backward_for(dtype).saves == "input"
        if (keep and act.name != "relu") or act.name not in ("relu", "sigmoid", "tanh"):
            return None

        def kernel(g: Any, saved: Any, out: Any = None) -> Any:
            dz = np.empty_like(g) if out is None else out
            if act.name == "relu":  # relu'(z) from y >= 0 (or from z): 1, 0, or NaN
                np.sign(np.maximum(saved, 0, out=dz) if keep else saved, out=dz)
            elif act.name == "sigmoid":
                np.subtract(1, saved, out=dz)
                dz *= saved
            else:  # tanh: (1 - y)(1 + y), as 1 - y*y would cancel
                np.subtract(1, saved, out=dz)
                dz *= np.add(1, saved)
            dz *= g
            return dz

        return kernel


def _relu(np: Any, z: Any, wide: bool) -> None:
    np.maximum(z, 0, out=z)


def _tanh(np: Any, z: Any, wide: bool) -> None:
    np.tanh(z, out=z)


def _sigmoid(np: Any, z: Any, wide: bool) -> None:
    if wide:  # the reference formula, as in activations
        np.clip(z, -500.0, 500.0, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)
        return
    t = np.abs(z)  # exp(min(z, 0)) / (1 + exp(-|z|)), as in activations: no overflow
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += 1
    np.minimum(z, 0, out=z)
    np.exp(z, out=z)
    np.divide(z, t, out=z)


_NUMPY_FORWARD = {"linear": lambda np, z, wide: None, "relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid}


# CUDA C bodies: forward reads ``v`` (z + b) and writes ``r``; backward reads
# ``gv`` (upstream gradient) and ``sv`` (what forward saved: ``z`` or ``y``, as
# the activation's ``saves`` says) and writes ``r``. ``CUDA_BACKWARD_FROM_INPUT``
# holds the derivatives in ``z`` of the activations that save their output, for
# the dtypes whose layers cache ``z`` (float16). ``A`` is the accumulation type
# (double for float64, float otherwise: float16 is computed in float and rounded
# once) and ``B`` the reference layer's sigmoid clip (500; a no-op in float,
# where exp(-500) is 0). The formulas are those of dense_xp.activations: the
# logistic from ``t = exp(-|x|)``, which never overflows. NaN propagates as in
# the array API code: comparisons pass NaN through, where fmax/fmin (and
# ``v > 0 ? v : 0``) would map it to a number.
def _logistic(x: str) -> str:
    """C statements: ``t = exp(-|x|)``, ``d = 1 + t``, ``p = sigmoid(|x|)``, ``n = sigmoid(-|x|)`` and
    ``sg = sigmoid(x)``; ``n / d`` is sigmoid'(x)."""
    return f"A t = exp(-fabs({x})); A d = (A)1 + t; A p = (A)1 / d; A n = t / d; A sg = {x} < (A)0 ? n : p;"


_K1, _K2, _K3 = (f"(A){k!r}" for k in (GELU_K1, GELU_K2, GELU_K3))
_GELU_U = f"A u = v * ({_K1} + {_K2} * (v * v));"
CUDA_BODIES = {
    "linear": ("r = v;", None),
    "relu": ("r = v < (A)0 ? (A)0 : v;", "r = sv > (A)0 ? gv : gv * sv;"),
    "leaky_relu": (
        "r = v > (A)0 ? v : (A)0.01 * v;",
        "r = sv > (A)0 ? gv : (sv <= (A)0 ? (A)0.01 * gv : sv);",
    ),
    "sigmoid": (
        "A c = v < -B ? -B : (v > B ? B : v); " + _logistic("c") + " r = sg;",
        "r = gv * sv * ((A)1 - sv);",
    ),
    "tanh": ("r = tanh(v);", "r = gv * (((A)1 - sv) * ((A)1 + sv));"),
    "softplus": ("r = fmax(v, (A)0) + log1p(exp(-fabs(v)));", "r = -gv * expm1(-sv);"),
    "gelu": (
        f"{_GELU_U} {_logistic('u')} r = v * sg;",
        f"A v = sv < (A)-1e6 ? (A)-1e6 : (sv > (A)1e6 ? (A)1e6 : sv); {_GELU_U} {_logistic('u')}"
        f" r = gv * (sg + v * ({_K1} + {_K3} * (v * v)) * (n / d));",
    ),
    "silu": (
        f"{_logistic('v')} r = v * sg;",
        f"A v = sv; {_logistic('v')} r = gv * (sg * ((A)1 + v * (v < (A)0 ? p : n)));",
    ),
}
CUDA_BACKWARD_FROM_INPUT = {
    "relu": "r = gv * (sv > (A)0 ? (A)1 : (sv <= (A)0 ? (A)0 : sv));",
    "leaky_relu": CUDA_BODIES["leaky_relu"][1],  # z > 0 exactly where y > 0
    "sigmoid": f"{_logistic('sv')} r = gv * (n / d);",
    "tanh": "A t = exp((A)-2 * fabs(sv)); A d = (A)1 + t; r = gv * ((A)4 * t / d / d);",
    "softplus": f"{_logistic('sv')} r = gv * sg;",
}


def kernel_spec(name: str, kind: str, *, double: bool) -> tuple[str, str, str, str]:
    """``(in_params, out_params, operation, preamble)`` of one CuPy ``ElementwiseKernel``.

    ``kind`` is ``"forward"`` (y may be z itself: in place), ``"forward_keep"``
    (z + b stays in z for a derivative written in z), ``"backward"`` (from
    what the activation saves) or ``"backward_input"`` (from z:
    :data:`CUDA_BACKWARD_FROM_INPUT`).
    """
    acc = "double" if double else "float"
    preamble = f"typedef {acc} A; static const A B = 500;"
    forward, backward = CUDA_BODIES[name]
    if kind == "forward":
        return "T z, T b", "T y", f"A v = (A)z + (A)b; A r; {forward} y = (T)r;", preamble
    if kind == "forward_keep":
        return "T z, T b", "T zb, T y", f"A v = (A)z + (A)b; A r; {forward} zb = (T)v; y = (T)r;", preamble
    if kind == "backward_input":
        backward = CUDA_BACKWARD_FROM_INPUT[name]
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
        if act.backward_for(z.dtype).saves == "input":
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
        kind = "backward" if act.backward_for(g.dtype).saves == act.saves else "backward_input"
        return self._kernel(act.name, kind, g.dtype == self.cupy.float64)(g, saved)
