"""Activations: accurate in every dtype, NaN the same on every backend and path, and activations of
one's own by name."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_xp
from dense_xp import DenseLayer, _backend, _checks
from dense_xp.activations import (
    ACTIVATIONS,
    BUILTIN_ACTIVATIONS,
    NARROW_DTYPES,
    Backward,
    get_activation,
    register_activation,
)
from tests import activation_reference as R
from tests.helpers import host, on, tol, wide

NAMES = sorted(BUILTIN_ACTIVATIONS)
# finite values of both signs, zeros, and NaN, with g's NaNs elsewhere than z's
Z = np.array([[-3.0, -0.5, 0.0, np.nan, 0.7, 4.0], [np.nan, 2.0, -1e-3, 1.5, -2.5, 0.0]])
G = np.array([[0.5, np.nan, -1.0, 2.0, 1.0, -0.3], [1.0, 0.25, np.nan, -2.0, 0.5, 1.5]])


def _generic(act, xp, device):
    """Forward and backward of the array API code on ``device``, as host float64 arrays."""
    z = on(xp, device, Z)
    y = act.forward(z, xp=xp)
    dz = act.backward(on(xp, device, G), z if act.saves == "input" else y, xp=xp)
    return host(y), host(dz)


@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates_forward_and_backward(backend, name):
    """relu of NaN is NaN (not 0), and g * act'(z) is NaN wherever z or g is: on every backend."""
    xp, device = backend
    with _backend.float_errors_ignored(), _backend.on_device(device):  # CuPy: the current device
        y, dz = _generic(ACTIVATIONS[name], xp, device)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(Z))
    constant = ACTIVATIONS[name].saves == "nothing"  # linear' is 1 everywhere
    np.testing.assert_array_equal(np.isnan(dz), np.isnan(G) | (False if constant else np.isnan(Z)))


@pytest.mark.parametrize("name", NAMES)
def test_generic_and_numpy_fused_paths_agree_on_nan(backend, name):
    xp, device = backend
    act = ACTIVATIONS[name]
    dtype = wide(xp, device)
    with _backend.float_errors_ignored():
        with _backend.on_device(device):  # CuPy computes on the current device
            y, dz = _generic(act, xp, device)
        ops = _backend.fused_ops(dense_xp.resolve_device("cpu")[0])
        z = Z.astype(dtype)
        fused = ops.forward(z.copy(), None, name)
        if fused is None:  # not fused on NumPy: its generic path is the reference
            return
        _, y_fused = fused
        dz_fused = ops.backward(G.astype(dtype), z if act.saves == "input" else y_fused, name)
    t = tol(getattr(np, dtype), np, 64)
    np.testing.assert_allclose(y_fused, y, rtol=t, atol=t)  # NaN where the other has NaN
    if dz_fused is not None:
        np.testing.assert_allclose(dz_fused, dz, rtol=t, atol=t)


def test_a_nan_in_the_data_reaches_the_output_of_a_relu_layer(backend):
    xp, device = backend
    layer = DenseLayer(2, 3, "relu", seed=0, init="he_normal", device=device, xp=xp)
    y = host(layer.forward([[np.nan, 1.0], [1.0, -1.0]]))
    assert np.isnan(y[0]).all()
    assert np.isfinite(y[1]).all()
    d_in = host(layer.backward(np.ones((2, 3)), lr=None))
    assert np.isnan(d_in[0]).all()
    assert np.isnan(host(layer.grads["W"])).any()


def _cube(z, *, xp):
    return z * z * z


def _cube_backward(g, z, *, xp):
    return g * (3.0 * z * z)


@pytest.fixture
def cube():
    act = register_activation("test_cube", _cube, _cube_backward, saves="input")
    yield act
    ACTIVATIONS.pop("test_cube")


