"""Learning-rate schedules, named and computed as ``torch.optim.lr_scheduler``'s closed forms.

A schedule is given as an optimizer's ``lr`` (``Adam(lr=StepLR(0.1, step_size=30))``)
and is a function of a count ``t``: the steps taken (``interval="step"``) or
the epochs ended (``interval="epoch"``, the default, as torch's examples step
their schedulers once per epoch). The first step or epoch uses ``t = 0``.
:class:`ReduceLROnPlateau` is the one schedule with state: it moves once per
epoch on a metric (``step(metric)``, or the optimizer's ``end_epoch``). Any
callable of the step count works too: ``Adam(lr=lambda t: 0.1 * 0.99**t)``
(torch's ``LambdaLR`` with base lr 0.1 and factor ``0.99**t``).

Keras' schedules (``keras.optimizers.schedules``) count steps; their
equivalents here, each with ``interval="step"``:

- ``ExponentialDecay(a, n, r, staircase=True)``: ``StepLR(a, step_size=n, gamma=r)``;
- ``ExponentialDecay(a, n, r)``: ``ExponentialLR(a, gamma=r ** (1 / n))``;
- ``PiecewiseConstantDecay(bounds, values)``: the callable
  ``lambda t: values[bisect.bisect_left(bounds, t)]``;
- ``CosineDecay(a, n, alpha)``: ``CosineAnnealingLR(a, T_max=n, eta_min=alpha * a)``
  up to ``t = n``; after it Keras holds ``alpha * a`` where torch's cosine
  rises again (append ``ConstantLR(alpha * a, factor=1.0)`` with
  :class:`SequentialLR` to hold it);
- ``CosineDecay(a, n, alpha, warmup_target=b, warmup_steps=w)``:
  ``SequentialLR([LinearLR(b, start_factor=a / b, total_iters=w),
  CosineAnnealingLR(b, T_max=n, eta_min=alpha * b)], milestones=[w])``;
- the callback ``ReduceLROnPlateau(monitor, factor, patience, min_delta=d,
  cooldown, min_lr)``: ``ReduceLROnPlateau(lr, factor=..., patience=...,
  threshold=d, threshold_mode="abs", cooldown=..., min_lr=..., monitor=...)``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from ._base import Schedule, check_milestones
from ._closed import ConstantLR, CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, StepLR
from ._plateau import ReduceLROnPlateau

__all__ = [
    "SCHEDULES",
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearLR",
    "MultiStepLR",
    "ReduceLROnPlateau",
    "Schedule",
    "SequentialLR",
    "StepLR",
    "from_description",
]


class SequentialLR(Schedule):
    """``schedules[i]`` from ``milestones[i - 1]`` on, counting from 0 there (torch's ``SequentialLR``).

    Linear warmup then cosine decay over ``n`` steps:
    ``SequentialLR([LinearLR(0.1, 0.01, total_iters=w, interval="step"),
    CosineAnnealingLR(0.1, T_max=n, interval="step")], milestones=[w])``.
    The schedules share one ``interval``, which is this one's.
    """

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]) -> None:
        ok = isinstance(schedules, (list, tuple)) and len(schedules) > 0
        if not ok or not all(
            isinstance(s, Schedule) and not isinstance(s, ReduceLROnPlateau) for s in schedules
        ):
            msg = (
                "`schedules` must be a non-empty list of dense_xp schedules other than ReduceLROnPlateau, "
                f"got {schedules!r}"
            )
            raise TypeError(msg)
        intervals = {s.interval for s in schedules}
        if len(intervals) > 1:
            msg = f"`schedules` must share one interval, got {[s.interval for s in schedules]}"
            raise ValueError(msg)
        self.milestones = check_milestones(milestones, "milestones")
        if len(self.milestones) != len(schedules) - 1:
            msg = (
                f"`milestones` must hold one fewer than `schedules` ({len(schedules) - 1}), "
                f"got {milestones!r}"
            )
            raise ValueError(msg)
        super().__init__(schedules[0].base_lr, interval=intervals.pop())
        self.schedules = list(schedules)

    def __call__(self, t: int) -> float:
        i = bisect.bisect_right(self.milestones, t)
        return self.schedules[i](t - self.milestones[i - 1] if i else t)

    def get_config(self) -> dict[str, Any]:
        return {"schedules": [s.describe() for s in self.schedules], "milestones": list(self.milestones)}


SCHEDULES: dict[str, type[Schedule]] = {
    cls.__name__: cls
    for cls in (
        ConstantLR, LinearLR, StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, SequentialLR,
        ReduceLROnPlateau,
    )
}  # fmt: skip


def from_description(description: dict[str, Any]) -> Schedule:
    """The schedule :meth:`Schedule.describe` described, in the state it was in."""
    name = description.get("name") if isinstance(description, dict) else None
    if name not in SCHEDULES:
        msg = f"`schedule` must describe one of {', '.join(SCHEDULES)}, got {description!r}"
        raise ValueError(msg)
    config = dict(description["config"])
    if name == "SequentialLR":
        config["schedules"] = [from_description(child) for child in config["schedules"]]
    schedule = SCHEDULES[name](**config)
    schedule.load_state_dict(description.get("state") or {})
    return schedule
