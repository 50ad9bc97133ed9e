"""Optimizers (SGD, Adam, AdamW) with the semantics of ``torch.optim``, written against the array API.

``opt.step(params, grads)`` returns the updated parameters: the same arrays,
updated in place, where the library allows writing (NumPy, CuPy, PyTorch,
array-api-strict), new arrays otherwise (JAX). State -- momentum buffers,
Adam moments -- is created on the first step on each parameter's device and
dtype, and kept per parameter position; :meth:`Optimizer.reset` clears it.
Gradients are never modified.

A 16-bit parameter (float16, bfloat16) keeps its state in float32 and is
updated through float32: in float16, Adam's ``eps=1e-8`` is 0 and ``g * g``
underflows for gradients below about 2e-4.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import array_api_compat

from . import _backend, _checks

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "Optimizer", "get_optimizer"]


def _number(value: Any, name: str, rule: str, ok: Any) -> float:
    """``value`` as a float, when it is a finite real number satisfying ``ok``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"`{name}` must be a finite number {rule}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if not (math.isfinite(value) and ok(value)):
        msg = f"`{name}` must be a finite number {rule}, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _betas(betas: Any) -> tuple[float, float]:
    rule = "a pair of numbers (beta1, beta2), each in [0, 1)"
    pair = isinstance(betas, (tuple, list)) and len(betas) == 2
    if not pair or any(isinstance(b, bool) or not isinstance(b, numbers.Real) for b in betas):
        msg = f"`betas` must be {rule}, got {type(betas).__name__} {betas!r}"
        raise TypeError(msg)
    if not all(0 <= b < 1 for b in betas):  # NaN fails too
        msg = f"`betas` must be {rule}, got {betas!r}"
        raise ValueError(msg)
    return float(betas[0]), float(betas[1])


def _arrays(values: Any, name: str) -> list[Any]:
    if isinstance(values, (Mapping, str)) or not isinstance(values, Sequence):
        msg = f"`{name}` must be a sequence (list or tuple) of arrays, got {type(values).__name__}"
        raise TypeError(msg)
    return list(values)


