"""A CuPy-like array namespace on the CPU: CuPy's multi-device rules, without a GPU.

CuPy computes on its *current* device, whatever ``device=`` says. This module
reproduces the rules that make multi-device code go wrong, over
array-api-strict arrays on two devices (``CPU_DEVICE`` is device 0,
``device1`` is device 1):

* creation functions (``zeros``, ``full``, ``empty``, ``arange``, the
  ``*_like`` functions...) allocate on the current device and ignore
  ``device=``, as array-api-compat's CuPy wrappers do;
* ``asarray(obj, device=d)`` enters device ``d`` (array-api-compat's wrapper
  does ``with cupy.cuda.Device(d)``): host data lands there, an array of this
  namespace is returned as it is unless a copy or another dtype is asked for;
  ``to_device`` moves;
* every operation -- operators, ``astype``, advanced indexing, namespace
  functions -- refuses an operand that is not on the current device, as
  CuPy's kernels and cuBLAS calls do without peer access ("Array device must
  be same as the current device"); views (basic indexing, ``.T``,
  ``reshape``...) launch no kernel and are allowed, as in CuPy;
* ``Device(i)`` is a context manager making device ``i`` current for the
  calling thread, restoring the previous one on exit.

Importing the module registers ``Device`` with dense_xp's current-device seam
(:func:`dense_xp._backend.register_current_device`), the one thing dense_xp
knows of CuPy beyond the array API.
"""

from __future__ import annotations

import operator
import sys
import threading
import types
from typing import Any

import array_api_strict as _strict

from dense_xp import _backend

_STRICT = (_strict.Device("CPU_DEVICE"), _strict.Device("device1"))
_STRICT_ARRAY = type(_strict.asarray(0))
_CREATION = {
    "arange", "empty", "empty_like", "eye", "full", "full_like", "linspace",
    "ones", "ones_like", "zeros", "zeros_like",
}  # fmt: skip
_local = threading.local()


def _current() -> int:
    return getattr(_local, "device", 0)


class Device:
    """A simulated CUDA device; ``with Device(i):`` makes it current for this thread."""

    def __init__(self, device: int | None = None) -> None:
        index = _current() if device is None else int(device)
        if not 0 <= index < len(_STRICT):
            msg = f"there is no simulated CUDA device {device!r} (there are {len(_STRICT)})"
            raise ValueError(msg)
        self.id = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cupylike.Device", self.id))

    def __repr__(self) -> str:
        return f"<CuPy-like Device {self.id}>"

    def __enter__(self) -> Device:
        _local.__dict__.setdefault("stack", []).append(_current())
        _local.device = self.id
        return self

    def __exit__(self, *exc: object) -> None:
        _local.device = _local.stack.pop()


def _unwrap(value: Any) -> Any:
    """The strict array(s) inside ``value``; refuses arrays not on the current device."""
    if isinstance(value, Array):
        where = _STRICT.index(value._a.device)
        if where != _current():
            msg = (
                "Array device must be same as the current device: "
                f"array device = {where} while current = {_current()}"
            )
            raise ValueError(msg)
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, _STRICT_ARRAY):
        return Array(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


def _apply(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))


class Array:
    """An array of this namespace: an array-api-strict array on one of the two devices."""

    __slots__ = ("_a",)

    def __init__(self, a: Any) -> None:
        self._a = a

    dtype = property(lambda self: self._a.dtype)
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    T = property(lambda self: Array(self._a.T))
    mT = property(lambda self: Array(self._a.mT))

    @property
    def device(self) -> Device:
        return Device(_STRICT.index(self._a.device))

    def __array_namespace__(self, api_version: str | None = None) -> Any:
        return namespace

    def to_device(self, device: Device, /, stream: Any = None) -> Array:
        return Array(self._a.to_device(_STRICT[device.id]))

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._a.__dlpack_device__()

    # host reads synchronize on the array's own device, as CuPy's .get() does
    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return operator.index(self._a)

    def __repr__(self) -> str:
        return f"cupylike.Array({self._a!r}, device={self.device!r})"

    def __getitem__(self, key: Any) -> Array:
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, Array) for k in keys):
            return _apply(operator.getitem, self, key)  # advanced indexing launches a kernel
        return Array(self._a[key])  # basic indexing is a view, as in CuPy: no kernel, no device check

    def __setitem__(self, key: Any, value: Any) -> None:
        target = _unwrap(self)
        target[_unwrap(key)] = _unwrap(value)

    def __neg__(self) -> Array:
        return _apply(operator.neg, self)

    def __pos__(self) -> Array:
        return _apply(operator.pos, self)

    def __abs__(self) -> Array:
        return _apply(operator.abs, self)

    def __invert__(self) -> Array:
        return _apply(operator.invert, self)


