"""Predict, evaluate and data-parallel fit on Dask arrays, with Dask as the engine.

:meth:`Sequential.predict`, :meth:`~Sequential.evaluate` and :meth:`~Sequential.fit`
come here when ``X`` is a Dask array chunked by rows (a chunk holds whole rows;
columns split in chunks are joined first). Every chunk is computed where it
lives, by the model's own NumPy or CuPy code: the chunk's array library and
device decide where (CuPy chunks on dask-cuda workers compute on their GPUs).
Dask schedules every task, on its local schedulers or on a
``dask.distributed.Client``, and the data never comes to the client.

The model travels as one graph key per call or per training step: the
parameters as host arrays, moved once per worker to the device of its chunks.

``fit`` is synchronous data-parallel training. The parameters and the
optimizer state stay concrete arrays on the model's device, on the client.
Each step sends the parameters out, each chunk holding rows of the global batch
computes the summed loss gradient of those rows with the model's own
``forward``/``backward``, Dask adds the sums in a tree, and the client applies
``optimizer.step`` once. The batches are those of in-memory ``fit``: rows
``[i * batch_size, (i + 1) * batch_size)`` of the epoch's order, which is
``0..n-1`` with ``shuffle=False`` and otherwise the permutation in-memory
``fit`` draws, ``RandomState(seed).permutation(n)`` once per epoch. Each chunk
gathers its own rows of a batch, so every step spreads over the chunks, and
distributed and in-memory training with one seed see the same batches.
``batch_size=None`` trains on all rows at each step.

A step recomputes the chunks it touches unless ``X`` and ``y`` are persisted
(``X, y = dask.persist(X, y)``); for data larger than the cluster's memory use
``shuffle=False`` and a ``batch_size`` that is a multiple of the chunk size, so
each chunk is computed once per epoch.

Importing :mod:`dense_xp` never imports Dask; install ``dense-xp[dask]``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import array_api_compat

from . import _backend, _checks, _chunks, _dask_fit
from .losses import get_loss
from .optimizers import get_optimizer

__all__ = ["evaluate", "fit", "is_dask", "is_lazy", "predict"]


def is_dask(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a Dask array (without importing Dask)."""
    return any(array_api_compat.is_dask_array(a) for a in arrays)


def is_lazy(model: Any) -> bool:
    """Whether ``model`` was built with ``xp=dask.array``: its parameters are lazy graphs."""
    return array_api_compat.is_dask_namespace(model.xp)


def _dask() -> Any:
    try:
        import dask
        import dask.array
    except ImportError:
        msg = 'Dask arrays need Dask: `pip install "dense-xp[dask]"` (dask[array,distributed])'
        raise ImportError(msg) from None
    return dask


def _check_array(a: Any, name: str, *, width: int | None) -> Any:
    """``a`` as a Dask array of real numbers chunked by rows (only), of ``width`` columns if given."""
    if a.dtype.kind not in "iuf":
        msg = f"`{name}` must hold real numbers, got a Dask array of dtype {a.dtype}"
        raise TypeError(msg)
    shape = tuple(a.shape)
    if width is not None and (a.ndim != 2 or shape[1] != width):
        msg = f"`{name}` must have shape (n, {width}), got {shape}"
        raise ValueError(msg)
    if a.ndim not in (1, 2):
        msg = f"`{name}` must have shape (n,) or (n, k), got {shape}"
        raise ValueError(msg)
    if a.ndim == 2 and len(a.chunks[1]) > 1:
        if any(math.isnan(c) for c in a.chunks[1]):
            msg = f"`{name}` is split along columns in chunks of unknown sizes {a.chunks[1]}: cannot rechunk"
            raise ValueError(msg)
        a = a.rechunk({1: -1})
    return a


def _unknown(a: Any) -> bool:
    return any(math.isnan(c) for c in a.chunks[0])


def _check_pair(model: Any, X: Any, y: Any, *, names: tuple[str, str] = ("X", "y")) -> tuple[Any, Any]:
    for this, other, a in ((*names, X), (*names[::-1], y)):
        if not is_dask(a):
            msg = f"`{this}` must be a Dask array with the row chunks of `{other}`, got {type(a).__name__}"
            raise TypeError(msg)
    X = _check_array(X, names[0], width=model.layers[0].input_size)
    y = _check_array(y, names[1], width=None)
    same = len(X.chunks[0]) == len(y.chunks[0]) and (_unknown(X) or _unknown(y) or X.chunks[0] == y.chunks[0])
    if not same:
        msg = (
            f"`{names[1]}` must have the row chunks of `{names[0]}`, got {y.chunks[0]} and {X.chunks[0]}; "
            f"rechunk one with `{names[1]}.rechunk({{0: {names[0]}.chunks[0]}})`"
        )
        raise ValueError(msg)
    return X, y


