"""Callbacks: Keras's EarlyStopping semantics (against Keras where installed), checkpoints, schedules."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dense_xp
from dense_xp import Dense, Sequential
from dense_xp.callbacks import Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from dense_xp.optimizers import SGD, Adam
from tests.helpers import host, wide

RNG = np.random.default_rng(0)
X = RNG.normal(size=(120, 5))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
X_VAL, Y_VAL = X[:30] + 0.3 * RNG.normal(size=(30, 5)), Y[:30]
LOSS = "softmax_cross_entropy"

SEQUENCES = {
    "falls then rises": [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.95],
    "flat": [0.5, 0.5, 0.5, 0.5, 0.5],
    "tiny improvements": [1.0, 0.999, 0.998, 0.997, 0.996, 0.995],
    "noisy": [0.9, 0.7, 0.8, 0.6, 0.65, 0.66, 0.55, 0.7, 0.71, 0.72],
}


class _Stub:
    """What a callback sees of a model: ``stop_training`` and weights (for Keras's own callback)."""

    def __init__(self):
        self.stop_training = False
        self.weights = [np.zeros(1)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = weights


def _drive(callback, values, key="val_loss"):
    """The epochs at which ``callback`` stops training on ``values``, run as fit runs it."""
    model = _Stub()
    if hasattr(callback, "set_model"):  # Keras's own
        callback.set_model(model)
    else:
        callback.model = model
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {key: value, "loss": value})
        if model.stop_training:
            return epoch
    return None


@pytest.mark.parametrize("name", list(SEQUENCES))
@pytest.mark.parametrize(
    "kwargs",
    [{"patience": 0}, {"patience": 2}, {"patience": 2, "min_delta": 0.01}, {"patience": 1, "baseline": 0.72},
     {"patience": 1, "start_from_epoch": 3}],
)  # fmt: skip
def test_early_stopping_stops_where_keras_stops(name, kwargs, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "jax"))  # read once, at import
    keras = pytest.importorskip("keras", reason="Keras is not installed (the semantics are Keras's)")
    values = SEQUENCES[name]
    ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    assert _drive(ours, values) == _drive(theirs, values)
    assert (ours.best, ours.best_epoch) == (float(theirs.best), theirs.best_epoch)


def test_early_stopping_by_rule_without_keras():
    """patience=2 on val_loss 1.0, 0.8, 0.7, 0.75, 0.72, 0.71: no improvement in epochs 3 and 4, stop at 4."""
    stopping = EarlyStopping(patience=2)
    assert _drive(stopping, SEQUENCES["falls then rises"]) == 4
    assert (stopping.best, stopping.best_epoch) == (0.7, 2)
    accuracy = EarlyStopping(monitor="val_accuracy", patience=1)  # auto: accuracies rise
    assert _drive(accuracy, [0.5, 0.6, 0.55, 0.58], key="val_accuracy") == 2


def test_early_stopping_restores_the_best_parameters_and_optimizer_state(backend):
    xp, device = backend
    kwargs = {"dtype": wide(xp, device), "device": device, "xp": xp}
    model = Sequential([Dense(16, "tanh", seed=0, init="he_normal", **kwargs), Dense(3, seed=1, **kwargs)])
    optimizer = Adam(0.05)
    snapshots = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(([host(p) for p in self.model.parameters()], self.optimizer.state_dict()))

    stopping = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(
        X, Y, loss=LOSS, optimizer=optimizer, epochs=40, batch_size=8, validation_data=(X_VAL, Y_VAL), seed=0,
        progress=False, callbacks=[Record(), stopping],
    )  # fmt: skip
    assert len(history["loss"]) < 40  # stopped
    best = int(np.argmin(history["val_loss"]))
    assert stopping.best_epoch == best
    for p, q in zip(model.parameters(), snapshots[best][0], strict=True):
        np.testing.assert_array_equal(host(p), q)
    state = optimizer.state_dict()
    assert state["steps"] == snapshots[best][1]["steps"]
    for now, then in zip(state["state"], snapshots[best][1]["state"], strict=True):
        for name in now:
            np.testing.assert_array_equal(now[name], then[name])