def _binary(name: str, op: Any, iop: Any = None) -> None:
    setattr(Array, f"__{name}__", lambda self, other: _apply(op, self, other))
    if iop is None:
        return
    setattr(Array, f"__r{name}__", lambda self, other: _apply(op, other, self))

    def inplace(self: Array, other: Any) -> Array:
        _apply(iop, self, other)  # strict arrays update in place
        return self

    setattr(Array, f"__i{name}__", inplace)


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "lshift", "rshift", "xor"):
    _binary(_name, getattr(operator, _name), getattr(operator, f"i{_name}"))
_binary("and", operator.and_, operator.iand)
_binary("or", operator.or_, operator.ior)
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    _binary(_name, getattr(operator, _name))
Array.__hash__ = None  # type: ignore[assignment]


def _creation(fn: Any) -> Any:
    def create(*args: Any, device: Any = None, **kwargs: Any) -> Array:
        return _apply(fn, *args, device=_STRICT[_current()], **kwargs)  # device= is ignored, as in CuPy

    return create


def asarray(obj: Any, /, *, dtype: Any = None, device: Device | None = None, copy: bool | None = None) -> Any:
    """As array-api-compat's CuPy ``asarray``: runs with ``device`` current."""
    with device if device is not None else Device():
        if isinstance(obj, Array):
            if copy is True:  # CuPy copies onto the current device from any device
                obj = Array(obj._a.to_device(_STRICT[_current()]))
            elif dtype is None or dtype == obj.dtype:
                return obj  # no copy, no move: still on its own device
            return _apply(_strict.asarray, obj, dtype=dtype, copy=copy)
        return _apply(_strict.asarray, obj, dtype=dtype, device=_STRICT[_current()], copy=copy)


def _function(fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _apply(fn, *args, **kwargs)

    return call


def _view(fn: Any) -> Any:
    def call(x: Array, /, *args: Any, **kwargs: Any) -> Array:
        return Array(fn(x._a, *args, **kwargs))

    return call


_VIEWS = {"expand_dims", "matrix_transpose", "permute_dims", "reshape", "squeeze"}


class _Info:
    """``__array_namespace_info__()``: the default device is the current one."""

    def default_device(self) -> Device:
        return Device()

    def devices(self) -> list[Device]:
        return [Device(i) for i in range(len(_STRICT))]

    def default_dtypes(self, *, device: Any = None) -> dict[str, Any]:
        return _strict.__array_namespace_info__().default_dtypes()

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, Any]:
        return _strict.__array_namespace_info__().dtypes(kind=kind)

    def capabilities(self) -> dict[str, Any]:
        return _strict.__array_namespace_info__().capabilities()


namespace = types.ModuleType("cupylike", "A CuPy-like array namespace on the CPU (see tests/cupylike.py).")
for _name in _strict.__all__:
    _obj = getattr(_strict, _name)
    if _name.startswith("__"):
        continue
    if not callable(_obj) or isinstance(_obj, type):  # constants, dtypes, submodules
        setattr(namespace, _name, _obj)
    elif _name in _CREATION:
        setattr(namespace, _name, _creation(_obj))
    else:
        setattr(namespace, _name, _view(_obj) if _name in _VIEWS else _function(_obj))
for _name in dir(_strict):  # dtype objects are instances, not callables
    if isinstance(getattr(_strict, _name), type(_strict.float32)):
        setattr(namespace, _name, getattr(_strict, _name))
namespace.Device = Device
sys.modules[namespace.__name__] = namespace  # importable by its name, as a library's namespace is
namespace.asarray = asarray
namespace.__array_namespace_info__ = lambda: _Info()

_backend.register_current_device(Device, lambda device: device)
