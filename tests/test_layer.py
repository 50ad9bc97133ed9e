"""DenseLayer: seed equivalence, gradients, dtypes and devices on every backend."""

from __future__ import annotations

import copy
import pickle

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, register_activation
from dense_xp.activations import ACTIVATIONS
from dense_xp.testing import check_gradients
from tests.helpers import close, host, tol, wide

ACTS = [None, "linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "silu"]


class SeedLayer:
    """The reference formulas, written out here independently of dense_xp."""

    def __init__(self, input_size, output_size, activation, seed):
        np.random.seed(seed)
        self.W = np.random.randn(input_size, output_size) * 0.01
        self.b = np.zeros((1, output_size))
        self.activation = activation

    def _act(self, x):
        if self.activation == "relu":
            return np.maximum(0, x)
        if self.activation == "sigmoid":
            return 1 / (1 + np.exp(-np.clip(x, -500, 500)))
        return x

    def forward(self, X):
        self.input = X
        self.z = X @ self.W + self.b
        return self._act(self.z)

    def backward(self, d_out, lr=0.01):
        if self.activation == "relu":
            d_out = d_out * (self.z > 0).astype(float)
        elif self.activation == "sigmoid":
            s = self._act(self.z)
            d_out = d_out * s * (1 - s)
        dW = self.input.T @ d_out / self.input.shape[0]
        db = np.mean(d_out, axis=0, keepdims=True)
        d_input = d_out @ self.W.T
        self.W -= lr * dW
        self.b -= lr * db
        return d_input


@pytest.mark.parametrize("seed", [0, 7, 2024])
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
@pytest.mark.parametrize(("n", "d_in", "d_out"), [(1, 1, 1), (5, 3, 2), (32, 16, 8)])
def test_matches_reference_formulas_over_three_steps(backend, seed, activation, n, d_in, d_out):
    xp, device = backend
    state = np.random.get_state()
    dtype = wide(xp, device)
    layer = DenseLayer(d_in, d_out, activation, seed=seed, dtype=dtype, device=device, xp=xp)
    assert np.random.get_state()[1].tolist() == state[1].tolist(), "global NumPy RNG was touched"
    ref = SeedLayer(d_in, d_out, activation, seed)
    np.testing.assert_array_equal(host(layer.W), ref.W.astype(dtype))  # bit for bit
    rng = np.random.default_rng(seed)
    t = close(dtype)
    for step in range(3):
        X = rng.normal(size=(n, d_in)) * 3
        g = rng.normal(size=(n, d_out))
        lr = 0.05 * (step + 1)
        np.testing.assert_allclose(host(layer.forward(X)), ref.forward(X), rtol=t, atol=t)
        np.testing.assert_allclose(host(layer.backward(g, lr=lr)), ref.backward(g, lr=lr), rtol=t, atol=t)
        np.testing.assert_allclose(host(layer.W), ref.W, rtol=t, atol=t)
        np.testing.assert_allclose(host(layer.b), ref.b, rtol=t, atol=t)


def test_integer_input_matches_reference(backend):
    xp, device = backend
    layer = DenseLayer(3, 2, "relu", seed=42, dtype=wide(xp, device), device=device, xp=xp)
    ref = SeedLayer(3, 2, "relu", 42)
    ref.W = np.abs(ref.W).astype(wide(xp, device)).astype(np.float64)  # an active relu: not a check on zeros
    layer.W = xp.asarray(ref.W.copy(), dtype=layer.dtype, device=device)
    y = host(layer.forward([[1, 2, 3]]))
    assert np.all(y > 0)
    t = close(layer.dtype)
    np.testing.assert_allclose(y, ref.forward(np.array([[1, 2, 3]])), rtol=t)
    np.testing.assert_allclose(host(layer.backward([[1, -2]])), ref.backward(np.array([[1.0, -2.0]])), rtol=t)
    np.testing.assert_allclose(host(layer.W), ref.W, rtol=t)


def test_one_dimensional_input_is_one_sample(backend):
    xp, device = backend
    layer = DenseLayer(4, 3, "tanh", seed=1, dtype=wide(xp, device), device=device, xp=xp)
    x = np.arange(1.0, 5.0)
    y1 = host(layer.forward(x))
    assert y1.shape == (1, 3)
    np.testing.assert_array_equal(y1, host(layer.forward(x[None, :])))


@pytest.mark.parametrize("activation", ACTS)
def test_gradients_match_finite_differences(backend, activation):
    xp, device = backend
    rng = np.random.default_rng(3)
    n, d_in, d_out = 4, 3, 5
    layer = DenseLayer(
        d_in, d_out, activation, seed=5, init="glorot_normal", dtype=wide(xp, device), device=device, xp=xp
    )
    layer.b = xp.asarray(rng.normal(size=(1, d_out)), dtype=layer.dtype, device=device)
    X = rng.normal(size=(n, d_in)) * 2
    R = rng.normal(size=(n, d_out))  # dL/dy for L = sum(y * R)
    errors = check_gradients(layer, X, R)
    assert set(errors) == {"d_input", "W", "b"}
    assert max(errors.values()) < (1e-6 if layer.dtype == xp.float64 else 2e-2)
    layer.forward(X)
    assert np.abs(host(layer.backward(R, lr=None))).max() > 1e-3  # not a check on zeros


@pytest.mark.parametrize("activation", ACTS)
def test_float32_against_float64_reference(backend, activation):
    xp, device = backend
    rng = np.random.default_rng(11)
    X = rng.normal(size=(64, 20))
    g = rng.normal(size=(64, 7))
    outs = {}
    for dtype in ("float32", "float64"):
        where = {"device": device, "xp": xp} if wide(xp, device) == "float64" or dtype == "float32" else {}
        layer = DenseLayer(
            20, 7, activation, seed=9, init="he_normal", dtype=dtype, **where
        )  # float64: here or NumPy
        y = layer.forward(X)
        d_in = layer.backward(g, lr=0.1)
        outs[dtype] = [host(a) for a in (y, d_in, layer.grads["W"], layer.grads["b"], layer.W)]
    eps32 = tol(xp.float32, xp, 1.0)
    for got, ref in zip(outs["float32"], outs["float64"], strict=True):
        scale = np.abs(ref).max()
        assert scale > 0
        np.testing.assert_allclose(got, ref, rtol=0, atol=200 * eps32 * scale)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_and_gradients_stay_on_device_and_dtype(backend, dtype):
    xp, device = backend
    if dtype != wide(xp, device) and dtype == "float64":
        with pytest.raises(
            ValueError, match=r"`dtype` float64 is not supported on device .* it has .*float32"
        ):
            DenseLayer(6, 4, "gelu", seed=2, dtype=dtype, device=device, xp=xp)
        return
    layer = DenseLayer(6, 4, "gelu", seed=2, dtype=dtype, device=device, xp=xp)
    assert layer.dtype == getattr(xp, dtype)
    y = layer.forward(np.arange(12).reshape(2, 6))  # integers, on the host
    d_in = layer.backward(np.ones((2, 4)), lr=0.1)
    for a in (y, d_in, layer.W, layer.b, *layer.grads.values()):
        assert array_api_compat.array_namespace(a) is layer.xp
        assert array_api_compat.device(a) == device
        assert a.dtype == layer.dtype


def test_default_dtype_is_the_namespace_default(backend):
    xp, device = backend
    layer = DenseLayer(2, 2, device=device, xp=xp)
    expected = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    assert layer.dtype == expected


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_weights_on_every_backend(backend, dtype):
    xp, device = backend
    if dtype != wide(xp, device) and dtype == "float64":
        with pytest.raises(ValueError, match=r"`dtype` float64 is not supported"):
            DenseLayer(7, 5, seed=123, dtype=dtype, device=device, xp=xp)
        return
    layer = DenseLayer(7, 5, seed=123, dtype=dtype, device=device, xp=xp)
    expected = (np.random.RandomState(123).randn(7, 5) * 0.01).astype(dtype)
    np.testing.assert_array_equal(dense_xp.to_numpy(layer.W), expected)
    np.testing.assert_array_equal(host(layer.b), np.zeros((1, 5)))


def test_backward_without_lr_keeps_gradients_and_leaves_parameters(backend):
    xp, device = backend
    layer = DenseLayer(3, 2, "sigmoid", seed=4, dtype=wide(xp, device), device=device, xp=xp)
    W0 = host(layer.W)
    layer.forward([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]])
    layer.backward([[1.0, 2.0], [3.0, -4.0]], lr=None)
    np.testing.assert_array_equal(host(layer.W), W0)
    assert set(layer.grads) == {"W", "b"}
    assert np.abs(host(layer.grads["W"])).max() > 0


