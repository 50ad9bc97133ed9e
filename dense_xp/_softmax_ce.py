"""What :class:`dense_xp.losses.SoftmaxCrossEntropy` computes: its loss and gradient, and its target checks.

The loss class keeps its name, shapes and documentation in
:mod:`dense_xp.losses`; its hooks call these functions. Targets are either
integer class indices of shape ``(n,)`` (one-hot rows are made on the
device) or one-hot / probability rows of shape ``(n, k)``.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _backend, _targets
from ._checks import dtype_name

__all__ = ["check_values", "row_losses", "value_and_grad"]


def value_and_grad(y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
    """The mean loss of logits ``y_pred`` (n, k) against ``y_true``, and its per-sample gradient.

    Parameters
    ----------
    y_pred : array, shape (n, k)
        Logits.
    y_true : array_like, shape (n,) or (n, k)
        Class indices, or one-hot / probability rows.
    xp : namespace, optional
        ``y_pred``'s namespace, known already (a bound loss); else looked up.

    Returns
    -------
    value : 0-d array
        ``mean_i -sum_j t_ij log softmax(z_i)_j``.
    grad : array, shape (n, k)
        ``softmax(z) * sum_j t_ij - t``, in ``y_pred``'s dtype.
    """
    z = y_pred
    xp, t = _targets.prepare(z, y_true, cast=False, xp=xp)
    n, k = _targets.shape(z)
    dev = array_api_compat.device(z)
    labels = t.ndim == 1
    if labels:
        _targets.check_labels(t, n, k, xp=xp)
        kind = t.dtype if xp.iinfo(t.dtype).max >= k - 1 else xp.int64
        t = xp.astype(t[:, None] == xp.arange(k, dtype=kind, device=dev), z.dtype)
    else:
        t = _targets.same_shape(z, t if t.dtype == z.dtype else xp.astype(t, z.dtype), xp=xp)
    shifted = z - xp.max(z, axis=1, keepdims=True)
    p = xp.exp(shifted)
    total = xp.sum(p, axis=1, keepdims=True)
    log_total = xp.log(total)
    weight = None if labels else xp.sum(t, axis=1, keepdims=True)  # 1 for one-hot rows
    picked = xp.sum(t * shifted)
    value = (xp.sum(log_total if weight is None else weight * log_total) - picked) / n
    if _backend.writeable(p):
        p /= total
        if weight is not None:
            p *= weight
        p -= t
        return value, p
    p = p / total
    return value, (p if weight is None else p * weight) - t


def row_losses(y_pred: Any, y_true: Any, xp: Any = None) -> Any:
    """The loss of each row of logits ``y_pred`` (n, k) against ``y_true``, shape ``(n,)``."""
    z = y_pred
    xp, t = _targets.prepare(z, y_true, cast=False, xp=xp)
    n, k = _targets.shape(z)
    if t.ndim == 1:
        _targets.check_labels(t, n, k, xp=xp)
        kind = t.dtype if xp.iinfo(t.dtype).max >= k - 1 else xp.int64
        t = xp.astype(t[:, None] == xp.arange(k, dtype=kind, device=array_api_compat.device(z)), z.dtype)
    else:
        t = _targets.same_shape(z, t if t.dtype == z.dtype else xp.astype(t, z.dtype), xp=xp)
    shifted = z - xp.max(z, axis=1, keepdims=True)
    log_total = xp.log(xp.sum(xp.exp(shifted), axis=1))
    return xp.sum(t, axis=1) * log_total - xp.sum(t * shifted, axis=1)


def check_values(y: Any, low: float, high: float, n_outputs: int, *, xp: Any) -> None:
    """Refuse targets ``y`` whose values (in ``[low, high]``) are not class labels or probability rows.

    Raises
    ------
    TypeError
        Labels of shape ``(n,)`` that are not integers.
    ValueError
        Labels outside ``[0, n_outputs)``; rows with values outside ``[0, 1]``
        or not summing to 1.
    """
    if y.ndim == 1:
        if not xp.isdtype(y.dtype, "integral"):
            msg = (
                f"`y` as class labels of shape (n,) must hold integers, got dtype {dtype_name(y.dtype)}; "
                "convert it to integers or pass one-hot rows of shape (n, k)"
            )
            raise TypeError(msg)
        if low < 0 or high >= n_outputs:
            msg = f"`y` must hold class labels in [0, {n_outputs}), got values in [{low:g}, {high:g}]"
            raise ValueError(msg)
        return
    if not (low >= 0 and high <= 1):
        msg = f"`y` as one-hot or probability rows must hold values in [0, 1], got [{low}, {high}]"
        raise ValueError(msg)
    sums = xp.sum(xp.astype(y, xp.float32) if dtype_name(y.dtype) == "float16" else y, axis=1)
    lo, hi = _targets.min_max(sums, xp=xp)
    if abs(lo - 1) > 1e-3 or abs(hi - 1) > 1e-3:
        msg = f"`y` as one-hot or probability rows must have rows summing to 1, got sums in [{lo}, {hi}]"
        raise ValueError(msg)
