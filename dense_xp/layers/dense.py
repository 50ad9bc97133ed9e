"""The dense layer ``act(X @ W + b)``, written once against the array API.

:class:`DenseLayer` inherits its checks of ``X`` and ``d_out`` and its
in-place arithmetic from ``_dense_helpers``; forward and backward are here.
"""

from __future__ import annotations

from typing import Any

from .. import _backend, _checks, initializers
from ..activations import get_activation
from . import _dense_plan
from ._dense_helpers import _DenseHelpers
from .base import Layer, builtin

__all__ = ["Dense", "DenseLayer"]


@builtin
class DenseLayer(_DenseHelpers, Layer):
    """A fully connected layer ``y = act(X @ W + b)`` with forward, backward and SGD.

    Parameters
    ----------
    input_size : int or None
        Number of input features (>= 1); ``None`` infers it from the first
        input (or from the model's previous layer).
    output_size : int
        Number of output units (>= 1).
    activation : {None, "linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "silu"}
        Applied after the affine map. ``"gelu"`` is the tanh approximation and
        ``"leaky_relu"`` has slope 0.01; :func:`dense_xp.register_activation`
        adds others.
    seed : int, optional
        Seed of the private host generator that draws ``W``.
    init : str, default "seed"
        Weight initializer (see :mod:`dense_xp.initializers`); ``"seed"`` is
        ``0.01 * randn``.
    use_bias : bool, default True
        Without bias ``b`` is ``None``.
    dtype : {None, "float16", "float32", "float64"} or dtype object
        Sets both ``param_dtype`` and ``compute_dtype``; goes alone.
    param_dtype : {None, "float16", "float32", "float64"} or dtype object
        Dtype of the parameters (the master copy), of their gradients and of
        optimizer state; ``None`` takes the namespace's default real floating
        dtype on the device.
    compute_dtype : {None, "bfloat16", "float16", "float32", "float64"} or dtype object
        Dtype of forward and backward: ``W`` and ``b`` are cast to it in
        :meth:`forward`, inputs, outputs and ``d_input`` are in it. ``None``
        takes ``param_dtype``; otherwise narrower than it (mixed precision,
        e.g. ``param_dtype="float32", compute_dtype="float16"``). bfloat16
        exists in torch and JAX. Every dtype must exist on the device.
    device : str or device object, optional
        ``"cpu"``, ``"cuda[:N]"``, ``"auto"``, or a device of ``xp``; ``None``
        takes :func:`dense_xp.get_default_device`.
    xp : namespace, optional
        Any array API namespace (``array_api_strict``, ``torch``...).

    Attributes
    ----------
    W : array, shape (input_size, output_size)
    b : array, shape (1, output_size), or None
    grads : dict
        ``{"W": dW, "b": db}`` from the last :meth:`backward`, in ``param_dtype``.
    param_dtype, compute_dtype : dtype
        See above; ``dtype`` is ``param_dtype``.

    Notes
    -----
    Gradient convention: ``d_out`` holds the per-sample loss gradient
    ``dL_i/dy_i``; parameter gradients are batch means, ``dW = X.T @ dz / n``
    and ``db = mean(dz, axis=0)``; ``d_input = dz @ W.T`` is per sample again.
    A 1-D ``X`` is one sample (the output is ``(1, output_size)``). The array
    returned by :meth:`forward` is kept for :meth:`backward`: do not modify it
    in place in between.
    """

    _cache: tuple[Any, Any, Any] | None = None
    _fused: Any = None
    W: Any
    b: Any
    output_size: int

    def __init__(
        self,
        input_size: int | None,
        output_size: int,
        activation: str | None = None,
        seed: int | None = None,
        *,
        init: str = "seed",
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = None,
        compute_dtype: Any = None,
        device: Any = None,
        xp: Any = None,
    ) -> None:
        size = None if input_size is None else _checks.check_int(input_size, "input_size")
        self.output_size = _checks.check_int(output_size, "output_size")
        if size is not None:
            _checks.check_weight_memory(size, self.output_size)
        self._act = get_activation(activation)
        self.activation = activation
        self.seed = _checks.check_seed(seed)
        _checks.check_bool(use_bias, "use_bias")
        if not isinstance(init, str) or init not in initializers.INITIALIZERS:
            initializers.draw(init, None, 0, 0)  # its TypeError or ValueError names `init`
        self.init, self.use_bias = init, use_bias
        super().__init__(
            dtype=dtype, param_dtype=param_dtype, compute_dtype=compute_dtype, device=device, xp=xp
        )
        if not use_bias:
            object.__setattr__(self, "b", None)
        if size is not None:
            self.build_for(size)

    def build(self, input_size: int) -> int:
        """``W`` of shape ``(input_size, output_size)`` drawn by ``init`` from ``seed``; ``b`` zeros."""
        n_out = self.output_size
        _checks.check_weight_memory(input_size, n_out)
        draw = initializers.INITIALIZERS[self.init]
        self.add_parameter(
            "W", (input_size, n_out), lambda: draw(_backend.host_rng(self.seed), input_size, n_out)
        )
        if self.use_bias:
            self.add_parameter("b", (1, n_out), "zeros")
        return n_out

    # -- the contract -----------------------------------------------------
    @_backend.runs_on_device
    def forward(self, X: Any, *, training: bool = False) -> Any:
        """``act(X @ W + b)``.

        Parameters
        ----------
        X : array_like, shape (n, input_size) or (input_size,)
            Host data is moved to the layer's device; integers are cast.
        training : bool, default False
            Unused: the layer computes the same in training and inference.

        Returns
        -------
        array, shape (n, output_size), on the layer's device, in ``compute_dtype``
        """
        X = self._input(X)
        b, W = self.cast(self.b), self.cast(self.W)
        z = self._matmul(X, W)
        fused = self._fused and self._fused.forward(z, b, self.activation)
        if fused:
            z, y = fused
        else:
            z = z if b is None else self._add_(z, b)
            y = self._act.forward(z, xp=self.xp)
            self._check_act(y, z.shape, "forward")
        self._cache = (X, z if self._plan.saves == "input" else y, W)  # W: in compute_dtype, for backward
        return y

    @_backend.runs_on_device
    def backward(self, d_out: Any, lr: float | None = 0.01) -> Any:
        """Gradients of the last :meth:`forward`, then ``W -= lr*dW; b -= lr*db``.

        Parameters
        ----------
        d_out : array_like, shape (n, output_size)
            Per-sample gradient of the loss with respect to the output; cast
            to ``compute_dtype``.
        lr : float or None, default 0.01
            SGD step size; ``None`` only computes and keeps ``grads``.

        Returns
        -------
        d_input : array, shape (n, input_size), in ``compute_dtype``
            Uses ``W`` as it was before the update.
        """
        lr = _checks.check_lr(lr)
        d_input = self._gradients(d_out, input_grad=True)
        if lr is not None:
            self._sub_("W", lr * self.grads["W"])
            if self.b is not None:
                self._sub_("b", lr * self.grads["b"])
        return d_input

    @_backend.runs_on_device
    def backprop(self, d_out: Any, *, input_grad: bool = True) -> Any:
        """:meth:`backward` without the SGD step; ``input_grad=False`` skips the ``d_input`` product."""
        return self._gradients(d_out, input_grad=input_grad)

    def _gradients(self, d_out: Any, *, input_grad: bool) -> Any:
        if self._cache is None:
            msg = "`backward` was called before `forward`: there is no cached input"
            raise RuntimeError(msg)
        X, saved, W = self._cache
        d_out = self._d_out(d_out, (X.shape[0], self.output_size))
        ops = self._fused
        dz = ops and ops.backward(d_out, saved, self.activation)
        if dz is None:
            dz = self._plan.backward(d_out, saved, xp=self.xp)
            self._check_act(dz, d_out.shape, "backward")
        dW = self._weight_grad(X, dz)
        d_input = self._matmul(dz, W.T) if input_grad else None
        self.grads = {"W": dW}
        if self.b is not None:  # a matrix product: one BLAS call
            self.grads["b"] = self.widen(self._matmul(self._mean_row(X.shape[0]), dz))
        return d_input

    def plan_step(self, n: int, *, input_grad: bool) -> Any:
        """See :meth:`Layer.plan_step`: a :class:`._dense_plan.DensePlan`, unless a subclass has its own."""
        mine = (type(self).forward, type(self).backprop) == (DenseLayer.forward, DenseLayer.backprop)
        if not mine:
            return super().plan_step(n, input_grad=input_grad)
        why = _dense_plan.unplannable(self)
        return why if why is not None or n == 0 else _dense_plan.DensePlan(self, n, input_grad=input_grad)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (without parameters, dtype or device)."""
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "activation": self.activation,
            "seed": self.seed,
            "init": self.init,
            "use_bias": self.use_bias,
        }

    # -- helpers ----------------------------------------------------------
    def _settle(self) -> None:
        """Reset what depends on the namespace and device: the cache and the hot-path choices."""
        self._cache, self._row = None, None
        if not self.built:
            return
        self._inplace = _backend.writeable(self.W)
        self._fused = _backend.fused_ops(self.xp)
        if self.mixed:  # the dtype object arrays report (NumPy: numpy.dtype("float16"), not numpy.float16)
            with _backend.on_device(self.device):
                self._compute_dtype = self.xp.astype(self.W[:1, :1], self._compute_dtype).dtype
        else:  # the arrays' own dtype object compares fastest in the input checks
            self._compute_dtype = self.W.dtype
        self._matmul = _backend.matmul(self.xp, self._compute_dtype)
        self._plan = self._act.backward_for(self._compute_dtype)  # what to cache, which derivative

    def __repr__(self) -> str:
        return (
            f"DenseLayer({self.input_size}, {self.output_size}, activation={self.activation!r}, "
            f"{self._dtype_repr()}, device={self.device!r}, "
            f"xp={_backend.namespace_name(self.xp)})"
        )


@builtin
class Dense(DenseLayer):
    """``DenseLayer`` spelled as Keras does: ``Dense(units, activation=None)``, the input width inferred.

    Parameters
    ----------
    units : int
        Number of output units.
    activation : str or None
    input_size : int, optional
        Given, the layer is built at once; otherwise on the first input (or
        when a model knows the previous width).
    seed, init, use_bias, dtype, param_dtype, compute_dtype, device, xp
        As for :class:`DenseLayer`.
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        *,
        input_size: int | None = None,
        seed: int | None = None,
        init: str = "seed",
        use_bias: bool = True,
        **placement: Any,
    ) -> None:
        super().__init__(input_size, units, activation, seed, init=init, use_bias=use_bias, **placement)

    @property
    def units(self) -> int:
        """The number of output units, ``output_size``."""
        return self.output_size

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (without parameters, dtype or device)."""
        config = super().get_config()
        return {"units": config.pop("output_size"), **config}

    def __repr__(self) -> str:
        return (
            f"Dense({self.output_size}, activation={self.activation!r}, input_size={self.input_size}, "
            f"{self._dtype_repr()}, device={self.device!r}, xp={_backend.namespace_name(self.xp)})"
        )
