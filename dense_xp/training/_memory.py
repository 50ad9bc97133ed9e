"""The in-memory engine of :func:`dense_xp.training.fit`: batches on the model's device.

Batches come to the device through :func:`dense_xp._backend.device_batches`;
the sums of a window stay on the device between the guard's checks; a
float16 compute dtype under wider parameters trains with dynamic loss scaling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _backend, _checks, _data
from ..layers.base import training_batch
from ..losses import Loss, hit_counter, target_classes
from . import _compiled, _planned
from ._guard import Guard, TrainingDivergedError
from ._scaling import LossScaler

__all__ = ["Engine", "loss_scaling"]


def loss_scaling(model: Any) -> bool:
    """Whether ``fit`` scales the loss: float16 compute under wider parameters."""
    compute = model.compute_dtype
    return _checks.dtype_name(compute) == "float16" and compute != model.param_dtype


class Engine:
    """One model trained on checked ``(X, y)`` in memory (see :mod:`._loop` for the protocol)."""

    def __init__(self, model: Any, X: Any, y: Any, options: Any, weights: Any = None) -> None:
        self.model, self.options = model, options
        # the class of each row, for the accuracy, found once rather than on every batch
        classes = target_classes(y, model.output_size)
        if _backend.is_host(classes):  # labels in a dtype the device holds; bools as they are
            if classes.dtype == bool:
                classes = _backend.from_host(classes, xp=model.xp, device=model.device)
            else:
                classes = _backend.as_input(classes, name="y", xp=model.xp, device=model.device)
        self.arrays = (X, y, classes) if weights is None else (X, y, classes, weights)
        self.optimizer = options.optimizer
        # checked once per fit: the loss and accuracy skip their namespace lookups on every batch
        self.loss = options.loss.bind(model.xp) if isinstance(options.loss, Loss) else options.loss
        self.hits = hit_counter(model.xp)
        self.n = X.shape[0]
        self.batch_size = self.n if options.batch_size is None else options.batch_size
        self.guard = Guard(model, options.optimizer, options.check_every)
        self.step = options.optimizer.steps  # the training step, which keys random layers
        # the loss scale lives with the optimizer: it carries over from one fit to the next
        self.scaler = LossScaler.from_state(options.optimizer.loss_scale) if loss_scaling(model) else None
        # the step as one compiled function, made after the first (eager) step started the optimizer
        self.eager_reason = _compiled.plan(model, options, self.scaler is not None)
        self.compiled: _compiled.CompiledStep | None = None
        # on NumPy, the step with its buffers planned once (none where it is compiled or cannot be)
        self.planned: _planned.PlannedStep | None = None
        if self.eager_reason is not None and (
            _planned.plan(model, options, scaling=self.scaler is not None, weights=weights) is None
        ):
            self.planned = _planned.PlannedStep(model, (X, y, classes), options.loss, options.optimizer)

    def steps(self, order: Any, epoch: int, before: Any = None) -> Iterator[tuple[int, Any, Any]]:
        """Train on each batch of the epoch's ``order``; yield ``(rows, summed loss, summed hits)``."""
        model, device = self.model, self.model.device
        indices = list(_data.batches(self.n, self.batch_size, order))
        if self.planned is not None:
            yield from self._planned(indices, before)
            return
        # eager batches come through device_batches (which overlaps copies on CuPy); a compiled
        # step gathers its rows itself, and its eager steps take plain rows
        batches = None if self.eager_reason is None else _backend.device_batches(
            self.arrays, indices, xp=model.xp, device=device
        )  # fmt: skip
        for batch, index in enumerate(indices, start=1):
            rows = range(index.start, min(index.stop, self.n)) if isinstance(index, slice) else index
            if before is not None:
                before(batch - 1, len(rows))
            with _backend.on_device(device), training_batch(self.step, rows):
                sums = self._compiled(index, len(rows))
                if sums is None:
                    arrays = next(batches) if batches is not None else tuple(
                        _backend.rows(a, index, xp=model.xp, device=device) for a in self.arrays
                    )  # fmt: skip
                    sums = self._train(arrays, epoch, batch)
            self.step += 1
            yield sums

    def _planned(self, indices: list[Any], before: Any) -> Iterator[tuple[int, Any, Any]]:
        """The epoch's batches through the planned step (NumPy: no device to make current)."""
        planned, n = self.planned, self.n
        assert planned is not None
        for batch, index in enumerate(indices):
            m = min(index.stop, n) - index.start if isinstance(index, slice) else len(index)
            if before is not None:
                before(batch, m)
            sums = planned(index, m)
            self.step += 1
            yield sums

    def _compiled(self, index: Any, m: int) -> tuple[int, Any, Any] | None:
        """The batch's sums from the compiled step, or ``None`` where this step runs eagerly.

        The first step of an optimizer runs eagerly (it makes the state the
        compiled step takes); a compiled step that gives up leaves the rest of
        the fit eager.
        """
        model = self.model
        if self.eager_reason is not None or len(self.optimizer.state) != len(model.parameters()):
            return None
        if self.compiled is None:
            self.compiled = _compiled.compiled_step(model, self.options.loss, self.optimizer, self.hits)
        sums = self.compiled(model, self.optimizer, self.arrays, index)
        if sums is None:
            self.eager_reason, self.compiled = self.compiled.reason, None
            return None
        return m, *sums

    def _train(self, arrays: tuple[Any, ...], epoch: int, batch: int) -> tuple[int, Any, Any]:
        """One eager step on a batch: ``(rows, summed loss, summed hits)``, the sums on the device."""
        model, guard = self.model, self.guard
        Xb, yb, classes, *wb = arrays
        out = _data.widen(model, model.run_forward(Xb, training=True))
        value, grad = self.loss(out, yb) if not wb else self.loss(out, yb, sample_weight=wb[0])
        m = out.shape[0]
        if self.scaler is None:
            model.run_backward(grad, input_grad=False)
            model.set_parameters(self.optimizer.step_unchecked(model.parameters(), model.gradients()))
        else:
            model.run_backward(grad * self.scaler.scale, input_grad=False)
            self._scaled_step(epoch, batch)
        return m, guard.widen(value) * m, guard.widen(self.hits(out, classes))

    def _scaled_step(self, epoch: int, batch: int) -> None:
        """The optimizer step on the unscaled gradients, or none where they are not all finite."""
        model, scaler = self.model, self.scaler
        assert scaler is not None
        grads = model.gradients()
        finite = scaler.unscale(grads)
        model.set_gradients(grads)  # unscaled in place, or new arrays where they are not writeable (JAX)
        if finite:
            model.set_parameters(self.optimizer.step_unchecked(model.parameters(), grads))
        scaler.update(finite)
        if scaler.exhausted:
            msg = (
                f"training diverged at epoch {epoch}, batch {batch}: the gradients are not finite "
                f"even at loss scale {scaler.scale:g}"
            )
            raise TrainingDivergedError(msg, epoch=epoch, batch=batch)

    def evaluate(self, validation_data: Any) -> dict[str, float]:
        """Loss and accuracy on the checked validation data ``(X, y, weights or None)``, in inference mode."""
        X, y, weights = validation_data
        return _data.evaluate_sums(
            self.model, X, y, loss=self.options.loss, batch_size=self.batch_size, sample_weight=weights
        )

    def record(self) -> dict[str, float]:
        """The loss scale and the steps skipped this epoch, with loss scaling."""
        return {} if self.scaler is None else self.scaler.record()

    def finish(self) -> None:
        """Leave the loss scale with the optimizer, for the next fit and its checkpoints."""
        if self.scaler is not None:
            self.optimizer.loss_scale = self.scaler.state()
