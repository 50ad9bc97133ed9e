"""The divergence guard of ``Sequential.fit``: rare device checks and the last finite state."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import _backend, _checks

__all__ = ["Guard", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """Training produced NaN or infinity; the model is back at its last checked finite weights.

    Attributes
    ----------
    epoch : int
        The epoch (from 1) in which it was detected.
    batch_start, batch_end : int
        The window of batches (from 1, inclusive) in which it happened: those
        run since the last check. The weights and the optimizer state are
        restored to those after batch ``batch_start - 1``.
    batch : int
        The batch at which it was detected, ``batch_end``.
    """

    __module__ = "dense_xp"

    def __init__(self, message: str, *, epoch: int, batch: int, batch_start: int | None = None) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch
        self.batch_start, self.batch_end = (batch if batch_start is None else batch_start), batch


class Guard:
    """The divergence check of :meth:`dense_xp.Sequential.fit` and the last checked finite state.

    A check reduces "is every parameter and optimizer state array finite" and
    the window's summed loss to one number on the device and reads it once.
    When it is finite the parameters and the optimizer state are copied (the
    copy the model returns to); when not, they are restored and
    :class:`TrainingDivergedError` is raised.
    """

    def __init__(self, model: Any, optimizer: Any, every: int) -> None:
        xp, dtype = model.xp, model.dtype
        self.model, self.optimizer, self.every, self.xp = model, optimizer, every, xp
        wide = _checks.dtype_name(dtype) == "float16"  # sums of many batches overflow float16
        self.dtype = xp.float32 if wide else dtype
        # where a read costs nothing (NumPy, torch on the CPU) the sums are Python floats
        self.host = _backend.cheap_reads(xp, model.device)
        self.widen: Callable[[Any], Any]
        if self.host:
            self.widen = float
        else:
            self.widen = (lambda a: xp.astype(a, xp.float32)) if wide else (lambda a: a)
        self._nan = xp.full((), math.nan, dtype=self.dtype, device=model.device)
        self._save()

    def zero(self) -> Any:
        """The start of a running sum: ``0.0``, or a 0-d array on the device."""
        return 0.0 if self.host else self.xp.zeros((), dtype=self.dtype, device=self.model.device)

    def _arrays(self) -> list[Any]:
        arrays: list[Any] = self.model.parameters() + self.model.states()
        return arrays + [a for s in self.optimizer.state for a in s.values()]

    def _save(self) -> None:
        xp, opt = self.xp, self.optimizer
        self.params = [xp.asarray(p, copy=True) for p in self.model.parameters()]
        self.states = [xp.asarray(a, copy=True) for a in self.model.states()]
        self.state = [{k: xp.asarray(v, copy=True) for k, v in s.items()} for s in opt.state]
        self.steps = opt.steps

    def _restore(self) -> None:
        self.model.set_parameters(self.params)
        self.model.set_states(self.states)
        if self.state:
            self.optimizer.state, self.optimizer.steps = self.state, self.steps
        else:  # saved before the optimizer's first step
            self.optimizer.reset()

    def check(self, window: Any, *, epoch: int, batch_start: int, batch_end: int) -> float:
        """The window's summed loss, after checking it and every array (one host read)."""
        xp, ok = self.xp, None
        for a in self._arrays():
            finite = xp.all(xp.isfinite(a))
            ok = finite if ok is None else xp.logical_and(ok, finite)
        value = (
            (float(window) if bool(ok) else math.nan) if self.host else float(xp.where(ok, window, self._nan))
        )
        if math.isfinite(value):
            self._save()
            return value
        what = self._culprit(window)
        self._restore()
        since = f"after batch {batch_start - 1}" if batch_start > 1 else "at the start of the epoch"
        where = f"batch {batch_end}" if batch_start == batch_end else f"batches {batch_start}-{batch_end}"
        msg = (
            f"training diverged at epoch {epoch}, batch {batch_end}: {what} became NaN or infinite in "
            f"{where} (checked every {self.every} batches); the parameters and optimizer state are back "
            f"to their values {since}"
        )
        raise TrainingDivergedError(msg, epoch=epoch, batch=batch_end, batch_start=batch_start)

    def _culprit(self, window: Any) -> str:
        """What is not finite: the loss, which parameters, the optimizer state (slow path)."""
        xp = self.xp
        bad = ["the loss"] if not math.isfinite(float(window)) else []
        bad += [
            f"`layers[{i}].{name}`"
            for i, layer in enumerate(self.model.layers)
            for name, p in layer.arrays().items()
            if not bool(xp.all(xp.isfinite(p)))
        ]
        state = [a for s in self.optimizer.state for a in s.values()]
        if not all(bool(xp.all(xp.isfinite(a))) for a in state):
            bad.append("the optimizer state")
        return bad[0] if len(bad) == 1 else ", ".join(bad[:-1]) + " and " + bad[-1]
