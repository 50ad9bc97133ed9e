"""Adam and AdamW, as ``torch.optim.Adam`` and ``torch.optim.AdamW``."""

from __future__ import annotations

import math
from typing import Any

from . import _args
from ._base import Optimizer
from ._ops import add, div, mul, sub

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``amsgrad=False``); weight decay is an L2 term in the gradient.

    ``g += weight_decay * p``; ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    Parameters
    ----------
    lr : float, Schedule or callable, default 1e-3
        See :class:`Optimizer`.
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
        > 0.
    weight_decay : float, default 0.0
        >= 0.
    clip_norm, clip_value : float, optional
        Gradient clipping; see :class:`Optimizer`.
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(
        self,
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        betas = _args.betas(betas)
        eps = _args.real(eps, "eps", "> 0", lambda v: v > 0)
        weight_decay = _args.real(weight_decay, "weight_decay", ">= 0", lambda v: v >= 0)
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, i: int, p: Any, g: Any, lr: float, *, xp: Any, inplace: bool) -> Any:
        (b1, b2), now = self.betas, self._now
        if self.weight_decay and self._decoupled:
            p = mul(p, 1.0 - lr * self.weight_decay, inplace)
        elif self.weight_decay:
            g = add(p * self.weight_decay, g, inplace)  # a new array: the caller's is untouched
        state = self.state[i]
        m = add(mul(state["exp_avg"], b1, inplace), g * (1.0 - b1), inplace)
        v = add(mul(state["exp_avg_sq"], b2, inplace), mul(g * g, 1.0 - b2, inplace), inplace)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        step_size = now["step_size"]
        denom = add(div(xp.sqrt(v), now["root"], inplace), self.eps, inplace)
        update = m / denom
        return sub(p, mul(update, step_size, inplace), inplace)

    def scalars(self) -> dict[str, Any]:
        """``lr``, ``step_size = lr / (1 - b1^t)`` and ``root = sqrt(1 - b2^t)`` of the next step ``t``."""
        (b1, b2), t = self.betas, self.steps + 1
        lr = self.lr
        return {"lr": lr, "step_size": lr / (1.0 - b1**t), "root": math.sqrt(1.0 - b2**t)}

    def _config(self) -> dict[str, Any]:
        hyper = {"betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}
        return {**super()._config(), **hyper, **self._clip_config()}


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    ``p *= 1 - lr * weight_decay`` before the Adam step (which has no L2 term).
    Parameters as :class:`Adam`, with ``weight_decay`` defaulting to 0.01.
    """

    _decoupled = True

    def __init__(
        self,
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, clip_norm=clip_norm, clip_value=clip_value)
