"""How a layer's arrays travel: moves to another device or dtype, deep copies, and the pickled state.

The functions here do the work of :meth:`Layer.to <dense_xp.Layer.to>`,
``Layer.__deepcopy__``, ``Layer.__getstate__`` and ``Layer.__setstate__``.
A pickle holds host (NumPy) copies of the arrays and the device by name, so
it loads on a machine without that device (on the CPU of its library).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _backend, _checks
from ._context import filling

if TYPE_CHECKING:
    from .base import Layer

__all__ = ["deep_copy", "host_state", "move", "restore", "shallow_copy"]

_L = TypeVar("_L", bound="Layer")


def move(layer: Layer, device: Any, xp: Any, dtype: Any, param_dtype: Any, compute_dtype: Any) -> None:
    """Move ``layer``'s arrays and gradients to ``device`` of ``xp``, in the dtypes asked for (or its own)."""
    new_xp, new_device = _backend.resolve_device(device, xp=xp)
    keep = (_checks.dtype_name(layer._param_dtype), _checks.dtype_name(layer._compute_dtype))
    param, compute = _checks.dtype_policy(
        dtype, param_dtype, compute_dtype, xp=new_xp, device=new_device, keep=keep
    )
    mover = _backend.mover(layer.xp, layer.device, new_xp, new_device, param)
    with _backend.on_device(new_device):
        moved = {name: mover(array) for name, array in layer.arrays().items()}
        grads = {name: mover(grad) for name, grad in layer.grads.items()}
    for name, array in moved.items():
        object.__setattr__(layer, name, array)
    layer.grads = grads
    layer.xp, layer.device, layer._param_dtype, layer._compute_dtype = new_xp, new_device, param, compute


def shallow_copy(layer: _L) -> _L:
    """A copy of ``layer`` sharing its arrays, with a gradient dict of its own, settled afresh."""
    new = type(layer).__new__(type(layer))
    new.__dict__.update(layer.__dict__)
    new.grads = dict(layer.grads)
    new._settle()
    return new


def deep_copy(layer: _L, memo: dict[int, Any]) -> _L:
    """A shallow copy of ``layer`` given copies of its arrays and gradients, on the same device."""
    new = copy.copy(layer)
    memo[id(layer)] = new
    xp = layer.xp
    with _backend.on_device(layer.device):
        for name, array in layer.arrays().items():
            object.__setattr__(new, name, xp.asarray(array, copy=True))
        new.grads = {name: xp.asarray(grad, copy=True) for name, grad in layer.grads.items()}
    new._settle()
    return new


def host_state(layer: Layer) -> dict[str, Any]:
    """What a pickle of ``layer`` holds: config, dtypes, input width, host arrays, device by name, path."""
    return {
        "config": layer.get_config(),
        "dtype": _checks.dtype_name(layer._param_dtype),
        "compute_dtype": _checks.dtype_name(layer._compute_dtype),
        "input_size": layer.input_size,
        "arrays": {name: _backend.to_numpy(a).copy() for name, a in layer.arrays().items()},
        "device": _backend.device_spec(layer.xp, layer.device),
        "path": layer.path,
    }


def restore(layer: Layer, state: dict[str, Any]) -> None:
    """Rebuild ``layer`` (unpickled, not yet initialized) from :func:`host_state`'s output.

    Raises
    ------
    TypeError, ValueError
        The state does not rebuild a layer of this class; the message names the class.
    """
    xp, device = _backend.restore_device(*state["device"])
    dtypes = {"param_dtype": state["dtype"], "compute_dtype": state.get("compute_dtype")}
    arrays = state.get("arrays", state.get("params"))
    try:
        with filling(arrays):
            type(layer).__init__(layer, **state["config"], **dtypes, device=device, xp=xp)
            if state.get("input_size") is not None:
                layer.build_for(state["input_size"])
    except (TypeError, ValueError) as exc:
        msg = f"cannot unpickle a {type(layer).__name__}: {exc}"
        raise type(exc)(msg) from None
    layer.path = state.get("path", "")
