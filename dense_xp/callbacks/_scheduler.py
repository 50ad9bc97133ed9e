"""LearningRateScheduler: set the optimizer's learning rate at the start of each epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._protocol import Callback

__all__ = ["LearningRateScheduler"]


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
