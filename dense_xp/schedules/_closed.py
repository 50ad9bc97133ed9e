"""The schedules with closed forms, as ``torch.optim.lr_scheduler``'s ``_get_closed_form_lr``."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from .. import _checks
from ..optimizers._args import real
from ._base import Schedule, check_fraction, check_milestones

__all__ = ["ConstantLR", "CosineAnnealingLR", "ExponentialLR", "LinearLR", "MultiStepLR", "StepLR"]


class ConstantLR(Schedule):
    """``lr * factor`` for ``t < total_iters``, then ``lr`` (torch's ``ConstantLR``).

    ``factor=1.0`` is a constant rate (a piece of a :class:`SequentialLR`).
    """

    def __init__(self, lr: float, factor: float = 1.0 / 3, total_iters: int = 5, *, interval: str = "epoch"):
        super().__init__(lr, interval=interval)
        self.factor = check_fraction(factor, "factor")
        self.total_iters = _checks.check_int(total_iters, "total_iters", minimum=0)

    def __call__(self, t: int) -> float:
        return self.base_lr * (self.factor + (t >= self.total_iters) * (1 - self.factor))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "total_iters": self.total_iters}


class LinearLR(Schedule):
    """``lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)``.

    torch's ``LinearLR``, whose ``start_factor`` must be > 0; here 0 is allowed
    (a warmup from 0, as Keras' ``CosineDecay`` warmup from 0).
    """

    def __init__(
        self,
        lr: float,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        *,
        interval: str = "epoch",
    ) -> None:
        super().__init__(lr, interval=interval)
        self.start_factor = check_fraction(start_factor, "start_factor")
        self.end_factor = check_fraction(end_factor, "end_factor")
        self.total_iters = _checks.check_int(total_iters, "total_iters")

    def __call__(self, t: int) -> float:
        span = self.end_factor - self.start_factor
        return self.base_lr * (self.start_factor + span * min(self.total_iters, t) / self.total_iters)

    def get_config(self) -> dict[str, Any]:
        factors = {"start_factor": self.start_factor, "end_factor": self.end_factor}
        return {**super().get_config(), **factors, "total_iters": self.total_iters}


class StepLR(Schedule):
    """``lr * gamma ** (t // step_size)`` (torch's ``StepLR``; Keras' staircase ``ExponentialDecay``)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1, *, interval: str = "epoch") -> None:
        super().__init__(lr, interval=interval)
        self.step_size = _checks.check_int(step_size, "step_size")
        self.gamma = real(gamma, "gamma", "> 0", lambda v: v > 0)

    def __call__(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "step_size": self.step_size, "gamma": self.gamma}


class MultiStepLR(Schedule):
    """``lr * gamma ** (number of milestones <= t)`` (torch's ``MultiStepLR``)."""

    def __init__(
        self, lr: float, milestones: Sequence[int], gamma: float = 0.1, *, interval: str = "epoch"
    ) -> None:
        super().__init__(lr, interval=interval)
        self.milestones = check_milestones(milestones, "milestones")
        self.gamma = real(gamma, "gamma", "> 0", lambda v: v > 0)

    def __call__(self, t: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "milestones": list(self.milestones), "gamma": self.gamma}


class ExponentialLR(Schedule):
    """``lr * gamma ** t`` (torch's ``ExponentialLR``)."""

    def __init__(self, lr: float, gamma: float, *, interval: str = "epoch") -> None:
        super().__init__(lr, interval=interval)
        self.gamma = real(gamma, "gamma", "> 0", lambda v: v > 0)

    def __call__(self, t: int) -> float:
        return self.base_lr * self.gamma**t

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    """``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (torch's ``CosineAnnealingLR``).

    Periodic as torch's: after ``T_max`` it rises again, reaching ``lr`` at ``2 * T_max``.
    """

    def __init__(
        self,
        lr: float,
        T_max: int,
        eta_min: float = 0.0,
        *,
        interval: str = "epoch",
    ) -> None:
        super().__init__(lr, interval=interval)
        self.T_max = _checks.check_int(T_max, "T_max")
        self.eta_min = _checks.check_lr(eta_min, "eta_min", allow_none=False)

    def __call__(self, t: int) -> float:
        cosine = 1 + math.cos(math.pi * t / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * cosine / 2

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "T_max": self.T_max, "eta_min": self.eta_min}
