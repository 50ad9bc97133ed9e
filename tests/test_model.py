"""The model's promises: a model whose layers disagree is refused by name, and arrays are checked."""

from __future__ import annotations

import numpy as np
import pytest

import dense_xp
from dense_xp import Dense, DenseLayer, Sequential
from dense_xp.optimizers import SGD, Adam
from tests.helpers import host, wide

X = np.random.default_rng(0).normal(size=(24, 4))
Y = np.arange(24) % 5


def _model(xp=None, device="cpu", dtype="float64"):
    return Sequential(
        [
            DenseLayer(4, 6, "tanh", seed=0, init="glorot_normal", dtype=dtype, device=device, xp=xp),
            DenseLayer(6, 5, seed=1, init="glorot_normal", dtype=dtype, device=device, xp=xp),
        ]
    )


def _params(model):
    return [host(p) for p in model.parameters()]


# -- arrays assigned to a parameter are checked at once --------------------------------------
def test_a_bias_of_the_wrong_shape_is_refused_by_name(backend):
    xp, device = backend
    model = _model(xp, device, wide(xp, device))
    layer = model.layers[1]
    before = layer.b
    with pytest.raises(ValueError, match=r"`layers\[1\]\.b` must have shape \(1, 5\), got \(24, 5\)"):
        layer.b = xp.zeros((24, 5), dtype=layer.param_dtype, device=device)
    assert layer.b is before


def test_a_weight_of_another_shape_library_or_dtype_is_refused(backend):
    xp, device = backend
    model = _model(xp, device, wide(xp, device))
    layer = model.layers[0]
    with pytest.raises(ValueError, match=r"`layers\[0\]\.W` must have shape \(4, 6\), got \(6, 4\)"):
        layer.W = xp.zeros((6, 4), dtype=layer.param_dtype, device=device)
    with pytest.raises(TypeError, match=r"`layers\[0\]\.W` must be a .* array of shape \(4, 6\).*got list"):
        layer.W = [[0.0] * 6] * 4
    if xp is not dense_xp.resolve_device("cpu")[0]:
        with pytest.raises(TypeError, match=r"`layers\[0\]\.W` must be .*got an array of numpy"):
            layer.W = np.zeros((4, 6))
    names = dense_xp._checks.device_float_names(xp=xp, device=device)
    other = [n for n in names if n != dense_xp._checks.dtype_name(layer.param_dtype)]
    for name in other:  # none on a float32-only device
        with pytest.raises(TypeError, match=r"`layers\[0\]\.W` must have the layer's param_dtype"):
            layer.W = xp.zeros((4, 6), dtype=getattr(xp, name), device=device)


def test_a_torch_tensor_in_a_numpy_layer_is_refused_naming_it():
    torch = pytest.importorskip("torch")
    layer = _model().layers[0]
    with pytest.raises(
        TypeError, match=r"`layers\[0\]\.W` must be a float64 array .*of numpy.*got an array of torch"
    ):
        layer.W = torch.zeros((4, 6), dtype=torch.float64)


def test_a_standalone_layer_names_the_parameter_alone():
    layer = DenseLayer(4, 5)
    with pytest.raises(ValueError, match=r"^`b` must have shape \(1, 5\), got \(24, 5\)"):
        layer.b = np.zeros((24, 5))


# -- a model whose layers disagree --------------------------------------------------------
def test_tied_weights_are_refused_in_forward_fit_and_save(tmp_path):
    model = Sequential([DenseLayer(4, 4, seed=0), DenseLayer(4, 4, seed=1)])
    model.layers[1].W = model.layers[0].W
    match = r"`layers\[1\]\.W` is the same array as `layers\[0\]\.W` \(tied weights\)"
    before = _params(model)
    with pytest.raises(ValueError, match=match):
        model.forward(X)
    with pytest.raises(ValueError, match=match):
        model.fit(X, X, loss="mse", optimizer=Adam(0.01), epochs=1, progress=False)
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / "m.npz")
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)
    assert list(tmp_path.iterdir()) == []


