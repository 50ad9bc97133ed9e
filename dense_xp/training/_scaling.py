"""Dynamic loss scaling, for training with a float16 compute dtype.

Small gradients underflow float16 (below about 6e-8 they are 0). The loss
gradient is multiplied by ``scale`` before the backward pass, and the parameter
gradients, which are in the wider parameter dtype, are divided by it again
before the optimizer step. A step whose gradients are not all finite (the
scaled values overflowed float16) is skipped and the scale halved; after
``growth_interval`` finite steps in a row the scale doubles. This is the scheme
of ``torch.amp.GradScaler`` and of Keras' ``LossScaleOptimizer``.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from .. import _backend, _checks

__all__ = ["LossScaler"]


class LossScaler:
    """The loss scale and its updates (see the module docstring).

    Parameters
    ----------
    scale : float, default 2**15
        The initial scale, a power of two > 0 (so scaling is exact).
    growth_interval : int, default 2000
        Finite steps in a row after which the scale doubles.
    min_scale : float, default 2**-24
        When the scale falls below it, the gradients overflow however small
        the scale: :attr:`exhausted` turns true and training has diverged.

    Attributes
    ----------
    scale : float
        The current scale.
    skipped : int
        Steps skipped since the last :meth:`record`.
    """

    def __init__(self, scale: float = 2.0**15, growth_interval: int = 2000, min_scale: float = 2.0**-24):
        for name, value in (("scale", scale), ("min_scale", min_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                msg = f"`{name}` must be a power of two > 0, got {type(value).__name__} {value!r}"
                raise TypeError(msg)
            if not (0 < value < math.inf and math.frexp(value)[0] == 0.5):
                msg = f"`{name}` must be a power of two > 0, got {value!r}"
                raise ValueError(msg)
        self.growth_interval = _checks.check_int(growth_interval, "growth_interval")
        self.scale, self.min_scale = float(scale), float(min_scale)
        self.skipped = 0
        self._clean = 0

    def unscale(self, grads: list[Any]) -> bool:
        """Divide each gradient of the list by :attr:`scale`; return whether all are finite.

        Writeable arrays are divided in place, others (JAX) are replaced in
        the list. Runs on the gradients' device, and reads one value back
        from it: the finiteness check.
        """
        xp = array_api_compat.array_namespace(*grads)
        inverse = 1.0 / self.scale
        with _backend.on_device(array_api_compat.device(grads[0])):
            for i, grad in enumerate(grads):
                if _backend.writeable(grad):
                    grad *= inverse
                else:
                    grads[i] = grad * inverse
            return bool(xp.all(xp.stack([xp.all(xp.isfinite(grad)) for grad in grads])))

    def update(self, finite: bool) -> None:
        """After a step: halve the scale if the gradients were not ``finite``, else count towards growth."""
        if finite:
            self._clean += 1
            if self._clean == self.growth_interval:
                self.scale *= 2.0
                self._clean = 0
        else:
            self.scale /= 2.0
            self._clean = 0
            self.skipped += 1

    @property
    def exhausted(self) -> bool:
        """Whether the scale has fallen below ``min_scale``."""
        return self.scale < self.min_scale

    def state(self) -> dict[str, float]:
        """What carries the scaler over to another fit or a checkpoint (JSON values)."""
        return {
            "scale": self.scale,
            "growth_interval": self.growth_interval,
            "min_scale": self.min_scale,
            "clean_steps": self._clean,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> LossScaler:
        """A scaler continuing :meth:`state` (a fresh one for ``None``); a bad state is a ValueError."""
        if state is None:
            return cls()
        try:
            scaler = cls(state["scale"], state["growth_interval"], state["min_scale"])
            scaler._clean = _checks.check_int(state["clean_steps"], "loss_scale['clean_steps']", minimum=0)
        except (KeyError, TypeError) as exc:
            msg = f"`loss_scale` must be a loss scaler's state (scale, growth_interval, ...), got {state!r}"
            raise ValueError(msg) from exc
        return scaler

    def record(self) -> dict[str, float]:
        """``{"loss_scale": scale, "skipped_steps": skipped}``, and start counting skipped steps anew."""
        record = {"loss_scale": self.scale, "skipped_steps": self.skipped}
        self.skipped = 0
        return record
