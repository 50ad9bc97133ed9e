"""The work of one Dask chunk, run on the workers: the model as it travels, and the tasks.

Nothing here imports Dask: the tasks take and return plain arrays of the
chunk's library (NumPy, CuPy...) and Python numbers.
"""

from __future__ import annotations

import copy
import functools
import operator
import pickle
import threading
from typing import Any

import array_api_compat

from . import _backend, _checks
from .activations import ACTIVATIONS, BUILTIN_ACTIVATIONS, Activation, register_activation
from .layers.base import training_batch
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
    of its own on the chunk's library and device: its layers are copies
    without the cached forward pass, and the parameters move to a device once
    per worker.

    Pickled, a payload is bytes that cloudpickle made of the model and the
    loss, and apart, of each activation that is not built in: its
    :data:`~dense_xp.activations.ACTIVATIONS` entry in the sending process,
    whose functions travel by value when they come from ``__main__`` or a
    function's body, by reference to their module otherwise. Unpickling keeps
    the bytes alone, so a payload reaches any process that imports dense_xp
    without raising; the first task that needs the model rebuilds it, and
    what fails there raises ValueError in that task, which Dask reports to the
    caller like any task error (a failure while Dask deserializes a task kills
    the worker instead, and the computation waits for workers that never come).
    Rebuilding registers each activation that the process lacks, so a worker
    need not register them itself; a name the process registered itself keeps
    its own functions (see :func:`_install`).
    """

    def __init__(self, model: Any, loss: Any = None) -> None:
        self._model: Any = type(model)([_host_layer(layer) for layer in model.layers])
        self._loss = loss
        self._wire: dict[str, Any] | None = None
        self._moved: dict[tuple[str, str], list[Any]] = {}

    @property
    def model(self) -> Any:
        """The model, its layers on the host (rebuilt here on first use after unpickling)."""
        self._rebuild()
        return self._model

    @property
    def loss(self) -> Any:
        """The loss object, or None."""
        self._rebuild()
        return self._loss

    def __getstate__(self) -> dict[str, Any]:
        if self._wire is None:
            self._wire = _pack(self._model, self._loss)
        return self._wire

    def __setstate__(self, wire: dict[str, Any]) -> None:
        self._wire, self._model, self._loss, self._moved = wire, None, None, {}

    def _rebuild(self) -> None:
        if self._model is None:
            assert self._wire is not None
            with _REBUILDING:
                if self._model is None:
                    loss, model = _unpack(self._wire)
                    self._loss, self._model = loss, model

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


# -- the payload's bytes -------------------------------------------------------------------
_REBUILDING = threading.Lock()  # one rebuild at a time in a process: it may register activations
_INSTALLED: dict[str, tuple[Activation, bytes]] = {}  # what payloads registered here, and from what bytes


def _pack(model: Any, loss: Any) -> dict[str, Any]:
    """The bytes of a payload: the model and the loss, and each custom activation's entry."""
    import cloudpickle  # type: ignore[import-untyped, import-not-found, unused-ignore]

    names = {getattr(layer, "activation", None) for layer in model.layers}
    activations = {}
    for name in sorted(n for n in names if isinstance(n, str) and n not in BUILTIN_ACTIVATIONS):
        entry = ACTIVATIONS.get(name)
        functions = (entry.forward, entry.backward) if entry else ()
        modules = sorted({str(getattr(f, "__module__", "?")) for f in functions})
        activations[name] = (None if entry is None else cloudpickle.dumps(entry), modules)
    return {"activations": activations, "model": cloudpickle.dumps((loss, model))}


def _unpack(wire: dict[str, Any]) -> tuple[Any, Any]:
    """``(loss, model)`` from the bytes of :func:`_pack`, or ValueError saying what this process lacks."""
    for name, (blob, modules) in wire["activations"].items():
        _install(name, blob, modules)
    try:
        loss, model = pickle.loads(wire["model"])
    except Exception as error:
        msg = (
            f"the model sent to this Dask worker cannot be rebuilt in the worker's process "
            f"({type(error).__name__}: {error}): every module that the model's layers and its loss come "
            "from must be importable on every worker -- install it there, or send it with "
            "`client.upload_file(path)` -- or call `cloudpickle.register_pickle_by_value(module)` in the "
            "client's process, so that its code travels with the model"
        )
        raise ValueError(msg) from error
    return loss, model