def test_no_bias(backend):
    xp, device = backend
    layer = DenseLayer(3, 2, "relu", seed=4, use_bias=False, dtype=wide(xp, device), device=device, xp=xp)
    assert layer.b is None
    assert set(layer.parameters()) == {"W"}
    layer.forward([[1.0, 2.0, 3.0]])
    layer.backward([[1.0, 1.0]])
    assert set(layer.grads) == {"W"}


def test_to_moves_parameters_and_gives_the_same_outputs(backend):
    xp, device = backend
    layer = DenseLayer(5, 3, "silu", seed=8, dtype=wide(xp, device))
    X = np.random.default_rng(0).normal(size=(4, 5))
    expected = host(layer.forward(X))
    layer.forward(X)
    layer.backward(np.ones((4, 3)), lr=None)
    assert layer.to(device, xp=xp) is layer
    assert layer.device == device
    assert array_api_compat.device(layer.W) == device
    assert array_api_compat.device(layer.grads["W"]) == device
    layer.W = layer.W  # parameters are plain attributes
    np.testing.assert_allclose(host(layer.forward(X)), expected, rtol=close(layer.dtype))
    with pytest.raises(RuntimeError, match="before `forward`"):
        layer.to(device, xp=xp).backward(np.ones((4, 3)))
    layer.to("cpu")
    assert isinstance(layer.W, np.ndarray)
    np.testing.assert_allclose(host(layer.forward(X)), expected, rtol=close(layer.dtype))