def test_registered_activation_works_by_name(backend, cube):
    xp, device = backend
    assert get_activation("test_cube") is cube
    layer = DenseLayer(3, 2, "test_cube", seed=1, init="he_normal", device=device, xp=xp)
    X = np.array([[1.0, -2.0, 0.5]])
    expected = (X @ host(layer.W)) ** 3
    np.testing.assert_allclose(host(layer.forward(X)), expected, rtol=tol(layer.dtype, xp))
    d_in = host(layer.backward(np.ones((1, 2)), lr=None))
    W = host(layer.W)
    np.testing.assert_allclose(d_in, (3 * (X @ W) ** 2) @ W.T, rtol=tol(layer.dtype, xp, 256))
    assert layer.get_config()["activation"] == "test_cube"


def test_registered_activation_on_the_fused_backends_takes_the_generic_path(fused_backend, cube):
    xp, device = fused_backend
    layer = DenseLayer(3, 2, "test_cube", seed=1, device=device, xp=xp)
    assert layer._fused.forward(xp.ones((1, 2), device=device), None, "test_cube") is None
    assert (
        layer._fused.backward(xp.ones((1, 2), device=device), xp.ones((1, 2), device=device), "test_cube")
        is None
    )


def test_register_saves_output():
    def double(z, *, xp):
        return 2.0 * z

    def double_backward(g, y, *, xp):
        return 2.0 * g

    register_activation("test_double", double, double_backward, saves="output")
    try:
        layer = DenseLayer(2, 2, "test_double", seed=0)
        np.testing.assert_allclose(
            host(layer.forward([[1.0, 2.0]])), 2 * np.array([[1.0, 2.0]]) @ host(layer.W)
        )
        assert layer._cache[1] is not None
    finally:
        ACTIVATIONS.pop("test_double")


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (
            ("relu", _cube, _cube_backward),
            {},
            ValueError,
            r"`name` must be a new.*not a built-in.*got 'relu'",
        ),
        (("linear", _cube, _cube_backward), {}, ValueError, r"not a built-in activation.*got 'linear'"),
        (("", _cube, _cube_backward), {}, ValueError, r"`name` must be a new, non-empty name.*got ''"),
        ((None, _cube, _cube_backward), {}, TypeError, r"`name` must be a string, got NoneType None"),
        (("mine", "cube", _cube_backward), {}, TypeError, r"`forward` must be callable, got str 'cube'"),
        (("mine", _cube, None), {}, TypeError, r"`backward` must be callable, got NoneType"),
        (("mine", _cube, _cube_backward), {"saves": "z"}, ValueError, r"`saves` must be 'input' or 'output'"),
    ],
)
def test_register_rejects_and_changes_nothing(args, kwargs, exc, match):
    before = dict(ACTIVATIONS)
    with pytest.raises(exc, match=match):
        register_activation(*args, **kwargs)
    assert before == ACTIVATIONS


def test_unknown_name_says_how_to_register():
    with pytest.raises(
        ValueError, match=r"'swish': it is not registered.*register_activation\('swish', forward, backward\)"
    ):
        DenseLayer(2, 2, "swish")


def test_register_is_exported():
    assert dense_xp.register_activation is register_activation
    assert "register_activation" in dense_xp.__all__


# -- accuracy: every activation and derivative, in every dtype, on every backend ----------------------------
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _need(xp, device, dtype):
    """Skip where ``dtype`` is not on ``device`` (refusals are tested in test_mixed_precision.py)."""
    names = _checks.device_float_names(xp=xp, device=device, names=("bfloat16", *_checks._FLOAT_NAMES))
    if dtype not in names:
        pytest.skip(f"{_backend.namespace_name(xp)} has no {dtype} on {device!r}")
    if dtype == "float64" and not R.EXTENDED:
        pytest.skip("long double is float64 here: no reference exact enough for float64")


