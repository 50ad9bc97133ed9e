"""Stochastic gradient descent, as ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any

from .. import _checks
from . import _args
from ._base import Optimizer
from ._ops import add, mul, sub

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    ``d = g + weight_decay * p``; with momentum ``buf = momentum * buf + (1 - dampening) * d``
    (``buf = d`` on the first step) and ``d = buf``, or ``d + momentum * buf``
    with ``nesterov``; then ``p -= lr * d``.

    Parameters
    ----------
    lr : float, Schedule or callable, default 0.01
        See :class:`Optimizer`.
    momentum : float, default 0.0
        >= 0.
    nesterov : bool, default False
        Requires ``momentum > 0`` and ``dampening == 0``, as in torch.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, >= 0.
    dampening : float, default 0.0
        In [0, 1]: the share of the gradient kept out of the momentum buffer.
    clip_norm, clip_value : float, optional
        Gradient clipping; see :class:`Optimizer`.
    """

    def __init__(
        self,
        lr: Any = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        dampening: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        momentum = _args.real(momentum, "momentum", ">= 0", lambda v: v >= 0)
        weight_decay = _args.real(weight_decay, "weight_decay", ">= 0", lambda v: v >= 0)
        dampening = _args.real(dampening, "dampening", "in [0, 1]", lambda v: 0 <= v <= 1)
        _checks.check_bool(nesterov, "nesterov")
        if nesterov and (momentum == 0 or dampening != 0):
            msg = (
                "`nesterov=True` requires `momentum` > 0 and `dampening` = 0 (as torch.optim.SGD), "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
            raise ValueError(msg)
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.dampening = dampening
        self._state_names = ("momentum_buffer",) if momentum else ()

    def _update(self, i: int, p: Any, g: Any, lr: float, *, xp: Any, inplace: bool) -> Any:
        fresh = False  # whether d is a new array we may overwrite
        d = g
        if self.weight_decay:
            d, fresh = add(p * self.weight_decay, g, inplace), True
        if self.momentum:
            state = self.state[i]
            kept = self._now["kept"]
            buf = mul(state["momentum_buffer"], self.momentum, inplace)
            # all of d at kept == 1 (torch's first step); a traced kept is multiplied in: d * 1 is d exactly
            whole = isinstance(kept, float) and kept == 1.0
            buf = add(buf, d if whole else d * kept, inplace)
            state["momentum_buffer"] = buf
            if self.nesterov:
                d = add(buf * self.momentum, d, inplace)  # into the new product: g stays as it is
                fresh = True
            else:
                d, fresh = buf, False
        return sub(p, mul(d, lr, inplace) if fresh else d * lr, inplace)

    def scalars(self) -> dict[str, Any]:
        """``lr`` and ``kept``, the share of the gradient into the momentum buffer (all at first: torch)."""
        return {**super().scalars(), "kept": 1.0 - self.dampening if self.steps >= 1 else 1.0}

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "dampening": self.dampening,
            **self._clip_config(),
        }
