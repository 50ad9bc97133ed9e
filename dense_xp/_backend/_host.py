"""Host <-> device: moving arrays, checking data, and batches (pinned and overlapped on CuPy)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from .. import _checks
from . import _cuda
from ._current import on_device
from ._devices import _NATIVE, _NUMPY_XP, namespace_name


# --------------------------------------------------------------------------
# Host <-> device
# --------------------------------------------------------------------------
def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` (an array of any supported library, on any device) as a NumPy array.

    The result may share memory with ``x`` when ``x`` already lives on the host.
    A torch bfloat16 tensor, a dtype NumPy lacks, comes back as float32.
    """
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        host: np.ndarray = x.get()
        return host
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        host = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()  # Any without torch
        return host
    if array_api_compat.is_array_api_obj(x) and not array_api_compat.is_jax_array(x):
        with contextlib.suppress(Exception):
            return np.from_dlpack(x)
    return np.asarray(x)


def is_host(x: Any) -> bool:
    """Whether ``x`` is host data: a NumPy array or scalar, or anything that is not an array."""
    return isinstance(x, (np.ndarray, np.generic)) or not array_api_compat.is_array_api_obj(x)


def host_rows(index: Any, n: int) -> np.ndarray:
    """The rows ``index`` (a slice of ``range(n)`` or host indices) as a host integer array for a gather.

    int32 where ``n`` allows it: JAX without x64 has no int64, and a narrower
    index costs less to send.
    """
    rows = np.arange(index.start, min(index.stop, n)) if isinstance(index, slice) else index
    return np.asarray(rows, dtype=np.int32 if n < 2**31 else np.int64)


def is_traced(x: Any) -> bool:
    """Whether ``x`` is an abstract value inside a trace (``jax.jit``): it has no device of its own yet."""
    jax_core = sys.modules.get("jax.core")
    return jax_core is not None and isinstance(x, jax_core.Tracer)


def cheap_reads(xp: Any, device: Any) -> bool:
    """Whether reading a 0-d array of ``xp`` on ``device`` into Python costs no transfer or wait.

    True for NumPy, whose arrays are host memory computed synchronously:
    training sums its per-batch scalars there as Python floats, cheaper than
    0-d array arithmetic. False elsewhere (GPUs, libraries that dispatch
    asynchronously such as JAX and torch), where the sums stay on the device
    and are read once per check.
    """
    return bool(array_api_compat.is_numpy_namespace(xp))


def host_rng(seed: int | None) -> np.random.RandomState:
    """A private legacy generator: ``host_rng(s).randn`` matches ``np.random.seed(s); np.random.randn``."""
    return np.random.RandomState(seed)


def from_host(x: Any, *, xp: Any, device: Any, dtype: Any = None, copy: bool | None = None) -> Any:
    """Move host data (a NumPy array or nested sequence) to ``device`` of ``xp``."""
    return xp.asarray(x, dtype=dtype, device=device, copy=copy)


def mover(src_xp: Any, src_device: Any, xp: Any, device: Any, dtype: Any) -> Any:
    """A function moving arrays of ``src_xp`` on ``src_device`` to ``device`` of ``xp`` as ``dtype``.

    Within one library the move is direct; between libraries it goes through
    the host. The result never shares memory with its source.
    """

    def move(a: Any) -> Any:
        if a is None:
            return None
        if src_xp is xp and a.dtype != dtype:  # cast where a is: the target device may lack its dtype
            with on_device(src_device):
                a = xp.astype(a, dtype)
            return array_api_compat.to_device(a, device)
        if src_xp is xp:
            return xp.astype(array_api_compat.to_device(a, device), dtype, copy=True)
        return from_host(to_numpy(a), xp=xp, device=device, dtype=dtype, copy=True)

    return move


def describe(x: Any) -> str:
    """What ``x`` is, for messages: ``"an array of numpy on device 'cpu' (float32, shape (4, 5))"``."""
    if not array_api_compat.is_array_api_obj(x):
        return f"{type(x).__name__} {x!r}"[:200]
    try:
        where = array_api_compat.device(x)
    except Exception:
        where = "?"
    xp = array_api_compat.array_namespace(x)
    what = f"{_checks.dtype_name(x.dtype)}, shape {tuple(x.shape)}"
    return f"an array of {namespace_name(xp)} on device {where!r} ({what})"


