"""A stack of layers with fit / evaluate / predict, written once against the array API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from . import _backend, _checks, _fit, distributed
from ._guard import Guard, TrainingDivergedError
from .layer import DenseLayer
from .losses import accuracy, get_loss
from .optimizers import get_optimizer

__all__ = ["Sequential", "TrainingDivergedError"]

METRICS = ("accuracy",)
CHECK_EVERY = 32  # batches between two divergence checks in fit


def _placement(layer: DenseLayer) -> tuple[Any, ...]:
    return layer.xp, layer.device, layer.param_dtype, layer.compute_dtype


class Sequential:
    """Layers applied in order: ``y = layers[-1](...(layers[0](X)))``.

    Parameters
    ----------
    layers : sequence of DenseLayer
        At least one; each layer's ``input_size`` is the previous ``output_size``
        and all live on one device with one ``param_dtype`` and one
        ``compute_dtype``. Each layer object appears once (no weight sharing).
        Kept as a tuple: the stack cannot change after construction.
    """

    def __init__(self, layers: Sequence[DenseLayer]) -> None:
        layers = tuple(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, tuple) or not layers or not all(isinstance(x, DenseLayer) for x in layers):
            msg = f"`layers` must be a non-empty list of DenseLayer, got {layers!r}"
            raise TypeError(msg)
        seen: dict[int, int] = {}
        for i, layer in enumerate(layers):
            first = seen.setdefault(id(layer), i)
            if first != i:
                msg = (
                    f"`layers[{i}]` is the same DenseLayer object as `layers[{first}]`: a layer keeps one "
                    "forward cache and one set of gradients, so it cannot appear twice; build a new "
                    "DenseLayer for each position"
                )
                raise ValueError(msg)
        for i, (a, b) in enumerate(itertools.pairwise(layers)):
            if a.output_size != b.input_size:
                msg = f"`layers[{i + 1}]` takes {b.input_size} inputs but `layers[{i}]` gives {a.output_size}"
                raise ValueError(msg)
            if _placement(a) != _placement(b):
                msg = (
                    f"`layers` must share one device and dtype (param_dtype and compute_dtype): layer {i} is "
                    f"{a!r}, layer {i + 1} is {b!r}; move them with .to(...)"
                )
                raise ValueError(msg)
        self._layers: tuple[DenseLayer, ...] = layers

    @property
    def layers(self) -> tuple[DenseLayer, ...]:
        """The layers, a tuple fixed at construction (build a new Sequential to change them)."""
        return self._layers

    xp = property(lambda self: self.layers[0].xp, doc="The array namespace of the parameters.")
    device = property(lambda self: self.layers[0].device, doc="The device of the parameters.")
    dtype = property(lambda self: self.layers[0].dtype, doc="The dtype of the parameters, ``param_dtype``.")
    param_dtype = property(
        lambda self: self.layers[0].param_dtype, doc="The dtype of parameters, gradients and the loss."
    )
    compute_dtype = property(
        lambda self: self.layers[0].compute_dtype, doc="The dtype of forward, backward and ``predict``."
    )

    @_backend.runs_on_device
    def forward(self, X: Any) -> Any:
        """The output of the last layer, shape ``(n, layers[-1].output_size)``."""
        for layer in self.layers:
            X = layer.forward(X)
        return X

    @_backend.runs_on_device
    def backward(self, d_out: Any, lr: float | None = None) -> Any:
        """Backpropagate ``d_out`` (per-sample, the layer convention) through every layer.

        ``lr=None`` (the default) only stores each layer's ``grads`` for an
        optimizer; a number also applies plain SGD. Returns ``d_input``.
        """
        lr = _checks.check_lr(lr)
        for layer in reversed(self.layers):
            d_out = layer.backward(d_out, lr=lr)
        return d_out

    def parameters(self) -> list[Any]:
        """Every trainable array, in layer order (``W``, then ``b``)."""
        return [p for layer in self.layers for p in layer.parameters().values()]

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

        The dtype keywords are those of :meth:`DenseLayer.to`: a device that
        lacks a dtype raises ValueError before any layer moves.
        """
        dtypes = {"dtype": dtype, "param_dtype": param_dtype, "compute_dtype": compute_dtype}
        new_xp, new_device = _backend.resolve_device(device, xp=xp)
        keep = (_checks.dtype_name(self.param_dtype), _checks.dtype_name(self.compute_dtype))
        _checks.dtype_policy(**dtypes, xp=new_xp, device=new_device, keep=keep, owner="the model")
        for layer in self.layers:
            layer.to(device, xp=xp, **dtypes)
        return self

    def save(self, path: Any) -> None:
        """Write a checkpoint (see :func:`dense_xp.save`)."""
        from .checkpoint import save

        save(self, path)

    # -- training ------------------------------------------------------------
    def _data(
        self, X: Any, y: Any, loss: Any, *, names: tuple[str, str] = ("X", "y"), check_finite: bool = False
    ) -> tuple[Any, Any]:
        xp, device, (x_name, y_name) = self.xp, self.device, names
        X = _backend.as_dataset(X, name=x_name, xp=xp, device=device, check_finite=check_finite)
        if X.ndim != 2 or X.shape[1] != self.layers[0].input_size or X.shape[0] == 0:
            msg = (
                f"`{x_name}` must have shape (n, {self.layers[0].input_size}) with n >= 1, "
                f"got {tuple(X.shape)}"
            )
            raise ValueError(msg)
        if y is None:
            return X, None
        y = _backend.as_dataset(y, name=y_name, xp=xp, device=device, check_finite=check_finite)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            got = f"got {X.shape[0]} and {tuple(y.shape)}"
            msg = f"`{x_name}` and `{y_name}` must have the same length, {got}"
            raise ValueError(msg)
        validate = getattr(loss, "validate", None)  # a user's own loss may not check targets
        if validate is not None:
            try:
                validate(y, self.layers[-1].output_size)
            except (TypeError, ValueError) as exc:
                if y_name == "y":
                    raise
                msg = f"`{y_name}` holds invalid targets: {exc}"
                raise (TypeError if isinstance(exc, TypeError) else ValueError)(msg) from None
        return X, y

    def _batches(self, n: int, batch_size: int, order: Any) -> Iterator[Any]:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield slice(start, stop) if order is None else order[start:stop]

    @_backend.runs_on_device
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        loss: Any,
        optimizer: Any = "adam",
        epochs: int = 10,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = None,
        progress: bool = True,
        check_finite: bool = True,
        check_every: int = CHECK_EVERY,
    ) -> dict[str, list[float]]:
        """Train with mini-batches; host data moves to the device batch by batch.

        Parameters
        ----------
        X : array_like, shape (n, input_size)
        y : array_like, shape (n,) or (n, output_size)
            Targets for ``loss``.
        loss : str or callable
            A name from :data:`dense_xp.losses.LOSSES` or a loss object.
        optimizer : str or Optimizer, default "adam"
        epochs, batch_size : int
        shuffle : bool
            Shuffle every epoch with a host generator seeded by ``seed``.
        validation_data : (X_val, y_val), optional
        progress : bool
            A tqdm bar per epoch when a terminal is attached.
        check_finite : bool, default True
            Refuse ``X``, ``y`` and ``validation_data`` holding NaN or infinity
            (a ValueError naming the argument) before training. ``False`` skips
            this pass over the data; divergence is still caught.
        check_every : int, default 32
            Check that the loss, the parameters and the optimizer state are
            finite every ``check_every`` batches and at the end of each epoch:
            one device reduction and one transfer of a number per check, and no
            host synchronisation in between. Smaller values locate a divergence
            more precisely; 1 checks every batch.

        Returns
        -------
        dict
            Per-epoch ``"loss"`` and ``"accuracy"`` (and ``"val_loss"``,
            ``"val_accuracy"`` with validation data). With a float16
            ``compute_dtype`` under wider parameters, dynamic loss scaling
            (see :mod:`dense_xp._scaling`) adds the scale at the end of each
            epoch, ``"loss_scale"``, and the steps it skipped, ``"skipped_steps"``.

        Raises
        ------
        TrainingDivergedError
            The loss, a parameter or the optimizer state became NaN or infinite
            (for example from non-finite gradients). The parameters and the
            optimizer state are restored to their last checked finite values;
            the error names the epoch and the window of batches. With loss
            scaling, also when the gradients overflow at every loss scale.
        TypeError, ValueError
            A bad argument, or an optimizer holding state for parameters of
            other shapes; nothing is changed.

        Notes
        -----
        The loss is computed in ``param_dtype``: the model's output is cast up
        to it, and the loss gradient back down to ``compute_dtype``. Loss
        scaling reads one value from the device per batch (whether the
        gradients are finite), as ``torch.amp.GradScaler`` does.
        """
        if distributed.is_dask(X, y) or distributed.is_lazy(self):  # Dask arrays: dense_xp.distributed
            history = distributed.fit(
                self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                shuffle=shuffle, validation_data=validation_data, seed=seed, progress=progress,
                check_finite=check_finite,
            )  # fmt: skip
            self._fitted_loss = getattr(get_loss(loss), "name", None)  # read by predict_proba
            return history
        loss = get_loss(loss)
        optimizer = get_optimizer(optimizer)
        epochs = _checks.check_int(epochs, "epochs", minimum=0)
        batch_size = _checks.check_int(batch_size, "batch_size", minimum=1)
        check_every = _checks.check_int(check_every, "check_every", minimum=1)
        for name, flag in (("shuffle", shuffle), ("progress", progress), ("check_finite", check_finite)):
            _checks.check_bool(flag, name)
        rng = _backend.host_rng(_checks.check_seed(seed))
        if validation_data is not None and (
            not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2
        ):
            msg = f"`validation_data` must be a pair (X_val, y_val), got {type(validation_data).__name__}"
            raise TypeError(msg)
        optimizer.check(self.parameters())
        X, y = self._data(X, y, loss, check_finite=check_finite)
        if validation_data is not None:
            names = ("validation_data[0]", "validation_data[1]")
            validation_data = self._data(*validation_data, loss, names=names, check_finite=check_finite)
        self._fitted_loss = getattr(loss, "name", None)  # read by predict_proba
        with _backend.float_errors_ignored():  # divergence is reported as TrainingDivergedError
            guard = Guard(self, optimizer, check_every)
            return _fit.run(
                self,
                X,
                y,
                loss,
                optimizer,
                epochs,
                batch_size,
                shuffle,
                validation_data,
                rng,
                progress,
                guard,
            )

    def _slots(self) -> list[tuple[DenseLayer, str]]:
        """``(layer, name)`` of every parameter, in :meth:`parameters` order."""
        return [(layer, name) for layer in self.layers for name in layer.parameters()]

    def _set_parameters(self, values: Sequence[Any]) -> None:
        for (layer, name), value in zip(self._slots(), values, strict=True):
            setattr(layer, name, value)

    def _step(self, optimizer: Any) -> None:
        grads = [layer.grads[name] for layer, name in self._slots()]
        self._set_parameters(optimizer.step(self.parameters(), grads))

    def _widen(self, out: Any) -> Any:
        """The model's output in ``param_dtype``, for the loss."""
        return out if out.dtype == self.param_dtype else self.xp.astype(out, self.param_dtype)

    # -- inference -------------------------------------------------------------
    @_backend.runs_on_device
    def predict(self, X: Any, batch_size: int | None = None) -> Any:
        """Outputs for ``X`` on the model's device, shape ``(n, output_size)``.

        ``batch_size`` bounds device memory for large host inputs.
        """
        if distributed.is_dask(X):  # a lazy Dask array: dense_xp.distributed
            return distributed.predict(self, X, batch_size)
        X, _ = self._data(X, None, None)
        size = X.shape[0] if batch_size is None else _checks.check_int(batch_size, "batch_size")
        batches = self._batches(X.shape[0], size, None)
        outs = [
            self.forward(Xb)
            for (Xb,) in _backend.device_batches((X,), batches, xp=self.xp, device=self.device)
        ]
        return outs[0] if len(outs) == 1 else self.xp.concat(outs, axis=0)

    @_backend.runs_on_device
    def evaluate(
        self, X: Any, y: Any, *, loss: Any, metrics: Sequence[str] = METRICS, batch_size: int = 1024
    ) -> dict[str, float]:
        """Mean ``loss`` and each metric over ``(X, y)``: ``{"loss": ..., "accuracy": ...}``."""
        if distributed.is_dask(X, y):  # summed per chunk by Dask: dense_xp.distributed
            return distributed.evaluate(self, X, y, loss=loss, metrics=metrics, batch_size=batch_size)
        loss = get_loss(loss)
        bad = [m for m in metrics if m not in METRICS] if not isinstance(metrics, str) else [metrics]
        if bad:
            msg = f"`metrics` must be a sequence of names from {METRICS}, got {metrics!r}"
            raise ValueError(msg)
        batch_size = _checks.check_int(batch_size, "batch_size")
        scores = self._evaluate(*self._data(X, y, loss), loss=loss, batch_size=batch_size)
        return {"loss": scores["loss"], **{m: scores[m] for m in metrics}}

    def _evaluate(self, X: Any, y: Any, *, loss: Any, batch_size: int) -> dict[str, float]:
        xp, device, n = self.xp, self.device, X.shape[0]
        total_loss, total_acc = xp.zeros((), dtype=self.dtype, device=device), 0.0
        batches = _backend.device_batches((X, y), self._batches(n, batch_size, None), xp=xp, device=device)
        for Xb, yb in batches:
            out = self._widen(self.forward(Xb))
            total_loss = total_loss + loss(out, yb)[0] * out.shape[0]
            total_acc = total_acc + accuracy(out, yb) * out.shape[0]
        return {"loss": float(total_loss) / n, "accuracy": float(total_acc) / n}

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner},\n])"

    # -- probabilities and classes ----------------------------------------------
    _fitted_loss: str | None = None  # the name of the loss of the last fit

    @_backend.runs_on_device
    def predict_proba(self, X: Any, batch_size: int | None = None, *, loss: str | None = None) -> Any:
        """Class probabilities for ``X`` on the model's device.

        The outputs of :meth:`predict` are logits; this applies the link of the
        loss: softmax for ``"softmax_cross_entropy"`` (rows sum to 1), sigmoid
        for ``"binary_cross_entropy"`` (each output in ``[0, 1]``).

        Parameters
        ----------
        X : array_like, shape (n, input_size)
        batch_size : int, optional
            Rows per forward pass, as in :meth:`predict`.
        loss : str, optional
            ``"softmax_cross_entropy"`` or ``"binary_cross_entropy"``. Default:
            the loss the model was last fitted with (a loaded checkpoint has
            none: pass it).

        Returns
        -------
        array, shape (n, output_size)
            Probabilities in the model's dtype.

        Raises
        ------
        ValueError
            The loss is not a classification loss (``"mse"``, a custom loss),
            or unknown because the model was never fitted.
        """
        name = self._fitted_loss if loss is None else loss
        if name not in ("softmax_cross_entropy", "binary_cross_entropy"):
            source = "the loss of the last fit" if loss is None else "given"
            if loss is None and self._fitted_loss is None:
                source = "the model has not been fitted, or was fitted with a loss without a known name"
            msg = (
                '`loss` must be "softmax_cross_entropy" or "binary_cross_entropy" for probabilities, '
                f"got {name!r} ({source})"
            )
            raise ValueError(msg)
        z = self._widen(self.predict(X, batch_size))  # probabilities in param_dtype, as the loss
        xp = self.xp
        if name == "binary_cross_entropy":
            e = xp.exp(-xp.abs(z))  # in (0, 1]: no overflow
            return xp.where(z >= 0, 1.0, e) / (1.0 + e)
        p = xp.exp(z - xp.max(z, axis=1, keepdims=True))
        return p / xp.sum(p, axis=1, keepdims=True)

    @_backend.runs_on_device
    def predict_classes(self, X: Any, batch_size: int | None = None) -> Any:
        """Predicted class of each row of ``X``, as :func:`dense_xp.losses.accuracy` counts a hit.

        Parameters
        ----------
        X : array_like, shape (n, input_size)
        batch_size : int, optional
            Rows per forward pass, as in :meth:`predict`.

        Returns
        -------
        array of int, shape (n,)
            The argmax of each row of logits; with one output, 1 where the
            logit is above 0 (probability above 0.5) and 0 elsewhere. On the
            model's device, in the namespace's default index dtype.
        """
        z = self.predict(X, batch_size)
        xp = self.xp
        if z.shape[1] != 1:
            return xp.argmax(z, axis=1)
        index = xp.__array_namespace_info__().default_dtypes(device=self.device)["indexing"]
        return xp.astype(z[:, 0] > 0, index)
