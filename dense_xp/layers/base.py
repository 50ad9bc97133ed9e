"""The layer contract: the :class:`Layer` base class, and the registration of layer classes by name.

A layer is a subclass of :class:`Layer` that writes four methods; the base
class does the rest (placement on a namespace and device, dtypes, checked
parameter slots, moves, copies, pickling, checkpoints)::

    build(input_size) -> output_size     declare parameters and state, once the input width is known
    forward(X, *, training=False) -> Y   (n, input_size) -> (n, output_size), in compute_dtype
    backward(d_out) -> d_input           set self.grads[name] for every parameter; return d_input
    get_config() -> dict                 JSON-able constructor arguments: cls(**config) rebuilds it

See the docs' "Writing a layer" page and :class:`Layer` for the rules of each.
:func:`register_layer` makes a class loadable from checkpoints by name. The
base class's helpers live beside it: the table of registered classes in
``_registry``, the array slots in ``_slots``, the arrays by name and the
dtypes in ``_arrays`` (a base of :class:`Layer`), moves, copies and pickles
in ``_transfer``, and the :func:`filling` / :func:`training_batch` blocks in
``_context``; everything is importable from here.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from .. import _backend, _checks, _save
from . import _registry, _slots, _transfer
from ._arrays import _LayerArrays
from ._context import DECLARE as DECLARE
from ._context import batch_position, filled_from, training_batch
from ._context import filling as filling
from ._registry import LAYERS, get_layer_class
from ._slots import Init as Init

__all__ = ["LAYERS", "Layer", "batch_position", "get_layer_class", "register_layer", "training_batch"]


class Layer(_LayerArrays):
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
        _slots.declare(self, name, shape, init)

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
        if filled_from() is not DECLARE:
            self._settle()
        return output

    def _settle(self) -> None:
        """Hook: reset caches and per-device choices after a build or a move (does nothing here)."""

    def plan_step(self, n: int, *, input_grad: bool) -> Any:
        """Hook: this layer's training step on ``n`` rows with buffers made once, for ``fit`` on NumPy.

        Returns an object with ``forward(X) -> y``, ``backward(d_out) ->
        d_input or None`` and ``grads`` (the arrays ``backward`` fills, by
        parameter name), equal to :meth:`forward` in training mode and
        :meth:`backprop`; or a string saying why there is none (the default):
        ``fit`` then trains the model eagerly. ``n=0`` asks only whether.
        """
        return f"{type(self).__name__} has no planned step"

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
        _transfer.move(self, device, xp, dtype, param_dtype, compute_dtype)
        self._settle()
        return self

    def __copy__(self) -> Layer:
        """A shallow copy: the same arrays, a gradient dict of its own, no cached forward pass."""
        return _transfer.shallow_copy(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Layer:
        """A copy on the same device: new arrays and gradients; the configuration and functions
        (an activation) are shared, not looked up again by name; the cached forward pass is dropped."""
        return _transfer.deep_copy(self, memo)

    # -- pickling ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Config, dtypes, input width, host copies of the arrays, and the device by name.

        Gradients and the cached forward pass are not kept.
        """
        return _transfer.host_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild on the pickled device, or on the CPU of its library where it is gone
        (see :func:`dense_xp._backend.restore_device`)."""
        _transfer.restore(self, state)

    def registered_name(self) -> str:
        """The name under which the layer's class is registered (what checkpoints write).

        Raises
        ------
        TypeError
            The class is not registered (:func:`register_layer`).
        """
        return _registry.registered_name(type(self))

    def save(self, path: Any) -> None:
        """Write a checkpoint of this layer (see :func:`dense_xp.save`)."""
        _save.save(self, path)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        where = f"device={self.device!r}, xp={_backend.namespace_name(self.xp)}"
        return f"{type(self).__name__}({args}, {self._dtype_repr()}, {where})"


# -- registering layer classes: checkpoints name layers by class ------------------------------
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
    _registry.add(cls, name)
    return cls


_L = TypeVar("_L", bound=type[Layer])


def builtin(cls: _L) -> _L:
    """Register a layer class of dense_xp itself (its name cannot be taken by another)."""
    register_layer(cls)
    _registry.protect(cls.__name__)
    return cls
