"""A layer's arrays by name, and their dtypes: the part of :class:`~dense_xp.Layer` that reads its slots.

:class:`_LayerArrays` is the base of :class:`~dense_xp.Layer` that lists the
arrays by name (parameters, state, both), checks an array assigned to a slot
(see :mod:`dense_xp.layers._slots`), and tells the dtype policy: the
parameter and compute dtypes, and the casts between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _checks
from . import _slots

__all__ = ["_LayerArrays"]


class _LayerArrays:
    """A layer's arrays by name, the check of an assigned array, and the dtypes (a base of ``Layer``)."""

    if TYPE_CHECKING:
        xp: Any
        device: Any
        path: str
        _param_dtype: Any
        _compute_dtype: Any
        _shapes: dict[str, tuple[int, ...]]
        _params: tuple[str, ...]
        _states: tuple[str, ...]

    # -- arrays by name -----------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """The trainable arrays by name, in declaration order."""
        return {name: getattr(self, name) for name in self._params}

    def state(self) -> dict[str, Any]:
        """The non-trainable arrays by name (running statistics), in declaration order."""
        return {name: getattr(self, name) for name in self._states}

    def arrays(self) -> dict[str, Any]:
        """Every array: parameters, then state."""
        return {name: getattr(self, name) for name in self._shapes}

    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every declared array, parameters then state."""
        return dict(self._shapes)

    def __setattr__(self, name: str, value: Any) -> None:
        shapes = self.__dict__.get("_shapes")
        if shapes is not None and name in shapes and value is not self.__dict__.get(name):
            value = self._checked(name, value)
        object.__setattr__(self, name, value)

    def _checked(self, name: str, value: Any) -> Any:
        """``value`` for slot ``name`` if it is an array of the layer's library, device, dtype and shape."""
        where = f"`{self.path}.{name}`" if self.path else f"`{name}`"
        placement = {"xp": self.xp, "device": self.device, "dtype": self._param_dtype}
        return _slots.checked(value, where, self._shapes[name], **placement)

    # -- dtypes and the compute dtype -----------------------------------------------
    @property
    def param_dtype(self) -> Any:
        """The dtype of the parameters, their gradients and the state."""
        return self._param_dtype

    @property
    def compute_dtype(self) -> Any:
        """The dtype of forward and backward: inputs, outputs and ``d_input``."""
        return self._compute_dtype

    @property
    def dtype(self) -> Any:
        """The dtype of the parameters, ``param_dtype``."""
        return self._param_dtype

    @property
    def mixed(self) -> bool:
        """Whether the compute dtype is narrower than the parameters' (mixed precision)."""
        return bool(self._compute_dtype != self._param_dtype)

    def cast(self, a: Any) -> Any:
        """``a`` (a parameter) in the compute dtype: a copy where that is narrower."""
        return a if a is None or a.dtype == self._compute_dtype else self.xp.astype(a, self._compute_dtype)

    def widen(self, a: Any) -> Any:
        """``a`` (a gradient of the compute dtype) in the parameter dtype."""
        return a if a.dtype == self._param_dtype else self.xp.astype(a, self._param_dtype)

    def placement(self) -> tuple[Any, Any, Any, Any]:
        """``(xp, device, param_dtype, compute_dtype)``: what the layers of one model share."""
        return self.xp, self.device, self._param_dtype, self._compute_dtype

    def _dtype_repr(self) -> str:
        param, compute = _checks.dtype_name(self._param_dtype), _checks.dtype_name(self._compute_dtype)
        return f"dtype={param}" if param == compute else f"param_dtype={param}, compute_dtype={compute}"
