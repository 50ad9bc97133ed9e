"""A model's whole training step as one compiled function, from the same array API code.

On JAX the step is a ``jax.jit`` function, wherever the layers and the loss
are dense_xp's own; on torch it is ``torch.compile``'s, where ``fit`` is
asked for it (``compile=True``: the first steps take seconds to compile).

The step -- forward, loss, backward, gradient clipping, the optimizer's
update and the batch's loss and hit sums -- is traced once per batch shape on
a copy of the model and the optimizer (the *twin*), whose parameters, state
and per-step numbers (:meth:`dense_xp.optimizers.Optimizer.scalars`: the
learning rate, Adam's bias corrections) are the traced arguments. Each batch
then runs the compiled function and hands its results to the real model and
optimizer, so that everything around the step (the guard, callbacks,
checkpoints, early stopping) sees what it sees without compilation.

Training stays eager, with the same results, where a trace cannot be exact:
float16 loss scaling (its skip of a step is decided on the host, see
:func:`plan`), and any step whose trace fails: random layers (a Dropout's
mask is keyed by the step number, which the trace shows as a value that
refuses every use: frozen into a trace it would repeat one mask, and Threefry
under XLA is slow) and anything that reads a traced value on the host. The
eager step then runs, and raises any real error with its own message.
"""

from __future__ import annotations

import copy
import importlib
import warnings
import weakref
from typing import Any

import array_api_compat

from .. import _backend, _data
from ..layers.base import training_batch

__all__ = ["CompiledStep", "compiled_step", "plan"]

# torch.compile's note that it traces through functools.lru_cache wrappers (array-api-compat's
# type checks, which hold no state a trace could miss)
_DYNAMO_CACHE_WARNING = "Dynamo detected a call to a `functools.lru_cache`-wrapped function"

# a torch.compile trace that read sys.modules while an import changed it (see CompiledStep._run)
_MODULES_CHANGED, _TORCH_RETRIES = "dictionary changed size during iteration", 3

# per model, the compiled step of its last fit: a later fit with the same optimizer, loss and
# layers reuses the trace (fit(epochs=1) in a loop compiles once)
_LAST: weakref.WeakKeyDictionary[Any, tuple[Any, CompiledStep]] = weakref.WeakKeyDictionary()


class RandomLayerError(Exception):
    """A layer read the training step's position (it draws random numbers): the step is not traced."""


class _Untraceable:
    """The step number a traced batch shows a random layer: any use of it stops the trace."""

    def _refuse(self, *args: Any) -> Any:
        raise RandomLayerError

    __index__ = __int__ = __float__ = __bool__ = __hash__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = __and__ = __rshift__ = _refuse


def plan(model: Any, options: Any, scaling: bool) -> str | None:
    """Why ``fit`` trains ``model`` eagerly, or ``None`` where it compiles the step.

    Compiled: models on JAX, without loss scaling, with ``compile=None``
    where every layer is one of dense_xp's and the loss too (a layer or loss
    of one's own may keep Python state that a trace would run once only), or
    with ``compile=True`` whatever they are; models on torch with
    ``compile=True`` (``torch.compile`` costs seconds before the first step,
    more than it saves on a short fit).
    """
    if options.compile is False:
        return "compile=False"
    if array_api_compat.is_torch_namespace(model.xp):
        if options.compile is None:
            return "a torch model compiles its step with compile=True (torch.compile)"
    elif not array_api_compat.is_jax_namespace(model.xp):
        return "only JAX and torch models compile"
    if scaling:
        return "float16 loss scaling decides on the host whether a step is taken"
    if options.compile is None:
        own = [type(x).__name__ for x in (*model.layers, options.loss) if not _ours(x)]
        if own:
            return f"{', '.join(own)} is not dense_xp's own: pass compile=True to trace it"
    return None


