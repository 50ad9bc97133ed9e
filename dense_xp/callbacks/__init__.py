"""Callbacks of ``fit``, with Keras's protocol: EarlyStopping, ModelCheckpoint, LearningRateScheduler.

A callback is an object with any of these methods, which ``fit`` calls in
order (epochs counted from 0, as Keras counts them)::

    on_train_begin(logs)              once, before the first epoch
    on_epoch_begin(epoch, logs)
    on_train_batch_begin(batch, logs) logs: {"size": rows of the batch}
    on_train_batch_end(batch, logs)
    on_epoch_end(epoch, logs)         logs: the epoch's history entries (loss, accuracy, val_*...)
    on_train_end(logs)                once, after the last epoch (or a stop), logs of the last epoch

Before training ``fit`` sets ``callback.model`` (the model) and
``callback.optimizer``. A callback stops training by setting
``model.stop_training = True``: the current batch ends the epoch, and the
epoch's callbacks still run. The per-batch loss stays on the device (the
divergence guard reads it every ``check_every`` batches): batch logs carry
the batch's size only. Subclass :class:`Callback` for the no-op defaults.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

from . import _checks

__all__ = ["Callback", "CallbackList", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint"]


class Callback:
    """Base class: every hook does nothing; override the ones you need (see the module docstring)."""

    model: Any = None
    optimizer: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last epoch, or the epoch a callback stopped training in."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Before epoch ``epoch`` (from 0)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """After epoch ``epoch`` and its validation; ``logs`` holds its history entries."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Before batch ``batch`` (from 0) of the epoch."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After batch ``batch``'s step."""


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end")  # fmt: skip


class CallbackList:
    """The callbacks of one ``fit``, checked once, each hook calling every callback that has it."""

    def __init__(self, callbacks: Iterable[Any] | None, model: Any, optimizer: Any) -> None:
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            msg = f"`callbacks` must be a list of callbacks, got {type(callbacks).__name__} {callbacks!r}"
            raise TypeError(msg)
        for i, callback in enumerate(callbacks):
            if not any(callable(getattr(callback, hook, None)) for hook in _HOOKS):
                msg = f"`callbacks[{i}]` has none of the hooks {', '.join(_HOOKS)}: got {callback!r}"
                raise TypeError(msg)
        self.callbacks = list(callbacks)
        self.batch_hooks = any(
            callable(getattr(c, h, None)) and not _inherited(c, h)
            for c in self.callbacks
            for h in ("on_train_batch_begin", "on_train_batch_end")
        )
        for callback in self.callbacks:
            callback.model, callback.optimizer = model, optimizer

    def call(self, hook: str, *args: Any) -> None:
        """``hook(*args)`` of every callback that has it, in order."""
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if callable(method):
                method(*args)


def _inherited(callback: Any, hook: str) -> bool:
    """Whether ``callback``'s ``hook`` is :class:`Callback`'s no-op."""
    return getattr(type(callback), hook, None) is getattr(Callback, hook)


def _mode(monitor: str, mode: str) -> Callable[[float, float], bool]:
    """``better(a, b)``: whether ``a`` improves on ``b`` (``min`` for losses, ``max`` for accuracies)."""
    if mode not in ("auto", "min", "max"):
        msg = f"`mode` must be 'auto', 'min' or 'max', got {mode!r}"
        raise ValueError(msg)
    if mode == "auto":
        name = monitor.removeprefix("val_")
        if name.endswith("loss"):
            mode = "min"
        elif name.endswith("accuracy"):
            mode = "max"
        else:
            msg = (
                f"`mode` 'auto' cannot tell whether {monitor!r} should fall or rise: pass mode='min' or "
                "mode='max'"
            )
            raise ValueError(msg)
    return (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)


