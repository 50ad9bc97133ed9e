"""The epoch loop both engines share: batches, progress, the guard's checks, validation, history.

An engine (:class:`._memory.Engine`, :class:`._dask.Engine`) gives
``n`` (rows), ``guard``, ``steps(order, epoch)`` -- an iterator that trains one
batch per item and yields ``(rows, summed loss, summed hits)`` -- ``evaluate``
for the validation data and ``record()`` for what it adds to the history at
the end of an epoch.
"""

from __future__ import annotations

from typing import Any

from .. import _progress

__all__ = ["run"]


def run(engine: Any, options: Any, validation_data: Any) -> dict[str, list[float]]:
    """Train for ``options.epochs``; return the per-epoch history."""
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    n, epochs = engine.n, options.epochs
    for epoch in range(1, epochs + 1):
        order = options.rng.permutation(n) if options.shuffle else None
        with _progress.bar(n, f"epoch {epoch}/{epochs}", enabled=options.progress) as bar:
            scores = _epoch(engine, order, epoch, bar)
            if validation_data is not None:
                val = engine.evaluate(validation_data)
                scores |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            bar.set_postfix({name: f"{value:.4f}" for name, value in scores.items()})
        scores |= engine.record()
        for name, value in scores.items():
            history.setdefault(name, []).append(value)
    return history


def _epoch(engine: Any, order: Any, epoch: int, bar: Any) -> dict[str, float]:
    """One pass over the data; the running sums stay where the engine keeps them between checks."""
    guard, n = engine.guard, engine.n
    total_loss, start, samples = 0.0, 1, 0
    window, total_hits = guard.zero(), guard.zero()
    batch = 0
    for batch, (rows, loss_sum, hits) in enumerate(engine.steps(order, epoch), start=1):
        window = window + loss_sum
        total_hits = total_hits + hits
        samples += rows
        bar.update(rows)
        if batch % guard.every == 0:
            total_loss += _check(guard, window, epoch, (start, batch), samples, bar)
            window, start, samples = guard.zero(), batch + 1, 0
    if samples:  # the last window of the epoch
        total_loss += _check(guard, window, epoch, (start, batch), samples, bar)
    return {"loss": total_loss / n, "accuracy": float(total_hits) / n}


def _check(guard: Any, window: Any, epoch: int, batches: tuple[int, int], samples: int, bar: Any) -> float:
    """The guard's check of a window of batches (it restores and raises on divergence); its loss sum."""
    window_sum: float = guard.check(window, epoch=epoch, batch_start=batches[0], batch_end=batches[1])
    bar.set_postfix(loss=f"{window_sum / samples:.4f}", refresh=False)
    return window_sum
