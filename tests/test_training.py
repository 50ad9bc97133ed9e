"""fit's keywords: validation_split, sample_weight, class_weight, verbose, initial_epoch, resuming."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dense_xp
from dense_xp import Dense, Dropout, Sequential
from dense_xp.optimizers import SGD, Adam
from dense_xp.schedules import ReduceLROnPlateau, StepLR
from tests.helpers import close, host, wide

RNG = np.random.default_rng(3)
X = RNG.normal(size=(96, 5))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
W = RNG.uniform(0.0, 2.0, size=96)
LOSS = "softmax_cross_entropy"


def _model(xp=None, device="cpu", dtype="float64", dropout=False):
    kwargs = {"dtype": dtype, "device": device, "xp": xp}
    middle = [Dropout(0.3, seed=7, **kwargs)] if dropout else []
    return Sequential(
        [Dense(12, "tanh", seed=0, init="he_normal", **kwargs), *middle, Dense(3, seed=1, **kwargs)]
    )


def _params(model):
    return [host(p) for p in model.parameters()]


def _same(a, b, tol):
    for p, q in zip(_params(a), _params(b), strict=True):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


def _keras(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "jax"))
    return pytest.importorskip("keras", reason="Keras is not installed (the semantics are Keras's)")


# -- validation_split ----------------------------------------------------------------------------
def test_validation_split_holds_out_the_last_rows_before_shuffling():
    split, ref = _model(), _model()
    kwargs = {
        "loss": LOSS,
        "optimizer": SGD(0.1),
        "epochs": 2,
        "batch_size": 16,
        "seed": 0,
        "progress": False,
    }
    history = split.fit(X, Y, validation_split=0.25, **kwargs)
    kwargs["optimizer"] = SGD(0.1)
    expected = ref.fit(X[:72], Y[:72], validation_data=(X[72:], Y[72:]), **kwargs)
    assert history == expected
    _same(split, ref, 0)


def test_validation_split_is_keras_s(monkeypatch):
    _keras(monkeypatch)
    from keras.src.trainers.data_adapters import array_slicing

    for fraction in (0.1, 0.25, 0.33):
        (x_train, _), (x_val, _) = array_slicing.train_validation_split((X, Y), validation_split=fraction)
        cut = int(np.floor(len(X) * (1 - fraction)))
        assert (len(x_train), len(x_val)) == (cut, len(X) - cut)
        np.testing.assert_allclose(np.asarray(x_val), X[cut:], rtol=1e-6)  # the last rows, unshuffled


# -- sample_weight and class_weight ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "keras_name", "target"),
    [("mse", "MeanSquaredError", "real"), ("binary_cross_entropy", "BinaryCrossentropy", "binary"),
     ("softmax_cross_entropy", "SparseCategoricalCrossentropy", "labels")],
)  # fmt: skip
def test_weighted_losses_reduce_as_keras_does(monkeypatch, ours, keras_name, target):
    keras = _keras(monkeypatch)
    z = RNG.normal(size=(10, 3))
    t = {"real": RNG.normal(size=(10, 3)), "binary": RNG.integers(0, 2, size=(10, 3)).astype(float),
         "labels": RNG.integers(0, 3, size=10)}[target]  # fmt: skip
    w = RNG.uniform(0, 2, size=10)
    extra = {} if ours == "mse" else {"from_logits": True}
    theirs = getattr(keras.losses, keras_name)(**extra)(t, z, sample_weight=w)
    value, _ = dense_xp.get_loss(ours)(z, t, sample_weight=w)
    np.testing.assert_allclose(float(value), float(np.asarray(theirs)), rtol=1e-6)


def test_sample_weight_weighs_each_rows_step(backend):
    """With the whole data as one SGD batch: weights 0/1 are the step on the kept rows, scaled by m/n."""
    xp, device = backend
    dtype = wide(xp, device)
    keep = np.arange(96) % 3 != 0
    weighted, subset = _model(xp, device, dtype), _model(xp, device, dtype)
    kwargs = {"loss": LOSS, "epochs": 1, "batch_size": None, "shuffle": False, "progress": False}
    weighted.fit(X, Y, optimizer=SGD(0.3), sample_weight=keep.astype(float), **kwargs)
    subset.fit(X[keep], Y[keep], optimizer=SGD(0.3 * keep.sum() / 96), **kwargs)
    _same(weighted, subset, close(dtype) * 10)


def test_class_weight_is_the_sample_weight_of_each_rows_class():
    table = {0: 0.5, 2: 3.0}  # class 1 is left out: weight 1
    by_class, by_row = _model(), _model()
    kwargs = {
        "loss": LOSS,
        "optimizer": SGD(0.1),
        "epochs": 2,
        "batch_size": 16,
        "seed": 1,
        "progress": False,
    }
    history = by_class.fit(X, Y, class_weight=table, **kwargs)
    kwargs["optimizer"] = SGD(0.1)
    rows = np.array([table.get(int(c), 1.0) for c in Y])
    assert history == by_row.fit(X, Y, sample_weight=rows, **kwargs)
    _same(by_class, by_row, 0)


def test_class_weight_gives_keras_s_row_weights(monkeypatch):
    table = {0: 0.5, 2: 3.0}
    rows = np.array([table.get(int(c), 1.0) for c in Y])
    keras = _keras(monkeypatch)
    from keras.src.trainers.data_adapters import data_adapter_utils

    assert keras is not None
    np.testing.assert_array_equal(data_adapter_utils.class_weight_to_sample_weights(Y, table), rows)


def test_class_weight_of_one_hot_rows_and_of_one_output():
    onehot = np.eye(3)[Y]
    a, b = _model(), _model()
    kwargs = {"loss": LOSS, "optimizer": SGD(0.1), "epochs": 1, "seed": 1, "progress": False}
    a.fit(X, onehot, class_weight={1: 2.0}, **kwargs)
    kwargs["optimizer"] = SGD(0.1)
    b.fit(X, Y, class_weight={1: 2.0}, **kwargs)
    _same(a, b, 1e-12)
    binary = Sequential([Dense(1, seed=0)])
    binary.fit(
        X, (Y > 0).astype(float), loss="binary_cross_entropy", class_weight={0: 3.0}, epochs=1, progress=False
    )


def test_evaluate_weighs_the_loss_not_the_accuracy(backend):
    xp, device = backend
    model = _model(xp, device, wide(xp, device))
    plain = model.evaluate(X, Y, loss=LOSS)
    weighted = model.evaluate(X, Y, loss=LOSS, sample_weight=W, batch_size=20)
    out = host(model.predict(X))
    rows = (
        np.log(np.exp(out - out.max(1, keepdims=True)).sum(1))
        - (out - out.max(1, keepdims=True))[np.arange(96), Y]
    )
    np.testing.assert_allclose(weighted["loss"], np.mean(W * rows), rtol=close(model.dtype) * 10)
    assert weighted["accuracy"] == plain["accuracy"]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"sample_weight": W[:10]},
            ValueError,
            r"`sample_weight` must have shape \(96,\), one weight per row",
        ),
        ({"sample_weight": -W}, ValueError, r"`sample_weight` must hold weights >= 0"),
        (
            {"sample_weight": np.where(W > 1, np.nan, W)},
            ValueError,
            r"`sample_weight` must hold finite numbers",
        ),
        ({"class_weight": [1.0, 2.0]}, TypeError, r"`class_weight` must be a dict"),
        ({"class_weight": {0: -1.0}}, ValueError, r"`class_weight\[0\]` must be a finite number >= 0"),
        ({"class_weight": {0: 1.0}, "sample_weight": W}, ValueError, r"cannot both be given"),
        ({"validation_split": 1.0}, ValueError, r"`validation_split` must be a number in \[0, 1\), got 1.0"),
        ({"validation_split": 0.2, "validation_data": (X, Y)}, ValueError, r"cannot both be given"),
        ({"validation_split": 1e-17}, ValueError, r"leaves no validation row"),
        ({"verbose": 3}, ValueError, r"`verbose` must be 0 \(silent\), 1 \(a progress bar\) or 2"),
        ({"initial_epoch": 5}, ValueError, r"`initial_epoch` \(5\) must not exceed `epochs` \(3\)"),
        ({"validation_data": (X, Y, W[:3])}, ValueError, r"`validation_data\[2\]` must have shape \(96,\)"),
    ],
)
def test_bad_keywords_are_refused_and_change_nothing(kwargs, exc, match):
    model, built = _model(), _model().build(5)
    before = _params(built)
    for target in (model, built):
        with pytest.raises(exc, match=match):
            target.fit(X, Y, loss=LOSS, epochs=3, progress=False, **kwargs)
    assert not model.built  # a lazy model is built only once every argument passed
    for p, q in zip(_params(built), before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_loss_names_of_other_libraries_get_dense_xps():
    names = {
        "sparse_categorical_crossentropy": "softmax_cross_entropy",
        "binary_crossentropy": "binary_cross_entropy",
        "mean_squared_error": "mse",
    }
    for name, ours in names.items():
        with pytest.raises(ValueError, match=rf"got '{name}' \(did you mean '{ours}'\?\)"):
            _model().fit(X, Y, loss=name, progress=False)


# -- verbose -------------------------------------------------------------------------------------------
def test_verbose_2_prints_one_line_per_epoch_and_0_nothing(capsys):
    _model().fit(X, Y, loss=LOSS, epochs=3, verbose=2, validation_split=0.25)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("epoch 3/3 - loss: ")
    assert " - val_accuracy: " in lines[2]
    _model().fit(X, Y, loss=LOSS, epochs=2, verbose=0)
    assert capsys.readouterr() == ("", "")


# -- resuming and what carries over ---------------------------------------------------------------
def test_resumed_training_equals_uninterrupted_training(backend, tmp_path):
    """Two epochs, a checkpoint with the optimizer, then the rest: equal to four epochs at once."""
    xp, device = backend
    dtype = wide(xp, device)

    def schedule():
        return Adam(lr=StepLR(0.02, step_size=1, gamma=0.7))

    kwargs = {"loss": LOSS, "batch_size": 16, "seed": 4, "progress": False, "validation_split": 0.2}
    whole = _model(xp, device, dtype, dropout=True)
    expected = whole.fit(X, Y, optimizer=schedule(), epochs=4, **kwargs)
    first, optimizer = _model(xp, device, dtype, dropout=True), schedule()
    history = first.fit(X, Y, optimizer=optimizer, epochs=2, **kwargs)
    dense_xp.save(first, tmp_path / "m.npz", optimizer=optimizer)
    resumed_optimizer = schedule()
    resumed = dense_xp.load(tmp_path / "m.npz", device, xp=xp, optimizer=resumed_optimizer)
    later = resumed.fit(X, Y, optimizer=resumed_optimizer, epochs=4, initial_epoch=2, **kwargs)
    tol = close(dtype)
    for name, values in expected.items():
        np.testing.assert_allclose(history[name] + later[name], values, rtol=tol, atol=tol)
    _same(resumed, whole, tol)


def test_the_loss_scale_carries_over_from_one_fit_to_the_next():
    model = Sequential([Dense(8, "relu", seed=0, param_dtype="float32", compute_dtype="float16"),
                        Dense(3, seed=1, param_dtype="float32", compute_dtype="float16")])  # fmt: skip
    targets = np.full((16, 3), 3000.0)  # the first steps overflow float16 at the initial scale
    optimizer = SGD(1e-9)
    first = model.fit(
        X[:16], targets, loss="mse", optimizer=optimizer, epochs=1, batch_size=16, progress=False
    )
    assert first["skipped_steps"] == [1]
    second = model.fit(
        X[:16], targets, loss="mse", optimizer=optimizer, epochs=1, batch_size=16, progress=False
    )
    assert first["loss_scale"] == [2.0**14]
    assert second["loss_scale"] == [2.0**13]  # it went on from 2**14, where the first fit left it
    assert optimizer.loss_scale["scale"] == 2.0**13


def test_epoch_schedules_move_in_fit_and_plateau_watches_validation():
    optimizer = SGD(lr=StepLR(0.1, step_size=1, gamma=0.5))
    history = _model().fit(X, Y, loss=LOSS, optimizer=optimizer, epochs=3, progress=False)
    assert history["lr"] == [0.1, 0.05, 0.025]
    plateau = SGD(lr=ReduceLROnPlateau(0.1, patience=0, factor=0.5))
    with pytest.raises(ValueError, match=r"monitors 'val_loss', which needs `validation_data` or"):
        _model().fit(X, Y, loss=LOSS, optimizer=plateau, epochs=2, progress=False)
    history = _model().fit(X, Y, loss=LOSS, optimizer=plateau, epochs=6, validation_split=0.3, progress=False)
    val = history["val_loss"]
    for e in range(1, 6):  # the rate falls after each epoch whose val_loss did not improve on the best
        improved = val[e - 1] < min(val[: e - 1], default=np.inf)
        assert history["lr"][e] == pytest.approx(history["lr"][e - 1] * (1.0 if improved else 0.5))


def test_clipping_bounds_each_step_in_fit(backend):
    xp, device = backend
    model = _model(xp, device, wide(xp, device)).build(5)
    before = _params(model)
    model.fit(
        X * 100, Y, loss=LOSS, optimizer=SGD(1.0, clip_norm=0.01), epochs=1, batch_size=None, progress=False
    )
    step = np.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(_params(model), before, strict=True)))
    assert 0 < step <= 0.01 * (1 + 1e-5)
