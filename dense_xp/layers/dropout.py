"""Dropout: inverted dropout in training, the identity at inference, the same masks on every backend."""

from __future__ import annotations

import numbers
import secrets
from typing import Any

from .. import _backend, _checks, _random
from .base import Layer, batch_position, builtin

__all__ = ["Dropout"]


@builtin
class Dropout(Layer):
    """Zero each input with probability ``rate`` in training, and scale the rest by ``1 / (1 - rate)``.

    Parameters
    ----------
    rate : float
        The probability of dropping an input, in ``[0, 1)``.
    seed : int, optional
        Keys the masks; ``None`` draws one when the layer is made (kept in
        its config, so checkpoints and pickles draw the same masks).
    input_size : int, optional
        Inferred from the previous layer or the first input otherwise.
    dtype, param_dtype, compute_dtype, device, xp
        As for every layer (Dropout has no parameters).

    Notes
    -----
    The mask of data row ``r`` at training step ``t`` is a counter-based
    draw (Threefry-4x32-20, :mod:`dense_xp._random`) keyed by ``(seed, t)``
    at counter ``r``, computed with the array API's integer operations: the
    same masks on NumPy, CuPy, torch, JAX and array-api-strict, and in a
    fit on Dask arrays whatever the chunking. ``fit`` tells the layer the
    step and the rows (:func:`dense_xp.layers.training_batch`); a forward
    pass in training mode outside ``fit`` counts its own steps over rows
    ``0..n-1``. A row is kept with probability ``1 - rate`` exactly to
    2**-33 (an integer threshold on 32 random bits).
    """

    rate: float
    seed: int
    _calls: int

    def __init__(
        self,
        rate: float,
        seed: int | None = None,
        *,
        input_size: int | None = None,
        **placement: Any,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            msg = f"`rate` must be a number in [0, 1), got {type(rate).__name__} {rate!r}"
            raise TypeError(msg)
        if not 0 <= rate < 1:
            msg = f"`rate` must be a number in [0, 1), got {rate!r}"
            raise ValueError(msg)
        self.rate = float(rate)
        self.seed = secrets.randbits(32) if seed is None else int(_checks.check_seed(seed) or 0)
        self._calls = 0
        super().__init__(**placement)
        if input_size is not None:
            self.build_for(input_size)

    def build(self, input_size: int) -> int:
        """No arrays: the output has the input's width."""
        return input_size

    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """``X`` at inference; ``X * mask / (1 - rate)`` in training, shape ``(n, input_size)``."""
        self._keep = None
        if not training or self.rate == 0.0:
            return X
        xp, n = self.xp, X.shape[0]
        position = batch_position()
        if position is None:
            step, rows = self._calls, range(n)
            self._calls += 1
        else:
            step, rows = position
            if not isinstance(rows, range):
                rows = self._device_rows(rows)
        keep = _random.keep_mask(
            self.rate, key=self.seed, stream=step, rows=rows, n_cols=X.shape[1], xp=xp, device=self.device
        )
        self._keep, self._scale = keep, 1.0 / _random.keep_probability(self.rate)
        return xp.where(keep, X * self._scale, 0.0)

    def _device_rows(self, rows: Any) -> Any:
        """Global row numbers on the device, in its index dtype: refused where they do not fit it."""
        xp, device = self.xp, self.device
        index = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
        if _backend.is_host(rows):
            largest = int(rows.max()) if len(rows) else 0
            if largest > xp.iinfo(index).max:
                msg = (
                    f"`rows` holds row {largest}, beyond the {_checks.dtype_name(index)} indices of device "
                    f"{device!r}: a dataset this large needs a device with 64-bit integers"
                )
                raise ValueError(msg)
        return _backend.as_input(rows, name="rows", xp=xp, device=device, dtype=index)

    @_backend.runs_on_device
    def backward(self, d_out: Any) -> Any:
        """``d_out`` through the mask of the last forward pass (no parameters, no gradients)."""
        self.grads = {}
        keep = getattr(self, "_keep", None)
        return d_out if keep is None else self.xp.where(keep, d_out * self._scale, 0.0)

    def get_config(self) -> dict[str, Any]:
        """``rate`` and ``seed``, and the width once built."""
        return {"rate": self.rate, "seed": self.seed, "input_size": self.input_size}

    def _settle(self) -> None:
        self._keep = None
