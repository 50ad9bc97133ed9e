"""The optimizer base class: per-position state, the checks of every step, clipping (the rate: ``_rate``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import array_api_compat

from .. import _backend
from ..schedules import Schedule
from . import _args
from ._clipping import Clip, clipper
from ._rate import LearningRate
from ._state import Stateful

__all__ = ["Optimizer"]


def _wide(dtype: Any, *, xp: Any) -> Any:
    """The dtype of state and arithmetic for parameters of ``dtype``: float32 for 16-bit floats."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def _signature(a: Any) -> tuple[Any, ...]:
    return tuple(a.shape), a.dtype, array_api_compat.device(a)


class Optimizer(LearningRate, Stateful):
    """Base class: per-parameter state, the learning rate and its schedule, the checks of every :meth:`step`.

    Subclasses implement ``_update(i, p, g, lr, *, xp, inplace) -> p`` and
    ``_config()``.

    Parameters
    ----------
    lr : float, Schedule or callable
        A learning rate >= 0; a schedule of :mod:`dense_xp.schedules`; or a
        callable of the number of steps taken (0 for the first step)
        returning the rate.
    clip_norm : float, optional
        Scale the gradients so that their global 2-norm is at most this, as
        ``torch.nn.utils.clip_grad_norm_`` (``max_norm / (norm + 1e-6)``,
        clamped to 1). Computed on the device: nothing is read back.
    clip_value : float, optional
        Clamp every gradient element to ``[-clip_value, clip_value]``, as
        ``torch.nn.utils.clip_grad_value_``. Excludes ``clip_norm``.

    Attributes
    ----------
    lr : float
        The learning rate of the next step (a schedule's current value).
        Assign a number, a schedule or a callable to change it.
    schedule : Schedule, callable or None
        What ``lr`` was given, when not a number.
    state : list of dict
        Per parameter position, the state arrays by name (empty before the
        first step).
    steps : int
        Number of steps taken since construction or :meth:`reset`.
    epochs : int
        Number of :meth:`end_epoch` calls since then.
    loss_scale : dict or None
        A loss scaler's state, kept and restored by :meth:`state_dict` and
        :meth:`load_state_dict`; set by whoever scales the loss.
    """

    _state_names: tuple[str, ...] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # refuses other libraries' keywords by name
        _args.check_keywords(cls, kwargs)
        return super().__new__(cls)

    def __init__(self, lr: Any, *, clip_norm: float | None = None, clip_value: float | None = None) -> None:
        clip_norm = _args.optional_positive(clip_norm, "clip_norm")
        clip_value = _args.optional_positive(clip_value, "clip_value")
        if clip_norm is not None and clip_value is not None:
            msg = f"`clip_norm` and `clip_value` exclude each other, got {clip_norm=!r} and {clip_value=!r}"
            raise ValueError(msg)
        self.lr = lr
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.loss_scale: dict[str, Any] | None = None
        self.state: list[dict[str, Any]] = []
        self.steps, self.epochs = 0, 0
        self._signatures: list[tuple[Any, ...]] | None = None
        self._wide: list[Any] = []  # per position: the dtype of state and arithmetic
        self._narrow: bool | None = None  # whether some parameter is narrower than its arithmetic
        self._xp: Any = None
        self._pending: dict[str, Any] | None = None  # loaded host state, placed on the next check or step
        self._now: dict[str, Any] = {}  # scalars() of the step being taken

    # -- state --------------------------------------------------------------
    def reset(self) -> None:
        """Forget all state: the next step starts afresh (for any parameters), at the schedule's start."""
        self.state, self.steps, self.epochs, self._signatures, self._wide = [], 0, 0, None, []
        self._narrow = None
        self._xp, self._pending = None, None
        if isinstance(self._schedule, Schedule):
            self._schedule.reset()

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
            :meth:`reset` to start over with new parameters) or from a loaded
            state.
        """
        params, grads = _args.arrays(params, "params"), _args.arrays(grads, "grads")
        if len(grads) != len(params):
            msg = f"`grads` must hold one array per parameter ({len(params)}), got {len(grads)}"
            raise ValueError(msg)
        xp, signatures = self._signatures_of(params, grads)
        for i, (sig, g) in enumerate(zip(signatures, grads, strict=True)):
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
                self._start(params, signatures, xp)
            self._now = self.scalars()
            lr = self._now["lr"]
            clip = clipper(grads, self._wide, self.clip_norm, self.clip_value, xp=xp)
            self.steps += 1
            pairs = enumerate(zip(params, grads, strict=True))
            return [self._apply(i, p, g, lr, clip, xp=xp) for i, (p, g) in pairs]

    def scalars(self) -> dict[str, Any]:
        """The numbers of the next step, computed on the host: ``lr`` and those of the step count.

        A compiled training step (``jax.jit``) takes them as arguments, so that
        one trace serves every step; :meth:`step_unchecked` accepts them back.
        Subclasses add their own (Adam's bias corrections).
        """
        return {"lr": self.lr}

    def step_unchecked(
        self, params: Sequence[Any], grads: Sequence[Any], scalars: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """:meth:`step` without its per-call checks, for a training loop that made them once.

        ``fit`` calls :meth:`check` on the model's parameters before training and
        checks every gradient a layer returns against its parameter; this
        step then only updates. The first step (or the first after
        :meth:`reset` or a loaded state) runs the checked :meth:`step`, which
        records the parameters' shapes, dtypes and devices. The caller runs
        it with the parameters' device current.

        Parameters
        ----------
        params, grads : sequence of arrays
            As for :meth:`step`, and with the shapes, dtypes and devices of
            the parameters of the first step.
        scalars : mapping, optional
            :meth:`scalars` of this step, taken before it (a compiled step
            passes them in as traced values); computed here by default.

        Returns
        -------
        list of arrays
            As :meth:`step`.
        """
        if self._signatures is None or len(params) != len(self._signatures):
            return self.step(params, grads)
        self._now = self.scalars() if scalars is None else dict(scalars)  # scalars() gives a new dict
        xp, lr = self._xp, self._now["lr"]
        pairs = enumerate(zip(params, grads, strict=True))
        if self.clip_norm is None and self.clip_value is None and self._narrow is False:
            # the common case without _apply's casts and clipping (a small step is mostly Python)
            self.steps += 1
            update, writeable = self._update, _backend.writeable
            return [update(i, p, g, lr, xp=xp, inplace=writeable(p)) for i, (p, g) in pairs]
        clip = clipper(grads, self._wide, self.clip_norm, self.clip_value, xp=xp)
        self.steps += 1
        return [self._apply(i, p, g, lr, clip, xp=xp) for i, (p, g) in pairs]

    def record_step(self, state: list[dict[str, Any]]) -> None:
        """Take the state of a step computed elsewhere (a compiled training step): one more step taken.

        Parameters
        ----------
        state : list of dict
            The new :attr:`state`, per position the same names, shapes and
            dtypes as now (what :meth:`step_unchecked` of a copy returned).
        """
        if len(state) != len(self.state) or any(
            a.keys() != b.keys() for a, b in zip(state, self.state, strict=True)
        ):
            names = [sorted(s) for s in self.state]
            msg = f"`state` must hold the names {names} per position, got {[sorted(s) for s in state]}"
            raise ValueError(msg)
        self.state = state
        self.steps += 1

    def _signatures_of(self, params: list[Any], grads: list[Any]) -> tuple[Any, list[tuple[Any, ...]]]:
        """The namespace and the ``(shape, dtype, device)`` of each parameter, which must be real floating."""
        if not params:
            msg = "`params` must hold at least one array, got an empty sequence"
            raise ValueError(msg)
        try:
            xp = array_api_compat.array_namespace(*params, *grads)
        except TypeError as exc:
            msg = f"`params` and `grads` must be arrays of one array library: {exc}"
            raise TypeError(msg) from None
        signatures = [_signature(p) for p in params]
        for i, sig in enumerate(signatures):
            if not xp.isdtype(sig[1], "real floating"):
                msg = f"`params` must be real floating arrays, got dtype {sig[1]} at position {i}"
                raise TypeError(msg)
        return xp, signatures

    def _start(self, params: list[Any], signatures: list[tuple[Any, ...]], xp: Any) -> None:
        """State for the first step on ``params``: zeros, or the loaded state placed on their devices."""
        wides = [_wide(p.dtype, xp=xp) for p in params]
        if self._pending is not None:
            state = self._place(self._pending, signatures, wides, xp=xp)
        else:
            state = [
                {name: xp.zeros_like(p, dtype=wide, device=sig[2]) for name in self._state_names}
                for p, sig, wide in zip(params, signatures, wides, strict=True)
            ]
        self.state, self._wide, self._signatures, self._xp, self._pending = state, wides, signatures, xp, None
        self._narrow = any(w != p.dtype for w, p in zip(wides, params, strict=True))  # 16-bit: cast

    def _apply(self, i: int, p: Any, g: Any, lr: float, clip: Clip | None, *, xp: Any) -> Any:
        """:meth:`_update` of ``p`` with ``g`` clipped, through float32 for a 16-bit ``p``."""
        inplace = _backend.writeable(p)
        wide = self._wide[i]
        if wide == p.dtype:
            return self._update(i, p, g if clip is None else clip(i, g), lr, xp=xp, inplace=inplace)
        g = xp.astype(g, wide) if clip is None else clip(i, xp.astype(g, wide))
        new = self._update(i, xp.astype(p, wide), g, lr, xp=xp, inplace=inplace)
        new = xp.astype(new, p.dtype)
        if not inplace:
            return new
        p[...] = new
        return p

    def check(self, params: Sequence[Any]) -> None:
        """Refuse ``params`` that the state of earlier steps does not fit, before any gradient is computed.

        :meth:`step` refuses the same parameters, but only once their gradients
        exist; call this first to leave them untouched. A state given to
        :meth:`load_state_dict` without parameters is checked against
        ``params`` and placed on their devices here. Always passes after
        :meth:`reset` or before the first step.

        Parameters
        ----------
        params : sequence of arrays
            The parameters the next steps will update.

        Raises
        ------
        ValueError
            ``params`` differ in number, shape, dtype or device from those of
            the first step (call :meth:`reset` to start over), or from the
            loaded state.
        """
        params = _args.arrays(params, "params")
        if self._signatures is not None:
            self._check_signatures([_signature(p) for p in params])
        elif self._pending is not None:
            xp, signatures = self._signatures_of(params, [])
            with _backend.on_device(signatures[0][2]):
                self._start(params, signatures, xp)

    def _check_signatures(self, signatures: list[tuple[Any, ...]]) -> None:
        if signatures != self._signatures:
            msg = (
                f"`params` must match those of the first step ({len(self._signatures or ())} arrays "
                f"{[s[0] for s in self._signatures or ()]}), got {len(signatures)} arrays "
                f"{[s[0] for s in signatures]} (or another dtype or device); call reset() to start over"
            )
            raise ValueError(msg)

    def _update(self, i: int, p: Any, g: Any, lr: float, *, xp: Any, inplace: bool) -> Any:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """The constructor's arguments, ``lr`` first (a number, or the schedule given)."""
        return {"lr": self._lr if self._schedule is None else self._schedule}

    def _clip_config(self) -> dict[str, Any]:
        return {"clip_norm": self.clip_norm, "clip_value": self.clip_value}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"