def _host_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        msg = f"`{name}` must be a rectangular array of real numbers, got {type(x).__name__}: {exc}"
        raise ValueError(msg) from None
    if arr.dtype.kind not in "iuf":
        msg = f"`{name}` must hold real numbers, got dtype {arr.dtype} ({type(x).__name__})"
        raise TypeError(msg)
    return arr


def as_dataset(x: Any, *, name: str, xp: Any, device: Any, check_finite: bool = False) -> Any:
    """Keep an array of ``xp`` on ``device`` as it is; anything else becomes a host NumPy array.

    Training data stays where the user put it: host data is moved to the
    device batch by batch (:func:`rows`), so it may be larger than device memory.
    With ``check_finite``, floating data holding NaN or infinity raises a
    ValueError naming ``name`` (one reduction, and one transfer of a flag).
    """
    on_host = isinstance(x, (np.ndarray, np.generic)) or not array_api_compat.is_array_api_obj(x)
    if on_host and not array_api_compat.is_numpy_namespace(xp):
        data = _host_array(x, name)
    else:
        data = as_input(x, name=name, xp=xp, device=device)
    if check_finite:
        _check_finite(data, name)
    return data


def _check_finite(data: Any, name: str) -> None:
    count, first = count_nonfinite(data)
    if count:
        raise nonfinite_error(name, count, first)


def count_nonfinite(data: Any) -> tuple[int, tuple[int, ...] | None]:
    """``(NaN or infinite values in data, index of the first in row-major order, or None)``.

    One reduction where ``data`` lives; it comes to the host only when it
    holds a bad value, to find the first.
    """
    if isinstance(data, np.ndarray):
        if data.dtype.kind != "f" or np.isfinite(data).all():
            return 0, None
        bad = ~np.isfinite(data)
    else:
        xp = array_api_compat.array_namespace(data)
        if not xp.isdtype(data.dtype, "real floating") or bool(xp.all(xp.isfinite(data))):
            return 0, None
        bad = ~np.isfinite(to_numpy(data))
    return int(bad.sum()), tuple(int(i) for i in np.argwhere(bad)[0])


def nonfinite_error(name: str, count: int, first: tuple[int, ...] | None) -> ValueError:
    """The error of ``fit(check_finite=True)`` for ``count`` bad values of the argument ``name``."""
    msg = (
        f"`{name}` must hold finite numbers, got {count} NaN or infinite value(s), the first at "
        f"index {first}; clean the data, or pass check_finite=False to skip this check"
    )
    return ValueError(msg)


def rows(data: Any, index: Any, *, xp: Any, device: Any) -> Any:
    """``data[index]`` for a slice or a host integer index array, wherever ``data`` lives.

    A host batch for another library's device comes back in a dtype that
    device holds (float64 data becomes the device's default float where it has
    no float64, int64 labels its default integer where it has no int64). An
    index array goes to the device in the namespace's index dtype there.
    """
    if isinstance(data, np.ndarray):
        batch = data[index]
        return batch if xp is _NUMPY_XP else _host_dtype_for(batch, xp=xp, device=device)
    if isinstance(index, slice):  # the array API leaves out-of-bounds stops unspecified
        return data[index.start : min(index.stop, data.shape[0]), ...]
    indexing = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    return xp.take(data, from_host(index, xp=xp, device=device, dtype=indexing), axis=0)


_HOLDS: dict[tuple[Any, ...], bool] = {}


def _host_dtype_for(batch: np.ndarray, *, xp: Any, device: Any) -> np.ndarray:
    """``batch``, cast on the host to the device's default dtype of its kind if the device lacks its own."""
    kind = {"f": "real floating", "i": "integral", "u": "integral"}.get(batch.dtype.kind)
    if kind is None:
        return batch
    info = xp.__array_namespace_info__()
    default = _checks.dtype_name(info.default_dtypes(device=device)[kind])
    if batch.dtype.name == default:
        return batch
    key = (id(xp), repr(device), batch.dtype.name, default)  # the default follows JAX's x64 switch
    holds = _HOLDS.get(key)
    if holds is None:
        holds = _HOLDS[key] = batch.dtype.name in info.dtypes(device=device, kind=kind)
    return batch if holds else batch.astype(default)


