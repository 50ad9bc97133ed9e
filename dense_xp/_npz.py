"""The ``.npz`` format without NumPy: zip directory, ``.npy`` headers and raw member bytes.

Pure Python (zipfile, ast, zlib): this module never imports an array
library, so a file is checked (directory sizes, header, data length, CRC)
before anything but a plain ``bytearray`` is allocated for it.
:func:`dense_xp._backend.host_array` then views what :meth:`NpzReader.read`
returns as a NumPy array, without copying.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import math
import os
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

__all__ = ["NPY_HEADER_MAX", "NpyData", "NpyHeader", "NpzError", "NpzReader", "descr_info", "npy_header"]

NPY_HEADER_MAX = 4096  # bytes before an .npy member's data: magic, version, length, header dict
_NPY_DESCR = re.compile(r"([<>|=]?)(?:([biufcSUV])(\d{1,6})|O)")  # plain dtypes only, as numpy writes them
_LONG_DOUBLE = ctypes.sizeof(ctypes.c_longdouble)  # numpy's longdouble is the C long double
_SIZES = {
    "b": {1},
    "i": {1, 2, 4, 8},
    "u": {1, 2, 4, 8},
    "f": {2, 4, 8, _LONG_DOUBLE},
    "c": {8, 16, 2 * _LONG_DOUBLE},
}
_NATIVE = "<" if sys.byteorder == "little" else ">"
_NPZ_CHUNK = 2**20
_NPZ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, KeyError, NotImplementedError, RuntimeError)
_NPZ_ERRORS += (ValueError, OverflowError, zipfile.BadZipFile, zlib.error, struct.error)


class NpzError(ValueError):
    """An ``.npz`` member refused, or the archive damaged; the message reads after "cannot load ...: "."""


class NpyHeader(NamedTuple):
    """What an ``.npy`` header states: ``descr`` as numpy spells it (``dtype.str``), its itemsize."""

    shape: tuple[int, ...]
    descr: str
    fortran: bool
    offset: int  # of the data, from the start of the member
    itemsize: int


class NpyData(NamedTuple):
    """The raw data of one ``.npy`` member: ``prod(shape) * itemsize`` bytes in ``fortran`` or C order."""

    data: bytearray
    descr: str
    shape: tuple[int, ...]
    fortran: bool


def descr_info(descr: str) -> tuple[str, int] | None:
    """``descr`` spelled as numpy does (``np.dtype(descr).str``) and its itemsize; ``None`` if no such dtype.

    ``descr`` must match the plain dtypes numpy writes (not ``O``): ``b``,
    ``i``, ``u``, ``f``, ``c`` N take N bytes, ``S`` and ``V`` N take N, ``U``
    N takes 4N.
    """
    found = _NPY_DESCR.fullmatch(descr)
    if found is None or found[2] is None:
        return None
    order, kind, size = found[1], found[2], int(found[3])
    if kind in _SIZES and size not in _SIZES[kind]:
        return None
    itemsize = 4 * size if kind == "U" else size
    if kind in "SV" or (kind in _SIZES and size == 1):
        order = "|"
    elif order not in ("<", ">"):  # "", "=" and "|" mean native
        order = _NATIVE
    return f"{order}{kind}{size}", itemsize


@contextlib.contextmanager
def _npz_errors() -> Iterator[None]:
    """Anything a damaged zip makes the readers raise, as an NpzError."""
    try:
        yield
    except NpzError:
        raise
    except _NPZ_ERRORS as exc:
        msg = f"it is truncated or damaged ({type(exc).__name__}: {exc})"
        raise NpzError(msg) from None


def npy_header(fp: Any, member: str) -> NpyHeader:
    """The header of the ``.npy`` stream ``fp`` (reads the header only); refuses object arrays."""
    magic = fp.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
        msg = f"member {member!r} is not a .npy array (it starts with {magic[:8]!r})"
        raise NpzError(msg)
    if magic[6] not in (1, 2, 3):
        msg = f"member {member!r} has .npy format version {magic[6]}.{magic[7]}, not 1, 2 or 3"
        raise NpzError(msg)
    width = 2 if magic[6] == 1 else 4
    length = int.from_bytes(fp.read(width), "little")
    if 8 + width + length > NPY_HEADER_MAX:
        msg = f"member {member!r} claims a header of {length} bytes; a .npy header has at most"
        raise NpzError(f"{msg} {NPY_HEADER_MAX}")
    text = fp.read(length)
    bad = f"member {member!r} has an invalid .npy header {text[:200]!r}"
    try:
        header = ast.literal_eval(text.decode("utf-8" if magic[6] == 3 else "latin1"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise NpzError(bad) from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpzError(f"{bad}: it needs exactly the keys 'descr', 'fortran_order' and 'shape'")
    shape, fortran, descr = header["shape"], header["fortran_order"], header["descr"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise NpzError(f"{bad}: its shape must be a tuple of integers >= 0")
    if not isinstance(fortran, bool) or not isinstance(descr, str) or not _NPY_DESCR.fullmatch(descr):
        raise NpzError(f"{bad}: fortran_order must be a bool and descr a plain dtype")
    if descr.lstrip("<>|=") == "O":
        msg = (
            f"member {member!r} holds a pickled object array; checkpoints never load Python objects (pickle)"
        )
        raise NpzError(msg)
    info = descr_info(descr)
    if info is None:
        raise NpzError(f"{bad}: unknown dtype {descr!r}")
    return NpyHeader(shape, info[0], fortran, 8 + width + length, info[1])


class NpzReader:
    """The members of an open ``.npz``, each read only once its ``.npy`` header has been accepted.

    Opening reads only the zip directory: ``sizes`` maps each member's name
    to the uncompressed size the directory states (a member never yields
    more). No member is decompressed until :meth:`read` asks for it.
    """

    def __init__(self, file: Any) -> None:
        with _npz_errors():
            total = file.seek(0, os.SEEK_END)
            file.seek(0)
            self._zip = zipfile.ZipFile(file)
            infos = self._zip.infolist()
        self.sizes: dict[str, int] = {}
        for info in infos:
            if info.filename in self.sizes:
                raise NpzError(f"it lists member {info.filename!r} twice")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                msg = f"member {info.filename!r} uses zip compression method {info.compress_type}; only"
                raise NpzError(f"{msg} stored (0) and deflated (8) members are read")
            if info.header_offset + info.compress_size > total:
                msg = f"member {info.filename!r} claims {info.compress_size} bytes from offset"
                raise NpzError(f"{msg} {info.header_offset}, past the end of the {total}-byte file")
            self.sizes[info.filename] = info.file_size

    def read(self, member: str, accept: Callable[[tuple[int, ...], str], None]) -> NpyData:
        """The raw data of ``member``, read only after ``accept(shape, descr)`` returns.

        Only the header is read before ``accept``, and what ``accept`` raises
        reaches the caller unchanged. Then header and data must fill the
        member exactly, and the data is read in 1 MiB steps into one new
        ``bytearray``, the zip's CRC checked at its end. Any other problem
        raises :class:`NpzError`.
        """
        size = self.sizes[member]
        with _npz_errors():
            fp = self._zip.open(member)
        with fp:
            with _npz_errors():
                shape, descr, fortran, offset, itemsize = npy_header(fp, member)
            accept(shape, descr)  # what it raises goes to the caller as it is
            nbytes = math.prod(shape) * itemsize
            if offset + nbytes != size:
                msg = f"member {member!r} holds {size} bytes; its header ({shape} {descr}) says"
                raise NpzError(f"{msg} {offset + nbytes}")
            data = bytearray(nbytes)
            done = 0
            with _npz_errors(), memoryview(data) as view:
                while done < nbytes:
                    chunk = fp.read(min(_NPZ_CHUNK, nbytes - done))
                    if not chunk:
                        raise NpzError(f"member {member!r} ends after {offset + done} of its {size} bytes")
                    view[done : done + len(chunk)] = chunk
                    done += len(chunk)
                fp.read(1)  # at the end: the CRC check
        return NpyData(data, descr, shape, fortran)
