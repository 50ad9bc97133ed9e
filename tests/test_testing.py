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


# -- a checker that cannot pass a broken layer --------------------------------------------------
class _OffByOnePercent(DenseLayer):
    """A dense layer whose ``wrong`` gradient (``"W"``, ``"b"`` or ``"d_input"``) is 1 % too large."""

    def __init__(self, *args, wrong=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.wrong = wrong

    def backprop(self, d_out, *, input_grad=True):
        d_input = super().backprop(d_out, input_grad=input_grad)
        if self.wrong == "d_input":
            return d_input * 1.01
        if self.wrong is not None:
            self.grads[self.wrong] = self.grads[self.wrong] * 1.01
        return d_input


@pytest.mark.parametrize("shape", [(4, 3), (30, 20)], ids=["elementwise", "directions"])
@pytest.mark.parametrize("wrong", ["W", "b", "d_input"])
def test_a_one_percent_error_fails_on_every_device(backend, shape, wrong):
    """float32-only devices too (array-api-strict no_float64, JAX without x64): a 1 % error is caught."""
    xp, device = backend
    X = np.random.default_rng(3).normal(size=(8, shape[0]))
    kwargs = {"seed": 5, "init": "glorot_normal", "device": device, "xp": xp}
    assert max(check_gradients(_OffByOnePercent(*shape, "tanh", **kwargs), X).values()) < 1e-3
    with pytest.raises(AssertionError, match=rf"gradient '{wrong}' does not match central differences"):
        check_gradients(_OffByOnePercent(*shape, "tanh", wrong=wrong, **kwargs), X)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_backward_fails(backend, bad):
    xp, device = backend
    register_activation("test_cube_bad", _cube, lambda g, z, *, xp: g * bad)
    try:
        layer = DenseLayer(4, 5, "test_cube_bad", seed=0, device=device, xp=xp)
        with pytest.raises(AssertionError, match=r"is NaN or infinite .*\(analytic\)"):
            check_gradients(layer, np.random.default_rng(0).normal(size=(3, 4)))
    finally:
        ACTIVATIONS.pop("test_cube_bad")


def test_a_non_finite_numeric_gradient_fails():
    register_activation("test_blowup", lambda z, *, xp: 1.0 / z, lambda g, z, *, xp: -g / (z * z))
    try:
        layer = DenseLayer(1, 1, "test_blowup", seed=0, use_bias=False)
        layer.W = np.zeros((1, 1))  # z = 0: the output is infinite, its differences NaN
        with pytest.raises(AssertionError, match=r"is NaN or infinite"):
            check_gradients(layer, np.ones((1, 1)))
    finally:
        ACTIVATIONS.pop("test_blowup")


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [({"rtol": -1e-3}, ValueError), ({"atol": float("nan")}, ValueError), ({"rtol": "1e-3"}, TypeError),
     ({"atol": True}, TypeError), ({"rtol": float("inf")}, ValueError)],
)  # fmt: skip
def test_tolerances_must_be_finite_and_non_negative(kwargs, exc):
    name = next(iter(kwargs))
    with pytest.raises(exc, match=rf"`{name}` must be a finite number >= 0 or None"):
        check_gradients(DenseLayer(3, 2, seed=0), np.ones((2, 3)), **kwargs)


def test_a_backward_twice_too_large_fails_with_any_valid_tolerance():
    register_activation("test_double", _cube, lambda g, z, *, xp: g * (6.0 * z * z))
    try:
        layer = DenseLayer(3, 2, "test_double", seed=0, init="he_normal")
        with pytest.raises(AssertionError):
            check_gradients(layer, np.random.default_rng(0).normal(size=(4, 3)), rtol=0.5, atol=0.0)
    finally:
        ACTIVATIONS.pop("test_double")


def test_the_layers_own_functions_are_checked_not_the_registry(cubes):
    """Registering a name again changes new layers only: the check follows the layer it is given."""
    X = np.random.default_rng(0).normal(size=(5, 4))
    register_activation("test_cube_again", _cube, _cube_backward_wrong)
    try:
        wrong = DenseLayer(4, 3, "test_cube_again", seed=1, init="he_normal")
        register_activation("test_cube_again", _cube, _cube_backward)  # the name now has the right pair
        with pytest.raises(AssertionError, match=r"does not match central differences"):
            check_gradients(wrong, X)  # the layer still runs the wrong backward
        right = DenseLayer(4, 3, "test_cube_again", seed=1, init="he_normal")
        register_activation("test_cube_again", _cube, _cube_backward_wrong)
        check_gradients(right, X)
    finally:
        ACTIVATIONS.pop("test_cube_again")