def as_input(x: Any, *, name: str, xp: Any, device: Any, dtype: Any = None) -> Any:
    """``x`` as an array of ``xp`` on ``device`` with ``dtype``, moving host data there.

    ``dtype=None`` keeps the (real or integer) dtype of ``x``, or for host
    data one the device holds (see :func:`rows`).

    Host data (NumPy arrays, nested lists, scalars) is moved to the device.
    Arrays of another library, or on another device, are refused with a
    ValueError that names both devices. A torch tensor that requires grad is
    detached: nothing computed from it joins an autograd graph. Bool, complex, string and object data
    raise TypeError.
    """
    if type(x) is _NATIVE.get(id(xp)) and x.dtype == dtype and (xp is _NUMPY_XP or x.device == device):
        return x  # the hot path: already an array of the layer, in its dtype, on its device
    host = isinstance(x, (np.ndarray, np.generic)) and not array_api_compat.is_numpy_namespace(xp)
    if array_api_compat.is_array_api_obj(x) and not host:
        if array_api_compat.is_torch_array(x) and x.requires_grad:
            x = x.detach()  # parameters must never join an autograd graph
        if array_api_compat.array_namespace(x) is not xp or (
            array_api_compat.device(x) != device and not is_traced(x)
        ):
            msg = (
                f"`{name}` is {describe(x)}, but the layer lives on device {device!r} "
                f"of {namespace_name(xp)}; pass host data or dense_xp.to_numpy({name}), "
                f"or move the layer with .to(...)"
            )
            raise ValueError(msg)
        if not xp.isdtype(x.dtype, ("integral", "real floating")):
            msg = f"`{name}` must hold real numbers, got dtype {x.dtype}"
            raise TypeError(msg)
        return x if dtype is None or x.dtype == dtype else xp.astype(x, dtype)
    x = _host_array(x, name)
    if dtype is None and xp is not _NUMPY_XP:  # in a dtype the device holds
        x = _host_dtype_for(x, xp=xp, device=device)
    return from_host(x, xp=xp, device=device, dtype=dtype)


def float_errors_ignored() -> contextlib.AbstractContextManager[Any]:
    """Silence overflow, invalid and divide-by-zero warnings of NumPy (and the libraries built on it, such as
    array-api-strict) where the caller checks for non-finite values itself."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def device_batches(arrays: tuple[Any, ...], batches: Iterable[Any], *, xp: Any, device: Any) -> Iterator[Any]:
    """Yield, for each index of ``batches``, the rows :func:`rows` gives of every array in ``arrays``.

    On CuPy, host (NumPy) arrays are gathered into pinned memory and copied to
    the device on a side stream, so that the copy of batch ``k + 1`` overlaps
    the compute of batch ``k``; arrays already on the device are indexed there.
    Elsewhere the rows are what :func:`rows` returns (host rows move to the
    device in the layer, as before).
    """
    if not array_api_compat.is_cupy_namespace(xp) or not any(isinstance(a, np.ndarray) for a in arrays):
        for index in batches:
            with on_device(device):
                batch = tuple(rows(a, index, xp=xp, device=device) for a in arrays)
            yield batch  # outside the block: the consumer's current device is its own
        return
    cupy = _cuda._cupy()[0]
    with on_device(device):  # streams belong to a device
        compute, side = cupy.cuda.get_current_stream(), cupy.cuda.Stream(non_blocking=True)

    def stage(index: Any) -> tuple[tuple[Any, ...], Any, list[np.ndarray]]:
        out, pinned = [], []
        with on_device(device):
            # The side stream first waits for the compute queued so far: the buffers allocated
            # below (on the compute stream) may reuse memory that queued kernels still read.
            side.wait_event(compute.record())
            for a in arrays:
                if not isinstance(a, np.ndarray):
                    out.append(rows(a, index, xp=xp, device=device))
                    continue
                part = a[index]
                host = np.frombuffer(cupy.cuda.alloc_pinned_memory(part.nbytes), part.dtype, part.size)
                host = host.reshape(part.shape)
                host[...] = part
                target = cupy.empty(part.shape, dtype=part.dtype)
                target.set(host, stream=side)  # asynchronous: the source is pinned
                out.append(target)
                pinned.append(host)
            return tuple(out), side.record(), pinned

    pending = None
    for index in batches:
        staged = stage(index)  # the copy of this batch is queued before the previous batch is computed
        if pending is not None:
            yield from _handed_over(pending, compute)
        pending = staged
    if pending is not None:
        yield from _handed_over(pending, compute)


def _handed_over(staged: tuple[tuple[Any, ...], Any, list[np.ndarray]], compute: Any) -> Iterator[Any]:
    batch, copied, pinned = staged
    compute.wait_event(copied)  # the compute stream waits for the copy; the host does not
    yield batch
    copied.synchronize()  # long done by now: only then may the pinned buffers go back to the pool
    pinned.clear()
