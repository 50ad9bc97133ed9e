"""EarlyStopping: stop training when a monitored history key stops improving, and restore the best epoch."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks
from ._monitor import better, finite, monitored
from ._protocol import Callback

__all__ = ["EarlyStopping"]


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
        self.monitor, self._better = monitor, better(monitor, mode)
        self.min_delta = abs(finite(min_delta, "min_delta"))
        self.patience = _checks.check_int(patience, "patience", minimum=0)
        self.baseline = None if baseline is None else finite(baseline, "baseline")
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
        current = monitored(logs, self.monitor, "EarlyStopping")
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
