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
from ._guard import Guard

__all__ = ["Engine", "prepare"]


def prepare(model: Any, X: Any, y: Any, *, options: Any, validation_data: Any = None) -> tuple[Any, Any]:
    """The engine of synchronous data-parallel training on Dask arrays (see the module docstring).

    Called by :func:`dense_xp.training.fit`, which runs its epoch loop and checked every argument the
    two engines share (``options``: a :class:`dense_xp.training.FitOptions`)
    and the model. Here: the Dask arrays, the targets (shapes first, on the
    whole arrays, then values, chunk by chunk on the workers), and, with
    ``options.check_finite``, NaN or infinite values in ``X``, ``y`` and
    ``validation_data``, in one pass over the chunks.

    Parameters
    ----------
    model : Sequential
        A NumPy or CuPy model (or any non-lazy one); its parameters and the
        optimizer state stay on its device.
    X : dask.array.Array, shape (n, input_size)
        Chunked by rows, chunk sizes known.
    y : dask.array.Array, shape (n,) or (n, output_size)
        With the row chunks of ``X``.
    options : FitOptions
    validation_data : (X_val, y_val), optional
        Dask or host arrays.

    Returns
    -------
    engine, validation_data
        The :class:`dense_xp._dask_graphs.Engine` and the checked validation data.
    """
    _refuse_model(model)
    dask = distributed.dask_module()
    loss = options.loss
    X, y = distributed.check_pair(model, X, y)
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
    targets, data = [y], {"X": X, "y": y}
    if validation_data is not None:
        validation_data, checked = _validation(model, validation_data, loss, options.check_finite)
        targets += checked
        if checked:
            data |= {"validation_data[0]": validation_data[0], "validation_data[1]": validation_data[1]}
    options.optimizer.check(model.parameters())
    payload = _dask_graphs.send(dask, model, loss)
    check, k = dask.delayed(_chunks.validate_chunk, pure=False), model.output_size
    tasks = [check(payload, part, k) for parts in _dask_graphs.blocks(*targets) for part in parts]
    chunks = _dask_graphs.blocks(*data.values()) if options.check_finite else []
    scan = dask.delayed(_chunks.nonfinite_chunk, pure=True)
    found = iter(dask.compute(*tasks, *(scan(part) for parts in chunks for part in parts))[len(tasks) :])
    for name, parts in zip(data, chunks, strict=False):  # one pass with the targets' checks
        _refuse_nonfinite(name, [next(found) for _ in parts])
    return Engine(dask, model, X, y, options), validation_data


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
) -> tuple[tuple[Any, Any], list[Any]]:
    """Checked ``(X_val, y_val)`` and the Dask targets among them, still to be validated."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        msg = f"`validation_data` must be a pair (X_val, y_val), got {type(data).__name__}"
        raise TypeError(msg)
    names = ("validation_data[0]", "validation_data[1]")
    if distributed.is_dask(*data):
        pair = distributed.check_pair(model, *data, names=names)
        _check_target_shape(loss, pair[1], names[1], model.output_size)
        return pair, [pair[1]]
    return _data.check_pair(model, data[0], data[1], loss, names=names, check_finite=check_finite), []


class Engine:
    """Synchronous data-parallel training: one Dask computation per step, the update on the client.

    The engine of :func:`dense_xp.training.fit` on Dask arrays (see
    :mod:`dense_xp.training._loop` for the protocol). Each step sends the
    model, with its current parameters, as one graph key.
    """

    def __init__(self, dask: Any, model: Any, X: Any, y: Any, options: Any) -> None:
        self.dask, self.model, self.loss, self.optimizer = dask, model, options.loss, options.optimizer
        self.blocks = list(zip(*_dask_graphs.blocks(X, y), strict=True))
        self.sizes, self.n = list(X.chunks[0]), X.shape[0]
        self.batch_size = self.n if options.batch_size is None else options.batch_size
        self.starts = list(itertools.accumulate(self.sizes[:-1], initial=0))
        self.task = dask.delayed(_chunks.gradient_chunk, pure=True)
        self.name, self.count = f"dense-xp-fit-{uuid.uuid4().hex}", 0
        self.step = options.optimizer.steps  # the training step, which keys random layers
        self.guard = Guard(model, options.optimizer, 1)  # every step: the loss is on the client already

    def steps(self, order: Any, epoch: int) -> Iterator[tuple[int, float, float]]:
        """Train on each batch of the epoch's ``order``; yield ``(rows, summed loss, summed hits)``."""
        size = self.batch_size
        for start in range(0, self.n, size):
            flat, loss_sum, hits, rows = self._sums(start, min(start + size, self.n), order)
            self._step(flat, rows)
            self.step += 1
            yield rows, loss_sum, hits

    def evaluate(self, validation_data: Any) -> dict[str, float]:
        """Loss and accuracy on the validation data (Dask or host arrays)."""
        scores: dict[str, float] = self.model.evaluate(
            *validation_data, loss=self.loss, batch_size=self.batch_size
        )
        return scores

    def record(self) -> dict[str, float]:
        """Nothing more for the history (the Dask engine trains in one dtype)."""
        return {}

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
                payload, *self.blocks[b], index, (self.step, self.starts[b]), dask_key_name=f"{name}-{b}"
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
