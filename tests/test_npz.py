"""The ``.npz`` reader without NumPy: dtypes read as numpy reads them, no array library imported."""

from __future__ import annotations

import ast
import importlib.util
import io
import sys
import zipfile

import numpy as np
import pytest

from dense_xp import _backend, _npz

_PREFIXES = ("", "<", ">", "|", "=")
_SIZES = [str(n) for n in range(41)] + ["00", "04", "008", "016", "0032", "64", "128", "999", "999999"]


def _header(descr, shape=(2, 3), fortran=False):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("kind", list("biufcSUV"))
def test_descr_spelling_and_itemsize_match_numpy(kind):
    known = 0
    for descr in (prefix + kind + size for prefix in _PREFIXES for size in _SIZES):
        try:
            dtype = np.dtype(descr)
        except TypeError:
            assert _npz.descr_info(descr) is None, descr
            continue
        assert _npz.descr_info(descr) == (dtype.str, dtype.itemsize), descr
        known += 1
    assert known >= 5  # every kind has sizes numpy knows, in every byte order


@pytest.mark.parametrize("descr", ["<f3", "i16", ">c4", "b2", "u0", "f1"])
def test_descr_numpy_does_not_know_is_refused(descr):
    with pytest.raises(TypeError):
        np.dtype(descr)
    with pytest.raises(_npz.NpzError, match=rf"invalid \.npy header.*unknown dtype '{descr}'"):
        _npz.npy_header(io.BytesIO(_header(descr)), "a.npy")


@pytest.mark.parametrize("descr", ["O", "|O", "<O"])
def test_object_descr_is_refused_as_pickle(descr):
    with pytest.raises(_npz.NpzError, match=r"member 'a.npy' holds a pickled object array"):
        _npz.npy_header(io.BytesIO(_header(descr)), "a.npy")


@pytest.mark.parametrize("fortran", [False, True])
def test_read_gives_raw_bytes_that_host_array_views(fortran):
    expected = np.arange(12, dtype=">i4").reshape(3, 4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("a.npy", "w") as fp:
        np.lib.format.write_array(fp, np.asfortranarray(expected) if fortran else expected)
    seen = []
    npy = _npz.NpzReader(buf).read("a.npy", lambda shape, descr: seen.append((shape, descr)))
    assert seen == [((3, 4), ">i4")]
    assert (type(npy.data), npy.descr, npy.shape, npy.fortran) == (bytearray, ">i4", (3, 4), fortran)
    host = _backend.host_array(*npy)
    np.testing.assert_array_equal(host, expected)
    assert host.dtype == np.dtype(">i4")
    assert host.flags.writeable
    before = bytes(npy.data)
    host[0, 1] = -7  # a view, not a copy: writing it writes the buffer
    assert bytes(npy.data) != before
    assert bytes(npy.data) == (host.T if fortran else host).tobytes()


def test_npz_module_imports_no_array_library(monkeypatch):
    source = _npz.__file__
    with open(source, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r} in {source}"
            imported.add(node.module.split(".")[0])
    assert imported, "no import found: the check reads the wrong file"
    assert not imported & {"numpy", "cupy", "array_api_compat", "torch", "jax"}, sorted(imported)
    # and it runs with them unimportable
    for name in ("numpy", "cupy"):
        monkeypatch.setitem(sys.modules, name, None)
    spec = importlib.util.spec_from_file_location("_npz_without_numpy", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.descr_info("<f8") == ("<f8", 8)
