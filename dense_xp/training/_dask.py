"""The Dask engine of :func:`dense_xp.training.fit`: synchronous data-parallel steps, Dask the scheduler.

See :mod:`dense_xp.distributed` for what a step computes and where.
:func:`prepare` checks what is particular to Dask arrays and returns the
:class:`Engine` that the epoch loop drives.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterator
from typing import Any

from .. import _backend, _checks, _chunks, _dask_graphs, _data, distributed
from . import _weights
from ._guard import Guard

__all__ = ["Engine", "prepare"]


def prepare(model: Any, data: Any, options: Any) -> tuple[Any, Any]:
    """The engine of synchronous data-parallel training on Dask arrays (see the module docstring).

    Called by :func:`dense_xp.training.fit`, which runs its epoch loop and
    checked every argument the two engines share (``options``: a
    :class:`dense_xp.training.FitOptions`) and the model. Here: the Dask
    arrays, the targets (shapes first, on the whole arrays, then values,
    chunk by chunk on the workers), the row weights, and, with
    ``options.check_finite``, NaN or infinite values in ``X``, ``y``, the
    weights and the validation data, in one pass over the chunks.

    Parameters
    ----------
    model : Sequential
        A NumPy or CuPy model (or any non-lazy one); its parameters and the
        optimizer state stay on its device.
    data : FitData
        ``X`` (Dask, chunked by rows, chunk sizes known), ``y`` with its row
        chunks, ``weights`` (Dask with those row chunks, or host data) or
        ``class_weight``, and the validation data (Dask or host arrays).
    options : FitOptions

    Returns
    -------
    engine, validation_data
        The :class:`Engine` and the checked validation data ``(X, y, weights or None)``.
    """
    _refuse_model(model)
    dask = distributed.dask_module()
    loss = options.loss
    X, y = distributed.check_pair(model, data.X, data.y)
    if distributed.unknown_chunks(X):
        msg = (
            f"`X` has row chunks of unknown size {X.chunks[0]}; fit needs them to form batches: "
            "call `X.compute_chunk_sizes()` and `y.compute_chunk_sizes()` first"
        )
        raise ValueError(msg)
    if X.shape[0] == 0:
        msg = f"`X` must have shape (n, {model.input_size}) with n >= 1, got {tuple(X.shape)}"
        raise ValueError(msg)
    _check_target_shape(loss, y, "y", model.output_size)
    weights = _row_weights(dask, model, X, y, data.weights, data.class_weight, "sample_weight")
    targets, checked = [y], {"X": X, "y": y} | ({} if weights is None else {"sample_weight": weights})
    validation = None
    if data.validation is not None:
        validation, dask_targets = _validation(model, data, loss, options.check_finite)
        targets += dask_targets
        if dask_targets:
            names = ("validation_data[0]", "validation_data[1]", "validation_data[2]")
            checked |= {n: a for n, a in zip(names, validation, strict=False) if distributed.is_dask(a)}
    options.optimizer.check(model.parameters())
    payload = _dask_graphs.send(dask, model, loss)
    check, k = dask.delayed(_chunks.validate_chunk, pure=False), model.output_size
    tasks = [check(payload, part, k) for parts in _dask_graphs.blocks(*targets) for part in parts]
    # delayed too: dask.compute gives the results of arrays after those of delayed objects
    smallest = dask.delayed(float, pure=True)
    lowest = [
        smallest(a.min()) for name, a in checked.items() if name in ("sample_weight", "validation_data[2]")
    ]
    chunks = _dask_graphs.blocks(*checked.values()) if options.check_finite else []
    scan = dask.delayed(_chunks.nonfinite_chunk, pure=True)
    found = dask.compute(*tasks, *lowest, *(scan(part) for parts in chunks for part in parts))[len(tasks) :]
    for name, low in zip(
        (n for n in checked if n in ("sample_weight", "validation_data[2]")), found, strict=False
    ):
        if float(low) < 0:
            msg = f"`{name}` must hold weights >= 0, got a smallest weight of {float(low)}"
            raise ValueError(msg)
    found_chunks = iter(found[len(lowest) :])
    for name, parts in zip(checked, chunks, strict=False):  # one pass with the targets' checks
        _refuse_nonfinite(name, [next(found_chunks) for _ in parts])
    return Engine(dask, model, (X, y, weights), options), validation


def _row_weights(dask: Any, model: Any, X: Any, y: Any, weights: Any, class_weight: Any, name: str) -> Any:
    """The row weights as a Dask array with the row chunks of ``X`` (or ``None``)."""
    if class_weight is not None:
        return y.map_blocks(
            _weights.class_weights, class_weight, model.output_size, dtype="float64",
            drop_axis=list(range(1, y.ndim)), chunks=(y.chunks[0],),
        )  # fmt: skip
    if weights is None:
        return None
    if not distributed.is_dask(weights):
        weights = dask.array.from_array(_backend.to_numpy(weights), chunks=(X.chunks[0],))
    if weights.ndim != 1 or weights.shape[0] != X.shape[0]:
        msg = f"`{name}` must have shape ({X.shape[0]},), one weight per row, got {tuple(weights.shape)}"
        raise ValueError(msg)
    if weights.dtype.kind not in "iuf":
        msg = f"`{name}` must hold real numbers, got a Dask array of dtype {weights.dtype}"
        raise TypeError(msg)
    if weights.chunks[0] != X.chunks[0]:
        weights = weights.rechunk({0: X.chunks[0]})
    return weights


def _refuse_model(model: Any) -> None:
    """A model the Dask engine cannot train: lazy, mixed precision, or with batch statistics."""
    if distributed.is_lazy(model):
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
    for i, layer in enumerate(model.layers):
        if layer.batch_statistics:
            msg = (
                f"`layers[{i}]` ({type(layer).__name__}) normalizes with the statistics of each training "
                "batch; a fit on Dask arrays computes each chunk's rows apart, which would give per-chunk "
                "statistics. Train it in memory, or use LayerNorm, whose statistics are per row"
            )
            raise ValueError(msg)


def _check_target_shape(loss: Any, y: Any, name: str, n_outputs: int) -> None:
    """The loss's shape rule on the whole Dask array ``y`` (values are checked per chunk)."""
    check = getattr(loss, "check_shape", None)
    if check is not None:
        try:
            check(tuple(y.shape), n_outputs)
        except ValueError as exc:
            msg = str(exc).replace("`y`", f"`{name}`", 1)
            raise ValueError(msg) from None


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
) -> tuple[tuple[Any, ...], list[Any]]:
    """Checked ``(X_val, y_val, weights or None)`` and the Dask targets among them, still to be validated."""
    names = ("validation_data[0]", "validation_data[1]")
    X_val, y_val, *rest = data.validation
    w_val = rest[0] if rest else None
    if distributed.is_dask(X_val, y_val):
        X_val, y_val = distributed.check_pair(model, X_val, y_val, names=names)
        _check_target_shape(loss, y_val, names[1], model.output_size)
        dask = distributed.dask_module()
        w_val = _row_weights(dask, model, X_val, y_val, w_val, data.class_weight, "validation_data[2]")
        return (X_val, y_val, w_val), [y_val]
    X_val, y_val = _data.check_pair(model, X_val, y_val, loss, names=names, check_finite=check_finite)
    if w_val is not None:
        w_val = _data.check_weights(model, w_val, y_val.shape[0], "validation_data[2]")
    elif data.class_weight is not None:
        w_val = _weights.class_weights(y_val, data.class_weight, model.output_size)
    return (X_val, y_val, w_val), []