def _grid(xp, device, dtype):
    return xp.asarray(R.grid(dtype), dtype=getattr(xp, dtype), device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", R.NAMES)
def test_forward_and_derivative_in_z_within_a_few_ulps(backend, name, dtype):
    """forward(z) and g * act'(z) from z (backward_from_input, or backward where it takes z) at every
    test point of [-1e4, 1e4]: within 1 ulp in float16/bfloat16, a few in float32/float64."""
    xp, device = backend
    _need(xp, device, dtype)
    act = ACTIVATIONS[name]
    derivative = act.backward_from_input or act.backward
    with _backend.float_errors_ignored(), _backend.on_device(device):
        z = _grid(xp, device, dtype)
        y = act.forward(z, xp=xp)
        dz = derivative(xp.ones_like(z), z, xp=xp)
        flushes = R.flushes_subnormals(xp, device)
    assert y.dtype == dz.dtype == z.dtype
    R.check(host(y), name, dtype, 0, flushes=flushes)
    R.check(host(dz), name, dtype, 1, flushes=flushes)


def _unit_layer(xp, device, name, dtype):
    """A 1 -> 1 layer with W = 1 and b = 0: its output is act(z) and its d_input act'(z) * g, exactly."""
    dtypes = (
        {"dtype": dtype}
        if dtype in ("float32", "float64")
        else {"param_dtype": "float32", "compute_dtype": dtype}
    )
    layer = DenseLayer(1, 1, name, init="zeros", device=device, xp=xp, **dtypes)
    with _backend.on_device(layer.device):
        layer.W = layer.W + 1.0
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", R.NAMES)
def test_a_layer_forward_and_backward_within_a_few_ulps(backend, name, dtype):
    """Through DenseLayer (fused paths included): the output within the bounds above; d_input within
    them where the layer caches z (float16, bfloat16, and gelu/silu), and where it caches the output
    (float32/float64) within a few ulps of the exact derivative at that output."""
    xp, device = backend
    _need(xp, device, dtype)
    layer = _unit_layer(xp, device, name, dtype)
    z = R.grid(dtype)
    with _backend.float_errors_ignored():
        y = layer.forward(z[:, None])
        d_input = host(layer.backward(np.ones((z.size, 1)), lr=None))[:, 0]
    assert y.dtype == layer.compute_dtype
    y = host(y)[:, 0]
    with _backend.on_device(device):
        flushes = R.flushes_subnormals(xp, device)
    R.check(y, name, dtype, 0, flushes=flushes, what="DenseLayer ")
    plan = ACTIVATIONS[name].backward_for(dtype)
    if plan.saves != "output":
        R.check(d_input, name, dtype, 1, flushes=flushes, what="DenseLayer ")
        return
    assert dtype in ("float32", "float64")
    exact, bound = R.from_output_bound(name, y, dtype)
    R.assert_within(d_input, exact, bound, z, dtype, f"DenseLayer {name} derivative from the output")


def test_16_bit_layers_cache_z_and_wider_ones_what_they_did(backend):
    xp, device = backend
    names = _checks.device_float_names(xp=xp, device=device, names=("bfloat16", *_checks._FLOAT_NAMES))
    for dtype in names:
        for name in ("sigmoid", "tanh", "relu", "gelu"):
            layer = _unit_layer(xp, device, name, dtype)
            X = np.array([[-12.0], [0.5], [3.0]])
            y = layer.forward(X)
            saved = layer._cache[1]
            if dtype in NARROW_DTYPES or name == "gelu":
                np.testing.assert_array_equal(host(saved), X)  # z, W = 1
            else:
                assert saved is y


def test_backward_for_chooses_by_dtype():
    sigmoid = ACTIVATIONS["sigmoid"]
    for spelling in ("float16", np.float16, np.dtype("float16"), "bfloat16", "half"):
        assert sigmoid.backward_for(spelling) == Backward("input", sigmoid.backward_from_input)
    for spelling in ("float32", np.float64, np.dtype("float64")):
        assert sigmoid.backward_for(spelling) == Backward("output", sigmoid.backward)
    for name in ("gelu", "silu", "linear"):  # derivatives in z already, or none: the same in every dtype
        act = ACTIVATIONS[name]
        assert act.backward_for("float16") == act.backward_for("float64") == (act.saves, act.backward)
    for name in ("relu", "tanh", "leaky_relu", "softplus"):
        assert ACTIVATIONS[name].backward_for("float16").saves == "input"


def test_registered_activation_keeps_its_backward_unless_it_gives_one_in_z(cube):
    def halve(z, *, xp):
        return 0.5 * z

    def halve_backward(g, y, *, xp):
        return 0.5 * g

    assert cube.backward_for("float16") == ("input", _cube_backward)
    plain = register_activation("test_halve", halve, halve_backward, saves="output")
    try:
        assert plain.backward_for("float16") == ("output", halve_backward)
        both = register_activation(
            "test_halve", halve, halve_backward, saves="output", backward_from_input=halve_backward
        )
        assert both.backward_for("float16") == ("input", halve_backward)
        assert both.backward_for("float32") == ("output", halve_backward)
        layer = DenseLayer(2, 2, "test_halve", seed=0, param_dtype="float32", compute_dtype="float16")
        y = layer.forward([[1.0, 2.0]])
        assert layer._cache[1] is not y
        assert host(layer.backward(np.ones((1, 2)), lr=None)).shape == (1, 2)
    finally:
        ACTIVATIONS.pop("test_halve")


def test_register_rejects_a_backward_from_input_that_is_not_callable():
    before = dict(ACTIVATIONS)
    with pytest.raises(TypeError, match=r"`backward_from_input` must be callable, got str 'no'"):
        register_activation("mine", _cube, _cube_backward, saves="output", backward_from_input="no")
    assert before == ACTIVATIONS


@settings(max_examples=200, deadline=None)
@given(
    z=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=64),
    name=st.sampled_from(R.NAMES),
    dtype=st.sampled_from(["float16", "float32"]),
)
def test_numpy_values_anywhere_in_range_within_a_few_ulps(z, name, dtype):
    """Random z anywhere in [-1e4, 1e4] (hypothesis), rounded to the dtype, on NumPy's generic path."""
    xp = array_api_compat.numpy
    z = np.asarray(z, dtype=np.float32).astype(dtype)
    act = ACTIVATIONS[name]
    with np.errstate(all="ignore"):
        got = (act.forward(z, xp=xp), (act.backward_from_input or act.backward)(np.ones_like(z), z, xp=xp))
    z64 = z.astype(np.float64)
    for order in (0, 1):
        f, scale = R.reference_at(name, dtype, order, z64)
        bound = R.tolerance(name, dtype, order, z64, f, scale)
        R.assert_within(got[order], f, bound, z64, dtype, f"{name} order {order}")


