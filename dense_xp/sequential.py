"""A stack of layers with fit / evaluate / predict, written once against the array API."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from . import _backend, _checks
from ._scaling import LossScaler
from .layer import DenseLayer
from .losses import accuracy, get_loss
from .optimizers import get_optimizer

__all__ = ["Sequential", "TrainingDivergedError"]

METRICS = ("accuracy",)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the model keeps finite weights."""

    def __init__(self, message: str, *, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


def _placement(layer: DenseLayer) -> tuple[Any, ...]:
    return layer.xp, layer.device, layer.param_dtype, layer.compute_dtype


class Sequential:
    """Layers applied in order: ``y = layers[-1](... layers[0](X))``.

    Parameters
    ----------
    layers : sequence of DenseLayer
        At least one; each layer's ``input_size`` is the previous ``output_size``
        and all live on one device with one ``param_dtype`` and one ``compute_dtype``.
    """

    def __init__(self, layers: Sequence[DenseLayer]) -> None:
        layers = list(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, list) or not layers or not all(isinstance(x, DenseLayer) for x in layers):
            msg = f"`layers` must be a non-empty list of DenseLayer, got {layers!r}"
            raise TypeError(msg)
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
        self.layers = layers

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
    def _data(self, X: Any, y: Any, loss: Any, *, name: str = "X") -> tuple[Any, Any]:
        X = _backend.as_dataset(X, name=name, xp=self.xp, device=self.device)
        if X.ndim != 2 or X.shape[1] != self.layers[0].input_size or X.shape[0] == 0:
            msg = (
                f"`{name}` must have shape (n, {self.layers[0].input_size}) with n >= 1, got {tuple(X.shape)}"
            )
            raise ValueError(msg)
        if y is None:
            return X, None
        y = _backend.as_dataset(y, name="y", xp=self.xp, device=self.device)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            msg = f"`X` and `y` must have the same length, got {X.shape[0]} and {tuple(y.shape)}"
            raise ValueError(msg)
        validate = getattr(loss, "validate", None)  # a user's own loss may not check targets
        if validate is not None:
            validate(y, self.layers[-1].output_size)
        return X, y

    def _batches(self, n: int, batch_size: int, order: Any) -> Iterator[Any]:
        for start in range(0, n, batch_size):
            yield slice(start, start + batch_size) if order is None else order[start : start + batch_size]

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
            The loss became NaN or infinite, or the gradients overflow at every
            loss scale; the model keeps finite weights.

        Notes
        -----
        The loss is computed in ``param_dtype``: the model's output is cast up
        to it, and the loss gradient back down to ``compute_dtype``.
        """
        loss = get_loss(loss)
        optimizer = get_optimizer(optimizer)
        epochs = _checks.check_int(epochs, "epochs", minimum=0)
        batch_size = _checks.check_int(batch_size, "batch_size", minimum=1)
        rng = _backend.host_rng(_checks.check_seed(seed))
        X, y = self._data(X, y, loss)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                msg = f"`validation_data` must be a pair (X_val, y_val), got {type(validation_data).__name__}"
                raise TypeError(msg)
            validation_data = self._data(*validation_data, loss, name="validation_data[0]")
        with _backend.float_errors_ignored():  # divergence is reported as TrainingDivergedError
            return self._fit(
                X, y, loss, optimizer, epochs, batch_size, shuffle, validation_data, rng, progress
            )

    def _fit(
        self, X: Any, y: Any, loss: Any, optimizer: Any, epochs: int, batch_size: int, shuffle: bool,
        validation_data: Any, rng: Any, progress: bool,
    ) -> dict[str, list[float]]:  # fmt: skip
        history: dict[str, list[float]] = {"loss": [], "accuracy": []}
        n = X.shape[0]
        scaler = LossScaler() if self._loss_scaling else None
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n) if shuffle else None
            with tqdm(
                total=n, desc=f"epoch {epoch}/{epochs}", unit="sample", disable=None if progress else True
            ) as bar:
                scores = self._epoch(X, y, loss, optimizer, batch_size, order, epoch, bar, scaler)
                if validation_data is not None:
                    val = self._evaluate(*validation_data, loss=loss, batch_size=batch_size)
                    scores |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
                bar.set_postfix({name: f"{value:.4f}" for name, value in scores.items()})
            if scaler is not None:
                scores |= scaler.record()
            for name, value in scores.items():
                history.setdefault(name, []).append(value)
        return history

    def _epoch(
        self, X: Any, y: Any, loss: Any, optimizer: Any, batch_size: int, order: Any, epoch: int, bar: Any,
        scaler: LossScaler | None = None,
    ) -> dict[str, float]:  # fmt: skip
        xp, device, n = self.xp, self.device, X.shape[0]
        checkpoint = [xp.asarray(p, copy=True) for p in self.parameters()]
        total_loss, total_acc = 0.0, xp.zeros((), dtype=self.dtype, device=device)
        for batch, index in enumerate(self._batches(n, batch_size, order), start=1):
            out = self._widen(self.forward(_backend.rows(X, index, xp=xp, device=device)))
            yb = _backend.rows(y, index, xp=xp, device=device)
            value, grad = loss(out, yb)
            value = float(value)
            if not math.isfinite(value):
                self._keep_finite(checkpoint)
                msg = f"training diverged at epoch {epoch}, batch {batch}: loss is {value}"
                raise TrainingDivergedError(msg, epoch=epoch, batch=batch)
            self.backward(grad if scaler is None else grad * scaler.scale)
            if scaler is None:
                self._step(optimizer)
            else:
                self._scaled_step(optimizer, scaler, epoch, batch)
            total_loss += value * out.shape[0]
            total_acc = total_acc + accuracy(out, yb) * out.shape[0]
            bar.update(out.shape[0])
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        return {"loss": total_loss / n, "accuracy": float(total_acc) / n}

    def _slots(self) -> list[tuple[DenseLayer, str]]:
        """``(layer, name)`` of every parameter, in :meth:`parameters` order."""
        return [(layer, name) for layer in self.layers for name in layer.parameters()]

    def _set_parameters(self, values: Sequence[Any]) -> None:
        for (layer, name), value in zip(self._slots(), values, strict=True):
            setattr(layer, name, value)

    def _step(self, optimizer: Any) -> None:
        grads = [layer.grads[name] for layer, name in self._slots()]
        self._set_parameters(optimizer.step(self.parameters(), grads))

    @property
    def _loss_scaling(self) -> bool:
        """Whether ``fit`` scales the loss: float16 compute under wider parameters."""
        compute = self.compute_dtype
        return _checks.dtype_name(compute) == "float16" and compute != self.param_dtype

    def _widen(self, out: Any) -> Any:
        """The model's output in ``param_dtype``, for the loss."""
        return out if out.dtype == self.param_dtype else self.xp.astype(out, self.param_dtype)

    def _scaled_step(self, optimizer: Any, scaler: LossScaler, epoch: int, batch: int) -> None:
        """The optimizer step on the unscaled gradients, or none where they are not all finite."""
        slots = self._slots()
        grads = [layer.grads[name] for layer, name in slots]
        finite = scaler.unscale(grads)
        for (layer, name), grad in zip(slots, grads, strict=True):
            layer.grads[name] = grad
        if finite:
            self._set_parameters(optimizer.step(self.parameters(), grads))
        scaler.update(finite)
        if scaler.exhausted:
            msg = (
                f"training diverged at epoch {epoch}, batch {batch}: the gradients are not finite "
                f"even at loss scale {scaler.scale:g}"
            )
            raise TrainingDivergedError(msg, epoch=epoch, batch=batch)

    def _keep_finite(self, checkpoint: list[Any]) -> None:
        xp = self.xp
        if not all(bool(xp.all(xp.isfinite(p))) for p in self.parameters()):
            self._set_parameters(checkpoint)

    # -- inference -------------------------------------------------------------
    @_backend.runs_on_device
    def predict(self, X: Any, batch_size: int | None = None) -> Any:
        """Outputs for ``X`` on the model's device, shape ``(n, output_size)``.

        ``batch_size`` bounds device memory for large host inputs.
        """
        X, _ = self._data(X, None, None)
        size = X.shape[0] if batch_size is None else _checks.check_int(batch_size, "batch_size")
        outs = [
            self.forward(_backend.rows(X, i, xp=self.xp, device=self.device))
            for i in self._batches(X.shape[0], size, None)
        ]
        return outs[0] if len(outs) == 1 else self.xp.concat(outs, axis=0)

    @_backend.runs_on_device
    def evaluate(
        self, X: Any, y: Any, *, loss: Any, metrics: Sequence[str] = METRICS, batch_size: int = 1024
    ) -> dict[str, float]:
        """Mean ``loss`` and each metric over ``(X, y)``: ``{"loss": ..., "accuracy": ...}``."""
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
        for index in self._batches(n, batch_size, None):
            out = self._widen(self.forward(_backend.rows(X, index, xp=xp, device=device)))
            yb = _backend.rows(y, index, xp=xp, device=device)
            total_loss = total_loss + loss(out, yb)[0] * out.shape[0]
            total_acc = total_acc + accuracy(out, yb) * out.shape[0]
        return {"loss": float(total_loss) / n, "accuracy": float(total_acc) / n}

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner},\n])"