class Engine:
    """Synchronous data-parallel training: one Dask computation per step, the update on the client.

    The engine of :func:`dense_xp.training.fit` on Dask arrays (see
    :mod:`dense_xp.training._loop` for the protocol). Each step sends the
    model, with its current parameters, as one graph key.
    """

    def __init__(self, dask: Any, model: Any, arrays: tuple[Any, Any, Any], options: Any) -> None:
        X, y, weights = arrays
        self.dask, self.model, self.loss, self.optimizer = dask, model, options.loss, options.optimizer
        self.blocks = list(zip(*_dask_graphs.blocks(X, y), strict=True))
        self.weights = None if weights is None else _dask_graphs.blocks(weights)[0]
        self.sizes, self.n = list(X.chunks[0]), X.shape[0]
        self.batch_size = self.n if options.batch_size is None else options.batch_size
        self.starts = list(itertools.accumulate(self.sizes[:-1], initial=0))
        self.task = dask.delayed(_chunks.gradient_chunk, pure=True)
        self.name, self.count = f"dense-xp-fit-{uuid.uuid4().hex}", 0
        self.step = options.optimizer.steps  # the training step, which keys random layers
        self.guard = Guard(model, options.optimizer, 1)  # every step: the loss is on the client already

    def steps(self, order: Any, epoch: int, before: Any = None) -> Iterator[tuple[int, float, float]]:
        """Train on each batch of the epoch's ``order``; yield ``(rows, summed loss, summed hits)``."""
        size = self.batch_size
        for batch, start in enumerate(range(0, self.n, size)):
            if before is not None:
                before(batch, min(start + size, self.n) - start)
            flat, loss_sum, hits, rows = self._sums(start, min(start + size, self.n), order)
            self._step(flat, rows)
            self.step += 1
            yield rows, loss_sum, hits

    def evaluate(self, validation_data: Any) -> dict[str, float]:
        """Loss and accuracy on the validation data (Dask or host arrays)."""
        X, y, weights = validation_data
        scores: dict[str, float] = self.model.evaluate(
            X, y, loss=self.loss, batch_size=self.batch_size, sample_weight=weights
        )
        return scores

    def record(self) -> dict[str, float]:
        """Nothing more for the history (the Dask engine trains in one dtype)."""
        return {}

    def finish(self) -> None:
        """Nothing to leave behind: the parameters and the optimizer are on the client already."""

    def _sums(self, start: int, stop: int, order: Any) -> tuple[Any, float, float, int]:
        """The chunks' sums for rows ``[start, stop)`` of the epoch's order, added by Dask."""
        if order is None:
            pieces = [
                (b, slice(max(start - first, 0), min(stop - first, size)))
                for b, (first, size) in enumerate(zip(self.starts, self.sizes, strict=True))
                if first < stop and first + size > start
            ]
        else:
            pieces = _backend.split_rows(order[start:stop], self.starts)
        self.count += 1
        dask, name = self.dask, f"{self.name}-{self.count}"
        payload = _dask_graphs.send(dask, self.model, self.loss, name=f"{name}-model")
        parts = [
            self.task(
                payload,
                *self.blocks[b],
                index,
                (self.step, self.starts[b]),
                None if self.weights is None else self.weights[b],
                dask_key_name=f"{name}-{b}",
            )
            for b, index in pieces
        ]
        sums: tuple[Any, float, float, int] = dask.compute(_dask_graphs.tree(dask, parts, name))[0]
        return sums

    def _step(self, flat: Any, rows: int) -> None:
        """The mean gradient into each layer's ``grads``, then the model's own optimizer step."""
        model, xp = self.model, self.model.xp
        flat = _backend.from_host(_backend.to_numpy(flat), xp=xp, device=model.device, dtype=model.dtype)
        flat, offset = flat / rows, 0
        for layer in model.layers:
            grads = {}
            for name, p in layer.parameters().items():
                size = math.prod(p.shape)
                grads[name] = xp.reshape(flat[offset : offset + size], tuple(p.shape))
                offset += size
            layer.grads = grads
        model.set_parameters(self.optimizer.step(model.parameters(), model.gradients()))
