"""A Dense layer's training step on NumPy with its buffers made once: the planned step of ``fit``.

:class:`DensePlan` runs what :meth:`Dense.forward` and :meth:`Dense.backprop`
run -- the same ufuncs, in the same order, on the same fused kernels
(:class:`dense_xp._fused.NumpyOps`) -- into arrays allocated once per batch
size, and without the checks that ``fit`` made once for the whole call. Its
results equal theirs bit for bit (``tests/test_training_planned.py``).
"""

from __future__ import annotations

from typing import Any

from .. import _backend, _checks
from ..activations import get_activation

__all__ = ["DensePlan", "unplannable"]


def unplannable(layer: Any) -> str | None:
    """Why a Dense ``layer`` has no :class:`DensePlan`, or ``None`` (see ``DenseLayer.plan_step``)."""
    if not layer.built:
        return "the layer is not built"
    dtype = layer.compute_dtype
    if dtype != layer.param_dtype or _checks.dtype_name(dtype) not in ("float32", "float64"):
        return "a planned step runs float32 or float64 without mixed precision"
    if _backend.fused_ops(layer.xp).forward_kernel(layer.activation, dtype) is None:
        return f"activation {layer.activation!r} has no fused kernel"
    return None


class DensePlan:
    """``act(X @ W + b)`` forward and backward on ``n`` rows, into buffers made once.

    Parameters
    ----------
    layer : DenseLayer
        A built layer on NumPy that :func:`unplannable` accepts. Its ``W`` and ``b`` are
        read on every call (an optimizer, a guard or a callback may replace
        them); its ``grads`` become this plan's gradient buffers.
    n : int
        The batch rows.
    input_grad : bool
        Whether :meth:`backward` returns ``d_input`` (every layer but the first).
    """

    def __init__(self, layer: Any, n: int, *, input_grad: bool) -> None:
        ops = _backend.fused_ops(layer.xp)
        np, dtype = ops.np, layer.compute_dtype
        d_in, d_out = int(layer.input_size or 0), int(layer.output_size or 0)
        self.layer = layer
        self._forward = ops.forward_kernel(layer.activation, dtype)
        self._backward = ops.backward_kernel(layer.activation, dtype)  # None: linear, d_z is d_out
        self._saves_input = get_activation(layer.activation).backward_for(dtype).saves == "input"
        self._z, self._dz = np.empty((n, d_out), dtype), np.empty((n, d_out), dtype)
        self._dx = np.empty((n, d_in), dtype) if input_grad else None
        self._row = np.full((1, n), 1.0 / n, dtype=dtype)  # row @ d_z: the batch mean, one BLAS call
        self.grads = {"W": np.empty((d_in, d_out), dtype)}
        if layer.b is not None:
            self.grads["b"] = np.empty((1, d_out), dtype)
        self._X: Any = None
        self._saved: Any = None
        self._matmul, self._inv_n = np.matmul, 1.0 / n

    def forward(self, X: Any) -> Any:
        """``act(X @ W + b)``, shape ``(n, output_size)``: a buffer of the plan, valid until the next call."""
        layer = self.layer
        self._matmul(X, layer.W, out=self._z)
        z, y = self._forward(self._z, layer.b)
        self._X, self._saved = X, z if self._saves_input else y
        return y

    def backward(self, d_out: Any) -> Any:
        """``grads`` of the last forward from ``d_out`` ``(n, output_size)``; ``d_input`` or ``None``."""
        matmul, layer, grads = self._matmul, self.layer, self.grads
        dz = d_out if self._backward is None else self._backward(d_out, self._saved, self._dz)
        dW = matmul(self._X.T, dz, out=grads["W"])
        dW *= self._inv_n
        if "b" in grads:
            matmul(self._row, dz, out=grads["b"])
        d_input = None if self._dx is None else matmul(dz, layer.W.T, out=self._dx)
        if layer.grads is not grads:
            layer.grads = grads
        return d_input
