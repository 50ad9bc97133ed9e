"""Sequential: whole-model gradients, fit/evaluate/predict, divergence, bad input."""

from __future__ import annotations

import copy
import io
import pickle

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, Sequential
from dense_xp.demo import build_model, load_digits_split, train_digits
from dense_xp.losses import get_loss
from dense_xp.optimizers import SGD
from dense_xp.testing import check_gradients
from tests.helpers import close, host, on, wide


def _mlp(xp, device, dtype=None, seed=0):
    dtype = dtype or (wide(xp, device) if xp is not None else "float64")
    return Sequential(
        [
            DenseLayer(5, 7, "tanh", seed=seed, init="glorot_normal", dtype=dtype, device=device, xp=xp),
            DenseLayer(7, 6, "gelu", seed=seed + 1, init="he_normal", dtype=dtype, device=device, xp=xp),
            DenseLayer(6, 3, None, seed=seed + 2, init="glorot_uniform", dtype=dtype, device=device, xp=xp),
        ]
    )


def _snapshot(model):
    return [host(p) for p in model.parameters()]


def _assert_same(model, before):
    for p, q in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(host(p), q)


@pytest.mark.parametrize("loss_name", ["mse", "softmax_cross_entropy"])
def test_whole_model_backward_matches_finite_differences(backend, loss_name):
    xp, device = backend
    model = _mlp(xp, device)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5))
    y = rng.normal(size=(6, 3)) if loss_name == "mse" else np.array([0, 2, 1, 1, 0, 2])
    _, grad = get_loss(loss_name)(model.forward(X), y)  # d_out of the loss: check_gradients checks the model
    errors = check_gradients(model, X, grad)
    assert set(errors) == {"d_input"} | {f"layers.{i}.{p}" for i in range(3) for p in ("W", "b")}
    model.forward(X)
    assert np.abs(host(model.backward(grad))).max() > 1e-4  # not a check on zeros


def test_fit_reaches_the_digits_target(backend):
    xp, device = backend
    result = train_digits(device=device, xp=xp, epochs=40, progress=False, baseline=False)
    assert result["test_accuracy"] >= 0.97
    history = result["history"]
    assert len(history["loss"]) == 40
    assert history["loss"][-1] < history["loss"][0] / 10
    assert history["accuracy"][-1] > 0.99


def test_fit_beats_or_matches_scikit_learn_on_cpu():
    result = train_digits(device="cpu", epochs=40, progress=False, baseline=True)
    assert result["test_accuracy"] >= result["sklearn_accuracy"] >= 0.95


def test_fit_with_validation_data_and_device_arrays(backend):
    xp, device = backend
    X_train, X_test, y_train, y_test = load_digits_split(0)
    model = build_model(0, dtype="float32", device=device, xp=xp)
    X_dev = xp.asarray(X_train[:256], dtype=xp.float32, device=device)
    history = model.fit(
        X_dev,
        y_train[:256],
        loss="softmax_cross_entropy",
        optimizer="sgd",
        epochs=2,
        batch_size=64,
        shuffle=True,
        seed=3,
        validation_data=(X_test, y_test),
        progress=False,
    )
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.values())
    assert all(np.isfinite(v).all() for v in history.values())


def test_fit_is_reproducible_with_a_seed(backend):
    xp, device = backend
    X, _, y, _ = load_digits_split(0)
    runs = []
    for _ in range(2):
        model = build_model(1, dtype=wide(xp, device), device=device, xp=xp)
        model.fit(X[:200], y[:200], loss="softmax_cross_entropy", epochs=2, seed=5, progress=False)
        runs.append(_snapshot(model))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_in_batches_equals_one_pass(backend):
    xp, device = backend
    model = _mlp(xp, device)
    X = np.random.default_rng(1).normal(size=(23, 5))
    full = model.predict(X)
    assert array_api_compat.device(full) == device
    assert full.shape == (23, 3)
    t = close(model.dtype)
    np.testing.assert_allclose(host(model.predict(X, batch_size=4)), host(full), rtol=t, atol=t)
    scores = model.evaluate(X, np.arange(23) % 3, loss="softmax_cross_entropy")
    assert set(scores) == {"loss", "accuracy"}
    assert 0.0 <= scores["accuracy"] <= 1.0


