"""Argument checks: every spelling of a dtype, and dtypes a device cannot hold refused."""

from __future__ import annotations

import numpy as np
import pytest

from dense_xp import DenseLayer
from dense_xp._checks import dtype_name, resolve_dtype
from tests.helpers import wide


def _spellings():
    """``(spelling, name)`` pairs NumPy, CuPy, torch and JAX users write, for the libraries installed."""
    pairs = [
        ("float32", "float32"),
        ("f4", "float32"),
        ("<f4", "float32"),
        ("single", "float32"),
        ("FLOAT64", "float64"),
        ("double", "float64"),
        ("f8", "float64"),
        ("float", "float64"),
        ("half", "float16"),
        (float, "float64"),
        (np.float32, "float32"),  # also cupy.float32
        (np.float64, "float64"),
        (np.float16, "float16"),
        (np.dtype("float32"), "float32"),
        (np.dtype(">f8"), "float64"),
    ]
    try:
        import torch

        pairs += [(torch.float32, "float32"), (torch.float, "float32"), (torch.double, "float64")]
        pairs += [(torch.half, "float16")]
    except ImportError:
        pass
    try:
        import jax.numpy as jnp

        pairs += [(jnp.float32, "float32"), (jnp.dtype("float16"), "float16")]
    except ImportError:
        pass
    try:
        import array_api_strict as strict

        pairs += [(strict.float32, "float32"), (strict.float64, "float64")]
    except ImportError:
        pass
    return pairs


@pytest.mark.parametrize(("spelling", "name"), _spellings(), ids=repr)
def test_dtype_name_reads_every_spelling(spelling, name):
    assert dtype_name(spelling) == name


@pytest.mark.parametrize("spelling", ["float32", np.float32, np.dtype("float32"), "f4"])
def test_every_spelling_gives_the_namespace_dtype(backend, spelling):
    xp, device = backend
    layer = DenseLayer(3, 2, dtype=spelling, device=device, xp=xp)
    assert layer.dtype == xp.float32
    assert resolve_dtype(spelling, xp=xp, device=device) == xp.float32


def test_library_dtype_objects_of_other_libraries_are_read_by_name(backend):
    torch = pytest.importorskip("torch")
    xp, device = backend
    assert DenseLayer(3, 2, dtype=torch.float32, device=device, xp=xp).dtype == xp.float32
    dtype = wide(xp, device)
    assert DenseLayer(3, 2, dtype=getattr(torch, dtype), device=device, xp=xp).dtype == getattr(xp, dtype)


@pytest.mark.parametrize(
    "bad", ["int32", np.int32, "bfloat16", "complex64", np.complex128, object(), 3, "float32'>"], ids=repr
)
def test_other_dtypes_are_refused_showing_the_value(bad):
    with pytest.raises(ValueError, match=r"`dtype` must be one of float16, float32, float64") as info:
        DenseLayer(3, 2, dtype=bad)
    assert repr(bad) in str(info.value)


def test_a_dtype_the_device_lacks_is_refused_never_downcast(backend):
    """JAX without x64 and strict's no_float64 device have no float64: a ValueError, not a float32 layer."""
    xp, device = backend
    if wide(xp, device) == "float64":
        assert DenseLayer(3, 2, dtype="float64", device=device, xp=xp).dtype == xp.float64
        return
    with pytest.raises(ValueError, match=r"`dtype` float64 is not supported on device .*it has .*float32"):
        DenseLayer(3, 2, dtype="float64", device=device, xp=xp)  # warnings are errors: JAX's would fail
    assert DenseLayer(3, 2, device=device, xp=xp).dtype == xp.float32  # the device's default


def test_jax_without_x64_refuses_float64_and_says_how_to_enable_it():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match=r"float64 is not supported .*jax_enable_x64"):
            DenseLayer(4, 3, dtype="float64", xp=jnp)
        with pytest.raises(ValueError, match=r"float64 is not supported"):
            DenseLayer(4, 3, dtype=np.float64, xp=jnp, device=jax.devices("cpu")[0])
    finally:
        jax.config.update("jax_enable_x64", before)


def test_float16_where_the_namespace_has_none_names_the_namespace():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match=r"`dtype` float16 is not supported by this array namespace"):
        DenseLayer(3, 2, dtype="float16", xp=strict, device=strict.Device("CPU_DEVICE"))


def test_dtype_name_is_remembered_per_spelling_not_confused_between_them():
    for _ in range(2):  # the second round answers from the cache
        assert dtype_name(np.dtype("float32")) == "float32"
        assert dtype_name("f4") == "float32"
        assert dtype_name(np.float64) == "float64"
        assert dtype_name(np.dtype(">f8")) == "float64"
        assert dtype_name("half") == "float16"
        assert dtype_name(float) == "float64"
        assert dtype_name(["not", "hashable"]) == "['not', 'hashable']"
