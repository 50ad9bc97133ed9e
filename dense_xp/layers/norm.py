"""Normalization layers: LayerNorm (per row) and BatchNorm (per feature, over the batch).

Both compute in float32 or wider even when the compute dtype is narrower (as
torch's autocast runs its norms in float32): the input is widened, the
statistics and the affine map are computed there, and the output is rounded
back to the compute dtype once.
"""

from __future__ import annotations

import numbers
from typing import Any

from .. import _backend, _checks
from .base import Layer, builtin

__all__ = ["BatchNorm", "LayerNorm"]


def _positive(value: Any, name: str, *, at_most: float = float("inf")) -> float:
    """``value`` as a float in ``(0, at_most]`` (and finite)."""
    rule = "> 0" if at_most == float("inf") else f"in (0, {at_most:g}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"`{name}` must be a finite number {rule}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    number = float(value)
    if not (0 < number <= at_most and number < float("inf")):
        msg = f"`{name}` must be a finite number {rule}, got {value!r}"
        raise ValueError(msg)
    return number


class _Norm(Layer):
    """What both norms share: a learned scale ``gamma`` and shift ``beta`` of ``(1, features)``."""

    gamma: Any
    beta: Any
    _cache: tuple[Any, Any] | None

    def __init__(self, features: int | None, eps: float, placement: dict[str, Any]) -> None:
        self.eps = _positive(eps, "eps")
        super().__init__(**placement)
        if features is not None:
            self.build_for(_checks.check_int(features, "features"))

    def build(self, input_size: int) -> int:
        """``gamma`` (ones) and ``beta`` (zeros), each ``(1, input_size)``."""
        self.add_parameter("gamma", (1, input_size), "ones")
        self.add_parameter("beta", (1, input_size), "zeros")
        return input_size

    def _settle(self) -> None:
        self._cache = None
        compute = self._compute_dtype
        self._wide = self.xp.float32 if self.xp.finfo(compute).bits < 32 else compute

    def _up(self, a: Any) -> Any:
        return a if a.dtype == self._wide else self.xp.astype(a, self._wide)

    def _down(self, a: Any) -> Any:
        return a if a.dtype == self._compute_dtype else self.xp.astype(a, self._compute_dtype)

    def _affine(self, xhat: Any, inv: Any) -> Any:
        self._cache = (xhat, inv)
        return self._down(xhat * self._up(self.gamma) + self._up(self.beta))

    def _param_grads(self, g: Any, xhat: Any) -> Any:
        """Batch means of the gradients of ``gamma`` and ``beta``; returns ``dL/dxhat``."""
        xp, n = self.xp, g.shape[0]
        self.grads = {
            "gamma": self._to_param(xp.sum(g * xhat, axis=0, keepdims=True) / n),
            "beta": self._to_param(xp.sum(g, axis=0, keepdims=True) / n),
        }
        return g * self._up(self.gamma)

    def _to_param(self, a: Any) -> Any:
        return a if a.dtype == self._param_dtype else self.xp.astype(a, self._param_dtype)

    def _cached(self) -> tuple[Any, Any]:
        if self._cache is None:
            msg = "`backward` was called before `forward`: there is no cached input"
            raise RuntimeError(msg)
        return self._cache