def _install(name: str, blob: bytes | None, modules: list[str]) -> None:
    """Register activation ``name`` from ``blob`` here, unless this process registered it itself.

    An entry an earlier payload registered is replaced when the bytes differ:
    the client registered the name again.
    """
    current = ACTIVATIONS.get(name)
    mine = _INSTALLED.get(name)
    if current is not None and (mine is None or mine[0] is not current or mine[1] == blob or blob is None):
        return  # the process's own registration, or the same one as before
    if blob is None:
        raise ValueError(_unregistered(name, ", nor was it in the client's when the model was sent"))
    try:
        entry = pickle.loads(blob)
    except Exception as error:
        if current is not None:
            return  # keep what an earlier payload brought
        where = "module " + ", ".join(repr(m) for m in modules)
        why = f", and its functions (from {where}) do not load here ({type(error).__name__}: {error})"
        make = f"make {where} importable on every worker (install it, or `client.upload_file(path)`), or "
        raise ValueError(_unregistered(name, why, make)) from error
    act = register_activation(name, entry.forward, entry.backward, saves=entry.saves)
    _INSTALLED[name] = (act, blob)


def _unregistered(name: str, why: str, first: str = "") -> str:
    fix = (
        f"{first}register it in every worker process: "
        f"`client.run(dense_xp.register_activation, {name!r}, forward, backward)` in the workers running "
        "now, or `client.register_plugin(plugin)` with a `distributed.WorkerPlugin` whose `setup` calls "
        "`dense_xp.register_activation(...)`, in workers that start later too"
    )
    return (
        f"the model sent to this Dask worker uses activation {name!r}, which is not registered in this "
        f"worker's process{why}. {fix[0].upper()}{fix[1:]}"
    )


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


def evaluate_chunk(
    payload: Payload, X: Any, y: Any, block: int, weights: Any = None
) -> tuple[float, float, int]:
    """``(summed loss, number of hits, rows)`` of one chunk; ``weights`` weigh each row's loss."""
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
        value = payload.loss(out, y) if weights is None else payload.loss(out, y, sample_weight=weights)
        return float(value[0]) * n, float(accuracy(out, y)) * n, n


def gradient_chunk(
    payload: Payload, X: Any, y: Any, index: Any, position: tuple[int, int] = (0, 0), weights: Any = None
) -> tuple[Any, float, float, int]:
    """``(summed gradient, summed loss, number of hits, rows)`` of ``X[index]``, ``y[index]``.

    The gradient is the model's own (layers in training mode, ``backward``
    without an update) times the rows, flattened in
    :meth:`Sequential.parameters` order. ``position`` is ``(training step,
    the chunk's first global row)``: random layers see the global rows of
    the data, as in memory. ``weights`` (the chunk's row weights) weigh each
    row's loss and gradient.
    """
    step, first = position
    rows = _global_rows(index, first, X.shape[0])
    X, y = _rows(X, index), _rows(y, index)
    model = payload.replica(X)
    xp = model.xp
    with _backend.float_errors_ignored(), training_batch(step, rows):
        out = model.forward(X, training=True)
        w = None if weights is None else _rows(weights, index)
        value, grad = payload.loss(out, y) if w is None else payload.loss(out, y, sample_weight=w)
        n = out.shape[0]
        model.backward(grad, input_grad=False)
        flat = xp.concat(
            [xp.reshape(layer.grads[name], (-1,)) for layer in model.layers for name in layer.parameters()]
        )
        return flat * n, float(value) * n, float(accuracy(out, y)) * n, n


def _global_rows(index: Any, first: int, size: int) -> Any:
    """The global rows of ``index`` (None, a slice or host local rows) in a chunk starting at ``first``."""
    if index is None:
        return range(first, first + size)
    if isinstance(index, slice):
        start, stop, _ = index.indices(size)
        return range(first + start, first + stop)
    return index + first