def _ours(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "dense_xp"


def _signature(model: Any, loss: Any, optimizer: Any) -> tuple[Any, ...]:
    layers = tuple(
        (
            type(layer),
            layer.get_config(),
            tuple((k, tuple(a.shape), a.dtype) for k, a in layer.arrays().items()),
        )
        for layer in model.layers
    )
    return id(optimizer), repr(optimizer), id(loss), layers


def compiled_step(model: Any, loss: Any, optimizer: Any, hits: Any) -> CompiledStep:
    """The compiled step of ``model`` for this fit: the last fit's where nothing it traced has changed."""
    key = _signature(model, loss, optimizer)
    last = _LAST.get(model)
    if last is not None and last[0] == key:
        return last[1]
    step = CompiledStep(model, loss, optimizer, hits)
    _LAST[model] = (key, step)
    return step


class CompiledStep:
    """``step(model, optimizer, arrays)``: one batch through the compiled function; ``None`` once it gave up.

    It keeps no reference to the model or the optimizer it was made for
    (only to its twin), so that a model's cached step does not keep it alive.

    Parameters
    ----------
    model : Sequential
        A checked, built JAX model.
    loss : callable
        The loss, ``loss(y_pred, y_true, sample_weight=None)``.
    optimizer : Optimizer
        Started: its first step ran eagerly, so its state exists.
    hits : callable
        ``hits(y_pred, classes)`` (:func:`dense_xp.losses.hit_counter`).
    """

    def __init__(self, model: Any, loss: Any, optimizer: Any, hits: Any) -> None:
        self.loss, self.hits = loss, hits
        self.twin = copy.deepcopy((model, optimizer))  # traced in place of the real pair
        self.torch = array_api_compat.is_torch_namespace(model.xp)
        if self.torch:  # one graph per batch shape; the step's numbers come in as tensors
            self.jit = importlib.import_module("torch").compile(self._pure, dynamic=False)
        else:
            self.jit = importlib.import_module("jax").jit(self._pure, static_argnums=5)
        self.reason: str | None = None  # why it gave up

    def _pure(self, params: Any, states: Any, state: Any, scalars: Any, batch: Any, gathered: Any) -> Any:
        """The step as a function of arrays: traced once per shape, never run eagerly.

        ``batch`` is ``(rows, X, y, classes, weights or None)``: the arrays
        marked in the static ``gathered`` are whole and their ``rows`` are
        gathered here, on the device; the others are the batch already.
        """
        model, optimizer = self.twin
        xp, (rows, *arrays) = model.xp, batch
        pairs = zip(arrays, gathered, strict=True)
        Xb, yb, classes, wb = (xp.take(a, rows, axis=0) if take and a is not None else a for a, take in pairs)
        model.set_parameters(params)
        model.set_states(states)
        optimizer.state, optimizer.steps = state, 0  # a count the trace does not depend on
        out = _data.widen(model, model.run_forward(Xb, training=True))  # in __call__'s training_batch
        value, grad = self.loss(out, yb) if wb is None else self.loss(out, yb, sample_weight=wb)
        model.run_backward(grad, input_grad=False)
        grads = model.gradients()
        new = optimizer.step_unchecked(params, grads, scalars)
        return new, model.states(), optimizer.state, grads, value * out.shape[0], self.hits(out, classes)

    def _run(self, args: tuple[Any, ...], m: int) -> Any:
        """The compiled function on ``args`` (a batch of ``m`` rows), in the block its trace needs.

        A trace sees the step's position as a number that refuses every use:
        a random layer stops it. torch.compile's trace reads ``sys.modules``
        (array-api-compat's type checks look there); a module that imports
        more on attribute access (CuPy's ``cupyx``) changes it during that
        read, and the trace is retried with those imports made.
        """
        retries = _TORCH_RETRIES if self.torch else 0
        while True:
            try:
                with warnings.catch_warnings(), training_batch(_Untraceable(), range(m)):  # type: ignore[arg-type]
                    if self.torch:
                        warnings.filterwarnings("ignore", message=_DYNAMO_CACHE_WARNING)
                    return self.jit(*args)
            except RuntimeError as exc:
                if retries == 0 or _MODULES_CHANGED not in str(exc):
                    raise
                retries -= 1

    def __call__(
        self, model: Any, optimizer: Any, arrays: tuple[Any, ...], index: Any
    ) -> tuple[Any, Any] | None:
        """Train on rows ``index`` (a slice or host indices) of ``(X, y, classes[, weights])``.

        Returns ``(summed loss, hits)`` on the device, or ``None`` where the
        step cannot be traced (then nothing has changed). Arrays on the
        device go in whole and are gathered in the compiled function; host
        arrays are sliced here and copied in.
        """
        X, y, classes, *w = arrays
        whole = (X, y, classes, w[0] if w else None)
        gathered = tuple(a is not None and not _backend.is_host(a) for a in whole)
        batch = tuple(a if take or a is None else a[index] for a, take in zip(whole, gathered, strict=True))
        rows = _backend.host_rows(index, X.shape[0])
        scalars = optimizer.scalars()
        if self.torch:  # tensors in: torch.compile takes no host arrays, and compiles a number in
            xp, device = model.xp, model.device
            rows, batch = _backend.from_host(rows, xp=xp, device=device), tuple(
                _backend.from_host(a, xp=xp, device=device) if a is not None and _backend.is_host(a) else a
                for a in batch
            )  # fmt: skip
            scalars = {k: xp.asarray(v, dtype=xp.float64) for k, v in scalars.items()}  # 0-d, on the CPU
        args = (model.parameters(), model.states(), optimizer.state, scalars, (rows, *batch), gathered)
        try:
            new, states, state, grads, loss_sum, hits = self._run(args, int(rows.shape[0]))
        except Exception as exc:  # the eager step raises any real error, with its own message
            self.reason = (
                f"tracing failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            return None
        model.set_parameters(new)
        model.set_states(states)
        model.set_gradients(grads)
        optimizer.record_step(state)
        return loss_sum, hits
