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
        ``None`` takes the namespace's default real floating dtype on the device.
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
        ``{"W": dW, "b": db}`` from the last :meth:`backward`.

    Notes
    -----
    Gradient convention: ``d_out`` holds the per-sample loss gradient
    ``dL_i/dy_i``; parameter gradients are batch means, ``dW = X.T @ dz / n``
    and ``db = mean(dz, axis=0)``; ``d_input = dz @ W.T`` is per sample again.
    A 1-D ``X`` is one sample (the output is ``(1, output_size)``). The array
    returned by :meth:`forward` is kept for :meth:`backward`: do not modify it
    in place in between.
    """

    _cache: tuple[Any, Any] | None
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
        dtype = _checks.resolve_dtype(dtype, xp=self.xp, device=self.device)
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
        array, shape (n, output_size), on the layer's device and dtype
        """
        X = self._input(X)
        if self.b is not None and self.b.dtype != self.W.dtype:
            msg = (
                f"`b` has dtype {_checks.dtype_name(self.b.dtype)} but `W` has "
                f"{_checks.dtype_name(self.W.dtype)}: a layer's parameters share one dtype"
            )
            raise TypeError(msg)
        z = X @ self.W
        fused = self._fused and self._fused.forward(z, self.b, self.activation)
        if fused:
            z, y = fused
        else:
            z = z if self.b is None else self._add_(z, self.b)
            y = self._act.forward(z, xp=self.xp)
        self._cache = (X, z if self._act.saves == "input" else y)
        return y

    @_backend.runs_on_device
    def backward(self, d_out: Any, lr: float | None = 0.01) -> Any:
        """Gradients of the last :meth:`forward`, then ``W -= lr*dW; b -= lr*db``.

        Parameters
        ----------
        d_out : array_like, shape (n, output_size)
            Per-sample gradient of the loss with respect to the output.
        lr : float or None, default 0.01
            SGD step size; ``None`` only computes and keeps ``grads``.

        Returns
        -------
        d_input : array, shape (n, input_size)
            Uses ``W`` as it was before the update.
        """
        lr = _checks.check_lr(lr)
        if self._cache is None:
            msg = "`backward` was called before `forward`: there is no cached input"
            raise RuntimeError(msg)
        X, saved = self._cache
        d_out = self._d_out(d_out, (X.shape[0], self.output_size))
        ops = self._fused
        dz = ops and ops.backward(d_out, saved, self.activation)
        if dz is None:
            dz = self._act.backward(d_out, saved, xp=self.xp)
        dW = self._scale_(X.T @ dz, 1.0 / X.shape[0])
        d_input = dz @ self.W.T
        self.grads = {"W": dW}
        if self.b is not None:
            self.grads["b"] = self._mean_row(X.shape[0]) @ dz  # a matrix product: one BLAS call
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

    def _mean_row(self, n: int) -> Any:
        """A cached ``(1, n)`` row of ``1/n``: ``row @ dz`` is the batch mean of ``dz``."""
        row = self._row
        if row is None or row.shape[1] != n:
            row = self._row = self.xp.full((1, n), 1.0 / n, dtype=self.dtype, device=self.device)
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
        X = _backend.as_input(X, name="X", xp=self.xp, device=self.device, dtype=self.dtype)
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
        d_out = _backend.as_input(d_out, name="d_out", xp=self.xp, device=self.device, dtype=self.dtype)
        if tuple(d_out.shape) != shape:
            msg = f"`d_out` must have the output's shape {shape}, got {tuple(d_out.shape)}"
            raise ValueError(msg)
        return d_out

    # -- properties and moves ---------------------------------------------
    @property
    def dtype(self) -> Any:
        """The dtype of the parameters, inputs and outputs."""
        return self.W.dtype

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

    def to(self, device: Any = None, *, xp: Any = None) -> DenseLayer:
        """Move parameters and gradients to ``device`` (of ``xp``); returns the layer.

        The cached forward pass is dropped: run :meth:`forward` again first.
        """
        new_xp, new_device = _backend.resolve_device(device, xp=xp)
        dtype = _checks.resolve_dtype(_checks.dtype_name(self.dtype), xp=new_xp, device=new_device)
        move = _backend.mover(self.xp, self.device, new_xp, new_device, dtype)
        with _backend.on_device(new_device):
            self.W, self.b = move(self.W), move(self.b)
            self.grads = {name: move(grad) for name, grad in self.grads.items()}
        self.xp, self.device = new_xp, new_device
        self._bind()
        return self

    # -- pickling ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Config, dtype, host copies of the parameters, and the namespace and device by name.

        Gradients and the cached forward pass are not kept (nor by
        :func:`copy.deepcopy`, which goes through this too).
        """
        return {
            "config": self.get_config(),
            "dtype": _checks.dtype_name(self.dtype),
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
        DenseLayer.__init__(self, **config, init="zeros", dtype=state["dtype"], device=device, xp=xp)
        self.init = init
        for name, host in state["params"].items():
            setattr(self, name, _backend.from_host(host, xp=xp, device=device, dtype=self.dtype, copy=True))

    def __repr__(self) -> str:
        return (
            f"DenseLayer({self.input_size}, {self.output_size}, activation={self.activation!r}, "
            f"dtype={_checks.dtype_name(self.dtype)}, device={self.device!r}, "
            f"xp={_backend.namespace_name(self.xp)})"
        )
