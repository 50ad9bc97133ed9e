"""Data for a model: checked ``(X, y)`` pairs, batches of rows, and evaluation sums.

Below the model (which predicts and evaluates with it) and below training
(which fits with it); it sees the model only through its public attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import array_api_compat

from . import _backend
from .losses import accuracy

__all__ = ["batches", "check_pair", "check_weights", "evaluate_sums", "widen"]


def check_pair(
    model: Any,
    X: Any,
    y: Any,
    loss: Any,
    *,
    names: tuple[str, str] = ("X", "y"),
    check_finite: bool = False,
) -> tuple[Any, Any]:
    """``(X, y)`` as arrays of the model's namespace (or host arrays), checked against the model.

    ``X`` must be ``(n, input_size)`` with ``n >= 1`` (an unbuilt model takes
    any width); ``y`` (``None`` for prediction) has ``n`` rows and the
    targets ``loss.validate`` accepts. ``check_finite`` refuses NaN and
    infinity. Errors name the argument by ``names``.
    """
    xp, device, (x_name, y_name) = model.xp, model.device, names
    X = _backend.as_dataset(X, name=x_name, xp=xp, device=device, check_finite=check_finite)
    width = model.input_size
    if X.ndim != 2 or X.shape[0] == 0 or (width is not None and X.shape[1] != width):
        expected = "k" if width is None else width
        msg = f"`{x_name}` must have shape (n, {expected}) with n >= 1, got {tuple(X.shape)}"
        raise ValueError(msg)
    if y is None:
        return X, None
    y = _backend.as_dataset(y, name=y_name, xp=xp, device=device, check_finite=check_finite)
    if y.ndim == 0 or y.shape[0] != X.shape[0]:
        got = f"got {X.shape[0]} and {tuple(y.shape)}"
        msg = f"`{x_name}` and `{y_name}` must have the same length, {got}"
        raise ValueError(msg)
    validate = getattr(loss, "validate", None)  # a user's own loss may not check targets
    if validate is not None and model.output_size is not None:
        try:
            validate(y, model.output_size)
        except (TypeError, ValueError) as exc:
            if y_name == "y":
                raise
            msg = f"`{y_name}` holds invalid targets: {exc}"
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(msg) from None
    return X, y


def check_weights(model: Any, weights: Any, n: int, name: str = "sample_weight") -> Any:
    """``weights`` as a ``(n,)`` array of real numbers, finite and >= 0 (host data stays on the host)."""
    w = _backend.as_dataset(weights, name=name, xp=model.xp, device=model.device, check_finite=True)
    if tuple(w.shape) != (n,):
        msg = f"`{name}` must have shape ({n},), one weight per row, got {tuple(w.shape)}"
        raise ValueError(msg)
    low = float(_backend.to_numpy(array_api_compat.array_namespace(w).min(w)))
    if low < 0:
        msg = f"`{name}` must hold weights >= 0, got a smallest weight of {low}"
        raise ValueError(msg)
    return w


def batches(n: int, batch_size: int, order: Any = None) -> Iterator[Any]:
    """The row index of each batch: slices of ``range(n)``, or pieces of the host array ``order``."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield slice(start, stop) if order is None else order[start:stop]


def widen(model: Any, out: Any) -> Any:
    """The model's output in ``param_dtype``, for the loss."""
    return out if out.dtype == model.param_dtype else model.xp.astype(out, model.param_dtype)


def evaluate_sums(
    model: Any, X: Any, y: Any, *, loss: Any, batch_size: int, sample_weight: Any = None
) -> dict[str, float]:
    """Mean loss and accuracy over checked ``(X, y)``, in inference mode, batch by batch.

    ``sample_weight`` (checked, shape ``(n,)``) weighs each row's loss (the
    mean of ``w_i * l_i``, as Keras); the accuracy is not weighted.
    """
    xp, device, n = model.xp, model.device, X.shape[0]
    total_loss, total_acc = xp.zeros((), dtype=model.param_dtype, device=device), 0.0
    rows = batches(n, batch_size)
    arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
    for Xb, yb, *wb in _backend.device_batches(arrays, rows, xp=xp, device=device):
        out = widen(model, model.forward(Xb))
        value = loss(out, yb)[0] if not wb else loss(out, yb, sample_weight=wb[0])[0]
        total_loss = total_loss + value * out.shape[0]
        total_acc = total_acc + accuracy(out, yb) * out.shape[0]
    return {"loss": float(total_loss) / n, "accuracy": float(total_acc) / n}