def test_one_layer_cast_alone_is_refused_in_forward_fit_and_save(tmp_path):
    model = _model()
    model.layers[1].to(dtype="float32")
    match = r"`layers\[1\]` is on device 'cpu' of numpy with param_dtype float32 .* `layers\[0\]` .*float64"
    for call in (
        lambda: model.forward(X),
        lambda: model.fit(X, Y, loss="softmax_cross_entropy", epochs=1, progress=False),
        lambda: model.save(tmp_path / "m.npz"),
        lambda: model.predict(X),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    assert list(tmp_path.iterdir()) == []


def test_one_layer_moved_alone_to_another_library_is_refused_by_fit():
    strict = pytest.importorskip("array_api_strict")
    model = _model()
    model.layers[1].to(xp=strict)
    before = _params(model)
    with pytest.raises(
        ValueError, match=r"`layers\[1\]` is on device .* of array_api_strict .*move the whole"
    ):
        model.fit(X, Y, loss="softmax_cross_entropy", epochs=1, progress=False)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_an_activation_returning_the_wrong_shape_is_named():
    dense_xp.register_activation(
        "test_squash", lambda z, *, xp: xp.sum(z, axis=1, keepdims=True), lambda g, z, *, xp: g
    )
    try:
        model = Sequential([DenseLayer(4, 5, "test_squash", seed=0)])
        with pytest.raises(ValueError, match=r"activation 'test_squash' forward returned shape \(6, 1\)"):
            model.predict(X[:6])
    finally:
        del dense_xp.activations.ACTIVATIONS["test_squash"]


def test_an_activation_backward_of_the_wrong_shape_is_named():
    dense_xp.register_activation("test_flat", lambda z, *, xp: z, lambda g, z, *, xp: g[:, :1])
    try:
        layer = DenseLayer(4, 5, "test_flat", seed=0)
        layer.forward(X[:6])
        with pytest.raises(ValueError, match=r"activation 'test_flat' backward returned shape \(6, 1\)"):
            layer.backward(np.ones((6, 5)))
    finally:
        del dense_xp.activations.ACTIVATIONS["test_flat"]


def test_wrong_gradients_of_a_layer_are_named_not_a_position():
    model = _model()
    layer = model.layers[1]
    backprop = layer.backprop

    def bad(d_out, **kwargs):
        d_input = backprop(d_out, **kwargs)
        layer.grads["b"] = layer.grads["b"][:, :2]
        return d_input

    layer.backprop = bad
    model.forward(X)
    with pytest.raises(ValueError, match=r"`layers\[1\]\.grads\['b'\]` must have the shape \(1, 5\)"):
        model.backward(np.ones((24, 5)))


# -- structure -------------------------------------------------------------------------------
def test_lazy_widths_are_inferred_on_the_first_call():
    model = Sequential([Dense(8, "relu", seed=0), Dense(3, seed=1)])
    assert not model.built
    assert model.input_size is None
    out = model(X)
    assert out.shape == (24, 3)
    assert [layer.input_size for layer in model.layers] == [4, 8]
    assert model.layers[0].W.shape == (4, 8)
    np.testing.assert_array_equal(host(model.layers[0].W), host(DenseLayer(4, 8, "relu", seed=0).W))


def test_add_checks_and_builds_the_widths():
    model = Sequential().add(DenseLayer(4, 6, seed=0)).add(Dense(2))
    assert model.layers[1].input_size == 6
    with pytest.raises(ValueError, match=r"`layers\[2\]` takes 3 inputs but `layers\[1\]` gives 2"):
        model.add(DenseLayer(3, 1))
    with pytest.raises(TypeError, match=r"`layer` must be a dense_xp layer .*got str 'relu'"):
        model.add("relu")
    assert len(model.layers) == 2


def test_summary_lists_each_layer_and_the_totals():
    text = _model().summary(print_fn=None)
    assert "DenseLayer  (n, 6)  30" in text
    assert "DenseLayer  (n, 5)  35" in text
    assert "total parameters: 65 (float64)" in text


def test_fit_trains_with_the_whole_data_as_one_batch():
    model, reference = _model(), _model()
    history = model.fit(
        X, Y, loss="softmax_cross_entropy", optimizer=SGD(0.1), epochs=3, batch_size=None, shuffle=False,
        progress=False,
    )  # fmt: skip
    one_batch = reference.fit(
        X, Y, loss="softmax_cross_entropy", optimizer=SGD(0.1), epochs=3, batch_size=len(X), shuffle=False,
        progress=False,
    )  # fmt: skip
    assert history == one_batch
    for p, q in zip(_params(model), _params(reference), strict=True):
        np.testing.assert_array_equal(p, q)
    assert history["loss"][-1] < history["loss"][0]
