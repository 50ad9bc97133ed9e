"""Losses of the planned training step on NumPy: the batch's loss sum and gradient into buffers made once.

Each plan computes what its loss's ``_compute`` in :mod:`dense_xp.losses`
computes (softmax cross-entropy's in :mod:`dense_xp._softmax_ce`), with
ufuncs writing into arrays allocated once per batch size and none of the
per-call checks (``fit`` checked the targets once). The gradient equals the
loss's bit for bit; the loss sum equals ``value * n`` to rounding
(``tests/test_training_planned.py``). A plan takes targets already in the
outputs' dtype and shape (:func:`plan_targets`).
"""

from __future__ import annotations

from typing import Any

from .losses import BinaryCrossEntropy, Loss, MeanSquaredError, SoftmaxCrossEntropy

__all__ = ["loss_plan", "plannable_loss"]


def plannable_loss(loss: Any) -> str | None:
    """Why ``loss`` has no planned step, or ``None`` where :func:`loss_plan` makes one."""
    if type(loss) in _PLANS:
        return None
    return f"loss {getattr(loss, 'name', type(loss).__name__)!r} has no planned step"


def plan_targets(loss: Loss, y: Any, dtype: Any, np: Any) -> Any:
    """``y`` as the plan reads it: float targets in ``dtype``, 2-d (class labels stay as they are)."""
    if type(loss) is SoftmaxCrossEntropy and y.ndim == 1:
        return y
    y = y if y.dtype == dtype else y.astype(dtype)
    return y.reshape(-1, 1) if y.ndim == 1 else y


class MeanSquaredErrorPlan:
    """``sum_i l_i`` and ``2 (y - t) / k`` (see :class:`dense_xp.losses.MeanSquaredError`)."""

    def __init__(self, n: int, k: int, dtype: Any, np: Any) -> None:
        self.np, self._g, self._scale, self._k = np, np.empty((n, k), dtype), 2.0 / k, k

    def __call__(self, y_pred: Any, y_true: Any) -> tuple[float, Any]:
        np, g = self.np, self._g
        np.subtract(y_pred, y_true, out=g)
        total = float(np.vdot(g, g)) / self._k
        g *= self._scale
        return total, g


class BinaryCrossEntropyPlan:
    """``sum_i l_i`` and ``(sigmoid(z) - t) / k`` (see :class:`dense_xp.losses.BinaryCrossEntropy`)."""

    def __init__(self, n: int, k: int, dtype: Any, np: Any) -> None:
        self.np, self._k = np, k
        self._e, self._g, self._d = (np.empty((n, k), dtype) for _ in range(3))
        self._positive = np.empty((n, k), bool)

    def __call__(self, y_pred: Any, y_true: Any) -> tuple[float, Any]:
        np, z, e, g, d, positive = self.np, y_pred, self._e, self._g, self._d, self._positive
        np.abs(z, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # in (0, 1]: no overflow
        np.maximum(z, 0, out=d)  # the loss: max(z, 0) - z t + log1p(e), summed
        np.subtract(d, np.multiply(z, y_true, out=g), out=d)
        d += np.log1p(e, out=g)
        loss_sum = float(np.add.reduce(d, axis=None)) / self._k
        np.greater_equal(z, 0, out=positive)  # sigmoid(z), both branches stable
        np.add(e, 1.0, out=d)
        np.divide(np.where(positive, 1.0, e), d, out=g)
        g -= y_true
        if self._k != 1:
            g /= self._k
        return loss_sum, g


class SoftmaxCrossEntropyPlan:
    """``sum_i l_i`` and ``softmax(z) w - t`` (see :class:`dense_xp.losses.SoftmaxCrossEntropy`).

    ``w`` is the sum of a target row (1 for one-hot rows and for class labels).
    """

    def __init__(self, n: int, k: int, dtype: Any, np: Any) -> None:
        self.np = np
        self._shifted, self._p = np.empty((n, k), dtype), np.empty((n, k), dtype)
        self._column = np.empty((n, 1), dtype)
        self._rows = np.arange(n)

    def __call__(self, y_pred: Any, y_true: Any) -> tuple[float, Any]:
        np, shifted, p, column = self.np, self._shifted, self._p, self._column
        np.maximum.reduce(y_pred, axis=1, keepdims=True, out=column)
        np.subtract(y_pred, column, out=shifted)
        np.exp(shifted, out=p)
        total = np.add.reduce(p, axis=1, keepdims=True)
        log_total = np.log(total, out=column)
        if y_true.ndim == 1:  # class labels
            picked = float(np.add.reduce(shifted[self._rows, y_true]))
            loss_sum = float(np.add.reduce(log_total, axis=None)) - picked
            p /= total
            p[self._rows, y_true] -= 1
            return loss_sum, p
        weight = np.add.reduce(y_true, axis=1, keepdims=True)
        np.multiply(y_true, shifted, out=shifted)
        picked = float(np.add.reduce(shifted, axis=None))
        loss_sum = float(np.add.reduce(weight * log_total, axis=None)) - picked
        p /= total
        p *= weight
        p -= y_true
        return loss_sum, p


_PLANS: dict[type, Any] = {
    MeanSquaredError: MeanSquaredErrorPlan,
    BinaryCrossEntropy: BinaryCrossEntropyPlan,
    SoftmaxCrossEntropy: SoftmaxCrossEntropyPlan,
}


def loss_plan(loss: Loss, n: int, k: int, dtype: Any, np: Any) -> Any:
    """``plan(y_pred, y_true) -> (loss sum, gradient)`` for batches of ``n`` rows and ``k`` outputs."""
    return _PLANS[type(loss)](n, k, dtype, np)
