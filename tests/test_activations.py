"""Activations: NaN the same on every backend and path, and activations of one's own by name."""

from __future__ import annotations

import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, _backend
from dense_xp.activations import ACTIVATIONS, BUILTIN_ACTIVATIONS, get_activation, register_activation
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
