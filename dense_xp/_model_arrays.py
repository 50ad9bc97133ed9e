"""The arrays of every layer of a :class:`dense_xp.Sequential`, in layer order, read and assigned as lists.

:class:`_ModelArrays` is a base of :class:`~dense_xp.Sequential`: its
methods walk the model's layers in order, and each layer's arrays in the
order it declared them (for a Dense layer ``W``, then ``b``). Optimizers,
loss scaling and checkpoints read and assign the model's arrays through them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layers.base import Layer

__all__ = ["_ModelArrays"]


class _ModelArrays:
    """The parameters, gradients and state of every layer, in layer order (a base of ``Sequential``)."""

    if TYPE_CHECKING:
        _layers: tuple[Layer, ...]

    def parameters(self) -> list[Any]:
        """Every trainable array, in layer order (for a Dense layer ``W``, then ``b``)."""
        return [p for layer in self._layers for p in layer.parameters().values()]

    def named_parameters(self) -> dict[str, Any]:
        """Every trainable array by name: ``{"layers.0.W": W, ...}``."""
        return {
            f"layers.{i}.{k}": p
            for i, layer in enumerate(self._layers)
            for k, p in layer.parameters().items()
        }

    def gradients(self) -> list[Any]:
        """Every layer's gradients from the last backward, in :meth:`parameters` order."""
        return [layer.grads[name] for layer in self._layers for name in layer.parameters()]

    def set_parameters(self, values: Iterable[Any]) -> None:
        """Assign :meth:`parameters` in order (each checked as ``layer.W = ...`` is)."""
        values = list(values)
        slots = [(layer, name) for layer in self._layers for name in layer.parameters()]
        if len(values) != len(slots):
            msg = f"`values` must hold {len(slots)} arrays (one per parameter), got {len(values)}"
            raise ValueError(msg)
        for (layer, name), value in zip(slots, values, strict=True):
            if getattr(layer, name) is not value:  # an update in place leaves the slot as it is
                setattr(layer, name, value)

    def set_gradients(self, values: Iterable[Any]) -> None:
        """Replace every layer's gradients, in :meth:`parameters` order (loss scaling unscales them)."""
        slots = [(layer, name) for layer in self._layers for name in layer.parameters()]
        for (layer, name), value in zip(slots, list(values), strict=True):
            layer.grads[name] = value

    def states(self) -> list[Any]:
        """Every non-trainable array (running statistics), in layer order."""
        return [a for layer in self._layers for a in layer.state().values()]

    def set_states(self, values: Iterable[Any]) -> None:
        """Assign :meth:`states` in order."""
        slots = [(layer, name) for layer in self._layers for name in layer.state()]
        for (layer, name), value in zip(slots, list(values), strict=True):
            setattr(layer, name, value)