def _wide(dtype: Any, *, xp: Any) -> Any:
    """The dtype of state and arithmetic for parameters of ``dtype``: float32 for 16-bit floats."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def _signature(a: Any) -> tuple[Any, ...]:
    return tuple(a.shape), a.dtype, array_api_compat.device(a)


def _maybe_inplace(name: str) -> Any:
    """``f(a, b, inplace)``: ``a <op>= b`` (returning ``a``) when ``inplace``, else ``a <op> b``."""
    iop, op = getattr(operator, "i" + name), getattr(operator, name)
    return lambda a, b, inplace: iop(a, b) if inplace else op(a, b)


_add, _sub, _mul, _div = (_maybe_inplace(name) for name in ("add", "sub", "mul", "truediv"))


class Optimizer:
    """Base class: keeps per-parameter state and checks every :meth:`step`.

    Subclasses implement ``_update(i, p, g, *, xp, inplace) -> p``.

    Attributes
    ----------
    lr : float
        Learning rate; may be changed between steps (it is validated).
    state : list of dict
        Per parameter position, the state arrays by name (empty before the
        first step).
    steps : int
        Number of steps taken since construction or :meth:`reset`.
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.state: list[dict[str, Any]] = []
        self.steps = 0
        self._signatures: list[tuple[Any, ...]] | None = None
        self._wide: list[Any] = []  # per position: the dtype of state and arithmetic

    @property
    def lr(self) -> float:
        """The learning rate, a finite number >= 0."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _checks.check_lr(value, allow_none=False)

    def reset(self) -> None:
        """Forget all state: the next step starts afresh (for any parameters)."""
        self.state, self.steps, self._signatures, self._wide = [], 0, None, []

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> list[Any]:
        """Take one optimization step.

        Parameters
        ----------
        params : sequence of arrays
            The parameters, all of one array library.
        grads : sequence of arrays
            Their gradients: same number, shapes, dtypes and devices. Not modified.

        Returns
        -------
        list of arrays
            The updated parameters: the objects of ``params`` themselves where
            they are writeable, new arrays otherwise.

        Raises
        ------
        ValueError
            ``grads`` does not match ``params``, or ``params`` differ in number,
            shape, dtype or device from those of the first step (call
            :meth:`reset` to start over with new parameters).
        """
        params, grads = _arrays(params, "params"), _arrays(grads, "grads")
        if not params:
            msg = "`params` must hold at least one array, got an empty sequence"
            raise ValueError(msg)
        if len(grads) != len(params):
            msg = f"`grads` must hold one array per parameter ({len(params)}), got {len(grads)}"
            raise ValueError(msg)
        try:
            xp = array_api_compat.array_namespace(*params, *grads)
        except TypeError as exc:
            msg = f"`params` and `grads` must be arrays of one array library: {exc}"
            raise TypeError(msg) from None
        signatures = [_signature(p) for p in params]
        for i, (sig, g) in enumerate(zip(signatures, grads, strict=True)):
            if not xp.isdtype(sig[1], "real floating"):
                msg = f"`params` must be real floating arrays, got dtype {sig[1]} at position {i}"
                raise TypeError(msg)
            if _signature(g) != sig:
                msg = (
                    f"`grads` must match `params` in shape, dtype and device: at position {i} "
                    f"the parameter is {sig} and the gradient {_signature(g)}"
                )
                raise ValueError(msg)
        if self._signatures is not None:
            self._check_signatures(signatures)
        with _backend.on_device(signatures[0][2]):  # state and updates on the parameters' device
            if self._signatures is None:
                self._wide = [_wide(p.dtype, xp=xp) for p in params]
                self.state = [
                    {name: xp.zeros_like(p, dtype=wide, device=sig[2]) for name in self._state_names}
                    for p, sig, wide in zip(params, signatures, self._wide, strict=True)
                ]
                self._signatures = signatures
            self.steps += 1
            return [self._apply(i, p, g, xp=xp) for i, (p, g) in enumerate(zip(params, grads, strict=True))]

    def _apply(self, i: int, p: Any, g: Any, *, xp: Any) -> Any:
        """:meth:`_update` of ``p``, through float32 for a 16-bit ``p``."""
        inplace = array_api_compat.is_writeable_array(p)
        wide = self._wide[i]
        if wide == p.dtype:
            return self._update(i, p, g, xp=xp, inplace=inplace)
        new = self._update(i, xp.astype(p, wide), xp.astype(g, wide), xp=xp, inplace=inplace)  # copies
        new = xp.astype(new, p.dtype)
        if not inplace:
            return new
        p[...] = new
        return p

    def check(self, params: Sequence[Any]) -> None:
        """Refuse ``params`` that the state of earlier steps does not fit, before any gradient is computed.

        :meth:`step` refuses the same parameters, but only once their gradients
        exist; call this first to leave them untouched. Always passes after
        :meth:`reset` or before the first step.

        Parameters
        ----------
        params : sequence of arrays
            The parameters the next steps will update.

        Raises
        ------
        ValueError
            ``params`` differ in number, shape, dtype or device from those of
            the first step; call :meth:`reset` to start over.
        """
        params = _arrays(params, "params")
        if self._signatures is not None:
            self._check_signatures([_signature(p) for p in params])

    def _check_signatures(self, signatures: list[tuple[Any, ...]]) -> None:
        if signatures != self._signatures:
            msg = (
                f"`params` must match those of the first step ({len(self._signatures or ())} arrays "
                f"{[s[0] for s in self._signatures or ()]}), got {len(signatures)} arrays "
                f"{[s[0] for s in signatures]} (or another dtype or device); call reset() to start over"
            )
            raise ValueError(msg)

    def _update(self, i: int, p: Any, g: Any, *, xp: Any, inplace: bool) -> Any:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    ``d = g + weight_decay * p``; with momentum ``buf = momentum * buf + d``
    (``buf = d`` on the first step) and ``d = buf``, or ``d + momentum * buf``
    with ``nesterov``; then ``p -= lr * d``.

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.0
        >= 0.
    nesterov : bool, default False
        Requires ``momentum > 0``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, >= 0.
    """

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        momentum = _number(momentum, "momentum", ">= 0", lambda v: v >= 0)
        weight_decay = _number(weight_decay, "weight_decay", ">= 0", lambda v: v >= 0)
        _checks.check_bool(nesterov, "nesterov")
        if nesterov and momentum == 0:
            msg = f"`nesterov=True` requires `momentum` > 0, got momentum={momentum!r}"
            raise ValueError(msg)
        super().__init__(lr)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self._state_names = ("momentum_buffer",) if momentum else ()

    def _update(self, i: int, p: Any, g: Any, *, xp: Any, inplace: bool) -> Any:
        fresh = False  # whether d is a new array we may overwrite
        d = g
        if self.weight_decay:
            d, fresh = _add(p * self.weight_decay, g, inplace), True
        if self.momentum:
            state = self.state[i]
            buf = _add(_mul(state["momentum_buffer"], self.momentum, inplace), d, inplace)
            state["momentum_buffer"] = buf
            if self.nesterov:
                d = _add(buf * self.momentum, d, inplace)
                fresh = True
            else:
                d, fresh = buf, False
        return _sub(p, _mul(d, self.lr, inplace) if fresh else d * self.lr, inplace)

    def _config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``amsgrad=False``); weight decay is an L2 term in the gradient.

    ``g += weight_decay * p``; ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
        > 0.
    weight_decay : float, default 0.0
        >= 0.
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        betas = _betas(betas)
        eps = _number(eps, "eps", "> 0", lambda v: v > 0)
        weight_decay = _number(weight_decay, "weight_decay", ">= 0", lambda v: v >= 0)
        super().__init__(lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, i: int, p: Any, g: Any, *, xp: Any, inplace: bool) -> Any:
        (b1, b2), t = self.betas, self.steps
        if self.weight_decay and self._decoupled:
            p = _mul(p, 1.0 - self.lr * self.weight_decay, inplace)
        elif self.weight_decay:
            g = _add(p * self.weight_decay, g, inplace)  # a new array: the caller's is untouched
        state = self.state[i]
        m = _add(_mul(state["exp_avg"], b1, inplace), g * (1.0 - b1), inplace)
        v = _add(_mul(state["exp_avg_sq"], b2, inplace), _mul(g * g, 1.0 - b2, inplace), inplace)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        step_size = self.lr / (1.0 - b1**t)
        denom = _add(_div(xp.sqrt(v), math.sqrt(1.0 - b2**t), inplace), self.eps, inplace)
        update = m / denom
        return _sub(p, _mul(update, step_size, inplace), inplace)

    def _config(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    ``p *= 1 - lr * weight_decay`` before the Adam step (which has no L2 term).
    Parameters as :class:`Adam`, with ``weight_decay`` defaulting to 0.01.
    """

    _decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(optimizer: Any, **kwargs: Any) -> Optimizer:
    """An optimizer by name (see :data:`OPTIMIZERS`), built with ``kwargs``, or ``optimizer`` itself.

    Raises
    ------
    ValueError
        ``optimizer`` names no known optimizer; the message lists them.
    TypeError
        ``optimizer`` is neither a name nor an :class:`Optimizer`, or
        ``kwargs`` are given with an instance.
    """
    if isinstance(optimizer, str):
        try:
            cls = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            valid = ", ".join(repr(name) for name in OPTIMIZERS)
            msg = f"`optimizer` must be one of {valid} or an Optimizer instance; got {optimizer!r}"
            raise ValueError(msg) from None
        return cls(**kwargs)
    if isinstance(optimizer, Optimizer):
        if kwargs:
            msg = f"keyword arguments {sorted(kwargs)} apply only to an optimizer name, not to an instance"
            raise TypeError(msg)
        return optimizer
    msg = f"`optimizer` must be an optimizer name or an Optimizer instance, got {type(optimizer).__name__}"
    raise TypeError(msg)
