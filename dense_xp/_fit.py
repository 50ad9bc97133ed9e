"""The in-memory training loop of :meth:`dense_xp.Sequential.fit` (``_dask_fit`` is the Dask one).

Batches come to the device through :func:`dense_xp._backend.device_batches`;
the running loss stays on the device between the guard's checks; a float16
compute dtype under wider parameters trains with dynamic loss scaling.
"""

from __future__ import annotations

from typing import Any

from . import _backend, _checks, _progress
from ._guard import Guard, TrainingDivergedError
from ._scaling import LossScaler
from .losses import accuracy

__all__ = ["loss_scaling", "run"]


def loss_scaling(model: Any) -> bool:
    """Whether ``fit`` scales the loss: float16 compute under wider parameters."""
    compute = model.compute_dtype
    return _checks.dtype_name(compute) == "float16" and compute != model.param_dtype


def run(
    model: Any, X: Any, y: Any, loss: Any, optimizer: Any, epochs: int, batch_size: int, shuffle: bool,
    validation_data: Any, rng: Any, progress: bool, guard: Guard,
) -> dict[str, list[float]]:  # fmt: skip
    """Train ``model`` for ``epochs`` on checked data; return the per-epoch history."""
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    n = X.shape[0]
    scaler = LossScaler() if loss_scaling(model) else None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n) if shuffle else None
        with _progress.bar(n, f"epoch {epoch}/{epochs}", enabled=progress) as bar:
            scores = _epoch(model, X, y, loss, optimizer, batch_size, order, epoch, bar, guard, scaler)
            if validation_data is not None:
                val = model._evaluate(*validation_data, loss=loss, batch_size=batch_size)
                scores |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            bar.set_postfix({name: f"{value:.4f}" for name, value in scores.items()})
        if scaler is not None:
            scores |= scaler.record()
        for name, value in scores.items():
            history.setdefault(name, []).append(value)
    return history


def _epoch(
    model: Any, X: Any, y: Any, loss: Any, optimizer: Any, batch_size: int, order: Any, epoch: int, bar: Any,
    guard: Guard, scaler: LossScaler | None,
) -> dict[str, float]:  # fmt: skip
    """One pass over the data; the running sums stay on the device between checks."""
    xp, device, n = model.xp, model.device, X.shape[0]
    last = -(-n // batch_size)
    total_loss, start, samples = 0.0, 1, 0
    window, total_acc = guard.zero(), guard.zero()
    batches = _backend.device_batches((X, y), model._batches(n, batch_size, order), xp=xp, device=device)
    for batch, (Xb, yb) in enumerate(batches, start=1):
        out = model._widen(model.forward(Xb))
        value, grad = loss(out, yb)
        if scaler is None:
            model.backward(grad)
            model._step(optimizer)
        else:
            model.backward(grad * scaler.scale)
            _scaled_step(model, optimizer, scaler, epoch, batch)
        m = out.shape[0]
        window = window + guard.widen(value) * m
        total_acc = total_acc + guard.widen(accuracy(out, yb)) * m
        samples += m
        bar.update(m)
        if batch % guard.every == 0 or batch == last:
            window_sum = guard.check(window, epoch=epoch, batch_start=start, batch_end=batch)
            total_loss += window_sum
            bar.set_postfix(loss=f"{window_sum / samples:.4f}", refresh=False)
            window, start, samples = guard.zero(), batch + 1, 0
    return {"loss": total_loss / n, "accuracy": float(total_acc) / n}


def _scaled_step(model: Any, optimizer: Any, scaler: LossScaler, epoch: int, batch: int) -> None:
    """The optimizer step on the unscaled gradients, or none where they are not all finite."""
    slots = model._slots()
    grads = [layer.grads[name] for layer, name in slots]
    finite = scaler.unscale(grads)
    for (layer, name), grad in zip(slots, grads, strict=True):
        layer.grads[name] = grad
    if finite:
        model._set_parameters(optimizer.step(model.parameters(), grads))
    scaler.update(finite)
    if scaler.exhausted:
        msg = (
            f"training diverged at epoch {epoch}, batch {batch}: the gradients are not finite "
            f"even at loss scale {scaler.scale:g}"
        )
        raise TrainingDivergedError(msg, epoch=epoch, batch=batch)