def test_divergence_raises_and_keeps_finite_weights(backend):
    xp, device = backend
    X, _, y, _ = load_digits_split(0)
    model = build_model(0, dtype="float32", device=device, xp=xp)
    with pytest.raises(
        dense_xp.TrainingDivergedError, match=r"training diverged at epoch 1, batch \d+"
    ) as info:
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(lr=1e12), epochs=3, progress=False)
    assert info.value.epoch == 1
    assert info.value.batch >= 2
    assert all(np.isfinite(p).all() for p in _snapshot(model))


def test_progress_bar_shows_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    X, _, y, _ = load_digits_split(0)
    build_model(0).fit(X[:64], y[:64], loss="softmax_cross_entropy", epochs=1, batch_size=16, progress=True)
    text = screen.getvalue()
    assert "epoch 1/1" in text
    assert "sample/s" in text
    assert "loss=" in text
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    build_model(0).fit(X[:64], y[:64], loss="softmax_cross_entropy", epochs=1, progress=False)
    assert quiet.getvalue() == ""


FIT_BAD = [
    ({"y": np.zeros((10, 2))}, ValueError, r"`y` must have shape \(n,\) or \(n, 10\) .*got shape \(10, 2\)"),
    ({"y": np.zeros(9, dtype=int)}, ValueError, r"`X` and `y` must have the same length, got 10 and \(9,\)"),
    ({"y": np.full(10, 10)}, ValueError, r"`y`.*10"),
    ({"y": np.full(10, -1)}, ValueError, r"`y`.*-1"),
    ({"y": np.zeros(10, dtype=bool)}, TypeError, r"`y` must hold real numbers, got dtype bool"),
    ({"y": np.full(10, 0.5)}, (TypeError, ValueError), r"`y`"),
    ({"X": np.zeros((10, 63))}, ValueError, r"`X` must have shape \(n, 64\) with n >= 1, got \(10, 63\)"),
    ({"loss": "hinge"}, ValueError, r"`loss` must be .*'softmax_cross_entropy'.*got 'hinge'"),
    ({"optimizer": "lbfgs"}, ValueError, r"`optimizer` must be .*'adam'.*got 'lbfgs'"),
    ({"batch_size": 0}, ValueError, r"`batch_size` must be an integer >= 1, got 0"),
    ({"epochs": -1}, ValueError, r"`epochs` must be an integer >= 0, got -1"),
    ({"epochs": 1.5}, TypeError, r"`epochs` must be an integer >= 0, got float 1.5"),
    ({"validation_data": np.zeros((3, 64))}, TypeError, r"`validation_data` must be a pair"),
    (
        {"validation_data": (np.ones((7, 64)), np.arange(24) % 10)},
        ValueError,
        r"`validation_data\[0\]` and `validation_data\[1\]` must have the same length, got 7 and \(24,\)",
    ),
    (
        {"validation_data": (np.ones((5, 63)), np.arange(5))},
        ValueError,
        r"`validation_data\[0\]` must have shape \(n, 64\) with n >= 1, got \(5, 63\)",
    ),
    (
        {"validation_data": (np.ones((5, 64)), np.full(5, 10))},
        ValueError,
        r"`validation_data\[1\]` holds invalid targets: `y` must hold class labels in \[0, 10\)",
    ),
    (
        {"validation_data": (np.ones((5, 64)), np.zeros(5, dtype=bool))},
        TypeError,
        r"`validation_data\[1\]` must hold real numbers, got dtype bool",
    ),
    ({"shuffle": "no"}, TypeError, r"`shuffle` must be True or False, got str 'no'"),
    ({"shuffle": None}, TypeError, r"`shuffle` must be True or False, got NoneType None"),
    ({"progress": "no"}, TypeError, r"`progress` must be True or False, got str 'no'"),
    ({"check_finite": 1}, TypeError, r"`check_finite` must be True or False, got int 1"),
    ({"check_every": 0}, ValueError, r"`check_every` must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), FIT_BAD)
def test_fit_rejects_bad_input_and_changes_nothing(backend, kwargs, exc, match):
    xp, device = backend
    model = build_model(0, dtype="float32", device=device, xp=xp)
    args = {
        "X": np.ones((10, 64)),
        "y": np.arange(10),
        "loss": "softmax_cross_entropy",
        "progress": False,
    } | kwargs
    before = _snapshot(model)
    with pytest.raises(exc, match=match):
        model.fit(args.pop("X"), args.pop("y"), **args)
    _assert_same(model, before)


def test_constructor_rejects_bad_stacks():
    with pytest.raises(ValueError, match=r"the model has no layers: add one with `model.add\(layer\)`"):
        Sequential([]).forward(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"`layers` must be a list of dense_xp layers \(Layer subclasses\)"):
        Sequential([DenseLayer(2, 2), "relu"])
    with pytest.raises(ValueError, match=r"`layers\[1\]` takes 4 inputs but `layers\[0\]` gives 3"):
        Sequential([DenseLayer(2, 3), DenseLayer(4, 1)])
    with pytest.raises(ValueError, match=r"`layers` must share one device and dtype"):
        Sequential([DenseLayer(2, 3, dtype="float32"), DenseLayer(3, 1, dtype="float64")])


def test_to_moves_every_layer(backend):
    xp, device = backend
    model = _mlp(None, "cpu", dtype=wide(xp, device))
    X = np.random.default_rng(2).normal(size=(4, 5))
    expected = host(model.predict(X))
    assert model.to(device, xp=xp) is model
    assert all(array_api_compat.device(p) == device for p in model.parameters())
    np.testing.assert_allclose(host(model.predict(X)), expected, rtol=close(model.dtype))
    assert "DenseLayer(5, 7" in repr(model)


def _fitted(xp, device, loss, n_out, y):
    dtype = "float64" if xp is None else wide(xp, device)
    model = Sequential(
        [
            DenseLayer(4, 6, "tanh", seed=0, init="glorot_normal", dtype=dtype, device=device, xp=xp),
            DenseLayer(6, n_out, seed=1, init="glorot_normal", dtype=dtype, device=device, xp=xp),
        ]
    )
    X = np.random.default_rng(5).normal(size=(len(y), 4))
    model.fit(X, y, loss=loss, optimizer=SGD(lr=0.1), epochs=2, batch_size=8, seed=0, progress=False)
    return model, X


def test_predict_proba_is_the_softmax_of_the_logits(backend):
    xp, device = backend
    model, X = _fitted(xp, device, "softmax_cross_entropy", 3, np.arange(20) % 3)
    logits = host(model.predict(X)).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = model.predict_proba(X, batch_size=7)
    assert array_api_compat.device(proba) == device
    np.testing.assert_allclose(host(proba), expected, rtol=close(model.dtype))
    np.testing.assert_allclose(host(proba).sum(axis=1), 1.0, rtol=close(model.dtype))
    assert np.ptp(host(proba)) > 0.05
    if "int64" in xp.__array_namespace_info__().dtypes(device=device, kind="integral"):
        # array-api-strict's argmax returns int64, which its no_x64 device refuses
        np.testing.assert_array_equal(host(model.predict_classes(X)), logits.argmax(axis=1))


def test_predict_proba_is_the_sigmoid_for_binary_cross_entropy(backend):
    xp, device = backend
    if wide(xp, device) != "float64":
        pytest.skip("this test is about logits beyond float64's exp range; the device has no float64")
    model, X = _fitted(xp, device, "binary_cross_entropy", 1, (np.arange(20) % 2).astype(float))
    with dense_xp._backend.on_device(device):  # CuPy computes on the current device
        model.layers[-1].W = model.layers[-1].W * 2000.0  # logits far beyond exp's float64 range
    logits = host(model.predict(X))[:, 0]
    assert np.abs(logits).max() > 800  # exp overflows float64 beyond 709
    proba = host(model.predict_proba(X))
    assert proba.shape == (20, 1)
    pos, e = logits >= 0, np.exp(-np.abs(logits))
    expected = np.where(pos, 1 / (1 + e), e / (1 + e))  # each branch where its exp cannot overflow
    np.testing.assert_allclose(proba[:, 0], expected, rtol=1e-12, atol=0)
    assert np.isfinite(proba).all()
    assert ((proba > 0) & (proba < 1e-100)).any()
    classes = dense_xp.to_numpy(model.predict_classes(X))
    assert classes.shape == (20,)
    assert np.issubdtype(classes.dtype, np.integer)
    np.testing.assert_array_equal(classes, (logits > 0).astype(int))
    assert 0 < classes.sum() < 20


def test_predict_proba_follows_the_last_fit_and_accepts_a_loss():
    model, X = _fitted(None, "cpu", "softmax_cross_entropy", 3, np.arange(20) % 3)
    softmax = host(model.predict_proba(X))
    sigmoid = host(model.predict_proba(X, loss="binary_cross_entropy"))
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-host(model.predict(X)))), rtol=1e-12)
    assert not np.allclose(softmax, sigmoid)
    model.fit(X, np.zeros((20, 3)), loss="mse", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"`loss` must be .*, got 'mse' \(the loss of the last fit\)"):
        model.predict_proba(X)
    np.testing.assert_allclose(host(model.predict_proba(X, loss="softmax_cross_entropy")).sum(axis=1), 1)


