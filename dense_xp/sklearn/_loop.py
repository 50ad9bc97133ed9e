"""The epoch loop of scikit-learn's stochastic solvers (``_fit_stochastic``), on the device.

The loop is scikit-learn's: per epoch a fresh permutation of the previous
order (drawn on the host, as ``sklearn.utils.shuffle`` draws it), mini-batches
of ``batch_size`` rows, the L2 term ``0.5 * alpha * sum ||W||^2 / sum(weights)``
in each batch loss and ``alpha * W / sum(weights)`` in each weight gradient,
the loss of the epoch as the size-weighted mean of the batch losses, and the
``tol`` / ``n_iter_no_change`` rule on the training loss or, with early
stopping, on the validation score. Only scalars come back to the host: one
loss per epoch, one validation score per epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from sklearn.exceptions import ConvergenceWarning

from .. import _backend
from ..model import Sequential
from . import _losses, _net
from ._optim import Solver

__all__ = ["Data", "Record", "Settings", "fit_stochastic", "snapshot"]


@dataclasses.dataclass
class Data:
    """Training (and validation) arrays on the compute device.

    ``X`` ``(n, n_features)``, ``Y`` ``(n, n_outputs)`` in ``X``'s dtype (the
    label indicator for a classifier), ``weight`` ``(n,)`` or None; ``order``
    the host permutation of the previous epoch, or None before the first.
    """

    X: Any
    Y: Any
    weight: Any
    X_val: Any = None
    Y_val: Any = None
    weight_val: Any = None
    order: Any = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the loop needs of the estimator's hyperparameters and of its output."""

    kind: str  # the output activation: softmax, logistic, identity or exp
    classifier: bool
    alpha: float
    batch_size: int
    max_iter: int
    shuffle: bool
    tol: float
    n_iter_no_change: float
    early_stopping: bool
    incremental: bool
    verbose: Any

    @classmethod
    def of(cls, params: dict[str, Any], kind: str, *, n: int, incremental: bool) -> Settings:
        """The settings of the hyperparameters ``params`` (``get_params()``) for ``n`` training rows.

        ``batch_size="auto"`` is ``min(200, n)``; a larger size is clipped to ``n``, with a warning.
        """
        size = params["batch_size"]
        if size != "auto" and size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                stacklevel=5,
            )
        return cls(
            kind=kind,
            classifier=kind in ("softmax", "logistic"),
            alpha=float(params["alpha"]),
            batch_size=min(200, n) if size == "auto" else min(size, n),
            max_iter=params["max_iter"],
            shuffle=params["shuffle"],
            tol=float(params["tol"]),
            n_iter_no_change=params["n_iter_no_change"],
            early_stopping=params["early_stopping"],
            incremental=incremental,
            verbose=params["verbose"],
        )


@dataclasses.dataclass
class Record:
    """The training record, scikit-learn's attributes: kept by the estimator between calls."""

    n_iter: int
    t: int
    loss: float | None
    loss_curve: list[float]
    best_loss: float | None
    validation_scores: list[float] | None
    best_validation_score: float | None
    no_improvement_count: int
    best: tuple[list[Any], list[Any]]  # the best weights and intercepts so far (early stopping)


def snapshot(net: Sequential) -> tuple[list[Any], list[Any]]:
    """Copies of the network's weights and intercepts (1-D), where they live."""
    coefs, intercepts = [], []
    for layer in _net.dense_layers(net):
        W, b = _net.layer_params(layer)
        coefs.append(layer.xp.asarray(W, copy=True))
        intercepts.append(layer.xp.asarray(b, copy=True))
    return coefs, intercepts


def _step(net: Sequential, solver: Solver, batch: tuple[Any, Any, Any], settings: Settings) -> Any:
    """Forward, loss, backward and one update on ``batch``; returns the batch loss (0-d, on the device)."""
    X, Y, weight = batch
    xp, n = net.xp, X.shape[0]
    kind, alpha = settings.kind, settings.alpha
    p = _losses.output(net.forward(X), kind)
    weight_sum = n if weight is None else xp.sum(weight)
    loss = _losses.loss(Y, p, weight, kind)
    if alpha:
        squares = sum(xp.sum(layer.W * layer.W) for layer in _net.dense_layers(net))
        loss = loss + (0.5 * alpha) * squares / weight_sum
    d_out = _losses.delta(Y, p, weight)
    if weight is not None:  # backward divides by n; scikit-learn by the sum of the weights
        d_out = d_out * (n / weight_sum)
    net.backward(d_out, input_grad=False)
    params, grads = [], []
    for layer in _net.dense_layers(net):
        W, b = layer.W, layer.b
        dW = layer.grads["W"]
        params += [W, b]
        grads += [dW + (alpha / weight_sum) * W if alpha else dW, layer.grads["b"]]
    new = solver.step(params, grads)
    for i, layer in enumerate(_net.dense_layers(net)):
        b = new[2 * i + 1]
        _net.set_layer_params(layer, new[2 * i], xp.reshape(b, (b.shape[1],)))
    return loss


