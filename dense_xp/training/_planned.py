"""The planned training step of ``fit`` on NumPy: buffers made once per batch size, every batch in place.

On NumPy a small batch costs the Python around a few dozen ufunc calls more
than their arithmetic, and a large one the temporaries it allocates and
fills. Where every layer has a planned step (:meth:`dense_xp.Layer.plan_step`:
dense_xp's Dense layers with fused activations), trained on mean squared
error, binary or softmax cross-entropy without sample weights or loss
scaling, ``fit`` plans the step once: each layer's forward and backward
(:class:`~dense_xp.layers._dense_plan.DensePlan`), the loss
(:mod:`dense_xp._loss_plans`), the batch's rows gathered into a buffer, and
the hit count, with the checks made once for the call. The optimizer's
:meth:`~dense_xp.optimizers.Optimizer.step_unchecked` then updates the
parameters in place. The parameters equal those of eager training bit for
bit; ``compile=False`` trains eagerly.
"""

from __future__ import annotations

from typing import Any

from .. import _backend, _loss_plans

__all__ = ["PlannedStep", "plan"]


def plan(model: Any, options: Any, *, scaling: bool, weights: Any) -> str | None:
    """Why ``fit`` trains ``model`` without a plan, or ``None`` where :class:`PlannedStep` runs its steps."""
    if options.compile is False:
        return "compile=False"
    if not _backend.cheap_reads(model.xp, model.device):
        return "only NumPy models plan their step"
    if scaling or weights is not None:
        return "loss scaling and sample weights train eagerly"
    for layer in model.layers:
        reason = layer.plan_step(0, input_grad=False)
        if reason is not None:
            return str(reason)
    return _loss_plans.plannable_loss(options.loss)


class PlannedStep:
    """The training steps of one ``fit`` on checked in-memory ``(X, y, classes)``.

    Parameters
    ----------
    model : Sequential
        A model :func:`plan` accepts.
    arrays : tuple
        ``(X, y, classes)`` on the model's device, as the engine holds them.
    loss, optimizer
        The fit's.
    """

    def __init__(self, model: Any, arrays: tuple[Any, ...], loss: Any, optimizer: Any) -> None:
        X, y, classes = arrays
        np = _backend.fused_ops(model.xp).np
        self.model, self.loss, self.optimizer, self.np = model, loss, optimizer, np
        self.X, self.classes = X, classes
        self._cast = X.dtype != model.compute_dtype  # X is cast batch by batch, as forward casts it
        self.y = _loss_plans.plan_targets(loss, y, model.compute_dtype, np)
        self.k = int(model.output_size)
        self._kits: dict[int, tuple[Any, ...]] = {}  # per batch size: buffers and plans
        # the parameters by slot, read on every step (a guard or a callback may replace them)
        self._slots = [(layer, name) for layer in model.layers for name in layer.parameters()]

    def _kit(self, m: int) -> tuple[Any, ...]:
        np, model = self.np, self.model
        layers = [layer.plan_step(m, input_grad=i > 0) for i, layer in enumerate(model.layers)]
        rows = tuple(np.empty((m, *a.shape[1:]), a.dtype) for a in (self.X, self.y, self.classes))
        if self._cast:
            rows += (np.empty((m, self.X.shape[1]), model.compute_dtype),)
        loss = _loss_plans.loss_plan(self.loss, m, self.k, model.compute_dtype, np)
        grads = [g for p in layers for g in p.grads.values()]
        self._kits[m] = kit = (layers, layers[::-1], rows, loss, grads)
        return kit

    def __call__(self, index: Any, m: int) -> tuple[int, float, int]:
        """Train on the rows ``index`` (a slice or an index array) of ``m`` rows: ``(m, loss sum, hits)``."""
        np = self.np
        layers, backwards, rows, loss, grads = self._kits.get(m) or self._kit(m)
        if type(index) is slice:
            Xb, yb, cb = self.X[index], self.y[index], self.classes[index]
        else:
            arrays = (self.X, self.y, self.classes)
            Xb, yb, cb = (np.take(a, index, axis=0, out=r) for a, r in zip(arrays, rows[:3], strict=True))
        if self._cast:
            np.copyto(rows[3], Xb)
            Xb = rows[3]
        out = Xb
        for layer in layers:
            out = layer.forward(out)
        loss_sum, g = loss(out, yb)
        guess = out[:, 0] > 0 if self.k == 1 else out.argmax(axis=1)
        hits = int(np.count_nonzero(guess == cb))
        for layer in backwards:
            g = layer.backward(g)
        params = [getattr(layer, name) for layer, name in self._slots]
        new = self.optimizer.step_unchecked(params, grads)
        for a, b in zip(new, params, strict=True):
            if a is not b:  # an update that is not in place
                self.model.set_parameters(new)
                break
        return m, loss_sum, hits