@builtin
class LayerNorm(_Norm):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` over each row's features, as ``torch.nn.LayerNorm``.

    Parameters
    ----------
    features : int, optional
        The width; inferred from the previous layer or the first input
        otherwise.
    eps : float, default 1e-5
        Added to the (biased) variance.
    dtype, param_dtype, compute_dtype, device, xp
        As for every layer.
    """

    def __init__(self, features: int | None = None, *, eps: float = 1e-5, **placement: Any) -> None:
        super().__init__(features, eps, placement)

    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """The normalized rows, shape ``(n, features)``, in ``compute_dtype``."""
        xp, x = self.xp, self._up(X)
        centered = x - xp.mean(x, axis=1, keepdims=True)
        inv = 1.0 / xp.sqrt(xp.mean(centered * centered, axis=1, keepdims=True) + self.eps)
        return self._affine(centered * inv, inv)

    @_backend.runs_on_device
    def backward(self, d_out: Any) -> Any:
        """Gradients of ``gamma`` and ``beta`` (batch means) and ``d_input`` per sample."""
        xp, (xhat, inv) = self.xp, self._cached()
        dxhat = self._param_grads(self._up(d_out), xhat)
        mean = xp.mean(dxhat, axis=1, keepdims=True)
        along = xp.mean(dxhat * xhat, axis=1, keepdims=True)
        return self._down(inv * (dxhat - mean - xhat * along))

    def get_config(self) -> dict[str, Any]:
        """``features`` (once built) and ``eps``."""
        return {"features": self.input_size, "eps": self.eps}


@builtin
class BatchNorm(_Norm):
    """Per-feature batch normalization, as ``torch.nn.BatchNorm1d``.

    In training: normalized with the batch's mean and biased variance, and
    the running statistics updated, ``running = (1 - momentum) * running +
    momentum * batch`` (the variance unbiased, ``n / (n - 1)``). At inference:
    normalized with the running statistics.

    Parameters
    ----------
    features : int, optional
        The width; inferred from the previous layer or the first input
        otherwise.
    momentum : float, default 0.1
        torch's convention (Keras's ``momentum=0.99`` is ``momentum=0.01`` here).
    eps : float, default 1e-5
    dtype, param_dtype, compute_dtype, device, xp
        As for every layer.

    Attributes
    ----------
    running_mean, running_var : array, shape (1, features)
        The state (saved in checkpoints, never stepped by an optimizer).

    Notes
    -----
    A fit on Dask arrays refuses this layer: each chunk's rows are computed
    apart, which would give per-chunk statistics.
    """

    batch_statistics = True
    running_mean: Any
    running_var: Any

    def __init__(
        self, features: int | None = None, *, momentum: float = 0.1, eps: float = 1e-5, **placement: Any
    ) -> None:
        self.momentum = _positive(momentum, "momentum", at_most=1.0)
        super().__init__(features, eps, placement)

    def build(self, input_size: int) -> int:
        """``gamma``, ``beta``, and the state ``running_mean`` (zeros) and ``running_var`` (ones)."""
        super().build(input_size)
        self.add_state("running_mean", (1, input_size), "zeros")
        self.add_state("running_var", (1, input_size), "ones")
        return input_size

    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """The normalized features, shape ``(n, features)``, in ``compute_dtype``."""
        xp, x = self.xp, self._up(X)
        if not training:
            mean, var = self._up(self.running_mean), self._up(self.running_var)
            self._training = False
        else:
            n = x.shape[0]
            if n < 2:
                msg = f"`X` must have more than one row for BatchNorm in training (batch statistics), got {n}"
                raise ValueError(msg)
            mean = xp.mean(x, axis=0, keepdims=True)
            var = xp.mean((x - mean) * (x - mean), axis=0, keepdims=True)
            m = self.momentum
            self.running_mean = self._to_param((1 - m) * self._up(self.running_mean) + m * mean)
            self.running_var = self._to_param((1 - m) * self._up(self.running_var) + m * var * (n / (n - 1)))
            self._training = True
        inv = 1.0 / xp.sqrt(var + self.eps)
        return self._affine((x - mean) * inv, inv)

    @_backend.runs_on_device
    def backward(self, d_out: Any) -> Any:
        """Gradients of ``gamma`` and ``beta`` (batch means) and ``d_input`` per sample."""
        xp, (xhat, inv) = self.xp, self._cached()
        dxhat = self._param_grads(self._up(d_out), xhat)
        if not self._training:  # the running statistics are constants
            return self._down(dxhat * inv)
        mean = xp.mean(dxhat, axis=0, keepdims=True)
        along = xp.mean(dxhat * xhat, axis=0, keepdims=True)
        return self._down(inv * (dxhat - mean - xhat * along))

    def get_config(self) -> dict[str, Any]:
        """``features`` (once built), ``momentum`` and ``eps``."""
        return {"features": self.input_size, "momentum": self.momentum, "eps": self.eps}
