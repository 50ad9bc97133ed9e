"""The metric of ``evaluate`` and ``fit``: accuracy, and the hit count training sums batch by batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat

from . import _backend
from ._targets import argmax_rows, check_labels, device_of, host_or_device, prepare, same_shape, shape

__all__ = ["METRICS", "accuracy", "hit_counter", "target_classes"]

METRICS = ("accuracy",)  # the metrics evaluate and fit report


def target_classes(y_true: Any, n_outputs: int) -> Any:
    """The class :func:`accuracy` compares each prediction with, computed once for many batches.

    Parameters
    ----------
    y_true : array, shape (n,) or (n, n_outputs)
        Checked targets (see :meth:`Loss.validate`), on any device.
    n_outputs : int
        The model's output width ``k``.

    Returns
    -------
    array, shape (n,), on ``y_true``'s device
        With ``k == 1``, whether each target is ``>= 0.5``; otherwise the
        class index (the argmax of a one-hot row), in the index dtype of the
        library's argmax.
    """
    xp, y = host_or_device(y_true)
    with _backend.on_device(array_api_compat.device(y)):
        if n_outputs == 1:
            return xp.reshape(y, (-1,)) >= 0.5
        if y.ndim == 2:
            return argmax_rows(y, xp=xp)
        index = xp.__array_namespace_info__().default_dtypes(device=array_api_compat.device(y))["indexing"]
        return y if y.dtype == index else xp.astype(y, index)


def hit_counter(xp: Any) -> Callable[[Any, Any], Any]:
    """``hits(y_pred, classes)``: the number of rows :func:`accuracy` counts as right, a 0-d array.

    ``classes`` are the rows' :func:`target_classes` on ``y_pred``'s device;
    ``xp`` is resolved once, for a training loop's every batch.
    """

    def hits(y_pred: Any, classes: Any) -> Any:
        guess = y_pred[:, 0] > 0 if y_pred.shape[1] == 1 else argmax_rows(y_pred, xp=xp)
        if guess.dtype != classes.dtype:
            classes = xp.astype(classes, guess.dtype)
        return xp.sum(xp.astype(guess == classes, y_pred.dtype))

    return hits


def accuracy(y_pred: Any, y_true: Any) -> Any:
    """Fraction of correct predictions, a 0-d array in ``y_pred``'s dtype and on its device.

    Parameters
    ----------
    y_pred : array, shape (n, k)
        Model outputs. With ``k == 1`` a prediction is ``logit > 0``;
        otherwise it is the argmax of the row.
    y_true : array_like, shape (n,) or (n, k)
        With ``k == 1``: targets, true where ``>= 0.5``. Otherwise integer
        class indices ``(n,)`` or one-hot rows ``(n, k)`` (compared by argmax).
    """
    with _backend.on_device(device_of(y_pred)):
        return _accuracy(y_pred, y_true)


def _accuracy(y_pred: Any, y_true: Any, xp: Any = None) -> Any:
    xp, t = prepare(y_pred, y_true, cast=False, xp=xp)
    n, k = shape(y_pred)
    if k == 1:
        t = same_shape(y_pred, xp.astype(t, y_pred.dtype), xp=xp)
        hits = (y_pred > 0) == (t >= 0.5)
    else:
        guess = argmax_rows(y_pred, xp=xp)
        if t.ndim == 2:
            t = argmax_rows(same_shape(y_pred, t, xp=xp), xp=xp)
        else:
            check_labels(t, n, k, xp=xp)
        hits = guess == (t if t.dtype == guess.dtype else xp.astype(t, guess.dtype))
    return xp.mean(xp.astype(hits, y_pred.dtype))
