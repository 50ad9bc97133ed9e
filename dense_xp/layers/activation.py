"""An activation as a layer of its own, ``softmax`` included."""

from __future__ import annotations

from typing import Any

from .. import _backend
from ..activations import get_activation
from .base import Layer, builtin

__all__ = ["Activation"]


@builtin
class Activation(Layer):
    """``act(X)`` elementwise, or ``softmax`` over each row.

    Parameters
    ----------
    activation : str
        A name of :data:`dense_xp.ACTIVATIONS` (built in or registered), or
        ``"softmax"``: ``exp(x - max) / sum(exp(x - max))`` per row, stable for
        any logits, with its backward ``y * (g - sum(g * y))``.
    input_size : int, optional
        Inferred from the previous layer or the first input otherwise.
    dtype, param_dtype, compute_dtype, device, xp
        As for every layer (no parameters).
    """

    def __init__(self, activation: str, *, input_size: int | None = None, **placement: Any) -> None:
        if activation == "softmax":
            self._act = None
        else:
            self._act = get_activation(activation)
        self.activation = activation
        super().__init__(**placement)
        if input_size is not None:
            self.build_for(input_size)

    def build(self, input_size: int) -> int:
        """No arrays: the output has the input's width."""
        return input_size

    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """The activation of ``X``, shape ``(n, input_size)``."""
        xp = self.xp
        if self._act is None:
            e = xp.exp(X - xp.max(X, axis=1, keepdims=True))
            y = e / xp.sum(e, axis=1, keepdims=True)
            self._saved = y
            return y
        y = self._act.forward(X, xp=xp)
        self._saved = X if self._plan.saves == "input" else y
        return y

    @_backend.runs_on_device
    def backward(self, d_out: Any) -> Any:
        """``d_out`` times the activation's derivative at the last input."""
        self.grads = {}
        xp, saved = self.xp, self._saved
        if self._act is None:
            return saved * (d_out - xp.sum(d_out * saved, axis=1, keepdims=True))
        return self._plan.backward(d_out, saved, xp=xp)

    def get_config(self) -> dict[str, Any]:
        """The activation's name, and the width once built."""
        return {"activation": self.activation, "input_size": self.input_size}

    def _settle(self) -> None:
        self._saved = None
        if self._act is not None:  # 16-bit compute keeps the input: a derivative from the output loses it
            self._plan = self._act.backward_for(self._compute_dtype)
