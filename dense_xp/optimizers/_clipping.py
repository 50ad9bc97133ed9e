"""Gradient clipping inside :meth:`Optimizer.step`, computed on the device with no host read.

``clip_norm`` scales every gradient by ``min(1, max_norm / (total_norm + 1e-6))``,
where ``total_norm`` is the 2-norm of all gradients together, as
``torch.nn.utils.clip_grad_norm_`` does (which also multiplies by a clamped
coefficient rather than branching, so nothing is read back from the device).
``clip_value`` clamps each element to ``[-clip_value, clip_value]``, as
``torch.nn.utils.clip_grad_value_``. Both make new arrays: the caller's
gradients are not modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["clipper"]

Clip = Callable[[int, Any], Any]


def _norm_scale(grads: Sequence[Any], wides: Sequence[Any], max_norm: float, *, xp: Any) -> list[Any]:
    """Per position, the 0-d coefficient ``min(1, max_norm / (norm + 1e-6))`` in that position's dtype."""
    squares = [
        xp.sum(g * g) if g.dtype == wide else xp.sum(xp.astype(g, wide) ** 2)  # no float16 overflow
        for g, wide in zip(grads, wides, strict=True)
    ]
    dtypes = set(wides)
    total_dtype = xp.result_type(*dtypes) if len(dtypes) > 1 else wides[0]
    squares = [s if s.dtype == total_dtype else xp.astype(s, total_dtype) for s in squares]
    total = xp.sqrt(xp.sum(xp.stack(squares)))
    scale = xp.clip(max_norm / (total + 1e-6), max=1.0)
    return [scale if wide == total_dtype else xp.astype(scale, wide) for wide in wides]


def clipper(
    grads: Sequence[Any], wides: Sequence[Any], clip_norm: float | None, clip_value: float | None, *, xp: Any
) -> Clip | None:
    """``clip(i, g)``: gradient ``g`` of position ``i`` (in its compute dtype) clipped, or ``None``.

    Parameters
    ----------
    grads : sequence of arrays
        All gradients of the step (the global norm is over all of them).
    wides : sequence of dtypes
        Per position, the dtype the update computes in (float32 for 16-bit).
    clip_norm, clip_value : float or None
        At most one is set.
    """
    if clip_norm is not None:
        scales = _norm_scale(grads, wides, clip_norm, xp=xp)
        return lambda i, g: g * scales[i]
    if clip_value is not None:
        low, high = -clip_value, clip_value
        return lambda i, g: xp.clip(g, min=low, max=high)
    return None