def test_a_user_callback_in_a_few_lines_sees_every_hook():
    calls = []

    class Log(Callback):
        def on_train_begin(self, logs=None):
            calls.append("begin")

        def on_epoch_end(self, epoch, logs=None):
            calls.append((epoch, sorted(logs)))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("batch", batch, logs["size"]))

        def on_train_end(self, logs=None):
            calls.append("end")

    model = Sequential([Dense(3, seed=0)])
    model.fit(X[:20], Y[:20], loss=LOSS, epochs=2, batch_size=8, progress=False, callbacks=[Log()])
    assert calls[0] == "begin"
    assert calls[-1] == "end"
    assert ("batch", 2, 4) in calls  # the third batch of 20 rows has 4
    assert (1, ["accuracy", "loss"]) in calls


def test_a_callback_stops_training_within_an_epoch():
    class StopAfterTwoBatches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    model = Sequential([Dense(3, seed=0)])
    history = model.fit(
        X, Y, loss=LOSS, epochs=5, batch_size=8, progress=False, callbacks=[StopAfterTwoBatches()]
    )
    assert len(history["loss"]) == 1
    assert model.layers[0].W is not None


def test_model_checkpoint_saves_the_best_epochs_with_the_optimizer(tmp_path):
    model = Sequential([Dense(8, "tanh", seed=0, init="he_normal"), Dense(3, seed=1)])
    optimizer = Adam(0.02)
    path = str(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.npz")
    checkpoint = ModelCheckpoint(path, save_best_only=True)
    history = model.fit(
        X, Y, loss=LOSS, optimizer=optimizer, epochs=6, validation_data=(X_VAL, Y_VAL), progress=False,
        callbacks=[checkpoint],
    )  # fmt: skip
    improved = [e for e, v in enumerate(history["val_loss"]) if v == min(history["val_loss"][: e + 1])]
    assert [os.path.basename(p) for p in checkpoint.saved] == [
        f"m-{e + 1:02d}-{history['val_loss'][e]:.3f}.npz" for e in improved
    ]
    fresh = Adam(0.02)
    back = dense_xp.load(checkpoint.saved[-1], optimizer=fresh)
    assert fresh.steps > 0
    assert back.evaluate(X_VAL, Y_VAL, loss=LOSS)["loss"] == pytest.approx(
        min(history["val_loss"]), rel=1e-12
    )


def test_learning_rate_scheduler_sets_each_epochs_rate():
    optimizer = SGD(0.1)
    seen = []

    class Watch(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.optimizer.lr)

    Sequential([Dense(3, seed=0)]).fit(
        X, Y, loss=LOSS, optimizer=optimizer, epochs=3, progress=False,
        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch), Watch()],
    )  # fmt: skip
    assert seen == [0.1, 0.05, 0.025]


@pytest.mark.parametrize(
    ("callbacks", "exc", "match"),
    [
        (Callback(), TypeError, r"`callbacks` must be a list of callbacks, got Callback"),
        ([object()], TypeError, r"`callbacks\[0\]` has none of the hooks"),
        (
            [EarlyStopping(monitor="val_loss")],
            ValueError,
            r"EarlyStopping monitors 'val_loss', which the epoch",
        ),
        ([ModelCheckpoint("m-{nope}.npz")], ValueError, r"`path` 'm-\{nope\}.npz' has a format field"),
    ],
)
def test_bad_callbacks_are_refused(callbacks, exc, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = Sequential([Dense(3, seed=0)])
    with pytest.raises(exc, match=match):
        model.fit(X, Y, loss=LOSS, epochs=2, progress=False, callbacks=callbacks)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"mode": "up"}, ValueError, r"`mode` must be 'auto', 'min' or 'max', got 'up'"),
        ({"monitor": "val_f1"}, ValueError, r"cannot tell whether 'val_f1' should fall or rise"),
        ({"patience": -1}, ValueError, r"`patience` must be an integer >= 0, got -1"),
        ({"min_delta": float("nan")}, ValueError, r"`min_delta` must be a finite number"),
        ({"restore_best_weights": 1}, TypeError, r"`restore_best_weights` must be True or False"),
    ],
)
def test_early_stopping_refuses_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EarlyStopping(**kwargs)
