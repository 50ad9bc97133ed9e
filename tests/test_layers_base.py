"""The Layer contract: a layer of one's own, written against the array API alone, goes everywhere."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import dense_xp
from dense_xp import Activation, Dense, Layer, Sequential, register_layer
from dense_xp.testing import check_gradients
from tests.helpers import close, host, on, wide

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)


@register_layer
class Scale(Layer):
    """``y = X * s``: one learned scale per feature (the README's example)."""

    def __init__(self, init=1.0, **placement):
        self.init = init
        super().__init__(**placement)

    def build(self, input_size):
        self.add_parameter("s", (1, input_size), lambda: [[self.init] * input_size])
        return input_size

    def forward(self, X, *, training=False):
        self.X = X
        return X * self.cast(self.s)

    def backward(self, d_out):
        self.grads = {"s": self.widen(self.xp.mean(d_out * self.X, axis=0, keepdims=True))}
        return d_out * self.cast(self.s)

    def get_config(self):
        return {"init": self.init}


class Unregistered(Scale):
    pass


def _model(xp=None, device="cpu", dtype="float64", scale=Scale):
    kwargs = {"dtype": dtype, "device": device, "xp": xp}
    return Sequential(
        [
            Dense(8, "tanh", seed=0, init="he_normal", **kwargs),
            scale(0.5, **kwargs),
            Dense(3, seed=1, **kwargs),
        ]
    )


def test_a_user_layer_passes_the_gradient_check(backend):
    xp, device = backend
    layer = Scale(1.5, device=device, xp=xp, dtype=wide(xp, device))
    layer.build_for(5)
    layer.s = on(xp, device, RNG.normal(size=(1, 5)))
    assert set(check_gradients(layer, X[:6])) == {"d_input", "s"}
    assert set(check_gradients(_model(xp, device, wide(xp, device)).build(5), X[:6])) == {
        "d_input", *(f"layers.{i}.{p}" for i, ps in ((0, "Wb"), (1, "s"), (2, "Wb")) for p in ps)
    }  # fmt: skip


def test_a_user_layer_trains_in_fit_and_learns(backend):
    xp, device = backend
    model = _model(xp, device, wide(xp, device))
    history = model.fit(
        X, Y, loss="softmax_cross_entropy", optimizer=dense_xp.Adam(0.01), epochs=15, batch_size=8, seed=0,
        progress=False,
    )  # fmt: skip
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert not np.allclose(host(model.layers[1].s), 0.5)  # its parameter was stepped


def test_a_user_layer_saves_loads_pickles_and_copies(backend, tmp_path):
    xp, device = backend
    dtype = wide(xp, device)
    model = _model(xp, device, dtype)
    model.fit(X, Y, loss="softmax_cross_entropy", epochs=2, progress=False)
    expected = host(model.predict(X))
    model.save(tmp_path / "m.npz")
    for back in (
        dense_xp.load(tmp_path / "m.npz", device, xp=xp),
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
    ):
        assert type(back.layers[1]) is Scale
        assert back.layers[1].get_config() == {"init": 0.5}
        np.testing.assert_allclose(host(back.predict(X)), expected, rtol=close(dtype), atol=close(dtype))
    twin = copy.deepcopy(model)
    with dense_xp._backend.on_device(device):  # CuPy computes on the current device
        twin.layers[1].s = twin.layers[1].s * 2.0
    np.testing.assert_allclose(host(model.predict(X)), expected)  # the copy has arrays of its own


def test_saving_an_unregistered_layer_class_says_how_to_register(tmp_path):
    model = _model(scale=Unregistered).build(5)
    with pytest.raises(
        TypeError, match=r"`Unregistered` is not a registered layer class: call dense_xp\.register"
    ):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_loading_an_unregistered_class_names_it(tmp_path):
    @register_layer(name="TestTemporary")
    class Temporary(Scale):
        pass

    Sequential([Temporary(2.0)]).build(3).save(tmp_path / "m.npz")
    del dense_xp.layers.LAYERS["TestTemporary"]
    with pytest.raises(dense_xp.CheckpointError, match=r"layer class 'TestTemporary' is not registered"):
        dense_xp.load(tmp_path / "m.npz")


def test_register_layer_refuses_what_is_not_a_layer_and_built_in_names():
    with pytest.raises(TypeError, match=r"`cls` must be a subclass of dense_xp.Layer, got <class 'int'>"):
        register_layer(int)
    with pytest.raises(ValueError, match=r"`name` 'Dropout' is a built-in layer"):
        register_layer(Scale, name="Dropout")


def test_moving_a_user_layer_moves_its_arrays(backend):
    xp, device = backend
    layer = Scale(2.0, dtype=wide(xp, device))
    layer.build_for(4)
    layer.to(device, xp=xp)
    assert layer.device == device
    np.testing.assert_allclose(host(layer.forward(on(xp, device, X[:3, :4]))), X[:3, :4] * 2.0, rtol=1e-6)


def test_the_activation_layer_is_the_activation_and_softmax_is_stable(backend):
    xp, device = backend
    dtype = wide(xp, device)
    softmax = Activation("softmax", input_size=5, dtype=dtype, device=device, xp=xp)
    logits = X[:6] * 300  # exp overflows without the shift
    p = host(softmax.forward(on(xp, device, logits)))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=close(dtype) * 10, atol=close(dtype))
    assert set(check_gradients(Activation("softmax", input_size=5, dtype=dtype, device=device, xp=xp), X[:6]))
    tanh = Activation("tanh", input_size=5, dtype=dtype, device=device, xp=xp)
    np.testing.assert_allclose(host(tanh.forward(on(xp, device, X[:6]))), np.tanh(X[:6]), rtol=close(dtype))
    check_gradients(tanh, X[:6])


def test_softmax_equals_torch():
    torch = pytest.importorskip("torch")
    layer = Activation("softmax", input_size=5)
    xt = torch.from_numpy(X[:6]).requires_grad_(True)
    torch.softmax(xt, dim=1).backward(torch.from_numpy(RNG.normal(size=(6, 5))))
    layer.forward(X[:6])
    g = layer.backward(np.asarray(RNG.normal(size=(6, 5))))
    assert g.shape == (6, 5)
    xt2 = torch.from_numpy(X[:6]).requires_grad_(True)
    upstream = RNG.normal(size=(6, 5))
    torch.softmax(xt2, dim=1).backward(torch.from_numpy(upstream))
    layer.forward(X[:6])
    np.testing.assert_allclose(host(layer.backward(upstream)), xt2.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_a_model_can_end_in_softmax_and_train_with_mse():
    model = Sequential([Dense(8, "tanh", seed=0, init="he_normal"), Dense(3, seed=1), Activation("softmax")])
    onehot = np.eye(3)[Y]
    history = model.fit(X, onehot, loss="mse", epochs=20, batch_size=8, seed=0, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(host(model.predict(X)).sum(axis=1), 1.0, rtol=1e-12)
