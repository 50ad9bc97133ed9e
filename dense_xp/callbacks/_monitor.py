"""What callbacks that watch a history key share: which way it improves, its value in an epoch's logs,
and the check of a finite number argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["better", "finite", "monitored"]


def better(monitor: str, mode: str) -> Callable[[float, float], bool]:
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


def monitored(logs: dict[str, Any] | None, monitor: str, owner: str) -> float:
    """``logs[monitor]`` as a float; a ValueError from ``owner`` names the keys the logs have."""
    if not logs or monitor not in logs:
        available = ", ".join(sorted(logs or {})) or "none"
        hint = " (pass validation_data or validation_split)" if monitor.startswith("val_") else ""
        msg = f"{owner} monitors {monitor!r}, which the epoch's logs lack{hint}; they have: {available}"
        raise ValueError(msg)
    return float(logs[monitor])


def finite(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool), else a TypeError or ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        msg = f"`{name}` must be a finite number, got {type(value).__name__} {value!r}"
        raise (ValueError if isinstance(value, numbers.Real) and not isinstance(value, bool) else TypeError)(
            msg
        )
    return float(value)