# -- against torch's own activations and autograd ---------------------------------------------------------
def _torch_functions(torch):
    F = torch.nn.functional
    return {
        "relu": torch.relu,
        "leaky_relu": F.leaky_relu,  # slope 0.01
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "gelu": lambda z: F.gelu(z, approximate="tanh"),
        "softplus": F.softplus,
        "silu": F.silu,
    }


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("name", [n for n in R.NAMES if n != "linear"])
def test_agrees_with_torch_where_torch_is_well_conditioned(name, dtype):
    """torch.sigmoid, torch.tanh, F.silu/softplus/gelu(tanh)/leaky_relu and their autograd derivatives
    on |z| <= 1, where torch's own formulas (derivatives from a rounded output, 1 + tanh) lose little:
    the same values as the reference and as ours, to the bound plus a few ulps of torch's own."""
    torch = pytest.importorskip("torch")
    xp = array_api_compat.array_namespace(torch.zeros(1))
    act = ACTIVATIONS[name]
    z = R.grid(dtype)
    keep = np.abs(z) <= 1
    zt = torch.tensor(z[keep], dtype=getattr(torch, dtype), requires_grad=True)
    y_torch = _torch_functions(torch)[name](zt)
    y_torch.sum().backward()
    with torch.no_grad():
        ours = (
            act.forward(zt.detach(), xp=xp),
            (act.backward_from_input or act.backward)(torch.ones_like(zt), zt.detach(), xp=xp),
        )
    theirs = (y_torch, zt.grad)
    for order in (0, 1):
        f, scale = (a[keep] for a in R.reference(name, dtype, order))
        ours_bound = R.tolerance(name, dtype, order, z[keep], f, scale)
        torch_bound = ours_bound + R.FEW * R.ulp(f, dtype)  # torch rounds y before its derivative
        R.assert_within(host(theirs[order]), f, torch_bound, z[keep], dtype, f"torch {name} order {order}")
        R.assert_within(
            host(ours[order]),
            host(theirs[order]),
            ours_bound + torch_bound,
            z[keep],
            dtype,
            f"ours vs torch {name}",
        )
