"""Reduce-on-plateau: the one schedule with state, moved once per epoch by a metric."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .. import _checks
from ..optimizers._args import real
from ._base import Schedule

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(Schedule):
    """Multiply the learning rate by ``factor`` when a metric stops improving (torch's ``ReduceLROnPlateau``).

    Call :meth:`step` once per epoch with the metric (or the optimizer's
    ``end_epoch(scores)``, which reads ``scores[monitor]``). After more than
    ``patience`` epochs without improvement the rate becomes
    ``max(lr * factor, min_lr)`` (unless that changes it by ``eps`` or less),
    and ``cooldown`` epochs follow in which bad epochs are not counted.
    Improvement is ``metric < best * (1 - threshold)`` (``mode="min"``,
    ``threshold_mode="rel"``), ``metric < best - threshold`` (``"abs"``), and
    the mirror images for ``mode="max"``.
    """

    def __init__(
        self,
        lr: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        *,
        monitor: str = "val_loss",
    ) -> None:
        super().__init__(lr, interval="epoch")
        choices = (("mode", mode, ("min", "max")), ("threshold_mode", threshold_mode, ("rel", "abs")))
        for name, value, allowed in choices:
            if value not in allowed:
                msg = f"`{name}` must be {allowed[0]!r} or {allowed[1]!r}, got {value!r}"
                raise ValueError(msg)
        if not isinstance(monitor, str):
            msg = f"`monitor` must be the name of a metric (a str), got {type(monitor).__name__} {monitor!r}"
            raise TypeError(msg)
        self.mode, self.threshold_mode, self.monitor = mode, threshold_mode, monitor
        self.factor = real(factor, "factor", "in [0, 1)", lambda v: 0 <= v < 1)
        self.patience = _checks.check_int(patience, "patience", minimum=0)
        self.cooldown = _checks.check_int(cooldown, "cooldown", minimum=0)
        self.threshold = real(threshold, "threshold", ">= 0", lambda v: v >= 0)
        self.min_lr = _checks.check_lr(min_lr, "min_lr", allow_none=False)
        self.eps = real(eps, "eps", ">= 0", lambda v: v >= 0)
        self.reset()

    def reset(self) -> None:
        self.lr, self.best, self.num_bad_epochs, self.cooldown_counter, self.last_epoch = (
            self.base_lr, math.inf if self.mode == "min" else -math.inf, 0, 0, 0
        )  # fmt: skip

    def __call__(self, t: int) -> float:
        return self.lr

    def _is_better(self, value: float) -> bool:
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            return value < (best * (1.0 - threshold) if self.threshold_mode == "rel" else best - threshold)
        return value > (best * (threshold + 1.0) if self.threshold_mode == "rel" else best + threshold)

    def step(self, metric: Any) -> float:
        """Record one epoch's ``metric`` (a number; NaN counts as no improvement); return the new rate."""
        if isinstance(metric, (bool, str)):
            msg = f"`metric` must be a number, got {type(metric).__name__} {metric!r}"
            raise TypeError(msg)
        value = float(metric)
        self.last_epoch += 1
        if self._is_better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown are not counted
        if self.num_bad_epochs > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:
                self.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        return self.lr

    def get_config(self) -> dict[str, Any]:
        names = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")
        return {"lr": self.base_lr, **{name: getattr(self, name) for name in names}, "monitor": self.monitor}

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, **{name: getattr(self, name) for name in _COUNTS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"lr", "best", *_COUNTS}:
            msg = f"`state` of ReduceLROnPlateau must have keys lr, best, {', '.join(_COUNTS)}, got {state!r}"
            raise ValueError(msg)
        lr = _checks.check_lr(state["lr"], "state['lr']", allow_none=False)
        counts = [_checks.check_int(state[name], f"state[{name!r}]", minimum=0) for name in _COUNTS]
        best = state["best"]
        if isinstance(best, bool) or not isinstance(best, numbers.Real) or math.isnan(best):
            msg = f"`state['best']` must be a number (or an infinity), got {best!r}"
            raise ValueError(msg)
        self.lr, self.best = lr, float(best)
        self.num_bad_epochs, self.cooldown_counter, self.last_epoch = counts


_COUNTS = ("num_bad_epochs", "cooldown_counter", "last_epoch")