def test_repr_names_the_essentials(backend):
    xp, device = backend
    text = repr(DenseLayer(3, 2, "tanh", device=device, xp=xp, dtype="float32"))
    assert "DenseLayer(3, 2" in text
    assert "'tanh'" in text
    assert "float32" in text


def _pickled(layer):
    return pickle.loads(pickle.dumps(layer))


@pytest.mark.parametrize("clone", [_pickled, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_pickle_round_trip_on_the_same_device(backend, clone):
    xp, device = backend
    layer = DenseLayer(4, 3, "gelu", seed=1, init="he_normal", device=device, xp=xp)
    X = np.random.default_rng(0).normal(size=(5, 4))
    layer.forward(X)
    layer.backward(np.ones((5, 3)), lr=0.5)  # a nonzero bias
    twin = clone(layer)
    assert (twin.xp, twin.device, twin.dtype) == (layer.xp, layer.device, layer.dtype)
    assert twin.get_config() == layer.get_config()
    for name, value in layer.parameters().items():
        np.testing.assert_array_equal(dense_xp.to_numpy(twin.parameters()[name]), dense_xp.to_numpy(value))
    assert np.abs(host(twin.b)).max() > 0
    np.testing.assert_array_equal(host(twin.forward(X)), host(layer.forward(X)))
    W0 = host(layer.W)
    twin.backward(np.ones((5, 3)), lr=1.0)  # trains on its own copy
    np.testing.assert_array_equal(host(layer.W), W0)
    assert not np.array_equal(host(twin.W), W0)


def test_unpickling_where_the_device_is_gone_falls_back_to_the_cpu():
    """A layer pickled on CUDA device 0 (CuPy) comes back on NumPy where CUDA does not answer, quietly."""
    if dense_xp._backend.cuda_unusable_reason(0) is None:
        pytest.skip("CUDA answers here: the layer would come back on the GPU")
    layer = DenseLayer(3, 2, "tanh", seed=2, dtype="float32")
    state = layer.__getstate__()
    state["device"] = ("array_api_compat.cupy", "cuda:0")
    back = DenseLayer.__new__(DenseLayer)
    back.__setstate__(state)  # warnings are errors here: the fallback gives none
    assert back.device == "cpu"
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.W, layer.W)


def test_unpickling_an_unregistered_activation_names_it():
    register_activation("test_pickled", _double, _double_backward, saves="output")
    try:
        data = pickle.dumps(DenseLayer(2, 2, "test_pickled", seed=0))
        assert pickle.loads(data).activation == "test_pickled"
    finally:
        ACTIVATIONS.pop("test_pickled")
    with pytest.raises(
        ValueError, match=r"activation 'test_pickled': it is not registered.*register_activation"
    ):
        pickle.loads(data)


def _double(z, *, xp):
    return 2.0 * z


def _double_backward(g, y, *, xp):
    return 2.0 * g
