"""The learning rate of an optimizer: a number, a schedule of :mod:`dense_xp.schedules`, or a callable."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from .. import _checks
from ..schedules import ReduceLROnPlateau, Schedule

__all__ = ["LearningRate"]


class LearningRate:
    """The ``lr`` of :class:`~dense_xp.optimizers.Optimizer`: its value now, and its schedule.

    The optimizer counts ``steps`` and ``epochs``; a schedule of interval
    ``"epoch"`` (or a ``ReduceLROnPlateau``) reads the epochs, one of interval
    ``"step"`` and a callable read the steps.
    """

    steps: int
    epochs: int
    _schedule: Schedule | Callable[[int], float] | None
    _interval: str
    _lr: float

    @property
    def lr(self) -> float:
        """The learning rate of the next step, a finite number >= 0."""
        schedule = self._schedule
        if schedule is None:
            return self._lr
        t = self.epochs if self._interval == "epoch" else self.steps
        value = schedule(t)
        if type(value) is float and 0.0 <= value < math.inf:
            return value
        try:
            return _checks.check_lr(value, allow_none=False)
        except (TypeError, ValueError):
            msg = (
                f"the `lr` schedule {schedule!r} gave {value!r} at {self._interval} {t}: it must give a "
                "finite number >= 0"
            )
            raise ValueError(msg) from None

    @lr.setter
    def lr(self, value: Any) -> None:
        if isinstance(value, Schedule):
            self._schedule, self._interval, self._lr = value, value.interval, math.nan
        elif callable(value) and not isinstance(value, type):
            self._schedule, self._interval, self._lr = value, "step", math.nan
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            self._lr, self._schedule = _checks.check_lr(value, allow_none=False), None
        else:
            msg = (
                "`lr` must be a finite number >= 0, a schedule (dense_xp.schedules) or a callable of the "
                f"step count, got {type(value).__name__} {value!r}"
            )
            raise TypeError(msg)

    @property
    def schedule(self) -> Schedule | Callable[[int], float] | None:
        """The schedule or callable given as ``lr``, or ``None`` for a number."""
        return self._schedule

    def end_epoch(self, metric: Any = None) -> float:
        """End an epoch: epoch schedules move on, a ``ReduceLROnPlateau`` reads ``metric``.

        Parameters
        ----------
        metric : float or mapping, optional
            The monitored value, or the epoch's scores by name (such as
            ``fit``'s history entries), from which a ReduceLROnPlateau reads
            its ``monitor``. Other schedules ignore it.

        Returns
        -------
        float
            The learning rate of the next step.
        """
        schedule = self._schedule
        if isinstance(schedule, ReduceLROnPlateau):
            schedule.step(self._monitored(metric, schedule))
        self.epochs += 1
        return self.lr

    @staticmethod
    def _monitored(metric: Any, schedule: ReduceLROnPlateau) -> Any:
        if metric is None:
            msg = f"{schedule!r} needs the epoch's metric: call end_epoch(metric) or end_epoch(scores)"
            raise TypeError(msg)
        if not isinstance(metric, Mapping):
            return metric
        if schedule.monitor not in metric:
            msg = (
                f"`metric` has no {schedule.monitor!r}, the metric ReduceLROnPlateau monitors; it has "
                f"{', '.join(map(repr, metric)) or 'nothing'} (pass `monitor=` to the schedule)"
            )
            raise ValueError(msg)
        return metric[schedule.monitor]
