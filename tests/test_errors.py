"""Bad input gets a clear error naming the parameter, and changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dense_xp import DenseLayer, initializers
from tests.helpers import assert_unchanged, snapshot, wide


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input_size": 0}, ValueError, r"`input_size` must be an integer >= 1, got 0"),
        ({"input_size": -3}, ValueError, r"`input_size`.*got -3"),
        ({"output_size": 2.5}, TypeError, r"`output_size`.*got float 2.5"),
        ({"output_size": True}, TypeError, r"`output_size`.*got bool True"),
        ({"input_size": "4"}, TypeError, r"`input_size`.*got str '4'"),
        (
            {"activation": "swish"},
            ValueError,
            r"`activation` names activation 'swish': it is not registered.*built-in: 'linear', 'relu'",
        ),
        ({"activation": 3}, TypeError, r"`activation` must be a string or None, got int 3"),
        ({"seed": -1}, ValueError, r"`seed`.*got -1"),
        ({"seed": 2**32}, ValueError, r"`seed` must be None or an integer in \[0, 2\*\*32\)"),
        ({"seed": 1.5}, TypeError, r"`seed`.*got float 1.5"),
        ({"dtype": "int32"}, ValueError, r"`dtype` must be one of float16, float32, float64.*'int32'"),
        ({"init": "orthogonal"}, ValueError, r"`init` must be one of 'seed'.*got 'orthogonal'"),
        ({"use_bias": 1}, TypeError, r"`use_bias` must be True or False, got int 1"),
        ({"device": "gpu"}, ValueError, r'`device` must be "cpu", "cuda", "cuda:N" or "auto", got \'gpu\''),
        ({"device": 0}, TypeError, r"`device` must be a device string \(.*\) or a device object .*got 0"),
    ],
)
def test_constructor_rejects(kwargs, exc, match):
    args = {"input_size": 3, "output_size": 2} | kwargs
    with pytest.raises(exc, match=match):
        DenseLayer(**args)


def test_oversized_layer_is_refused_before_allocating(monkeypatch):
    def no_draw(*args):
        raise AssertionError("weights were drawn before the size was checked")

    monkeypatch.setattr(initializers, "draw", no_draw)
    with pytest.raises(
        ValueError,
        match=r"`input_size` x `output_size` = 1099511627776 x 1099511627776 weights need 8\.0 YiB "
        r"\(float64, drawn on the host\), more than ",
    ):
        DenseLayer(2**40, 2**40)


@pytest.fixture
def trained(backend):
    """A layer after one forward and backward, so the cache and grads are populated."""
    xp, device = backend
    layer = DenseLayer(3, 2, "relu", seed=0, dtype=wide(xp, device), device=device, xp=xp)
    layer.forward([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    layer.backward([[1.0, -1.0], [0.5, 2.0]], lr=None)
    return layer


FORWARD_BAD = [
    (np.ones((2, 4)), ValueError, r"`X` must have shape \(n, 3\) with n >= 1.*got shape \(2, 4\)"),
    (np.ones((2, 2, 3)), ValueError, r"`X` must have shape \(n, 3\).*got shape \(2, 2, 3\)"),
    (np.ones((0, 3)), ValueError, r"`X` must have shape \(n, 3\) with n >= 1.*got shape \(0, 3\)"),
    (np.float64(1.0), ValueError, r"`X` must have shape.*got shape \(\)"),
    (np.ones((2, 3), dtype=bool), TypeError, r"`X` must hold real numbers, got dtype bool"),
    (np.ones((2, 3), dtype=complex), TypeError, r"`X` must hold real numbers, got dtype complex128"),
    ([["a", "b", "c"]], TypeError, r"`X` must hold real numbers, got dtype <U1"),
    (np.array([[object(), 1, 2]], dtype=object), TypeError, r"`X` must hold real numbers, got dtype object"),
    ([[1.0, 2.0, 3.0], [1.0]], ValueError, r"`X` must be a rectangular array of real numbers, got list"),
    ("abc", TypeError, r"`X` must hold real numbers, got dtype <U3 \(str\)"),
]


@pytest.mark.parametrize(("X", "exc", "match"), FORWARD_BAD)
def test_forward_rejects_and_changes_nothing(trained, X, exc, match):
    before = snapshot(trained)
    with pytest.raises(exc, match=match):
        trained.forward(X)
    assert_unchanged(trained, before)


BACKWARD_BAD = [
    ({"d_out": np.ones((2, 3))}, ValueError, r"`d_out` must have the output's shape \(2, 2\), got \(2, 3\)"),
    ({"d_out": np.ones((3, 2))}, ValueError, r"`d_out` must have the output's shape \(2, 2\), got \(3, 2\)"),
    ({"d_out": np.ones(2)}, ValueError, r"`d_out` must have the output's shape \(2, 2\), got \(2,\)"),
    ({"d_out": np.ones((2, 2), dtype=bool)}, TypeError, r"`d_out` must hold real numbers, got dtype bool"),
    ({"lr": math.nan}, ValueError, r"`lr` must be a finite number >= 0, got nan"),
    ({"lr": math.inf}, ValueError, r"`lr` must be a finite number >= 0, got inf"),
    ({"lr": -0.1}, ValueError, r"`lr` must be a finite number >= 0, got -0.1"),
    ({"lr": "0.1"}, TypeError, r"`lr` must be a finite number >= 0, got str '0.1'"),
    ({"lr": True}, TypeError, r"`lr` must be a finite number >= 0, got bool True"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BACKWARD_BAD)
def test_backward_rejects_and_changes_nothing(trained, kwargs, exc, match):
    args = {"d_out": np.ones((2, 2)), "lr": 0.1} | kwargs
    before = snapshot(trained)
    with pytest.raises(exc, match=match):
        trained.backward(**args)
    assert_unchanged(trained, before)


def test_backward_before_forward(backend):
    xp, device = backend
    layer = DenseLayer(3, 2, seed=0, device=device, xp=xp)
    before = snapshot(layer)
    with pytest.raises(RuntimeError, match=r"`backward` was called before `forward`"):
        layer.backward(np.ones((1, 2)))
    assert_unchanged(layer, before)


def test_array_from_another_device_is_refused(trained):
    strict = pytest.importorskip("array_api_strict")
    other = strict.Device("device2")
    X = strict.ones((2, 3), device=other)
    before = snapshot(trained)
    with pytest.raises(
        ValueError, match=r"`X` is an array of array_api_strict on device .*device2.*but the layer lives on"
    ):
        trained.forward(X)
    assert_unchanged(trained, before)


def test_array_from_another_library_is_refused(trained):
    torch = pytest.importorskip("torch")
    if trained.xp.__name__.endswith("torch"):
        pytest.skip("the layer itself is on torch")
    before = snapshot(trained)
    with pytest.raises(ValueError, match=r"`X` is an array of torch on device .*cpu.*dense_xp.to_numpy\(X\)"):
        trained.forward(torch.ones((2, 3), dtype=torch.float64))
    assert_unchanged(trained, before)
