"""Library-specific array work: fused kernels, float16 products, writeability, ``.npz`` bytes, Dask splits."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from .. import _fused
from . import _cuda


def fused_ops(xp: Any) -> Any:
    """Fused hot-path kernels for ``xp`` (NumPy ufunc chains, CuPy elementwise kernels), or ``None``."""
    if array_api_compat.is_numpy_namespace(xp):
        return _NUMPY_OPS
    if array_api_compat.is_cupy_namespace(xp):
        return _cupy_ops()
    return None


_NUMPY_OPS = _fused.NumpyOps(np)


def matmul(xp: Any, dtype: Any) -> Callable[[Any, Any], Any]:
    """``a @ b`` for operands of ``xp`` in ``dtype``: NumPy float16 products go through float32 BLAS.

    NumPy has no float16 BLAS: its own float16 loop rounds the float32 sum
    of products to float16, which BLAS in float32 computes ~40x faster.
    """
    if array_api_compat.is_numpy_namespace(xp) and dtype == np.float16:
        return _half_matmul
    return operator.matmul


def _half_matmul(a: Any, b: Any) -> Any:
    return np.matmul(a, b, dtype=np.float32).astype(np.float16)


@functools.cache
def _cupy_ops() -> Any:
    return _fused.CupyOps(_cuda._cupy()[0])


# per array type, whether its arrays take in-place updates (NumPy's answer is per array: its flags)
_WRITEABLE: dict[type, bool] = {}


def writeable(x: Any) -> bool:
    """``array_api_compat.is_writeable_array(x)``, its answer kept per array type (but NumPy's).

    The answer of a type is found once: inside ``torch.compile``'s trace the
    lookup array-api-compat makes through ``sys.modules`` is traced too, and
    importing modules lazily (CuPy's ``cupyx``) changes that dictionary
    while the trace reads it.
    """
    if isinstance(x, np.ndarray):
        return bool(x.flags.writeable)
    cls = type(x)
    known = _WRITEABLE.get(cls)
    if known is None:
        known = _WRITEABLE[cls] = bool(array_api_compat.is_writeable_array(x))
    return known


# --------------------------------------------------------------------------
# Host files: .npz without pickle
# --------------------------------------------------------------------------
def write_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (host arrays, stored little-endian) to an open binary ``file``."""
    little: dict[str, Any] = {
        k: np.asarray(a, dtype=np.asarray(a).dtype.newbyteorder("<")) for k, a in arrays.items()
    }
    np.savez(file, **little)


def bytes_array(data: bytes) -> np.ndarray:
    """``data`` as a 1-D uint8 host array."""
    return np.frombuffer(bytes(data), dtype=np.uint8).copy()


def array_bytes(arr: Any) -> bytes:
    """The raw bytes of a 1-D uint8 host array."""
    return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def host_array(buffer: bytearray, descr: str, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    """The ``.npy`` data ``buffer`` (as :meth:`._npz.NpzReader.read` returns it) as a writeable host array.

    The array views ``buffer`` without copying it; ``fortran`` says the data
    is in column-major order.
    """
    dtype = np.dtype(descr)
    if not dtype.itemsize:  # S0, U0, V0: no bytes to view
        return np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    flat = np.frombuffer(buffer, dtype=dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


# --------------------------------------------------------------------------
# Host row indices for data split in blocks (Dask chunks)
# --------------------------------------------------------------------------
def split_rows(index: Any, starts: list[int]) -> list[tuple[int, Any]]:
    """Group host row numbers by the block holding them.

    ``starts`` are the first row of each block, ascending, and ``index`` is a
    1-D host integer array of rows. Returns ``(block, local rows)`` for each
    block that holds some of them, the local rows ascending.
    """
    rows = np.sort(np.asarray(index))
    cuts = np.searchsorted(rows, [*starts, np.iinfo(np.int64).max]).tolist()
    return [
        (block, rows[cuts[block] : cuts[block + 1]] - start)
        for block, start in enumerate(starts)
        if cuts[block + 1] > cuts[block]
    ]
