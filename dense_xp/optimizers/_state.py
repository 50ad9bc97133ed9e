"""Optimizer state as host data: ``state_dict`` / ``load_state_dict`` for checkpoints, and pickling.

A state dict holds no device object and no array of a device library: the
state arrays are NumPy copies (``dense_xp._backend.to_numpy``), the rest
Python numbers, strings, lists and dicts. Pickling (and :func:`copy.deepcopy`)
goes through the host too, and comes back on the pickled device, or on the
CPU where that device is gone, as a layer does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import array_api_compat

from .. import _backend, _checks
from ..schedules import Schedule, from_description

__all__ = ["Stateful"]

_KEYS = ("optimizer", "hyperparameters", "lr", "schedule", "steps", "epochs", "params", "state", "loss_scale")
_PARAM_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _host(state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: _backend.to_numpy(a).copy() for name, a in s.items()} for s in state]


def _wide_name(dtype: str) -> str:
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _refuse(where: str, rule: str, got: Any) -> None:
    msg = f"`state_dict{where}` must be {rule}, got {got!r}"
    raise ValueError(msg)


def _check_params(params: Any) -> list[dict[str, Any]]:
    if not isinstance(params, list):
        _refuse("['params']", "a list of {'shape', 'dtype'} per parameter", params)
    for i, spec in enumerate(params):
        ok = isinstance(spec, Mapping) and set(spec) == {"shape", "dtype"}
        if not ok or spec["dtype"] not in _PARAM_DTYPES or not isinstance(spec["shape"], (list, tuple)):
            _refuse(f"['params'][{i}]", f"{{'shape': tuple, 'dtype': one of {_PARAM_DTYPES}}}", spec)
    return [{"shape": tuple(spec["shape"]), "dtype": spec["dtype"]} for spec in params]


def _check_arrays(state: Any, params: list[dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The host state arrays, each of the shape and dtype the parameter of its position needs."""
    if not isinstance(state, list) or len(state) != len(params):
        _refuse("['state']", f"a list of {len(params)} dicts (one per parameter)", state)
    for i, (arrays, spec) in enumerate(zip(state, params, strict=True)):
        if not isinstance(arrays, Mapping) or set(arrays) != set(names):
            _refuse(f"['state'][{i}]", f"a dict of the arrays {sorted(names)}", arrays)
        for name, a in arrays.items():
            dtype = _wide_name(spec["dtype"])
            fits = array_api_compat.is_numpy_array(a) and (tuple(a.shape), a.dtype.name) == (
                spec["shape"],
                dtype,
            )
            if not fits:
                got = f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}"
                msg = (
                    f"`state_dict['state'][{i}][{name!r}]` must be a NumPy array of shape {spec['shape']} "
                    f"and dtype {dtype} (parameter {i} is {spec['dtype']}), got {got}"
                )
                raise ValueError(msg)
    return [{name: a.copy() for name, a in arrays.items()} for arrays in state]


