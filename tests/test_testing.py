"""dense_xp.testing: the backends present, a pytest fixture over them, and gradient checks."""

from __future__ import annotations

import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, Sequential, _gradients, register_activation, testing
from dense_xp.activations import ACTIVATIONS
from dense_xp.testing import Backend, backend_fixture, backends, check_gradients
from tests.helpers import assert_unchanged, snapshot, wide

some_backend = backend_fixture(include=["numpy", "strict-no_float64", "jax-float32"], name="some_backend")


def _cube(z, *, xp):
    return z * z * z


def _cube_backward(g, z, *, xp):
    return g * (3.0 * z * z)


def _cube_backward_wrong(g, z, *, xp):
    return g * (2.0 * z * z)  # 2 z^2 where 3 z^2 is right


@pytest.fixture
def cubes():
    register_activation("test_cube_right", _cube, _cube_backward)
    register_activation("test_cube_wrong", _cube, _cube_backward_wrong)
    yield
    ACTIVATIONS.pop("test_cube_right")
    ACTIVATIONS.pop("test_cube_wrong")


def test_backends_lists_what_is_installed_as_named_tuples():
    found = backends()
    ids = [b.id for b in found]
    assert ids[:5] == ["numpy", "strict", "strict-device1", "strict-no_float64", "strict-no_x64"]
    assert len(set(ids)) == len(ids)
    for b in found:
        assert isinstance(b, Backend)
        b = b.activate()
        layer = DenseLayer(3, 2, xp=b.xp, device=b.device)
        assert layer.forward(np.ones((1, 3))).shape == (1, 2)


def test_include_takes_ids_and_families():
    assert [b.id for b in backends(include=["numpy"])] == ["numpy"]
    assert [b.id for b in backends("strict-device1")] == ["strict-device1"]
    assert [b.id for b in backends(["strict"])] == [
        "strict",
        "strict-device1",
        "strict-no_float64",
        "strict-no_x64",
    ]
    with pytest.raises(ValueError, match=r"`include` names unknown backends \['mlx'\]"):
        backends(["numpy", "mlx"])


def test_listing_jax_leaves_its_float64_switch_as_it_was():
    jax = pytest.importorskip("jax")
    for setting in (True, False):
        jax.config.update("jax_enable_x64", setting)
        ids = [b.id for b in backends(["jax"])]
        assert ids == ["jax", "jax-float32"]
        assert jax.config.jax_enable_x64 is setting
    found = dict((b.id, b) for b in backends(["jax"]))
    assert wide(*found["jax"].activate()[1:]) == "float64"
    assert wide(*found["jax-float32"].activate()[1:]) == "float32"


def test_unknown_and_cuda_ids():
    with pytest.raises(ValueError, match=r"`backend_id` must be one of .*got 'tpu'"):
        testing.factory("tpu")
    assert testing.factory("torch-cuda:1").args == ("cuda:1",)
    assert testing.factory("cupy-cuda:2").args == ("cuda:2",)


def test_the_fixture_gives_activated_backends(some_backend):
    assert some_backend.id in ("numpy", "strict-no_float64", "jax-float32")
    layer = DenseLayer(2, 2, xp=some_backend.xp, device=some_backend.device)
    assert layer.dtype == (some_backend.xp.float64 if some_backend.id == "numpy" else some_backend.xp.float32)


def test_check_gradients_catches_a_wrong_derivative_on_every_backend(backend, cubes):
    xp, device = backend
    X = np.random.default_rng(0).normal(size=(5, 4))
    right = DenseLayer(4, 3, "test_cube_right", seed=1, init="he_normal", device=device, xp=xp)
    errors = check_gradients(right, X)
    assert set(errors) == {"d_input", "W", "b"}
    wrong = DenseLayer(4, 3, "test_cube_wrong", seed=1, init="he_normal", device=device, xp=xp)
    with pytest.raises(AssertionError, match=r"gradient '(W|b|d_input)' does not match central differences"):
        check_gradients(wrong, X)
    model = Sequential(
        [
            DenseLayer(4, 6, "test_cube_wrong", seed=2, init="he_normal", device=device, xp=xp),
            DenseLayer(6, 2, "tanh", seed=3, init="he_normal", device=device, xp=xp),
        ]
    )
    with pytest.raises(
        AssertionError, match=r"gradient '(layers\.0\.W|layers\.0\.b|d_input)' does not match"
    ):
        check_gradients(model, X)


def test_check_gradients_on_large_layers_uses_directions_and_still_catches(backend, cubes):
    xp, device = backend
    X = np.random.default_rng(1).normal(size=(20, 30)) * 0.3
    right = DenseLayer(30, 20, "test_cube_right", seed=4, init="lecun_normal", device=device, xp=xp)
    assert right.W.shape[0] * right.W.shape[1] > _gradients.MAX_ELEMENTWISE
    assert max(check_gradients(right, X).values()) < 2e-2
    wrong = DenseLayer(30, 20, "test_cube_wrong", seed=4, init="lecun_normal", device=device, xp=xp)
    with pytest.raises(AssertionError, match=r"does not match central differences"):
        check_gradients(wrong, X)


def test_check_gradients_works_in_float64_where_the_device_has_it(backend):
    xp, device = backend
    layer = DenseLayer(3, 4, "sigmoid", seed=0, init="he_normal", dtype="float32", device=device, xp=xp)
    X = np.random.default_rng(2).normal(size=(6, 3))
    errors = check_gradients(layer, X)
    if wide(xp, device) == "float64":
        assert max(errors.values()) < 1e-6  # float32 could not get this close
    else:
        assert max(errors.values()) < 2e-2


def test_check_gradients_leaves_the_model_alone(backend):
    xp, device = backend
    layer = DenseLayer(3, 2, "tanh", seed=0, device=device, xp=xp)
    layer.forward([[1.0, 2.0, 3.0]])
    layer.backward([[1.0, -1.0]], lr=None)
    before = snapshot(layer)
    check_gradients(layer, [[0.5, -1.0, 2.0], [1.0, 0.0, -1.0]], [[1.0, 2.0], [0.5, -0.5]])
    assert_unchanged(layer, before)
    assert layer.dtype == dense_xp.DenseLayer(3, 2, device=device, xp=xp).dtype


def test_check_gradients_rejects_bad_arguments():
    layer = DenseLayer(3, 2, seed=0)
    with pytest.raises(
        TypeError, match=r"`model_or_layer` must be a dense_xp layer or a Sequential, got str"
    ):
        check_gradients("layer", np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"`X` must have shape \(n, 3\) with n >= 1, got \(2, 4\)"):
        check_gradients(layer, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"`d_out` must have the output's shape \(2, 2\), got \(2, 3\)"):
        check_gradients(layer, np.ones((2, 3)), np.ones((2, 3)))


def test_tolerances_can_be_set():
    layer = DenseLayer(3, 2, "tanh", seed=0, init="he_normal")
    X = np.random.default_rng(3).normal(size=(4, 3))
    errors = check_gradients(layer, X)
    worst = max(errors.values())
    assert 0 < worst < 1e-6
    with pytest.raises(AssertionError, match=r"relative errors: d_input="):
        check_gradients(layer, X, rtol=worst / 100, atol=0.0)
