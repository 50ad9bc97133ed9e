"""The layer contract: what every layer gives the model, training, checkpoints and pickles.

A layer is a subclass of :class:`Layer` that writes four methods; the base
class does the rest (placement on a namespace and device, dtypes, checked
parameter slots, moves, copies, pickling, checkpoints)::

    build(input_size) -> output_size     declare parameters and state, once the input width is known
    forward(X, *, training=False) -> Y   (n, input_size) -> (n, output_size), in compute_dtype
    backward(d_out) -> d_input           set self.grads[name] for every parameter; return d_input
    get_config() -> dict                 JSON-able constructor arguments: cls(**config) rebuilds it

See the docs' "Writing a layer" page and :class:`Layer` for the rules of each.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import array_api_compat

from .. import _backend, _checks, _save

__all__ = ["LAYERS", "Layer", "batch_position", "get_layer_class", "register_layer", "training_batch"]

Init = Callable[[], Any] | str  # a host array maker, or "zeros" / "ones"
_INITS = ("zeros", "ones")

# How add_parameter / add_state fill arrays: None (initialize), a dict of host arrays (loading),
# or _DECLARE (record the shapes only: a checkpoint's manifest is checked before any data is read).
_DECLARE = object()
_filling: contextvars.ContextVar[Any] = contextvars.ContextVar("dense_xp_layer_filling", default=None)


@contextlib.contextmanager
def filling(values: Any) -> Iterator[None]:
    """Within the block, layers built take their arrays from ``values`` (host arrays by name), or
    only declare their shapes when ``values`` is :data:`DECLARE`."""
    token = _filling.set(values)
    try:
        yield
    finally:
        _filling.reset(token)


DECLARE = _DECLARE

# Which step of training and which rows of the data a forward pass computes (for random layers).
_batch: contextvars.ContextVar[tuple[int, Any] | None] = contextvars.ContextVar(
    "dense_xp_batch", default=None
)


@contextlib.contextmanager
def training_batch(step: int, rows: Any) -> Iterator[None]:
    """Within the block, forward passes compute training step ``step`` on the data rows ``rows``.

    ``rows`` is a ``range`` of global row indices or a 1-D integer array of
    them (host or device), one per row of the batch. Training sets it (in
    memory and on every Dask chunk alike), so a random layer keyed by
    ``(step, row)`` draws the same numbers for a sample whatever the batch
    order or the chunking.
    """
    token = _batch.set((step, rows))
    try:
        yield
    finally:
        _batch.reset(token)


def batch_position() -> tuple[int, Any] | None:
    """``(step, rows)`` set by :func:`training_batch`, or ``None`` outside training."""
    return _batch.get()


class Layer:
    """Base class of every layer: placement, checked parameters and state, moves, pickling.

    Parameters
    ----------
    dtype, param_dtype, compute_dtype : str or dtype object, optional
        The dtype policy (see :class:`dense_xp.DenseLayer`): parameters,
        gradients and state in ``param_dtype``; inputs, outputs and
        ``d_input`` in ``compute_dtype`` (narrower for mixed precision).
    device : str or device object, optional
    xp : namespace, optional
        Where the arrays live (see :func:`dense_xp.resolve_device`).

    Attributes
    ----------
    input_size, output_size : int or None
        The widths, ``None`` until :meth:`build` ran (``output_size`` may be
        known before).
    grads : dict of str to array
        The batch-mean gradient of each parameter from the last backward.
    path : str
        How messages name the layer: ``"layers[2]"`` inside a model.

    Notes
    -----
    The contract a subclass writes:

    ``build(input_size) -> output_size``
        Declare each parameter with :meth:`add_parameter` (trainable) and
        each running statistic with :meth:`add_state`; they become attributes
        (``self.W``). Called once; do no other work that needs the arrays.
    ``forward(X, *, training=False) -> Y``
        ``X`` is an ``(n, input_size)`` array of :attr:`xp` on :attr:`device`
        in :attr:`compute_dtype`; return ``(n, output_size)`` in the same
        dtype. Keep what backward needs. ``training`` is true inside ``fit``.
    ``backward(d_out) -> d_input``
        ``d_out`` is the per-sample loss gradient ``(n, output_size)``. Set
        ``self.grads = {name: dL/dparam}`` for every parameter, as the batch
        mean, in :attr:`param_dtype` (:meth:`widen`); return ``d_input``
        ``(n, input_size)`` in the compute dtype.
    ``get_config() -> dict``
        The constructor's arguments as JSON values; ``type(self)(**config)``
        builds an equal, unbuilt or built layer. Not the arrays, dtypes or
        device: the base class saves those.

    The constructor passes the placement keywords to ``Layer.__init__``.
    Assigning a parameter (``layer.W = ...``) checks the array at once: its
    shape, its dtype (``param_dtype``), its library and its device.
    """

    #: Whether training statistics depend on the whole batch (BatchNorm): a Dask fit refuses
    #: such layers rather than compute per-chunk statistics.
    batch_statistics: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Run each layer's ``forward``, ``backward`` and ``backprop`` with its device current (CuPy)."""
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward", "backprop"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "runs_on_device", False):
                setattr(cls, name, _backend.runs_on_device(method))

    def __init__(
        self,
        *,
        dtype: Any = None,
        param_dtype: Any = None,
        compute_dtype: Any = None,
        device: Any = None,
        xp: Any = None,
    ) -> None:
        self.xp, self.device = _backend.resolve_device(device, xp=xp)
        self._param_dtype, self._compute_dtype = _checks.dtype_policy(
            dtype, param_dtype, compute_dtype, xp=self.xp, device=self.device
        )
        self._shapes: dict[str, tuple[int, ...]] = {}  # every array slot: parameters, then state
        self._params: tuple[str, ...] = ()
        self._states: tuple[str, ...] = ()
        self.grads: dict[str, Any] = {}
        self.path = ""
        if getattr(self, "input_size", None) is None:
            self.input_size: int | None = None
        if not hasattr(self, "output_size"):
            self.output_size: int | None = None
        self._settle()

    # -- the contract (written by each layer) -------------------------------------
    def build(self, input_size: int) -> int:
        """Declare parameters and state for inputs of ``input_size`` features; return the output width."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(input_size)")

    def forward(self, X: Any, *, training: bool = False) -> Any:
        """The output for ``X``, shape ``(n, output_size)``, in ``compute_dtype``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(X, *, training=False)")

    def backward(self, d_out: Any) -> Any:
        """Set :attr:`grads` from the last forward and return ``d_input``."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(d_out)")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON values)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_config()")

    # -- what models call ---------------------------------------------------------
    def backprop(self, d_out: Any, *, input_grad: bool = True) -> Any:
        """:meth:`backward` as models call it: gradients only, never a parameter update.

        ``input_grad=False`` says the caller will not use ``d_input`` (the
        first layer of a model in training); a layer may then skip computing
        it and return ``None``. The default implementation calls ``backward``.
        """
        return self.backward(d_out)

    @classmethod
    def from_config(cls, config: dict[str, Any], **placement: Any) -> Layer:
        """A layer built from :meth:`get_config`'s output, placed by ``placement`` keywords."""
        return cls(**config, **placement)

    # -- declaring arrays (in build) ----------------------------------------------
    def add_parameter(self, name: str, shape: tuple[int, ...], init: Init) -> None:
        """Declare the trainable array ``name`` of ``shape``; ``init()`` gives its host values.

        ``init`` is a callable returning a host array (drawn from the layer's
        own seed, for reproducibility on every backend) or ``"zeros"`` /
        ``"ones"``. The array lives in ``param_dtype`` on the layer's device.
        """
        self._declare(name, shape, init)
        self._params += (name,)

    def add_state(self, name: str, shape: tuple[int, ...], init: Init) -> None:
        """Declare the non-trainable array ``name`` (running statistics): saved, moved, never stepped."""
        self._declare(name, shape, init)
        self._states += (name,)

    def _declare(self, name: str, shape: tuple[int, ...], init: Init) -> None:
        if not name.isidentifier() or name in self._shapes or hasattr(type(self), name):
            msg = f"`name` must be a new identifier for an array of {type(self).__name__}, got {name!r}"
            raise ValueError(msg)
        shape = tuple(_checks.check_int(n, f"shape of {name}") for n in shape)
        self._shapes[name] = shape
        values = _filling.get()
        if values is _DECLARE:
            return
        xp, device, dtype = self.xp, self.device, self._param_dtype
        with _backend.on_device(device):
            if values is not None:
                array = _backend.from_host(values[name], xp=xp, device=device, dtype=dtype, copy=True)
            elif init in _INITS:
                array = (xp.zeros if init == "zeros" else xp.ones)(shape, dtype=dtype, device=device)
            elif callable(init):
                array = _backend.from_host(init(), xp=xp, device=device, dtype=dtype)
            else:
                msg = f"`init` of {name!r} must be a callable or one of {_INITS}, got {init!r}"
                raise TypeError(msg)
        object.__setattr__(self, name, array)

    # -- building -----------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether :meth:`build` ran: the input width is known and the arrays exist."""
        return self.input_size is not None

    def build_for(self, input_size: int) -> int:
        """Build for ``input_size`` inputs unless built; return the output width (checked)."""
        input_size = _checks.check_int(input_size, "input_size")
        if self.input_size is not None:
            if self.input_size != input_size:
                msg = f"`{self.path or type(self).__name__}` takes {self.input_size} inputs, got {input_size}"
                raise ValueError(msg)
            return int(self.output_size)  # type: ignore[arg-type]
        output = _checks.check_int(self.build(input_size), f"{type(self).__name__}.build's output width")
        self.input_size, self.output_size = input_size, output
        if _filling.get() is not _DECLARE:
            self._settle()
        return output

    def _settle(self) -> None:
        """Hook: reset caches and per-device choices after a build or a move (does nothing here)."""

    # -- arrays by name -----------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """The trainable arrays by name, in declaration order."""
        return {name: getattr(self, name) for name in self._params}

    def state(self) -> dict[str, Any]:
        """The non-trainable arrays by name (running statistics), in declaration order."""
        return {name: getattr(self, name) for name in self._states}

    def arrays(self) -> dict[str, Any]:
        """Every array: parameters, then state."""
        return {name: getattr(self, name) for name in self._shapes}

    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every declared array, parameters then state."""
        return dict(self._shapes)

    def __setattr__(self, name: str, value: Any) -> None:
        shapes = self.__dict__.get("_shapes")
        if shapes is not None and name in shapes and value is not self.__dict__.get(name):
            value = self._checked(name, value)
        object.__setattr__(self, name, value)

    def _checked(self, name: str, value: Any) -> Any:
        """``value`` for slot ``name`` if it is an array of the layer's library, device, dtype and shape."""
        where = f"`{self.path}.{name}`" if self.path else f"`{name}`"
        expected = f"{_checks.dtype_name(self._param_dtype)} array of shape {self._shapes[name]}"
        home = f"{_backend.namespace_name(self.xp)} on device {self.device!r}"
        if (
            not array_api_compat.is_array_api_obj(value)
            or array_api_compat.array_namespace(value) is not self.xp
        ):
            got = _backend.describe(value)
            msg = f"{where} must be a {expected} of {home} (the layer's), got {got}"
            raise TypeError(msg)
        if array_api_compat.is_torch_array(value) and value.requires_grad:
            value = value.detach()  # parameters never join an autograd graph
        if tuple(value.shape) != self._shapes[name]:
            msg = f"{where} must have shape {self._shapes[name]}, got {tuple(value.shape)}"
            raise ValueError(msg)
        if value.dtype != self._param_dtype:
            msg = (
                f"{where} must have the layer's param_dtype {_checks.dtype_name(self._param_dtype)}, got "
                f"{_checks.dtype_name(value.dtype)}; cast it with xp.astype, or move the whole model "
                "with .to(dtype=...)"
            )
            raise TypeError(msg)
        if array_api_compat.device(value) != self.device and not _backend.is_traced(value):
            msg = f"{where} must be on the layer's device {self.device!r}, got {_backend.describe(value)}"
            raise ValueError(msg)
        return value

    # -- dtypes and the compute dtype -----------------------------------------------
    @property
    def param_dtype(self) -> Any:
        """The dtype of the parameters, their gradients and the state."""
        return self._param_dtype

    @property
    def compute_dtype(self) -> Any:
        """The dtype of forward and backward: inputs, outputs and ``d_input``."""
        return self._compute_dtype

    @property
    def dtype(self) -> Any:
        """The dtype of the parameters, ``param_dtype``."""
        return self._param_dtype

    @property
    def mixed(self) -> bool:
        """Whether the compute dtype is narrower than the parameters' (mixed precision)."""
        return bool(self._compute_dtype != self._param_dtype)

    def cast(self, a: Any) -> Any:
        """``a`` (a parameter) in the compute dtype: a copy where that is narrower."""
        return a if a is None or a.dtype == self._compute_dtype else self.xp.astype(a, self._compute_dtype)

    def widen(self, a: Any) -> Any:
        """``a`` (a gradient of the compute dtype) in the parameter dtype."""
        return a if a.dtype == self._param_dtype else self.xp.astype(a, self._param_dtype)

    def placement(self) -> tuple[Any, Any, Any, Any]:
        """``(xp, device, param_dtype, compute_dtype)``: what the layers of one model share."""
        return self.xp, self.device, self._param_dtype, self._compute_dtype

    # -- moves ----------------------------------------------------------------------
    def to(
        self,
        device: Any = None,
        *,
        xp: Any = None,
        dtype: Any = None,
        param_dtype: Any = None,
        compute_dtype: Any = None,
    ) -> Layer:
        """Move the arrays and gradients to ``device`` (of ``xp``); returns the layer.

        The dtypes stay as they are unless ``dtype`` (both), ``param_dtype`` or
        ``compute_dtype`` asks for others. A device that lacks a dtype raises
        ValueError naming those it has: nothing is converted silently. The
        cached forward pass is dropped.
        """
        new_xp, new_device = _backend.resolve_device(device, xp=xp)
        keep = (_checks.dtype_name(self._param_dtype), _checks.dtype_name(self._compute_dtype))
        param, compute = _checks.dtype_policy(
            dtype, param_dtype, compute_dtype, xp=new_xp, device=new_device, keep=keep
        )
        move = _backend.mover(self.xp, self.device, new_xp, new_device, param)
        with _backend.on_device(new_device):
            moved = {name: move(array) for name, array in self.arrays().items()}
            grads = {name: move(grad) for name, grad in self.grads.items()}
        for name, array in moved.items():
            object.__setattr__(self, name, array)
        self.grads = grads
        self.xp, self.device, self._param_dtype, self._compute_dtype = new_xp, new_device, param, compute
        self._settle()
        return self

    def __copy__(self) -> Layer:
        """A shallow copy: the same arrays, a gradient dict of its own, no cached forward pass."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.grads = dict(self.grads)
        new._settle()
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Layer:
        """A copy on the same device: new arrays and gradients; the configuration and functions
        (an activation) are shared, not looked up again by name; the cached forward pass is dropped."""
        new = copy.copy(self)
        memo[id(self)] = new
        xp = self.xp
        with _backend.on_device(self.device):
            for name, array in self.arrays().items():
                object.__setattr__(new, name, xp.asarray(array, copy=True))
            new.grads = {name: xp.asarray(grad, copy=True) for name, grad in self.grads.items()}
        new._settle()
        return new

    # -- pickling ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Config, dtypes, input width, host copies of the arrays, and the device by name.

        Gradients and the cached forward pass are not kept.
        """
        return {
            "config": self.get_config(),
            "dtype": _checks.dtype_name(self._param_dtype),
            "compute_dtype": _checks.dtype_name(self._compute_dtype),
            "input_size": self.input_size,
            "arrays": {name: _backend.to_numpy(a).copy() for name, a in self.arrays().items()},
            "device": _backend.device_spec(self.xp, self.device),
            "path": self.path,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the pickled device, or on the CPU of its library where it is gone
        (see :func:`dense_xp._backend.restore_device`)."""
        xp, device = _backend.restore_device(*state["device"])
        dtypes = {"param_dtype": state["dtype"], "compute_dtype": state.get("compute_dtype")}
        arrays = state.get("arrays", state.get("params"))
        try:
            with filling(arrays):
                type(self).__init__(self, **state["config"], **dtypes, device=device, xp=xp)
                if state.get("input_size") is not None:
                    self.build_for(state["input_size"])
        except (TypeError, ValueError) as exc:
            msg = f"cannot unpickle a {type(self).__name__}: {exc}"
            raise type(exc)(msg) from None
        self.path = state.get("path", "")

    def registered_name(self) -> str:
        """The name under which the layer's class is registered (what checkpoints write).

        Raises
        ------
        TypeError
            The class is not registered (:func:`register_layer`).
        """
        for key, cls in LAYERS.items():
            if cls is type(self):
                return key
        msg = (
            f"`{type(self).__name__}` is not a registered layer class: call "
            f"dense_xp.register_layer({type(self).__name__}) before saving it"
        )
        raise TypeError(msg)

    def save(self, path: Any) -> None:
        """Write a checkpoint of this layer (see :func:`dense_xp.save`)."""
        _save.save(self, path)

    def _dtype_repr(self) -> str:
        param, compute = _checks.dtype_name(self._param_dtype), _checks.dtype_name(self._compute_dtype)
        return f"dtype={param}" if param == compute else f"param_dtype={param}, compute_dtype={compute}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        where = f"device={self.device!r}, xp={_backend.namespace_name(self.xp)}"
        return f"{type(self).__name__}({args}, {self._dtype_repr()}, {where})"


# -- the registry: checkpoints name layers by class ------------------------------------------
LAYERS: dict[str, type[Layer]] = {}
_BUILTIN: set[str] = set()


def register_layer(cls: type[Layer] | None = None, *, name: str | None = None) -> Any:
    """Make a layer class loadable from checkpoints by name (usable as a decorator).

    Parameters
    ----------
    cls : subclass of Layer
    name : str, optional
        The name checkpoints use; default the class's ``__name__``. Built-in
        names cannot be taken; registering a name again replaces it.

    Returns
    -------
    The class (so ``@register_layer`` decorates).
    """
    if cls is None:
        return lambda c: register_layer(c, name=name)
    if not isinstance(cls, type) or not issubclass(cls, Layer):
        msg = f"`cls` must be a subclass of dense_xp.Layer, got {cls!r}"
        raise TypeError(msg)
    key = cls.__name__ if name is None else name
    if not isinstance(key, str) or not key.isidentifier():
        msg = f"`name` must be an identifier, got {key!r}"
        raise ValueError(msg)
    if key in _BUILTIN and LAYERS[key] is not cls:
        msg = f"`name` {key!r} is a built-in layer; register {cls.__name__} under another name"
        raise ValueError(msg)
    LAYERS[key] = cls
    return cls


_L = TypeVar("_L", bound=type[Layer])


def builtin(cls: _L) -> _L:
    """Register a layer class of dense_xp itself (its name cannot be taken by another)."""
    register_layer(cls)
    _BUILTIN.add(cls.__name__)
    return cls


def get_layer_class(name: Any) -> type[Layer]:
    """The registered layer class ``name``; a ValueError names the registered ones."""
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None:
        msg = (
            f"layer class {name!r} is not registered in this process (registered: {sorted(LAYERS)}); "
            "import the module that defines it and call dense_xp.register_layer(cls)"
        )
        raise ValueError(msg)
    return cls