# -- the public calls, on the client ----------------------------------------------------
def predict(model: Any, X: Any, batch_size: int | None = None) -> Any:
    """Outputs for the Dask array ``X``: a lazy Dask array built with ``map_blocks``.

    Parameters
    ----------
    model : Sequential
    X : dask.array.Array, shape (n, input_size)
        Chunked by rows; chunk sizes may be unknown.
    batch_size : int, optional
        Unused: the chunks bound the memory of each task.

    Returns
    -------
    dask.array.Array, shape (n, output_size), in the model's ``compute_dtype``
        One chunk per chunk of ``X``, of its array library and device. The
        parameters are those at the time of the call.
    """
    dask = _dask()
    if batch_size is not None:
        _checks.check_int(batch_size, "batch_size")
    X = _check_array(X, "X", width=model.layers[0].input_size)
    width, dtype = model.layers[-1].output_size, _checks.dtype_name(model.compute_dtype)
    return X.map_blocks(
        _chunks.predict_chunk,
        _dask_fit.send(dask, model),
        dtype,
        width,
        chunks=(X.chunks[0], (width,)),
        dtype=dtype,
        meta=X._meta.astype(dtype),
        name=f"dense-xp-predict-{uuid.uuid4().hex}",
    )


def evaluate(
    model: Any, X: Any, y: Any, *, loss: Any, metrics: Any = ("accuracy",), batch_size: int = 1024
) -> dict[str, float]:
    """Mean ``loss`` and each metric over Dask arrays ``X`` and ``y``, summed per chunk by Dask.

    ``y`` has the row chunks of ``X``; ``batch_size`` is checked but unused.
    Returns ``{"loss": ..., "accuracy": ...}`` as in-memory ``evaluate``.
    """
    from .sequential import METRICS

    dask = _dask()
    loss = get_loss(loss)
    bad = [m for m in metrics if m not in METRICS] if not isinstance(metrics, str) else [metrics]
    if bad:
        msg = f"`metrics` must be a sequence of names from {METRICS}, got {metrics!r}"
        raise ValueError(msg)
    _checks.check_int(batch_size, "batch_size")
    X, y = _check_pair(model, X, y)
    scores = _evaluate(dask, model, X, y, loss)
    return {"loss": scores["loss"], **{m: scores[m] for m in metrics}}


def _evaluate(dask: Any, model: Any, X: Any, y: Any, loss: Any) -> dict[str, float]:
    name = f"dense-xp-evaluate-{uuid.uuid4().hex}"
    payload, task = _dask_fit.send(dask, model, loss), dask.delayed(_chunks.evaluate_chunk, pure=True)
    pairs = zip(*_dask_fit.blocks(X, y), strict=True)
    parts = [task(payload, xb, yb, i, dask_key_name=f"{name}-{i}") for i, (xb, yb) in enumerate(pairs)]
    total_loss, total_hits, n = dask.compute(_dask_fit.tree(dask, parts, name))[0]
    if n == 0:
        msg = f"`X` must have at least one row, got shape {tuple(X.shape)}"
        raise ValueError(msg)
    return {"loss": total_loss / n, "accuracy": total_hits / n}


