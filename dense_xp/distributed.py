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

from . import _checks, _chunks, _dask_graphs
from .losses import METRICS, get_loss

__all__ = ["check_pair", "dask_module", "evaluate", "is_dask", "is_lazy", "predict", "unknown_chunks"]


def is_dask(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a Dask array (without importing Dask)."""
    return any(array_api_compat.is_dask_array(a) for a in arrays)


def is_lazy(model: Any) -> bool:
    """Whether ``model`` was built with ``xp=dask.array``: its parameters are lazy graphs."""
    return array_api_compat.is_dask_namespace(model.xp)


def dask_module() -> Any:
    """The ``dask`` module with ``dask.array`` imported, or an ImportError naming the extra."""
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


def unknown_chunks(a: Any) -> bool:
    """Whether the row chunks of the Dask array ``a`` have unknown sizes."""
    return any(math.isnan(c) for c in a.chunks[0])


def check_pair(model: Any, X: Any, y: Any, *, names: tuple[str, str] = ("X", "y")) -> tuple[Any, Any]:
    """``(X, y)`` as Dask arrays of real numbers with the same row chunks, ``X`` of the model's width."""
    for this, other, a in ((*names, X), (*names[::-1], y)):
        if not is_dask(a):
            msg = f"`{this}` must be a Dask array with the row chunks of `{other}`, got {type(a).__name__}"
            raise TypeError(msg)
    X = _check_array(X, names[0], width=model.input_size)
    y = _check_array(y, names[1], width=None)
    same = len(X.chunks[0]) == len(y.chunks[0]) and (
        unknown_chunks(X) or unknown_chunks(y) or X.chunks[0] == y.chunks[0]
    )
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
    dask = dask_module()
    if batch_size is not None:
        _checks.check_int(batch_size, "batch_size")
    X = _check_array(X, "X", width=model.input_size)
    width, dtype = model.output_size, _checks.dtype_name(model.compute_dtype)
    return X.map_blocks(
        _chunks.predict_chunk,
        _dask_graphs.send(dask, model),
        dtype,
        width,
        chunks=(X.chunks[0], (width,)),
        dtype=dtype,
        meta=X._meta.astype(dtype),
        name=f"dense-xp-predict-{uuid.uuid4().hex}",
    )


def evaluate(
    model: Any, X: Any, y: Any, *, loss: Any, metrics: Any = ("accuracy",), batch_size: int = 1024,
    sample_weight: Any = None,
) -> dict[str, float]:  # fmt: skip
    """Mean ``loss`` and each metric over Dask arrays ``X`` and ``y``, summed per chunk by Dask.

    ``y`` has the row chunks of ``X``, and ``sample_weight`` (a Dask array of
    shape ``(n,)``), if given, too; ``batch_size`` is checked but unused.
    Returns ``{"loss": ..., "accuracy": ...}`` as in-memory ``evaluate``.
    """
    dask = dask_module()
    loss = get_loss(loss)
    bad = [m for m in metrics if m not in METRICS] if not isinstance(metrics, str) else [metrics]
    if bad:
        msg = f"`metrics` must be a sequence of names from {METRICS}, got {metrics!r}"
        raise ValueError(msg)
    _checks.check_int(batch_size, "batch_size")
    X, y = check_pair(model, X, y)
    if sample_weight is not None:
        if not is_dask(sample_weight) or tuple(sample_weight.shape) != (X.shape[0],):
            got = f"{type(sample_weight).__name__} of shape {tuple(getattr(sample_weight, 'shape', ()))}"
            msg = f"`sample_weight` must be a Dask array of shape ({X.shape[0]},) with the row chunks of `X`"
            raise ValueError(f"{msg}, got {got}")
        sample_weight = sample_weight.rechunk({0: X.chunks[0]})
    scores = _evaluate(dask, model, (X, y, sample_weight), loss)
    return {"loss": scores["loss"], **{m: scores[m] for m in metrics}}


def _evaluate(dask: Any, model: Any, arrays: tuple[Any, Any, Any], loss: Any) -> dict[str, float]:
    X, y, weights = arrays
    name = f"dense-xp-evaluate-{uuid.uuid4().hex}"
    payload, task = _dask_graphs.send(dask, model, loss), dask.delayed(_chunks.evaluate_chunk, pure=True)
    pairs = zip(*_dask_graphs.blocks(X, y), strict=True)
    w = [None] * len(X.chunks[0]) if weights is None else _dask_graphs.blocks(weights)[0]
    parts = [task(payload, xb, yb, i, w[i], dask_key_name=f"{name}-{i}") for i, (xb, yb) in enumerate(pairs)]
    total_loss, total_hits, n = dask.compute(_dask_graphs.tree(dask, parts, name))[0]
    if n == 0:
        msg = f"`X` must have at least one row, got shape {tuple(X.shape)}"
        raise ValueError(msg)
    return {"loss": total_loss / n, "accuracy": total_hits / n}