def test_predict_proba_before_fit_says_the_loss_is_unknown(tmp_path):
    model = _mlp(None, "cpu")
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"`loss` must be .*got None \(the model has not been fitted"):
        model.predict_proba(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"`loss` must be .*got 'mse' \(given\)"):
        model.predict_proba(np.ones((2, 5)), loss="mse")
    _assert_same(model, before)
    model.save(tmp_path / "m.npz")
    loaded = dense_xp.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"got None \(the model has not been fitted"):
        loaded.predict_proba(np.ones((2, 5)))
    assert host(loaded.predict_classes(np.ones((2, 5)))).shape == (2,)


def test_native_arrays_through_fit_evaluate_predict_save_and_load(backend, tmp_path):
    """Arrays of the model's own library, on its device: slices and shuffle indices work everywhere
    (array-api-strict refuses bare 2-D slices and stops past the end; no_x64 has no int64)."""
    xp, device = backend
    rng = np.random.default_rng(7)
    X = on(xp, device, rng.normal(size=(24, 5)))
    y = on(xp, device, rng.integers(0, 3, size=24))
    model = _mlp(xp, device)
    before = host(model.predict(X))
    for shuffle in (False, True):
        history = model.fit(
            X, y, loss="softmax_cross_entropy", epochs=1, batch_size=8, shuffle=shuffle, seed=1,
            validation_data=(X, y), progress=False,
        )  # fmt: skip
        assert np.isfinite(history["loss"]).all()
        assert np.isfinite(history["val_loss"]).all()
    scores = model.evaluate(X, y, loss="softmax_cross_entropy", batch_size=10)
    assert 0.0 <= scores["accuracy"] <= 1.0
    out = model.predict(X, batch_size=10)
    assert array_api_compat.device(out) == device
    assert not np.allclose(host(out), before)  # it trained
    t = close(model.dtype)
    np.testing.assert_allclose(host(out), host(model.predict(X)), rtol=t, atol=t)
    model.save(tmp_path / "m.npz")
    back = dense_xp.load(tmp_path / "m.npz", device, xp=xp)
    np.testing.assert_array_equal(host(back.predict(X, batch_size=10)), host(out))


@pytest.mark.parametrize(
    "clone", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy], ids=["pickle", "deepcopy"]
)
def test_pickle_round_trip_keeps_device_and_trains_on(backend, clone):
    xp, device = backend
    model = _mlp(xp, device)
    X = np.random.default_rng(3).normal(size=(12, 5))
    y = np.arange(12) % 3
    model.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=4, seed=0, progress=False)
    twin = clone(model)
    assert (twin.xp, twin.device, twin.dtype) == (model.xp, model.device, model.dtype)
    assert len(twin.layers) == 3
    np.testing.assert_array_equal(host(twin.predict(X)), host(model.predict(X)))
    twin.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=4, seed=0, progress=False)
    changed = [not np.array_equal(a, b) for a, b in zip(_snapshot(twin), _snapshot(model), strict=True)]
    assert all(changed)  # the copy trained alone
