"""scikit-learn's output activations, losses and validation scores, in array API code on the device.

The formulas are those of ``sklearn/neural_network/_base.py``: the log loss
clips probabilities to ``[eps, 1 - eps]`` (``eps`` of the dtype), the squared
error is ``0.5 * mean over outputs of the weighted average over samples``, and
each loss pairs with its canonical output (softmax, logistic, identity, exp),
so the gradient with respect to the output layer's pre-activation is
``output - target`` (times the sample weight).
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .. import _targets

__all__ = ["accuracy", "argmax_rows", "delta", "loss", "output", "r2"]


def _xp(a: Any) -> Any:
    return array_api_compat.array_namespace(a)


def output(z: Any, kind: str) -> Any:
    """The output activation ``kind`` of the last layer's pre-activation ``z``, shape ``(n, k)``."""
    xp = _xp(z)
    if kind == "identity":
        return z
    if kind == "softmax":
        e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)
    if kind == "logistic":  # expit without overflow: exp of -|z| only
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if kind == "exp":
        return xp.exp(z)
    msg = f"unknown output activation {kind!r}"
    raise ValueError(msg)


def _average(values: Any, weight: Any) -> Any:
    """``np.average(values, weights=weight, axis=0)``: shape ``(k,)``."""
    xp = _xp(values)
    if weight is None:
        return xp.mean(values, axis=0)
    return xp.sum(values * weight[:, None], axis=0) / xp.sum(weight)


def loss(y: Any, p: Any, weight: Any, kind: str) -> Any:
    """scikit-learn's loss of outputs ``p`` for targets ``y`` (both ``(n, k)``), a 0-d array.

    ``kind`` is the output activation: ``"softmax"`` (log loss),
    ``"logistic"`` (binary log loss, summed over outputs), ``"identity"``
    (squared error) or ``"exp"`` (half Poisson deviance).
    """
    xp = _xp(p)
    if kind in ("softmax", "logistic"):
        eps = float(xp.finfo(p.dtype).eps)
        p = xp.clip(p, eps, 1.0 - eps)
        terms = y * xp.log(p)
        if kind == "logistic":
            terms = terms + (1.0 - y) * xp.log(1.0 - p)
        return -xp.sum(_average(terms, weight))
    if kind == "identity":
        return 0.5 * xp.mean(_average((y - p) ** 2, weight))
    positive = y > 0  # xlogy(y, y / p) is 0 where y is 0
    ratio = xp.where(positive, y, 1.0) / p
    terms = xp.where(positive, y * xp.log(ratio), 0.0) - y + p
    return xp.sum(_average(terms, weight))


def delta(y: Any, p: Any, weight: Any) -> Any:
    """``(p - y) * weight``: the gradient with respect to the last pre-activation, per sample."""
    d = p - y
    return d if weight is None else d * weight[:, None]


def _weighted_mean(values: Any, weight: Any) -> Any:
    xp = _xp(values)
    if weight is None:
        return xp.mean(values)
    return xp.sum(values * weight) / xp.sum(weight)


def argmax_rows(x: Any) -> Any:
    """``argmax(x, axis=1)``, or the first maximum by comparison where the library's argmax lacks its
    index dtype on the device (array-api-strict's ``no_x64``)."""
    return _targets.argmax_rows(x, xp=_xp(x))


def accuracy(y: Any, p: Any, weight: Any, kind: str) -> Any:
    """Accuracy (exact match for multilabel) of probabilities ``p`` against indicator targets ``y``."""
    xp = _xp(p)
    if kind == "softmax":
        return _weighted_mean(xp.astype(argmax_rows(p) == argmax_rows(y), p.dtype), weight)
    hit = xp.all((p > 0.5) == (y > 0.5), axis=1)  # one logistic column (binary), or one per label
    return _weighted_mean(xp.astype(hit, p.dtype), weight)


def r2(y: Any, p: Any, weight: Any) -> Any:
    """``sklearn.metrics.r2_score(y, p, sample_weight=weight)``, averaged uniformly over outputs.

    An output whose targets are constant scores 1.0 if predicted exactly and
    0.0 otherwise (``force_finite=True``).
    """
    xp = _xp(p)
    numerator = _average((y - p) ** 2, weight)
    denominator = _average((y - _average(y, weight)) ** 2, weight)
    constant = denominator == 0
    score = 1.0 - numerator / xp.where(constant, 1.0, denominator)
    score = xp.where(constant, xp.astype(numerator == 0, score.dtype), score)
    return xp.mean(score)
