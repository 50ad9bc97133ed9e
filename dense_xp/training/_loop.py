"""The epoch loop both engines share: batches, callbacks, progress, the guard's checks, validation, history.

An engine (:class:`._memory.Engine`, :class:`._dask.Engine`) gives ``n``
(rows), ``guard``, ``steps(order, epoch)`` -- an iterator that trains one
batch per item and yields ``(rows, summed loss, summed hits)`` -- ``evaluate``
for the validation data, ``record()`` for what it adds to the history at the
end of an epoch, and ``finish()``, called once training ends, however it ends.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import _progress

__all__ = ["run"]


def run(engine: Any, options: Any, validation_data: Any) -> dict[str, list[float]]:
    """Train epochs ``initial_epoch + 1 .. epochs``; return their history."""
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    n, epochs, callbacks, model = engine.n, options.epochs, options.callbacks, engine.model
    for _ in range(options.initial_epoch if options.shuffle else 0):  # the shuffles of the epochs before
        options.rng.permutation(n)
    model.stop_training = False
    logs: dict[str, float] = {}
    try:
        callbacks.call("on_train_begin", {})
        for epoch in range(options.initial_epoch + 1, epochs + 1):
            order = options.rng.permutation(n) if options.shuffle else None
            callbacks.call("on_epoch_begin", epoch - 1, {})
            with _progress.bar(n, f"epoch {epoch}/{epochs}", enabled=options.verbose == 1) as bar:
                logs = _epoch(engine, order, epoch, bar, callbacks)
                if validation_data is not None:
                    val = engine.evaluate(validation_data)
                    logs |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
                bar.set_postfix({name: f"{value:.4f}" for name, value in logs.items()})
            logs |= engine.record()
            if options.optimizer.schedule is not None:
                logs["lr"] = options.optimizer.lr  # the rate this epoch trained with
            options.optimizer.end_epoch(logs)  # epoch schedules and reduce-on-plateau move here
            if options.verbose == 2:
                print(_line(epoch, epochs, logs), file=sys.stdout, flush=True)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            callbacks.call("on_epoch_end", epoch - 1, dict(logs))
            if model.stop_training:
                break
        callbacks.call("on_train_end", dict(logs))
    finally:
        engine.finish()
    return history


def _line(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    """``epoch 3/20 - loss: 0.1234 - accuracy: 0.9500 - val_loss: ...`` (``verbose=2``)."""
    return " - ".join([f"epoch {epoch}/{epochs}", *(f"{name}: {value:.4g}" for name, value in logs.items())])


def _epoch(engine: Any, order: Any, epoch: int, bar: Any, callbacks: Any) -> dict[str, float]:
    """One pass over the data; the running sums stay where the engine keeps them between checks."""
    guard, model = engine.guard, engine.model
    total_loss, start, samples, seen = 0.0, 1, 0, 0
    window, total_hits = guard.zero(), guard.zero()
    batch = 0
    hooks = callbacks.batch_hooks
    for batch, (rows, loss_sum, hits) in enumerate(engine.steps(order, epoch, _before(callbacks)), start=1):
        window = window + loss_sum
        total_hits = total_hits + hits
        samples += rows
        seen += rows
        bar.update(rows)
        if batch % guard.every == 0:
            total_loss += _check(guard, window, epoch, (start, batch), samples, bar)
            window, start, samples = guard.zero(), batch + 1, 0
        if hooks:
            callbacks.call("on_train_batch_end", batch - 1, {"size": rows})
        if model.stop_training:
            break
    if samples:  # the last window of the epoch
        total_loss += _check(guard, window, epoch, (start, batch), samples, bar)
    return {"loss": total_loss / seen, "accuracy": float(total_hits) / seen}


def _before(callbacks: Any) -> Any:
    """What the engine calls before each batch: the callbacks' ``on_train_batch_begin``, or ``None``."""
    if not callbacks.batch_hooks:
        return None
    return lambda batch, rows: callbacks.call("on_train_batch_begin", batch, {"size": rows})


def _check(guard: Any, window: Any, epoch: int, batches: tuple[int, int], samples: int, bar: Any) -> float:
    """The guard's check of a window of batches (it restores and raises on divergence); its loss sum."""
    window_sum: float = guard.check(window, epoch=epoch, batch_start=batches[0], batch_end=batches[1])
    bar.set_postfix(loss=f"{window_sum / samples:.4f}", refresh=False)
    return window_sum
