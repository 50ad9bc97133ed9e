"""The client side of Dask computations: the graph of a call or step, and the training loop.

Each function takes the ``dask`` module, imported by :mod:`dense_xp.distributed`.
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any

from . import _backend, _chunks, _progress
from ._guard import Guard

__all__ = ["SPLIT_EVERY", "Trainer", "blocks", "send", "tree"]

SPLIT_EVERY = 8  # fan-in of the tree that adds the chunks' sums


def blocks(*arrays: Any) -> list[list[Any]]:
    """One Delayed per row chunk of each Dask array (whose columns are one chunk).

    The graphs are left unoptimized, so they keep the keys they share: a chunk
    that several arrays derive from (labels computed from the features, say)
    is computed once per computation.
    """
    return [list(a.to_delayed(optimize_graph=False).ravel()) for a in arrays]


def tree(dask: Any, parts: list[Any], name: str) -> Any:
    """Dask adds ``parts`` (tuples of sums) in a tree of fan-in :data:`SPLIT_EVERY`."""
    add, level = dask.delayed(_chunks.add, pure=True), 0
    while len(parts) > 1:
        parts = [
            add(*parts[i : i + SPLIT_EVERY], dask_key_name=f"{name}-sum{level}-{i}")
            for i in range(0, len(parts), SPLIT_EVERY)
        ]
        level += 1
    return parts[0]


def send(dask: Any, model: Any, loss: Any = None, *, name: str | None = None) -> Any:
    """The model (parameters copied to the host) and the loss as one graph key."""
    name = name or f"dense-xp-model-{uuid.uuid4().hex}"
    return dask.delayed(_chunks.Payload(model, loss), name=name, traverse=False)


class Trainer:
    """Synchronous data-parallel training: one Dask computation per step, the update on the client.

    Each step sends the model, with its current parameters, as one graph key.
    """

    def __init__(self, dask: Any, model: Any, X: Any, y: Any, loss: Any, optimizer: Any) -> None:
        self.dask, self.model, self.loss, self.optimizer = dask, model, loss, optimizer
        self.blocks = list(zip(*blocks(X, y), strict=True))
        self.sizes, self.n = list(X.chunks[0]), X.shape[0]
        self.starts = list(itertools.accumulate(self.sizes[:-1], initial=0))
        self.task = dask.delayed(_chunks.gradient_chunk, pure=True)
        self.name, self.steps = f"dense-xp-fit-{uuid.uuid4().hex}", 0
        self.guard = Guard(model, optimizer, 1)  # every step: the loss is on the client already

    def run(
        self, epochs: int, batch_size: int | None, shuffle: bool, validation_data: Any, rng: Any,
        progress: bool,
    ) -> dict[str, list[float]]:  # fmt: skip
        """Train; returns the per-epoch history (``loss``, ``accuracy``, and ``val_*``)."""
        history: dict[str, list[float]] = {"loss": [], "accuracy": []}
        size = self.n if batch_size is None else batch_size
        for epoch in range(1, epochs + 1):
            order = rng.permutation(self.n) if shuffle else None
            with _progress.bar(self.n, f"epoch {epoch}/{epochs}", enabled=progress) as bar:
                scores = self._epoch(size, order, epoch, bar)
                if validation_data is not None:
                    val = self.model.evaluate(*validation_data, loss=self.loss, batch_size=batch_size or 1024)
                    scores |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
                bar.set_postfix({name: f"{value:.4f}" for name, value in scores.items()})
            for name, value in scores.items():
                history.setdefault(name, []).append(value)
        return history

    def _epoch(self, size: int, order: Any, epoch: int, bar: Any) -> dict[str, float]:
        model, guard = self.model, self.guard
        total_loss = total_hits = 0.0
        for batch, start in enumerate(range(0, self.n, size), start=1):
            flat, loss_sum, hits, rows = self._sums(start, min(start + size, self.n), order)
            value = loss_sum / rows
            self._step(flat, rows)
            window = model.xp.asarray(loss_sum, dtype=guard.dtype, device=model.device)
            guard.check(window, epoch=epoch, batch_start=batch, batch_end=batch)  # restores, raises
            total_loss, total_hits = total_loss + loss_sum, total_hits + hits
            bar.update(rows)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        return {"loss": total_loss / self.n, "accuracy": total_hits / self.n}

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
        self.steps += 1
        dask, name = self.dask, f"{self.name}-{self.steps}"
        payload = send(dask, self.model, self.loss, name=f"{name}-model")
        parts = [
            self.task(payload, *self.blocks[b], index, dask_key_name=f"{name}-{b}") for b, index in pieces
        ]
        sums: tuple[Any, float, float, int] = dask.compute(tree(dask, parts, name))[0]
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
        model._step(self.optimizer)
