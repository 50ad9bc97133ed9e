"""The work of one Dask chunk, run on the workers: the model as it travels, and the tasks.

Nothing here imports Dask: the tasks take and return plain arrays of the
chunk's library (NumPy, CuPy...) and Python numbers.
"""

from __future__ import annotations

import copy
import functools
import operator
from typing import Any

import array_api_compat

from . import _backend, _checks
from .losses import accuracy

__all__ = [
    "Payload",
    "add",
    "evaluate_chunk",
    "gradient_chunk",
    "nonfinite_chunk",
    "predict_chunk",
    "validate_chunk",
]


class Payload:
    """A model as it travels to the workers: its layers on the host, and the loss.

    The parameters are copied at construction, so later training does not
    change what was sent. On a worker, :meth:`replica` gives each task a model
    of its own on the chunk's library and device: its layers are shallow
    copies that share the parameters but not the cached forward pass, and the
    parameters move to a device once per worker.
    """

    def __init__(self, model: Any, loss: Any = None) -> None:
        self.model = type(model)([_host_layer(layer) for layer in model.layers])
        self.loss = loss
        self._moved: dict[tuple[str, str], list[Any]] = {}

    def replica(self, chunk: Any) -> Any:
        """A model of its own for one task on ``chunk``, on the chunk's library and device."""
        xp, device = array_api_compat.array_namespace(chunk), array_api_compat.device(chunk)
        layers = self.model.layers
        if xp is not self.model.xp or device != self.model.device:
            key = (_backend.namespace_name(xp), str(device))
            if key not in self._moved:
                self._moved[key] = [copy.copy(layer).to(device, xp=xp) for layer in layers]
            layers = self._moved[key]
        return type(self.model)([copy.copy(layer) for layer in layers])


def _host_layer(layer: Any) -> Any:
    light = copy.copy(layer)
    light.grads = {}
    return light.to("cpu")  # a copy of the parameters, without the cached forward pass


def add(*sums: tuple[Any, ...]) -> tuple[Any, ...]:
    """Tuples of partial sums (arrays or numbers) added position by position."""
    return tuple(functools.reduce(operator.add, column) for column in zip(*sums, strict=True))


def _rows(chunk: Any, index: Any) -> Any:
    if index is None:
        return chunk
    xp = array_api_compat.array_namespace(chunk)
    return _backend.rows(chunk, index, xp=xp, device=array_api_compat.device(chunk))


def predict_chunk(chunk: Any, payload: Payload, dtype: str, width: int) -> Any:
    """The model's output for one chunk of rows, shape ``(rows, width)``."""
    if chunk.shape[0] == 0:
        xp, device = array_api_compat.array_namespace(chunk), array_api_compat.device(chunk)
        return xp.zeros(
            (0, width), dtype=_checks.resolve_dtype(dtype, xp=xp, device=device, compute=True), device=device
        )
    return payload.replica(chunk).forward(chunk)


def nonfinite_chunk(chunk: Any) -> tuple[int, int, tuple[int, ...] | None]:
    """``(rows, NaN or infinite values, index of the first in the chunk or None)`` of one chunk."""
    return (chunk.shape[0], *_backend.count_nonfinite(chunk))


def validate_chunk(payload: Payload, y: Any, n_outputs: int) -> None:
    """The loss's own check of one chunk of targets (values included)."""
    validate = getattr(payload.loss, "validate", None)  # a user's own loss may not check targets
    if validate is not None and y.shape[0]:
        validate(y, n_outputs)


def evaluate_chunk(payload: Payload, X: Any, y: Any, block: int) -> tuple[float, float, int]:
    """``(summed loss, number of hits, rows)`` of one chunk."""
    if X.shape[0] != y.shape[0]:
        msg = f"`y` chunk {block} has {y.shape[0]} rows but the chunk of `X` has {X.shape[0]}"
        raise ValueError(msg)
    if X.shape[0] == 0:
        return 0.0, 0.0, 0
    model = payload.replica(X)
    validate_chunk(payload, y, model.layers[-1].output_size)
    with _backend.float_errors_ignored():
        out = model.forward(X)
        n = out.shape[0]
        return float(payload.loss(out, y)[0]) * n, float(accuracy(out, y)) * n, n


def gradient_chunk(payload: Payload, X: Any, y: Any, index: Any) -> tuple[Any, float, float, int]:
    """``(summed gradient, summed loss, number of hits, rows)`` of ``X[index]``, ``y[index]``.

    The gradient is the model's own (``backward`` with ``lr=None``) times the
    rows, flattened in :meth:`Sequential.parameters` order.
    """
    X, y = _rows(X, index), _rows(y, index)
    model = payload.replica(X)
    xp = model.xp
    with _backend.float_errors_ignored():
        out = model.forward(X)
        value, grad = payload.loss(out, y)
        n = out.shape[0]
        model.backward(grad)
        flat = xp.concat(
            [xp.reshape(layer.grads[name], (-1,)) for layer in model.layers for name in layer.parameters()]
        )
        return flat * n, float(value) * n, float(accuracy(out, y)) * n, n