def _monitored(logs: dict[str, Any] | None, monitor: str, owner: str) -> float:
    if not logs or monitor not in logs:
        available = ", ".join(sorted(logs or {})) or "none"
        hint = " (pass validation_data or validation_split)" if monitor.startswith("val_") else ""
        msg = f"{owner} monitors {monitor!r}, which the epoch's logs lack{hint}; they have: {available}"
        raise ValueError(msg)
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop training when ``monitor`` stops improving, as ``keras.callbacks.EarlyStopping``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the history (``"loss"``, ``"accuracy"``, ``"val_loss"``...).
    min_delta : float, default 0
        An improvement is a change of more than ``min_delta`` (its absolute value).
    patience : int, default 0
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}, default "auto"
        ``auto``: ``min`` for losses, ``max`` for accuracies.
    baseline : float, optional
        The patience count restarts only when the value also beats ``baseline``.
    restore_best_weights : bool, default False
        At the end of training, go back to the parameters, the state (running
        statistics) and the optimizer state of the best epoch.
    start_from_epoch : int, default 0
        Epochs to wait before monitoring.

    Attributes
    ----------
    best : float
    best_epoch, stopped_epoch : int
        Counted from 0; ``stopped_epoch`` is 0 where training was not stopped.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        if not isinstance(monitor, str):
            msg = f"`monitor` must be a history key such as 'val_loss', got {monitor!r}"
            raise TypeError(msg)
        self.monitor, self._better = monitor, _mode(monitor, mode)
        self.min_delta = abs(_finite(min_delta, "min_delta"))
        self.patience = _checks.check_int(patience, "patience", minimum=0)
        self.baseline = None if baseline is None else _finite(baseline, "baseline")
        self.restore_best_weights = _checks.check_bool(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = _checks.check_int(start_from_epoch, "start_from_epoch", minimum=0)
        self.mode = mode
        self.on_train_begin()

    def _improves(self, value: float, reference: float) -> bool:
        sign = -1.0 if self._better(0.0, 1.0) else 1.0  # min mode: a value must fall by min_delta
        return self._better(value - sign * self.min_delta, reference)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Reset, so that one instance serves several ``fit`` calls."""
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self._better(0.0, 1.0) else -math.inf
        self.best_weights: Any = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Count an epoch without improvement, or keep the best; stop once patience is spent."""
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _snapshot(self.model, self.optimizer), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _snapshot(self.model, self.optimizer)
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Restore the best epoch's parameters, state and optimizer state, if asked to."""
        if self.restore_best_weights and self.best_weights is not None:
            _restore(self.model, self.optimizer, self.best_weights)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        msg = f"`{name}` must be a finite number, got {type(value).__name__} {value!r}"
        raise (ValueError if isinstance(value, numbers.Real) and not isinstance(value, bool) else TypeError)(
            msg
        )
    return float(value)


def _snapshot(model: Any, optimizer: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Copies of the parameters and state on their device, and the optimizer's state (host)."""
    xp = model.xp
    return (
        [xp.asarray(p, copy=True) for p in model.parameters()],
        [xp.asarray(a, copy=True) for a in model.states()],
        optimizer.state_dict(),
    )


def _restore(model: Any, optimizer: Any, saved: tuple[list[Any], list[Any], dict[str, Any]]) -> None:
    params, states, optimizer_state = saved
    model.set_parameters(params)
    model.set_states(states)
    optimizer.load_state_dict(optimizer_state, model.parameters())


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer) after each epoch, or only when ``monitor`` improves.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` path; ``{epoch}`` (from 1, as Keras names files) and the
        history keys may appear in it as format fields:
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best so far.
    mode : {"auto", "min", "max"}, default "auto"
    save_optimizer : bool, default True
        Include the optimizer's state, step count, schedule position and loss
        scale, so that ``dense_xp.load(path, optimizer=...)`` resumes training
        exactly.

    Notes
    -----
    Written through :func:`dense_xp.save`: atomically, a previous file at the
    path is replaced only by a complete one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        save_optimizer: bool = True,
    ) -> None:
        try:
            self.path = os.fspath(path)
        except TypeError:
            msg = f"`path` must be a str or os.PathLike, got {type(path).__name__} {path!r}"
            raise TypeError(msg) from None
        self.monitor = monitor
        self.save_best_only = _checks.check_bool(save_best_only, "save_best_only")
        self.save_optimizer = _checks.check_bool(save_optimizer, "save_optimizer")
        self._better = _mode(monitor, mode) if save_best_only else None
        self.best: float | None = None
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Check the path's format fields before the first epoch."""
        try:
            self.path.format(epoch=1, **dict.fromkeys(("loss", "accuracy", "val_loss", "val_accuracy"), 0.0))
        except (KeyError, ValueError, IndexError) as exc:
            msg = f"`path` {self.path!r} has a format field fit cannot fill: {exc}"
            raise ValueError(msg) from None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Save, unless ``save_best_only`` and the monitored value did not improve."""
        logs = logs or {}
        if self._better is not None:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if self.best is not None and not self._better(current, self.best):
                return
            self.best = current
        from .checkpoint import save

        path = self.path.format(epoch=epoch + 1, **logs)
        save(self.model, path, optimizer=self.optimizer if self.save_optimizer else None)
        self.saved.append(path)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch, as ``keras.callbacks.LearningRateScheduler``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new lr``, ``epoch`` from 0 and ``lr`` the
        optimizer's current one.
    """

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            msg = f"`schedule` must be callable as schedule(epoch, lr), got {type(schedule).__name__}"
            raise TypeError(msg)
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """``optimizer.lr = schedule(epoch, optimizer.lr)`` (checked as any learning rate)."""
        self.optimizer.lr = self.schedule(epoch, self.optimizer.lr)
