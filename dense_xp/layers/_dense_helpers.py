"""What :class:`~dense_xp.DenseLayer`'s forward and backward call: input checks and in-place arithmetic.

:class:`_DenseHelpers` is a base of :class:`~dense_xp.DenseLayer`. Its
checks bring ``X`` and ``d_out`` to the layer's device and compute dtype and
refuse wrong shapes, and refuse an activation that does not keep the shape.
Its arithmetic works in place where the arrays are writeable (NumPy, CuPy,
torch) and out of place elsewhere, using the choices ``DenseLayer._settle``
makes once per build or move (``_inplace``, ``_matmul``, the cached row).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import _backend

__all__ = ["_DenseHelpers"]


class _DenseHelpers:
    """The checks and the in-place arithmetic of a dense layer (a base of ``DenseLayer``)."""

    if TYPE_CHECKING:
        xp: Any
        device: Any
        input_size: int | None
        activation: str | None
        _compute_dtype: Any
        _inplace: bool
        _matmul: Any
        _row: Any

        @property
        def mixed(self) -> bool: ...

        def widen(self, a: Any) -> Any: ...

        def build_for(self, input_size: int) -> int: ...

    # -- checks -----------------------------------------------------------
    def _input(self, X: Any) -> Any:
        """``X`` on the layer's device in the compute dtype, 2-d; builds an unbuilt layer to its width."""
        X = _backend.as_input(X, name="X", xp=self.xp, device=self.device, dtype=self._compute_dtype)
        if self.input_size is None and X.ndim in (1, 2) and X.shape[-1]:
            self.build_for(int(X.shape[-1]))
        if X.ndim not in (1, 2) or X.shape[-1] != self.input_size or X.shape[0] == 0:
            msg = (
                f"`X` must have shape (n, {self.input_size}) with n >= 1, or ({self.input_size},) "
                f"for one sample; got shape {tuple(X.shape)}"
            )
            raise ValueError(msg)
        return X if X.ndim == 2 else X[None, :]

    def _d_out(self, d_out: Any, shape: tuple[int, int]) -> Any:
        """``d_out`` on the layer's device in the compute dtype, checked against the output's ``shape``."""
        if math.isnan(shape[0]):
            msg = (
                "`X` of the last forward has an unknown number of rows (a Dask array with unknown chunk "
                "sizes), which backward needs: call `X.compute_chunk_sizes()` before forward"
            )
            raise ValueError(msg)
        d_out = _backend.as_input(
            d_out, name="d_out", xp=self.xp, device=self.device, dtype=self._compute_dtype
        )
        if tuple(d_out.shape) != shape:
            msg = f"`d_out` must have the output's shape {shape}, got {tuple(d_out.shape)}"
            raise ValueError(msg)
        return d_out

    def _check_act(self, out: Any, shape: tuple[int, ...], direction: str) -> None:
        """Refuse an activation's ``out`` whose shape is not its input's ``shape``."""
        if tuple(out.shape) != tuple(shape):
            name = self.activation
            msg = (
                f"activation {name!r} {direction} returned shape {tuple(out.shape)} for an input of shape "
                f"{tuple(shape)}: an activation is elementwise and keeps the shape"
            )
            raise ValueError(msg)

    # -- arithmetic, in place where the arrays allow it -------------------
    def _weight_grad(self, X: Any, dz: Any) -> Any:
        """``X.T @ dz / n`` in the parameter dtype.

        In a narrower compute dtype ``1/n`` comes first: a sum of ``n``
        products may overflow float16 where their mean does not.
        """
        if self.mixed:
            return self.widen(self._matmul(X.T, dz * (1.0 / X.shape[0])))
        dW = self._matmul(X.T, dz)
        if self._inplace:
            dW *= 1.0 / X.shape[0]
            return dW
        return dW * (1.0 / X.shape[0])

    def _mean_row(self, n: int) -> Any:
        """A cached ``(1, n)`` row of ``1/n``: ``row @ dz`` is the batch mean of ``dz``."""
        row = self._row
        if row is None or row.shape[1] != n:
            row = self._row = self.xp.full((1, n), 1.0 / n, dtype=self._compute_dtype, device=self.device)
        return row

    def _add_(self, a: Any, b: Any) -> Any:
        """``a + b``, into ``a`` where the arrays are writeable."""
        if self._inplace:
            a += b
            return a
        return a + b

    def _sub_(self, name: str, step: Any) -> None:
        """Subtract ``step`` from the parameter ``name``, in place where the arrays are writeable."""
        if self._inplace:
            getattr(self, name).__isub__(step)
        else:
            setattr(self, name, getattr(self, name) - step)
