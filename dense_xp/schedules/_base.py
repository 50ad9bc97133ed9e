"""The schedule base class and argument checks shared by the schedules."""

from __future__ import annotations

import numbers
from typing import Any

from .. import _checks
from ..optimizers._args import real

__all__ = ["Schedule", "check_fraction", "check_milestones"]

_INTERVALS = ("step", "epoch")


def check_fraction(value: Any, name: str) -> float:
    """``value`` as a float in [0, 1]."""
    return real(value, name, "in [0, 1]", lambda v: 0 <= v <= 1)


def check_milestones(value: Any, name: str) -> list[int]:
    """``value`` as a list of increasing integers >= 1."""
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(m, numbers.Integral) and not isinstance(m, bool) for m in value
    )
    if not ok or not all(a < b for a, b in zip([0, *value], value, strict=False)):
        msg = f"`{name}` must be a list of increasing integers >= 1, got {value!r}"
        raise (ValueError if ok else TypeError)(msg)
    return [int(m) for m in value]


class Schedule:
    """A learning rate as a function of the count ``t`` of steps or epochs done.

    Parameters
    ----------
    lr : float
        The base learning rate (torch's ``initial_lr``), >= 0.
    interval : {"epoch", "step"}, default "epoch"
        What ``t`` counts when the schedule is an optimizer's ``lr``.
    """

    def __init__(self, lr: float, *, interval: str = "epoch") -> None:
        self.base_lr = _checks.check_lr(lr, allow_none=False)
        if interval not in _INTERVALS:
            msg = f"`interval` must be 'step' or 'epoch', got {interval!r}"
            raise ValueError(msg)
        self.interval = interval

    def __call__(self, t: int) -> float:
        """The learning rate after ``t`` steps or epochs."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {"lr": self.base_lr, "interval": self.interval}

    def state_dict(self) -> dict[str, Any]:
        """What the schedule keeps besides its config: nothing, but for :class:`ReduceLROnPlateau`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def reset(self) -> None:
        """Return to the schedule's start (only :class:`ReduceLROnPlateau` has somewhere to return from)."""

    def describe(self) -> dict[str, Any]:
        """``{"name", "config", "state"}``: what :func:`from_description` rebuilds the schedule from."""
        return {"name": type(self).__name__, "config": self.get_config(), "state": self.state_dict()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
