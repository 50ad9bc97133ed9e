"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

from typing import Any

from .. import _checks
from . import _args
from ._base import Optimizer
from ._ops import add, mul, sub

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    ``g += weight_decay * p``; ``s = alpha s + (1 - alpha) g^2``; with
    ``centered``, ``a = a + (1 - alpha) (g - a)`` and ``r = sqrt(s - a^2) + eps``,
    else ``r = sqrt(s) + eps``; with momentum ``buf = momentum buf + g / r``
    and ``p -= lr buf``, else ``p -= lr g / r``.

    Parameters
    ----------
    lr : float, Schedule or callable, default 0.01
        See :class:`Optimizer`.
    alpha : float, default 0.99
        Smoothing constant of the squared gradients' average, in [0, 1]
        (Keras' ``rho``).
    eps : float, default 1e-8
        > 0.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, >= 0.
    momentum : float, default 0.0
        >= 0.
    centered : bool, default False
        Normalize by the variance of the gradients (their average squared
        minus their squared average) rather than their average square.
    clip_norm, clip_value : float, optional
        Gradient clipping; see :class:`Optimizer`.
    """

    def __init__(
        self,
        lr: Any = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        alpha = _args.real(alpha, "alpha", "in [0, 1]", lambda v: 0 <= v <= 1)
        eps = _args.real(eps, "eps", "> 0", lambda v: v > 0)
        weight_decay = _args.real(weight_decay, "weight_decay", ">= 0", lambda v: v >= 0)
        momentum = _args.real(momentum, "momentum", ">= 0", lambda v: v >= 0)
        _checks.check_bool(centered, "centered")
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered
        self._state_names = ("square_avg",) + ("momentum_buffer",) * bool(momentum) + ("grad_avg",) * centered

    def _update(self, i: int, p: Any, g: Any, lr: float, *, xp: Any, inplace: bool) -> Any:
        state, alpha = self.state[i], self.alpha
        if self.weight_decay:
            g = add(p * self.weight_decay, g, inplace)  # a new array: the caller's is untouched
        square = add(mul(state["square_avg"], alpha, inplace), mul(g * g, 1.0 - alpha, inplace), inplace)
        state["square_avg"] = square
        if self.centered:
            avg = add(state["grad_avg"], (g - state["grad_avg"]) * (1.0 - alpha), inplace)
            state["grad_avg"] = avg
            rms = xp.sqrt(square - avg * avg)
        else:
            rms = xp.sqrt(square)
        rms = add(rms, self.eps, inplace)
        if self.momentum:
            buf = add(mul(state["momentum_buffer"], self.momentum, inplace), g / rms, inplace)
            state["momentum_buffer"] = buf
            return sub(p, buf * lr, inplace)
        return sub(p, mul(g / rms, lr, inplace), inplace)

    def _config(self) -> dict[str, Any]:
        hyper = {"alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay}
        return {**super()._config(), **hyper, "momentum": self.momentum, "centered": self.centered,
                **self._clip_config()}  # fmt: skip