class Stateful:
    """``state_dict``, ``load_state_dict`` and pickling of :class:`~dense_xp.optimizers.Optimizer`."""

    state: list[dict[str, Any]]
    steps: int
    epochs: int
    loss_scale: dict[str, Any] | None
    _signatures: list[tuple[Any, ...]] | None
    _wide: list[Any]
    _narrow: bool | None
    _xp: Any
    _pending: dict[str, Any] | None
    _schedule: Schedule | Callable[[int], float] | None
    _state_names: tuple[str, ...]

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as host data, for a checkpoint.

        Returns
        -------
        dict
            ``optimizer`` (the class name), ``hyperparameters`` (the
            constructor's arguments but ``lr``), ``lr`` (of the next step),
            ``schedule`` (``None`` for a number, ``{"name": "callable"}`` for
            a callable, else the schedule's ``describe()``: name, config and
            position), ``steps``, ``epochs``, ``params`` (per position,
            ``{"shape", "dtype"}``), ``state`` (per position, the state arrays
            by name, NumPy copies) and ``loss_scale`` (a loss scaler's state,
            or ``None``).
        """
        if self._pending is not None:
            params, state = list(self._pending["params"]), _host(self._pending["state"])
        else:
            signatures = self._signatures or []
            params = [{"shape": shape, "dtype": _checks.dtype_name(dtype)} for shape, dtype, _ in signatures]
            state = _host(self.state)
        schedule = self._schedule
        if schedule is None:
            described: dict[str, Any] | None = None
        else:
            described = schedule.describe() if isinstance(schedule, Schedule) else {"name": "callable"}
        hyper = {k: v for k, v in self._config().items() if k != "lr"}
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": hyper,
            "lr": getattr(self, "lr"),  # noqa: B009 (the subclass's property)
            "schedule": described,
            "steps": self.steps,
            "epochs": self.epochs,
            "params": params,
            "state": state,
            "loss_scale": None if self.loss_scale is None else dict(self.loss_scale),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any], params: Any = None) -> None:
        """Restore :meth:`state_dict`: hyperparameters, schedule position, counts and state arrays.

        The state arrays go to the devices of ``params`` now, or of the
        parameters of the next :meth:`check` or :meth:`step`. Everything is
        checked before anything changes.

        Parameters
        ----------
        state_dict : dict
            As :meth:`state_dict` returned it, from an optimizer of this class.
        params : sequence of arrays, optional
            The parameters the state is for.

        Raises
        ------
        ValueError
            ``state_dict`` is of another optimizer or malformed, an array has
            another shape or dtype than its parameter needs (the message names
            the position), or ``params`` do not fit it.
        """
        d = self._checked(state_dict)
        lr, reuse = self._lr_from(d)
        fresh = cast(Any, type(self))(lr=lr, **d["hyperparameters"])  # checks the hyperparameters
        specs = _check_params(d["params"])
        pending = {"params": specs, "state": _check_arrays(d["state"], specs, fresh._state_names)}
        steps = _checks.check_int(d["steps"], "state_dict['steps']", minimum=0)
        epochs = _checks.check_int(d["epochs"], "state_dict['epochs']", minimum=0)
        if params is not None:
            fresh._pending = pending
            fresh.check(params)
        elif specs:
            fresh._pending = pending
        if reuse:
            own, loaded = self._schedule, fresh._schedule
            assert isinstance(own, Schedule)
            assert isinstance(loaded, Schedule)
            own.load_state_dict(loaded.state_dict())
            fresh._schedule = own
        self.__dict__.update(fresh.__dict__)
        self.steps, self.epochs = steps, epochs
        self.loss_scale = None if d["loss_scale"] is None else dict(d["loss_scale"])

    def _checked(self, state_dict: Any) -> dict[str, Any]:
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(_KEYS):
            got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            msg = f"`state_dict` must be what state_dict() returns, with keys {', '.join(_KEYS)}; got {got}"
            raise ValueError(msg)
        if state_dict["optimizer"] != type(self).__name__:
            msg = f"`state_dict` is of a {state_dict['optimizer']}, not of a {type(self).__name__}"
            raise ValueError(msg)
        for key, kind in (("hyperparameters", Mapping), ("loss_scale", (Mapping, type(None)))):
            if not isinstance(state_dict[key], kind):
                _refuse(f"[{key!r}]", "a dict" + (" or None" if key == "loss_scale" else ""), state_dict[key])
        return dict(state_dict)

    def _lr_from(self, d: dict[str, Any]) -> tuple[Any, bool]:
        """The ``lr`` to rebuild with, and whether this optimizer's own schedule takes the loaded position."""
        described, schedule = d["schedule"], self._schedule
        if described is None:
            return d["lr"], False
        if described == {"name": "callable"}:
            if schedule is None or isinstance(schedule, Schedule):
                msg = (
                    "`state_dict` was saved with a callable `lr`, which a state dict cannot hold: give this "
                    "optimizer that callable as `lr` before loading"
                )
                raise ValueError(msg)
            return schedule, False
        rebuilt = from_description(described)
        same = type(schedule) is type(rebuilt) and schedule.get_config() == rebuilt.get_config()
        return rebuilt, same

    def _place(
        self, pending: dict[str, Any], signatures: list[tuple[Any, ...]], wides: list[Any], *, xp: Any
    ) -> list[dict[str, Any]]:
        """The loaded host state on the devices of the parameters with ``signatures``, which must fit it."""
        specs = pending["params"]
        if len(signatures) != len(specs):
            msg = f"`params` must be the {len(specs)} arrays of the loaded state, got {len(signatures)}"
            raise ValueError(msg)
        for i, (spec, (shape, dtype, _)) in enumerate(zip(specs, signatures, strict=True)):
            if (spec["shape"], spec["dtype"]) != (shape, _checks.dtype_name(dtype)):
                msg = (
                    f"`params` must fit the loaded state: at position {i} the state is for shape "
                    f"{spec['shape']} {spec['dtype']}, the parameter is {shape} {_checks.dtype_name(dtype)}"
                )
                raise ValueError(msg)
        return [
            {k: _backend.from_host(a, xp=xp, device=sig[2], dtype=wide, copy=True) for k, a in arrays.items()}
            for arrays, sig, wide in zip(pending["state"], signatures, wides, strict=True)
        ]

    # -- pickling ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything, with the state arrays as host copies and devices by name (no device object)."""
        d = self.__dict__.copy()
        d["state"], d["_xp"] = _host(self.state), None
        if self._signatures is not None:
            d["_signatures"] = [
                (shape, _checks.dtype_name(dtype), _backend.device_spec(self._xp, device))
                for shape, dtype, device in self._signatures
            ]
            d["_wide"] = [_checks.dtype_name(w) for w in self._wide]
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        """Back on the pickled devices, or on the CPU where they are gone (``_backend.restore_device``)."""
        if d["_signatures"] is not None:
            placed = [_backend.restore_device(*spec) for _, _, spec in d["_signatures"]]
            d["_xp"] = placed[0][0]
            d["_signatures"] = [
                (shape, getattr(xp, dtype), device)
                for (shape, dtype, _), (xp, device) in zip(d["_signatures"], placed, strict=True)
            ]
            d["_wide"] = [getattr(xp, w) for w, (xp, _) in zip(d["_wide"], placed, strict=True)]
            d["state"] = [
                {
                    k: _backend.from_host(a, xp=xp, device=dev, dtype=wide, copy=True)
                    for k, a in arrays.items()
                }
                for arrays, (xp, dev), wide in zip(d["state"], placed, d["_wide"], strict=True)
            ]
        d.setdefault("_narrow", None)  # pickled before it was kept: the step casts as it must
        self.__dict__.update(d)
