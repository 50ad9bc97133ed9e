"""The dense layer ``act(X @ W + b)``, written once against the array API."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from . import _backend, _checks, initializers
from .activations import ACTIVATIONS, get_activation

__all__ = ["DenseLayer"]


class DenseLayer:
    """A fully connected layer ``y = act(X @ W + b)`` with forward, backward and SGD.

    Parameters
    ----------
    input_size, output_size : int
        Number of input features and of output units (both >= 1).
    activation : {None, "linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "silu"}
        Applied after the affine map. ``"gelu"`` is the tanh approximation and
        ``"leaky_relu"`` has slope 0.01.
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

    _cache: tuple[Any, Any, Any] | None
    _fused: Any

    def __init__(
        self,
        input_size: int,
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
        self.input_size = _checks.check_int(input_size, "input_size")
        self.output_size = _checks.check_int(output_size, "output_size")
        _checks.check_weight_memory(self.input_size, self.output_size)
        self._act = get_activation(activation)
        self.activation = activation
        self.seed = _checks.check_seed(seed)
        if not isinstance(use_bias, bool):
            msg = f"`use_bias` must be True or False, got {use_bias!r}"
            raise TypeError(msg)
        W = initializers.draw(init, _backend.host_rng(self.seed), self.input_size, self.output_size)
        self.init = init
        self.xp, self.device = _backend.resolve_device(device, xp=xp)
        dtype, self._compute_dtype = _checks.dtype_policy(
            dtype, param_dtype, compute_dtype, xp=self.xp, device=self.device
        )
        with _backend.on_device(self.device):
            self.W = _backend.from_host(W, xp=self.xp, device=self.device, dtype=dtype)
            self.b = (
                self.xp.zeros((1, self.output_size), dtype=dtype, device=self.device) if use_bias else None
            )
        self.grads: dict[str, Any] = {}
        self._bind()

    # -- the contract -----------------------------------------------------
    @_backend.runs_on_device
    def forward(self, X: Any) -> Any:
        """``act(X @ W + b)``.

        Parameters
        ----------
        X : array_like, shape (n, input_size) or (input_size,)
            Host data is moved to the layer's device; integers are cast.

        Returns
        -------
        array, shape (n, output_size), on the layer's device, in ``compute_dtype``
        """
        X = self._input(X)
        if self.b is not None and self.b.dtype != self.W.dtype:
            msg = (
                f"`b` has dtype {_checks.dtype_name(self.b.dtype)} but `W` has "
                f"{_checks.dtype_name(self.W.dtype)}: a layer's parameters share one dtype"
            )
            raise TypeError(msg)
        b, W = self._cast(self.b), self._cast(self.W)
        z = self._matmul(X, W)
        fused = self._fused and self._fused.forward(z, b, self.activation)
        if fused:
            z, y = fused
        else:
            z = z if b is None else self._add_(z, b)
            y = self._act.forward(z, xp=self.xp)
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
        if self._cache is None:
            msg = "`backward` was called before `forward`: there is no cached input"
            raise RuntimeError(msg)
        X, saved, W = self._cache
        d_out = self._d_out(d_out, (X.shape[0], self.output_size))
        ops = self._fused
        dz = ops and ops.backward(d_out, saved, self.activation)
        if dz is None:
            dz = self._plan.backward(d_out, saved, xp=self.xp)
        dW = self._weight_grad(X, dz)
        d_input = self._matmul(dz, W.T)
        self.grads = {"W": dW}
        if self.b is not None:  # a matrix product: one BLAS call
            self.grads["b"] = self._up(self._matmul(self._mean_row(X.shape[0]), dz))
        del dz  # the largest temporary goes before the update allocates
        if lr is not None:
            self.W = self._sub_(self.W, lr * dW)
            if self.b is not None:
                self.b = self._sub_(self.b, lr * self.grads["b"])
        return d_input

    # -- helpers ----------------------------------------------------------
    def _bind(self) -> None:
        """Reset what depends on the namespace and device: the cache and the hot-path choices."""
        self._cache = None
        self._inplace = array_api_compat.is_writeable_array(self.W)
        self._fused = _backend.fused_ops(self.xp)
        self._row: Any = None
        self._mixed = self._compute_dtype != self.W.dtype
        if not self._mixed:  # the arrays' own dtype object compares fastest in the input checks
            self._compute_dtype = self.W.dtype
        else:  # and is what arrays report (NumPy: numpy.dtype("float16"), not the numpy.float16 type)
            with _backend.on_device(self.device):
                self._compute_dtype = self.xp.astype(self.W[:1, :1], self._compute_dtype).dtype
        self._matmul = _backend.matmul(self.xp, self._compute_dtype)
        self._plan = self._act.backward_for(self._compute_dtype)  # what to cache, which backward

    def _cast(self, param: Any) -> Any:
        """``param`` in the compute dtype (a copy when that is narrower)."""
        return self.xp.astype(param, self._compute_dtype) if self._mixed and param is not None else param

    def _up(self, grad: Any) -> Any:
        """A gradient of the compute dtype in the parameter dtype."""
        return self.xp.astype(grad, self.W.dtype) if self._mixed else grad

    def _weight_grad(self, X: Any, dz: Any) -> Any:
        """``X.T @ dz / n`` in the parameter dtype.

        In a narrower compute dtype ``1/n`` comes first: a sum of ``n``
        products may overflow float16 where their mean does not.
        """
        if self._mixed:
            return self._up(self._matmul(X.T, dz * (1.0 / X.shape[0])))
        return self._scale_(self._matmul(X.T, dz), 1.0 / X.shape[0])

    def _mean_row(self, n: int) -> Any:
        """A cached ``(1, n)`` row of ``1/n``: ``row @ dz`` is the batch mean of ``dz``."""
        row = self._row
        if row is None or row.shape[1] != n:
            row = self._row = self.xp.full((1, n), 1.0 / n, dtype=self._compute_dtype, device=self.device)
        return row

    def _add_(self, a: Any, b: Any) -> Any:
        if self._inplace:
            a += b
            return a
        return a + b

    def _sub_(self, a: Any, b: Any) -> Any:
        if self._inplace:
            a -= b
            return a
        return a - b

    def _scale_(self, a: Any, s: float) -> Any:
        if self._inplace:
            a *= s
            return a
        return a * s

    def _input(self, X: Any) -> Any:
        X = _backend.as_input(X, name="X", xp=self.xp, device=self.device, dtype=self._compute_dtype)
        if X.ndim not in (1, 2) or X.shape[-1] != self.input_size or X.shape[0] == 0:
            msg = (
                f"`X` must have shape (n, {self.input_size}) with n >= 1, or ({self.input_size},) "
                f"for one sample; got shape {tuple(X.shape)}"
            )
            raise ValueError(msg)
        return X if X.ndim == 2 else X[None, :]

    def _d_out(self, d_out: Any, shape: tuple[int, int]) -> Any:
        if math.isnan(shape[0]):
            msg = (
                "`X` of the last forward has an unknown number of rows (a Dask array with unknown chunk "
                "sizes), which backward needs: call `X.compute_chunk_sizes()` before forward"
            )
            raise ValueError(msg)
        d_out = _backend.as_input(
            d_out, name="d_out", xp=self.xp, device=self.device, dtype=self._compute_dtype
        )
        if tuple(d_out.shape) != shape:
            msg = f"`d_out` must have the output's shape {shape}, got {tuple(d_out.shape)}"
            raise ValueError(msg)
        return d_out

    # -- properties and moves ---------------------------------------------
    @property
    def dtype(self) -> Any:
        """The dtype of the parameters, ``param_dtype``."""
        return self.W.dtype

    @property
    def param_dtype(self) -> Any:
        """The dtype of the parameters, their gradients and optimizer state."""
        return self.W.dtype

    @property
    def compute_dtype(self) -> Any:
        """The dtype of forward and backward: inputs, outputs and ``d_input``."""
        return self._compute_dtype

    def parameters(self) -> dict[str, Any]:
        """The trainable arrays by name: ``{"W": W, "b": b}`` (no ``"b"`` without bias)."""
        return {"W": self.W} if self.b is None else {"W": self.W, "b": self.b}

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (without parameters, dtype or device)."""
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "activation": self.activation,
            "seed": self.seed,
            "init": self.init,
            "use_bias": self.b is not None,
        }

    def save(self, path: Any) -> None:
        """Write a checkpoint (see :func:`dense_xp.save`)."""
        from .checkpoint import save

        save(self, path)

    def to(
        self,
        device: Any = None,
        *,
        xp: Any = None,
        dtype: Any = None,
        param_dtype: Any = None,
        compute_dtype: Any = None,
    ) -> DenseLayer:
        """Move parameters and gradients to ``device`` (of ``xp``); returns the layer.

        The dtypes stay as they are unless ``dtype`` (both), ``param_dtype`` or
        ``compute_dtype`` asks for others (see :class:`DenseLayer`). A device
        that lacks a dtype raises ValueError naming those it has: nothing is
        converted silently. The cached forward pass is dropped: run
        :meth:`forward` again first.
        """
        new_xp, new_device = _backend.resolve_device(device, xp=xp)
        keep = (_checks.dtype_name(self.param_dtype), _checks.dtype_name(self.compute_dtype))
        param, compute = _checks.dtype_policy(
            dtype, param_dtype, compute_dtype, xp=new_xp, device=new_device, keep=keep
        )
        move = _backend.mover(self.xp, self.device, new_xp, new_device, param)
        with _backend.on_device(new_device):
            self.W, self.b = move(self.W), move(self.b)
            self.grads = {name: move(grad) for name, grad in self.grads.items()}
        self.xp, self.device, self._compute_dtype = new_xp, new_device, compute
        self._bind()
        return self

    # -- pickling ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Config, dtypes, host copies of the parameters, and the namespace and device by name.

        Gradients and the cached forward pass are not kept (nor by
        :func:`copy.deepcopy`, which goes through this too).
        """
        return {
            "config": self.get_config(),
            "dtype": _checks.dtype_name(self.param_dtype),
            "compute_dtype": _checks.dtype_name(self.compute_dtype),
            "params": {name: _backend.to_numpy(p).copy() for name, p in self.parameters().items()},
            "device": _backend.device_spec(self.xp, self.device),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the pickled device, or on the CPU where it is gone (see
        :func:`dense_xp._backend.restore_device`): CUDA device N of CuPy
        becomes NumPy, a torch or JAX accelerator that library's CPU."""
        config = dict(state["config"])
        if config["activation"] not in ACTIVATIONS:
            name = config["activation"]
            msg = (
                f"cannot unpickle a DenseLayer with activation {name!r}: it is not registered in this "
                "process; "
                f"call dense_xp.register_activation({name!r}, forward, backward) first"
            )
            raise ValueError(msg)
        xp, device = _backend.restore_device(*state["device"])
        init = config.pop("init")
        dtypes = {"param_dtype": state["dtype"], "compute_dtype": state.get("compute_dtype")}
        DenseLayer.__init__(self, **config, init="zeros", **dtypes, device=device, xp=xp)
        self.init = init
        for name, host in state["params"].items():
            setattr(self, name, _backend.from_host(host, xp=xp, device=device, dtype=self.dtype, copy=True))

    def __repr__(self) -> str:
        return (
            f"DenseLayer({self.input_size}, {self.output_size}, activation={self.activation!r}, "
            f"{self._dtype_repr()}, device={self.device!r}, "
            f"xp={_backend.namespace_name(self.xp)})"
        )

    def _dtype_repr(self) -> str:
        param, compute = _checks.dtype_name(self.param_dtype), _checks.dtype_name(self.compute_dtype)
        return f"dtype={param}" if param == compute else f"param_dtype={param}, compute_dtype={compute}"