def _batches(data: Data, batch_size: int, order: Any, *, xp: Any, device: Any) -> Any:
    n = data.X.shape[0]
    index = None
    if order is not None:
        indexing = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
        index = _backend.from_host(order, xp=xp, device=device, dtype=indexing)  # once per epoch
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if index is None:
            rows = slice(start, stop)
            yield data.X[rows, ...], data.Y[rows, ...], None if data.weight is None else data.weight[rows]
        else:
            take = index[start:stop]
            yield (
                xp.take(data.X, take, axis=0),
                xp.take(data.Y, take, axis=0),
                None if data.weight is None else xp.take(data.weight, take, axis=0),
            )


def _score(settings: Settings, net: Sequential, data: Data) -> float:
    """The validation score: accuracy for a classifier, R^2 for a regressor."""
    p = _losses.output(net.forward(data.X_val), settings.kind)
    if settings.classifier:
        return float(_losses.accuracy(data.Y_val, p, data.weight_val, settings.kind))
    return float(_losses.r2(data.Y_val, p, data.weight_val))


def _no_improvement(record: Record, settings: Settings, net: Sequential, data: Data) -> None:
    """scikit-learn's ``_update_no_improvement_count``."""
    if settings.early_stopping:
        value = _score(settings, net, data)
        assert record.validation_scores is not None
        assert record.best_validation_score is not None
        record.validation_scores.append(value)
        if settings.verbose:
            print(f"Validation score: {value:f}")
        if value < record.best_validation_score + settings.tol:
            record.no_improvement_count += 1
        else:
            record.no_improvement_count = 0
        if value > record.best_validation_score:
            record.best_validation_score = value
            record.best = snapshot(net)
    else:
        last = record.loss_curve[-1]
        assert record.best_loss is not None
        if last > record.best_loss - settings.tol:
            record.no_improvement_count += 1
        else:
            record.no_improvement_count = 0
        if last < record.best_loss:
            record.best_loss = last


def _epoch(record: Record, settings: Settings, net: Sequential, solver: Solver, data: Data, rng: Any) -> None:
    n = data.X.shape[0]
    order = None
    if settings.shuffle:  # sklearn.utils.shuffle(order, random_state=rng): order[rng.permutation(n)]
        perm = rng.permutation(n)
        order = data.order = perm if data.order is None else data.order[perm]
    total: Any = 0.0
    for batch in _batches(data, settings.batch_size, order, xp=net.xp, device=net.device):
        total = total + _step(net, solver, batch, settings) * batch[0].shape[0]
    record.n_iter += 1
    record.loss = float(total) / n  # the epoch's one read from the device
    record.t += n
    record.loss_curve.append(record.loss)
    if settings.verbose:
        print(f"Iteration {record.n_iter}, loss = {record.loss:.8f}")


def fit_stochastic(
    record: Record, settings: Settings, net: Sequential, solver: Solver, data: Data, rng: Any
) -> None:
    """Train ``net`` for up to ``settings.max_iter`` epochs (one when incremental), as scikit-learn.

    ``rng`` is the host ``RandomState`` of the shuffles. ``record`` is
    updated in place (``n_iter`` counts this call's epochs); with early
    stopping the network ends with the best weights.
    """
    try:
        record.n_iter = 0
        for _ in range(settings.max_iter):
            _epoch(record, settings, net, solver, data, rng)
            _no_improvement(record, settings, net, data)
            solver.iteration_ends(record.t)
            if record.no_improvement_count > settings.n_iter_no_change:
                subject = "Validation score" if settings.early_stopping else "Training loss"
                msg = (
                    f"{subject} did not improve more than tol={settings.tol:f} for "
                    f"{settings.n_iter_no_change} consecutive epochs."
                )
                if solver.trigger_stopping(msg, settings.verbose):
                    break
                record.no_improvement_count = 0
            if settings.incremental:
                break
            if record.n_iter == settings.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({settings.max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=4,
                )
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.", stacklevel=4)
    if settings.early_stopping:  # the best weights
        for layer, W, b in zip(_net.dense_layers(net), *record.best, strict=True):
            _net.set_layer_params(layer, W, b)
