"""Loss functions and accuracy, written against the array API.

A loss is an object called as ``loss(y_pred, y_true) -> (value, grad)``:

* ``value`` is the mean loss over the batch, a 0-d array on ``y_pred``'s device;
* ``grad`` is the per-sample gradient ``dl_i/dy_i`` (not divided by the batch
  size ``n``: :meth:`dense_xp.DenseLayer.backward` divides by ``n`` itself),
  with ``y_pred``'s shape, dtype and device.

``y_pred`` holds raw outputs (logits for the two cross-entropies), shape
``(n, k)``. ``y_true`` may be host data or an array on ``y_pred``'s device.
``validate`` checks targets once, values included, before training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat

from . import _backend, _loss_names, _softmax_ce, _targets
from ._checks import check_int
from ._metrics import METRICS, accuracy, hit_counter, target_classes

__all__ = [
    "LOSSES",
    "METRICS",
    "BinaryCrossEntropy",
    "Loss",
    "MeanSquaredError",
    "SoftmaxCrossEntropy",
    "accuracy",
    "binary_cross_entropy",
    "get_loss",
    "hit_counter",
    "mse",
    "softmax_cross_entropy",
    "target_classes",
]


class Loss:
    """Base class: a named loss ``loss(y_pred, y_true) -> (value, grad)`` (see the module docstring)."""

    name = "loss"

    def __call__(self, y_pred: Any, y_true: Any, sample_weight: Any = None) -> tuple[Any, Any]:
        """Mean loss (0-d array) and per-sample gradient ``(n, k)`` of ``y_pred`` against ``y_true``.

        With ``sample_weight`` (shape ``(n,)``), the mean of the weighted row
        losses, ``mean(w_i * l_i)`` (Keras's default reduction), and each row's
        gradient times its weight. Computed on ``y_pred``'s device (made
        current for libraries that have one, such as CuPy).
        """
        with _backend.on_device(_targets.device_of(y_pred)):
            if sample_weight is None:
                return self._compute(y_pred, y_true)
            return self._weighted(y_pred, y_true, sample_weight)

    def _compute(self, y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def _rows(self, y_pred: Any, y_true: Any, xp: Any = None) -> Any:
        """The loss of each row, shape ``(n,)``: ``value`` is their mean."""
        raise NotImplementedError

    def _weighted(self, y_pred: Any, y_true: Any, sample_weight: Any, xp: Any = None) -> tuple[Any, Any]:
        """``mean(w * l_i)`` (Keras's "sum_over_batch_size") and the per-sample gradient times ``w``."""
        xp = array_api_compat.array_namespace(y_pred) if xp is None else xp
        dev = array_api_compat.device(y_pred)
        w = _backend.as_input(sample_weight, name="sample_weight", xp=xp, device=dev, dtype=y_pred.dtype)
        if tuple(w.shape) != (y_pred.shape[0],):
            n = y_pred.shape[0]
            msg = f"`sample_weight` must have shape ({n},), one weight per row, got {tuple(w.shape)}"
            raise ValueError(msg)
        _, grad = self._compute(y_pred, y_true, xp)
        return xp.mean(self._rows(y_pred, y_true, xp) * w), grad * w[:, None]

    def bind(self, xp: Any) -> Callable[..., tuple[Any, Any]]:
        """This loss for outputs of ``xp`` on the current device, without the per-call namespace lookup.

        Training calls the loss once per batch on outputs it made itself; the
        bound loss computes exactly what :meth:`__call__` does, with ``xp``
        resolved once and the device left as the caller made it current.

        Parameters
        ----------
        xp : namespace
            The array API namespace of every ``y_pred`` the bound loss will see.

        Returns
        -------
        callable
            ``loss(y_pred, y_true, sample_weight=None) -> (value, grad)``.
        """

        def bound(y_pred: Any, y_true: Any, sample_weight: Any = None) -> tuple[Any, Any]:
            if sample_weight is None:
                return self._compute(y_pred, y_true, xp)
            return self._weighted(y_pred, y_true, sample_weight, xp)

        return bound

    def validate(self, y_true: Any, n_outputs: int, *, n_samples: int | None = None) -> None:
        """Check targets ``y`` once, values included, for a model with ``n_outputs`` outputs.

        Parameters
        ----------
        y_true : array_like, shape (n, n_outputs), or (n,) where the loss allows it
            Host data or an array on any device.
        n_outputs : int
            Number of model outputs ``k``.
        n_samples : int, optional
            Expected number of rows ``n`` (that of ``X``).

        Raises
        ------
        TypeError
            The targets are not real numbers, or have the wrong kind of dtype.
        ValueError
            Wrong shape or length, or values out of range; the message names
            ``y`` and shows what was received.
        """
        n_outputs = check_int(n_outputs, "n_outputs")
        if n_samples is not None:
            n_samples = check_int(n_samples, "n_samples")
        xp, y = _targets.host_or_device(y_true)
        with _backend.on_device(array_api_compat.device(y)):
            self._validate(y, n_outputs, n_samples, xp=xp)

    def check_shape(self, shape: tuple[int, ...], n_outputs: int) -> None:
        """Refuse targets of ``shape`` for a model with ``n_outputs`` outputs (values are not looked at).

        Raises
        ------
        ValueError
            The shape is not one the loss takes, or has no rows.
        """
        allowed = self._allowed_shapes(len(shape), n_outputs)
        n = shape[0] if shape else 0
        if not shape or tuple(shape[1:]) not in allowed or n == 0:
            forms = " or ".join(str(("n", *s)).replace("'", "") for s in allowed)
            msg = f"`y` must have shape {forms} with n >= 1 for {self.name}, got shape {tuple(shape)}"
            raise ValueError(msg)

    def _validate(self, y: Any, n_outputs: int, n_samples: int | None, *, xp: Any) -> None:
        shape = _targets.shape(y)
        self.check_shape(shape, n_outputs)
        n = shape[0]
        if n_samples is not None and n != n_samples:
            msg = f"`y` must have one row per sample of X ({n_samples}), got {n}"
            raise ValueError(msg)
        low, high = _targets.min_max(y, xp=xp)
        self._check_values(y, low, high, n_outputs, xp=xp)

    # hooks for validate
    def _allowed_shapes(self, ndim: int, n_outputs: int) -> list[tuple[int, ...]]:
        return [(n_outputs,), ()] if n_outputs == 1 else [(n_outputs,)]

    def _check_values(self, y: Any, low: float, high: float, n_outputs: int, *, xp: Any) -> None:
        if not (math.isfinite(low) and math.isfinite(high)):
            msg = f"`y` must hold finite numbers, got values in [{low}, {high}]"
            raise ValueError(msg)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanSquaredError(Loss):
    """``l_i = mean_j (y_ij - t_ij)^2``; the mean loss equals ``torch.nn.MSELoss()``.

    ``grad = 2 (y - t) / k``. ``y_true`` has ``y_pred``'s shape ``(n, k)``, or
    ``(n,)`` when ``k == 1``.
    """

    name = "mse"

    def _compute(self, y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
        xp, y_true = _targets.prepare(y_pred, y_true, cast=True, xp=xp)
        diff = y_pred - _targets.same_shape(y_pred, y_true, xp=xp)
        value = xp.mean(diff * diff)
        scale = 2.0 / y_pred.shape[1]
        if _backend.writeable(diff):
            diff *= scale
            return value, diff
        return value, diff * scale

    def _rows(self, y_pred: Any, y_true: Any, xp: Any = None) -> Any:
        xp, y_true = _targets.prepare(y_pred, y_true, cast=True, xp=xp)
        diff = y_pred - _targets.same_shape(y_pred, y_true, xp=xp)
        return xp.mean(diff * diff, axis=1)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits, as ``torch.nn.BCEWithLogitsLoss()``.

    ``l = max(z, 0) - z t + log1p(exp(-|z|))`` averaged over all elements;
    ``grad = (sigmoid(z) - t) / k``. Targets lie in ``[0, 1]``, shape
    ``(n, k)`` or ``(n,)`` when ``k == 1``. Never overflows.
    """

    name = "binary_cross_entropy"

    def _compute(self, y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
        z = y_pred
        xp, t = _targets.prepare(z, y_true, cast=True, xp=xp)
        t = _targets.same_shape(z, t, xp=xp)
        e = xp.exp(-xp.abs(z))  # in (0, 1]: no overflow
        value = xp.mean(xp.where(z > 0, z, 0.0) - z * t + xp.log1p(e))
        grad = xp.where(z >= 0, 1.0, e) / (1.0 + e)  # sigmoid(z), both branches stable
        k = z.shape[1]
        if _backend.writeable(grad):
            grad -= t
            if k != 1:
                grad /= k
            return value, grad
        grad = grad - t
        return value, grad if k == 1 else grad / k

    def _rows(self, y_pred: Any, y_true: Any, xp: Any = None) -> Any:
        z = y_pred
        xp, t = _targets.prepare(z, y_true, cast=True, xp=xp)
        t = _targets.same_shape(z, t, xp=xp)
        return xp.mean(xp.where(z > 0, z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z))), axis=1)

    def _check_values(self, y: Any, low: float, high: float, n_outputs: int, *, xp: Any) -> None:
        if not (low >= 0 and high <= 1):  # NaN fails too
            msg = f"`y` must hold binary targets in [0, 1], got values in [{low}, {high}]"
            raise ValueError(msg)


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits, as ``torch.nn.CrossEntropyLoss()``.

    ``y_true`` is either integer class indices, shape ``(n,)`` with values in
    ``[0, k)``, or one-hot / probability rows, shape ``(n, k)``.
    ``l_i = -sum_j t_ij log softmax(z_i)_j``; ``grad = softmax(z) - t`` (for
    rows of ``t`` summing to 1).
    """

    name = "softmax_cross_entropy"

    def _compute(self, y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
        return _softmax_ce.value_and_grad(y_pred, y_true, xp)

    def _rows(self, y_pred: Any, y_true: Any, xp: Any = None) -> Any:
        return _softmax_ce.row_losses(y_pred, y_true, xp)

    def _allowed_shapes(self, ndim: int, n_outputs: int) -> list[tuple[int, ...]]:
        return [(), (n_outputs,)]

    def _check_values(self, y: Any, low: float, high: float, n_outputs: int, *, xp: Any) -> None:
        _softmax_ce.check_values(y, low, high, n_outputs, xp=xp)


mse = MeanSquaredError()
binary_cross_entropy = BinaryCrossEntropy()
softmax_cross_entropy = SoftmaxCrossEntropy()
LOSSES: dict[str, Loss] = {loss.name: loss for loss in (mse, binary_cross_entropy, softmax_cross_entropy)}


def get_loss(loss: Any) -> Any:
    """A loss by name (see :data:`LOSSES`), or ``loss`` itself when it is a callable loss object.

    Raises
    ------
    ValueError
        ``loss`` names no known loss; the message lists them.
    TypeError
        ``loss`` is neither a name nor a callable object (a class is refused:
        pass an instance).
    """
    if isinstance(loss, str):
        try:
            return LOSSES[loss]
        except KeyError:
            valid = ", ".join(repr(name) for name in LOSSES)
            msg = f"`loss` must be one of {valid} or a callable loss object; got {loss!r}"
            suggestion = _loss_names.suggest(loss, list(LOSSES))
            raise ValueError(msg + (f" (did you mean {suggestion!r}?)" if suggestion else "")) from None
    if isinstance(loss, type) or not callable(loss):
        hint = " (pass an instance, not the class)" if isinstance(loss, type) else ""
        msg = f"`loss` must be a name or a callable loss object{hint}, got {type(loss).__name__} {loss!r}"
        raise TypeError(msg)
    return loss