def fit(
    model: Any,
    X: Any,
    y: Any,
    *,
    loss: Any,
    optimizer: Any = "adam",
    epochs: int = 10,
    batch_size: int | None = 32,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    seed: int | None = None,
    progress: bool = True,
    check_finite: bool = True,
) -> dict[str, list[float]]:
    """Synchronous data-parallel training on Dask arrays (see the module docstring).

    Parameters
    ----------
    model : Sequential
        A NumPy or CuPy model (or any non-lazy one); its parameters and the
        optimizer state stay on its device.
    X : dask.array.Array, shape (n, input_size)
        Chunked by rows, chunk sizes known.
    y : dask.array.Array, shape (n,) or (n, output_size)
        With the row chunks of ``X``.
    batch_size : int or None, default 32
        Rows per step; ``None`` takes all rows.
    loss, optimizer, epochs, shuffle, validation_data, seed, progress
        As in :meth:`Sequential.fit`; ``validation_data`` may hold Dask or host arrays.
    check_finite : bool, default True
        Refuse NaN or infinite values in ``X``, ``y`` or ``validation_data``
        before training, naming the argument, the count and the first index,
        as in-memory ``fit`` does. The check is one pass over the chunks, in the
        same computation that validates the targets.

    Returns
    -------
    dict
        The per-epoch history of in-memory ``fit``.
    """
    if is_lazy(model):
        msg = (
            "`fit` does not train a lazy model (xp=dask.array): every step would add to the graph of all "
            "the steps before it. Train a NumPy or CuPy model on Dask-array data instead, e.g. "
            "`model.to('cpu').fit(X, y, ...)` with X and y Dask arrays; `predict` on Dask arrays stays lazy"
        )
        raise TypeError(msg)
    if model.compute_dtype != model.param_dtype:
        msg = (
            f"`fit` on Dask arrays trains in one dtype; this model computes in "
            f"{_checks.dtype_name(model.compute_dtype)} under {_checks.dtype_name(model.param_dtype)} "
            "parameters (mixed precision, which needs loss scaling per step): move it with "
            f"`model.to(dtype={_checks.dtype_name(model.param_dtype)!r})` first, or train on in-memory arrays"
        )
        raise ValueError(msg)
    dask = _dask()
    loss, optimizer = get_loss(loss), get_optimizer(optimizer)
    for name, flag in (("shuffle", shuffle), ("progress", progress), ("check_finite", check_finite)):
        _checks.check_bool(flag, name)
    epochs = _checks.check_int(epochs, "epochs", minimum=0)
    if batch_size is not None:
        batch_size = _checks.check_int(batch_size, "batch_size", minimum=1)
    rng = _backend.host_rng(_checks.check_seed(seed))
    X, y = _check_pair(model, X, y)
    if _unknown(X):
        msg = (
            f"`X` has row chunks of unknown size {X.chunks[0]}; fit needs them to form batches: "
            "call `X.compute_chunk_sizes()` and `y.compute_chunk_sizes()` first"
        )
        raise ValueError(msg)
    if X.shape[0] == 0:
        msg = f"`X` must have shape (n, {model.layers[0].input_size}) with n >= 1, got {tuple(X.shape)}"
        raise ValueError(msg)
    targets, data = [y], {"X": X, "y": y}
    if validation_data is not None:
        validation_data, checked = _validation(model, validation_data, loss, check_finite)
        targets += checked
        if checked:
            data |= {"validation_data[0]": validation_data[0], "validation_data[1]": validation_data[1]}
    payload = _dask_fit.send(dask, model, loss)
    check, k = dask.delayed(_chunks.validate_chunk, pure=False), model.layers[-1].output_size
    tasks = [check(payload, part, k) for parts in _dask_fit.blocks(*targets) for part in parts]
    chunks = _dask_fit.blocks(*data.values()) if check_finite else []
    scan = dask.delayed(_chunks.nonfinite_chunk, pure=True)
    found = iter(dask.compute(*tasks, *(scan(part) for parts in chunks for part in parts))[len(tasks) :])
    for name, parts in zip(data, chunks, strict=False):  # one pass with the targets' checks
        _refuse_nonfinite(name, [next(found) for _ in parts])
    with _backend.float_errors_ignored():
        trainer = _dask_fit.Trainer(dask, model, X, y, loss, optimizer)
        return trainer.run(epochs, batch_size, shuffle, validation_data, rng, progress)


def _refuse_nonfinite(name: str, per_chunk: list[tuple[int, int, tuple[int, ...] | None]]) -> None:
    """The ValueError of in-memory ``fit`` for the Dask array ``name``, from its chunks' counts."""
    offset, total, first = 0, 0, None
    for rows, bad, index in per_chunk:
        if first is None and index is not None:
            first = (offset + index[0], *index[1:])
        offset, total = offset + rows, total + bad
    if total:
        raise _backend.nonfinite_error(name, total, first)


def _validation(
    model: Any, data: Any, loss: Any, check_finite: bool = False
) -> tuple[tuple[Any, Any], list[Any]]:
    """Checked ``(X_val, y_val)`` and the Dask targets among them, still to be validated."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        msg = f"`validation_data` must be a pair (X_val, y_val), got {type(data).__name__}"
        raise TypeError(msg)
    if is_dask(*data):
        pair = _check_pair(model, *data, names=("validation_data[0]", "validation_data[1]"))
        return pair, [pair[1]]
    names = ("validation_data[0]", "validation_data[1]")
    return model._data(*data, loss, names=names, check_finite=check_finite), []
