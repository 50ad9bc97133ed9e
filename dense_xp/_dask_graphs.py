"""The client side of Dask computations: the graphs of a call or a training step.

Each function takes the ``dask`` module, imported by :mod:`dense_xp.distributed`.
"""

from __future__ import annotations

import uuid
from typing import Any

from . import _chunks

__all__ = ["SPLIT_EVERY", "blocks", "send", "tree"]

SPLIT_EVERY = 8  # fan-in of the tree that adds the chunks' sums


def blocks(*arrays: Any) -> list[list[Any]]:
    """One Delayed per row chunk of each Dask array (whose columns are one chunk).

    The graphs are left unoptimized, so they keep the keys they share: a chunk
    that several arrays derive from (labels computed from the features, say)
    is computed once per computation.
    """
    return [list(a.to_delayed(optimize_graph=False).ravel()) for a in arrays]


def tree(dask: Any, parts: list[Any], name: str) -> Any:
    """Dask adds ``parts`` (tuples of sums) in a tree of fan-in :data:`SPLIT_EVERY`."""
    add, level = dask.delayed(_chunks.add, pure=True), 0
    while len(parts) > 1:
        parts = [
            add(*parts[i : i + SPLIT_EVERY], dask_key_name=f"{name}-sum{level}-{i}")
            for i in range(0, len(parts), SPLIT_EVERY)
        ]
        level += 1
    return parts[0]


def send(dask: Any, model: Any, loss: Any = None, *, name: str | None = None) -> Any:
    """The model (parameters copied to the host) and the loss as one graph key."""
    name = name or f"dense-xp-model-{uuid.uuid4().hex}"
    return dask.delayed(_chunks.Payload(model, loss), name=name, traverse=False)
