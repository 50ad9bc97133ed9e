"""What the block around a layer tells it: where built arrays come from, and which batch a forward computes.

Two context variables, each set by a context manager:

* :func:`filling`: layers built within the block take their arrays from
  host values (loading a checkpoint or a pickle), or only declare their
  shapes (:data:`DECLARE`: a checkpoint's manifest is checked before any
  data is read); outside it they initialize them;
* :func:`training_batch`: the training step and the data rows a forward
  pass computes, which random layers key their draws by
  (:func:`batch_position`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["DECLARE", "batch_position", "filled_from", "filling", "training_batch"]

# How add_parameter / add_state fill arrays: None (initialize), a dict of host arrays (loading),
# or DECLARE (record the shapes only: a checkpoint's manifest is checked before any data is read).
DECLARE = object()
_filling: contextvars.ContextVar[Any] = contextvars.ContextVar("dense_xp_layer_filling", default=None)


@contextlib.contextmanager
def filling(values: Any) -> Iterator[None]:
    """Within the block, layers built take their arrays from ``values`` (host arrays by name), or
    only declare their shapes when ``values`` is :data:`DECLARE`."""
    token = _filling.set(values)
    try:
        yield
    finally:
        _filling.reset(token)


def filled_from() -> Any:
    """What :func:`filling` set: host arrays by name, :data:`DECLARE`, or ``None`` outside it."""
    return _filling.get()


# Which step of training and which rows of the data a forward pass computes (for random layers).
_batch: contextvars.ContextVar[tuple[int, Any] | None] = contextvars.ContextVar(
    "dense_xp_batch", default=None
)


@contextlib.contextmanager
def training_batch(step: int, rows: Any) -> Iterator[None]:
    """Within the block, forward passes compute training step ``step`` on the data rows ``rows``.

    ``rows`` is a ``range`` of global row indices or a 1-D integer array of
    them (host or device), one per row of the batch. Training sets it (in
    memory and on every Dask chunk alike), so a random layer keyed by
    ``(step, row)`` draws the same numbers for a sample whatever the batch
    order or the chunking.
    """
    token = _batch.set((step, rows))
    try:
        yield
    finally:
        _batch.reset(token)


def batch_position() -> tuple[int, Any] | None:
    """``(step, rows)`` set by :func:`training_batch`, or ``None`` outside training."""
    return _batch.get()
