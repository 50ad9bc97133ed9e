"""A stack of layers: forward and backward, moves, predict and evaluate; ``fit`` hands off to training.

:class:`Sequential` inherits the lists of every layer's arrays (``parameters``,
``set_gradients``...) from ``_model_arrays``, and ``predict_proba`` and
``predict_classes`` from ``_model_outputs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _backend, _checks, _data, _save, _stack, distributed
from ._model_arrays import _ModelArrays
from ._model_outputs import _ClassifierOutputs
from .layers.base import Layer
from .losses import METRICS, get_loss

__all__ = ["Sequential"]


class Sequential(_ModelArrays, _ClassifierOutputs):
    """Layers applied in order: ``y = layers[-1](...(layers[0](X)))``.

    Parameters
    ----------
    layers : sequence of Layer, optional
        Any layers of the :class:`dense_xp.Layer` contract. Each one's
        ``input_size`` is the previous ``output_size`` (an unbuilt layer is
        built to it); all live on one device with one ``param_dtype`` and one
        ``compute_dtype``. Each layer object appears once (no weight
        sharing). :meth:`add` appends more.
    """

    def __init__(self, layers: Sequence[Layer] = ()) -> None:
        if not isinstance(layers, (list, tuple)) or not all(isinstance(x, Layer) for x in layers):
            msg = f"`layers` must be a list of dense_xp layers (Layer subclasses), got {layers!r}"
            raise TypeError(msg)
        self._layers: tuple[Layer, ...] = ()
        for layer in layers:
            self._append(layer)

    # -- structure --------------------------------------------------------------------
    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, a tuple (:meth:`add` appends; build a new Sequential to change them)."""
        return self._layers

    def add(self, layer: Layer) -> Sequential:
        """Append ``layer``, built to the previous layer's width (or checked against it); return the model."""
        if not isinstance(layer, Layer):
            msg = f"`layer` must be a dense_xp layer (a Layer subclass), got {type(layer).__name__} {layer!r}"
            raise TypeError(msg)
        self._append(layer)
        return self

    def _append(self, layer: Layer) -> None:
        i = len(self._layers)
        for j, other in enumerate(self._layers):
            if other is layer:
                msg = (
                    f"`layers[{i}]` is the same {type(layer).__name__} object as `layers[{j}]`: a "
                    "layer keeps one forward cache and one set of gradients, so it cannot appear twice; "
                    "build a new layer for each position"
                )
                raise ValueError(msg)
        if self._layers:
            last = self._layers[-1]
            if last.placement() != layer.placement():
                msg = (
                    f"`layers` must share one device and dtype (param_dtype and compute_dtype): "
                    f"`layers[{i - 1}]` is {last!r}, `layers[{i}]` is {layer!r}; move them with .to(...)"
                )
                raise ValueError(msg)
            if last.output_size is not None:
                if layer.input_size is not None and layer.input_size != last.output_size:
                    msg = f"`layers[{i}]` takes {layer.input_size} inputs but `layers[{i - 1}]` gives "
                    raise ValueError(msg + f"{last.output_size}")
                layer.build_for(last.output_size)
        layer.path = f"layers[{i}]"
        self._layers += (layer,)

    def build(self, input_size: int) -> Sequential:
        """Build every unbuilt layer for inputs of ``input_size`` features; returns the model."""
        width = input_size
        for layer in self._first().layers:
            width = layer.build_for(width)
        return self

    def _first(self) -> Sequential:
        if not self._layers:
            msg = "the model has no layers: add one with `model.add(layer)`"
            raise ValueError(msg)
        return self

    @property
    def built(self) -> bool:
        """Whether every layer is built (the input width is known)."""
        return bool(self._layers) and all(layer.built for layer in self._layers)

    input_size = property(lambda self: self._first().layers[0].input_size, doc="Input width (or None).")
    output_size = property(lambda self: self._first().layers[-1].output_size, doc="Output width.")
    xp = property(lambda self: self._first().layers[0].xp, doc="The array namespace of the parameters.")
    device = property(lambda self: self._first().layers[0].device, doc="The device of the parameters.")
    dtype = property(lambda self: self._first().layers[0].dtype, doc="The dtype of the parameters.")
    param_dtype = property(
        lambda self: self._first().layers[0].param_dtype,
        doc="The dtype of parameters, gradients and the loss.",
    )
    compute_dtype = property(
        lambda self: self._first().layers[0].compute_dtype, doc="The dtype of forward, backward and predict."
    )

    def check(self) -> None:
        """Refuse a model that cannot run or be saved as it stands, naming ``layers[i]`` and the array.

        Its layers must share the namespace, device and dtypes of ``layers[0]``
        (a layer moved alone with ``.to()`` does not), chain their widths, and
        hold distinct parameter arrays (no tied weights: each array gets one
        optimizer step).
        """
        _stack.check_layers(self._first().layers)

    # -- forward and backward ------------------------------------------------------------
    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """The output of the last layer, shape ``(n, output_size)``, in ``compute_dtype``.

        ``training=True`` runs the layers in training mode (Dropout drops,
        BatchNorm uses and updates batch statistics), as ``fit`` does.
        """
        self.check()
        X = _backend.as_input(X, name="X", xp=self.xp, device=self.device, dtype=self.compute_dtype)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[0] == 0 or (self.built and X.shape[1] != self.input_size):
            width = "k" if self.input_size is None else self.input_size
            msg = f"`X` must have shape (n, {width}) with n >= 1, or ({width},) for one sample; got "
            raise ValueError(msg + f"{tuple(X.shape)}")
        if not self.built:
            self.build(int(X.shape[1]))
        return self.run_forward(X, training=training)

    def run_forward(self, X: Any, *, training: bool) -> Any:
        """Forward through every layer of a checked model on an ``X`` of its own (training's hot path)."""
        n = X.shape[0]
        for i, layer in enumerate(self._layers):
            X = layer.forward(X, training=training)
            if tuple(X.shape) != (n, layer.output_size) or X.dtype != layer.compute_dtype:
                msg = (
                    f"`layers[{i}]` ({type(layer).__name__}) forward returned an array of shape "
                    f"{tuple(X.shape)} and dtype {_checks.dtype_name(X.dtype)}; expected "
                    f"({n}, {layer.output_size}) in {_checks.dtype_name(layer.compute_dtype)}"
                )
                raise ValueError(msg)
        return X

    def __call__(self, X: Any) -> Any:
        """``forward(X)`` in inference mode."""
        return self.forward(X)

    @_backend.runs_on_device
    def backward(self, d_out: Any, lr: float | None = None, *, input_grad: bool = True) -> Any:
        """Backpropagate ``d_out`` (per-sample, the layer convention) through every layer.

        ``lr=None`` (the default) only stores each layer's ``grads`` for an
        optimizer; a number also applies plain SGD. Returns ``d_input``, or
        ``None`` with ``input_grad=False`` (the first layer may then skip it).
        """
        lr = _checks.check_lr(lr)
        d_out = _backend.as_input(
            d_out, name="d_out", xp=self.xp, device=self.device, dtype=self.compute_dtype
        )
        d_input = self._first().run_backward(d_out, input_grad=input_grad)
        if lr is not None:  # every d_input above used the weights before this update
            for layer in self._layers:
                for name, p in layer.parameters().items():
                    setattr(layer, name, p - lr * layer.grads[name])
        return d_input

    def run_backward(self, d_out: Any, *, input_grad: bool) -> Any:
        """Backpropagate through a checked model an output gradient of its own (training's hot path).

        Every layer's ``d_input`` and ``grads`` are checked against its
        widths and parameters; returns ``d_input`` (``None`` with
        ``input_grad=False``).
        """
        for i in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[i]
            n = d_out.shape[0]
            d_out = layer.backprop(d_out, input_grad=input_grad or i > 0)
            _stack.check_grads(i, layer, d_out, n, input_grad or i > 0)
        return d_out

    # -- moves and files ---------------------------------------------------------------------
    def to(
        self,
        device: Any = None,
        *,
        xp: Any = None,
        dtype: Any = None,
        param_dtype: Any = None,
        compute_dtype: Any = None,
    ) -> Sequential:
        """Move every layer to ``device`` (of ``xp``), in the dtypes asked for; returns the model.

        The dtype keywords are those of :meth:`dense_xp.Layer.to`: a device
        that lacks a dtype raises ValueError before any layer moves.
        """
        dtypes = {"dtype": dtype, "param_dtype": param_dtype, "compute_dtype": compute_dtype}
        new_xp, new_device = _backend.resolve_device(device, xp=xp)
        keep = (_checks.dtype_name(self.param_dtype), _checks.dtype_name(self.compute_dtype))
        _checks.dtype_policy(**dtypes, xp=new_xp, device=new_device, keep=keep, owner="the model")
        for layer in self._layers:
            layer.to(device, xp=xp, **dtypes)
        return self

    def save(self, path: Any) -> None:
        """Write a checkpoint (see :func:`dense_xp.save`)."""
        _save.save(self, path)

    def summary(self, *, print_fn: Any = print) -> str:
        """A table of the layers: class, output width, parameter count, dtype, device; and the totals.

        Printed with ``print_fn`` (``None`` prints nothing) and returned.
        """
        lines = _stack.summary_lines(self)
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self._layers)
        return f"Sequential([\n{inner},\n])"

    # -- training (dense_xp.training) and inference ----------------------------------------------
    def fit(self, X: Any, y: Any, **kwargs: Any) -> dict[str, list[float]]:
        """Train on ``(X, y)``; see :func:`dense_xp.training.fit` for every keyword."""
        from .training import fit

        return fit(self, X, y, **kwargs)

    @_backend.runs_on_device
    def predict(self, X: Any, batch_size: int | None = None) -> Any:
        """Outputs for ``X`` on the model's device, shape ``(n, output_size)``, in inference mode.

        ``batch_size`` bounds device memory for large host inputs. A Dask
        array gives a lazy Dask array (see :mod:`dense_xp.distributed`).
        """
        if distributed.is_dask(X):
            return distributed.predict(self, X, batch_size)
        self.check()
        X, _ = _data.check_pair(self, X, None, None)
        if not self.built:
            self.build(int(X.shape[1]))
        size = X.shape[0] if batch_size is None else _checks.check_int(batch_size, "batch_size")
        batches = _data.batches(X.shape[0], size)
        outs = [
            self.forward(Xb)
            for (Xb,) in _backend.device_batches((X,), batches, xp=self.xp, device=self.device)
        ]
        return outs[0] if len(outs) == 1 else self.xp.concat(outs, axis=0)

    @_backend.runs_on_device
    def evaluate(
        self, X: Any, y: Any, *, loss: Any, metrics: Sequence[str] = METRICS, batch_size: int = 1024,
        sample_weight: Any = None,
    ) -> dict[str, float]:  # fmt: skip
        """Mean ``loss`` and each metric over ``(X, y)``: ``{"loss": ..., "accuracy": ...}``.

        ``sample_weight`` (shape ``(n,)``, finite, >= 0) weighs each row's loss:
        the loss is the mean of ``w_i * l_i``, as Keras reduces it; the
        accuracy is not weighted (Keras's ``metrics``).
        """
        if distributed.is_dask(X, y):  # summed per chunk by Dask: dense_xp.distributed
            return distributed.evaluate(
                self, X, y, loss=loss, metrics=metrics, batch_size=batch_size, sample_weight=sample_weight
            )
        loss = get_loss(loss)
        bad = [m for m in metrics if m not in METRICS] if not isinstance(metrics, str) else [metrics]
        if bad:
            msg = f"`metrics` must be a sequence of names from {METRICS}, got {metrics!r}"
            raise ValueError(msg)
        batch_size = _checks.check_int(batch_size, "batch_size")
        self.check()
        X, y = _data.check_pair(self, X, y, loss)
        if sample_weight is not None:
            sample_weight = _data.check_weights(self, sample_weight, X.shape[0])
        scores = _data.evaluate_sums(
            self, X, y, loss=loss, batch_size=batch_size, sample_weight=sample_weight
        )
        return {"loss": scores["loss"], **{m: scores[m] for m in metrics}}

    #: The name of the loss of the last fit (read by predict_proba).
    fitted_loss: str | None = None
