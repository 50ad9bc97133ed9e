"""A layer's array slots: the arrays ``add_parameter`` and ``add_state`` make, and the check of an array
assigned to a slot (its library, device, dtype and shape).

Every array lives in the layer's ``param_dtype`` on its device. A slot's
array comes from the layer's own initializer, from host values (loading a
checkpoint or a pickle), or not at all while a checkpoint's manifest is
checked (see :mod:`dense_xp.layers._context`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import array_api_compat

from .. import _backend, _checks
from ._context import DECLARE, filled_from

if TYPE_CHECKING:
    from .base import Layer

__all__ = ["INITS", "Init", "checked", "declare", "new_array"]

Init = Callable[[], Any] | str  # a host array maker, or "zeros" / "ones"
INITS = ("zeros", "ones")


def declare(layer: Layer, name: str, shape: tuple[int, ...], init: Init) -> None:
    """Add slot ``name`` of ``shape`` to ``layer``, and its array unless only shapes are declared.

    Raises
    ------
    ValueError
        ``name`` is not an identifier, or names a slot or an attribute of the class already.
    """
    if not name.isidentifier() or name in layer._shapes or hasattr(type(layer), name):
        msg = f"`name` must be a new identifier for an array of {type(layer).__name__}, got {name!r}"
        raise ValueError(msg)
    shape = tuple(_checks.check_int(n, f"shape of {name}") for n in shape)
    layer._shapes[name] = shape
    values = filled_from()
    if values is DECLARE:
        return
    placement = {"xp": layer.xp, "device": layer.device, "dtype": layer._param_dtype}
    object.__setattr__(layer, name, new_array(name, shape, init, values, **placement))


def new_array(
    name: str, shape: tuple[int, ...], init: Init, values: Any, *, xp: Any, device: Any, dtype: Any
) -> Any:
    """The array of slot ``name``: a copy of ``values[name]`` where ``values`` is given, else from ``init``.

    Parameters
    ----------
    name : str
    shape : tuple of int
    init : callable or {"zeros", "ones"}
        A callable returning the host values, or a constant fill.
    values : dict of str to host array, or None
        The host arrays being loaded, by slot name.
    xp, device, dtype
        Where the array lives, and its dtype.

    Raises
    ------
    TypeError
        ``init`` is neither a callable nor one of :data:`INITS`.
    """
    with _backend.on_device(device):
        if values is not None:
            return _backend.from_host(values[name], xp=xp, device=device, dtype=dtype, copy=True)
        if init in INITS:
            return (xp.zeros if init == "zeros" else xp.ones)(shape, dtype=dtype, device=device)
        if callable(init):
            return _backend.from_host(init(), xp=xp, device=device, dtype=dtype)
    msg = f"`init` of {name!r} must be a callable or one of {INITS}, got {init!r}"
    raise TypeError(msg)


def checked(value: Any, where: str, shape: tuple[int, ...], *, xp: Any, device: Any, dtype: Any) -> Any:
    """``value`` if it is an array of ``xp`` on ``device`` in ``dtype`` of ``shape`` (detached from autograd).

    Parameters
    ----------
    value : object
        What is assigned to the slot.
    where : str
        How messages name the slot: ``"`layers[0].W`"``.
    shape : tuple of int
    xp, device, dtype
        The layer's library, device and ``param_dtype``.

    Raises
    ------
    TypeError
        ``value`` is not an array of ``xp``, or has another dtype.
    ValueError
        ``value`` has another shape, or lives on another device.
    """
    expected = f"{_checks.dtype_name(dtype)} array of shape {shape}"
    home = f"{_backend.namespace_name(xp)} on device {device!r}"
    if not array_api_compat.is_array_api_obj(value) or array_api_compat.array_namespace(value) is not xp:
        got = _backend.describe(value)
        msg = f"{where} must be a {expected} of {home} (the layer's), got {got}"
        raise TypeError(msg)
    if array_api_compat.is_torch_array(value) and value.requires_grad:
        value = value.detach()  # parameters never join an autograd graph
    if tuple(value.shape) != shape:
        msg = f"{where} must have shape {shape}, got {tuple(value.shape)}"
        raise ValueError(msg)
    if value.dtype != dtype:
        msg = (
            f"{where} must have the layer's param_dtype {_checks.dtype_name(dtype)}, got "
            f"{_checks.dtype_name(value.dtype)}; cast it with xp.astype, or move the whole model "
            "with .to(dtype=...)"
        )
        raise TypeError(msg)
    if array_api_compat.device(value) != device and not _backend.is_traced(value):
        msg = f"{where} must be on the layer's device {device!r}, got {_backend.describe(value)}"
        raise ValueError(msg)
    return value
