"""dense_xp.distributed: predict, evaluate and fit on Dask arrays, on a LocalCluster of two processes."""

from __future__ import annotations

import importlib
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid

import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, Sequential
from dense_xp._chunks import Payload
from dense_xp.activations import ACTIVATIONS
from dense_xp.optimizers import SGD, Adam
from tests.helpers import host, wide

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

LOSS = "softmax_cross_entropy"
CHUNKS = (70, 50, 50, 30)  # uneven, so batches straddle chunk boundaries


def _cluster(scratch):
    """A LocalCluster of two worker processes that shares nothing with the rest of the machine.

    Every port is one the system picks (``":0"``, scheduler port 0): ``dashboard_address=None``
    still tries port 8787 and warns when another program holds it, which ``filterwarnings =
    error`` turns into a failed start. The workers' scratch space is a folder of this run's own.
    """
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        scheduler_port=0,
        dashboard_address=":0",
        memory_limit="1GiB",
        local_directory=str(scratch),
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with _cluster(tmp_path_factory.mktemp("dask-scratch")) as cluster, distributed.Client(cluster) as c:
        yield c


def test_the_cluster_starts_while_dasks_default_ports_are_taken(tmp_path):
    """Another Dask cluster (or anything else) on ports 8786 and 8787 does not stop the suite's own."""
    held = []
    for port in (8786, 8787):
        sock = socket.socket()
        try:
            sock.bind(("", port))
            sock.listen()
            held.append(sock)
        except OSError:  # taken already: by another program, which is the case under test
            sock.close()
    try:
        with _cluster(tmp_path) as cluster, distributed.Client(cluster) as c:
            assert c.submit(sum, [1, 2]).result(timeout=60) == 3
            assert cluster.scheduler_address.rsplit(":", 1)[1] != "8786"
    finally:
        for sock in held:
            sock.close()


def _model(dtype="float64"):
    return Sequential(
        [
            DenseLayer(6, 16, "tanh", seed=0, init="glorot_normal", dtype=dtype),
            DenseLayer(16, 8, "relu", seed=1, init="he_normal", dtype=dtype),
            DenseLayer(8, 3, None, seed=2, init="glorot_uniform", dtype=dtype),
        ]
    )


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y


def _dask(X, y, chunks=CHUNKS, *, persist=True):
    Xd, yd = da.from_array(X, chunks=(chunks, 6)), da.from_array(y, chunks=(chunks,))
    return dask.persist(Xd, yd) if persist else (Xd, yd)


def _params(model):
    return [host(p) for p in model.parameters()]


def _assert_close(a, b, tol):
    for p, q in zip(_params(a), _params(b), strict=True):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


class _Graphs:
    """Records the graph keys of every ``dask.compute`` call."""

    def __init__(self, monkeypatch):
        self.keys: list[list[str]] = []
        compute = dask.compute

        def spy(*args, **kwargs):
            self.keys.append([str(k) for a in args for k in dict(a.__dask_graph__())])
            return compute(*args, **kwargs)

        monkeypatch.setattr(dask, "compute", spy)


# -- packaging -----------------------------------------------------------------------------
def test_importing_and_training_in_memory_never_imports_dask():
    code = (
        "import sys, numpy as np, dense_xp\n"
        "m = dense_xp.Sequential([dense_xp.DenseLayer(3, 2, seed=0)])\n"
        "m.fit(np.ones((4, 3)), np.arange(4) % 2, loss='softmax_cross_entropy', epochs=1, progress=False)\n"
        "m.predict(np.ones((2, 3)))\n"
        "print(sorted(k for k in sys.modules if k == 'dask' or k.startswith(('dask.', 'distributed'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


# -- predict and evaluate ------------------------------------------------------------------
def test_predict_is_a_lazy_map_blocks_equal_to_in_memory(client):
    model = _model()
    X, _ = _data()
    Xd = da.from_array(X, chunks=(CHUNKS, (3, 3)))  # split along features too: joined first
    out = model.predict(Xd)
    assert isinstance(out, da.Array)
    assert out.chunks == (CHUNKS, (3,))
    keys = [str(k) for k in dict(out.__dask_graph__())]
    assert sum(k.startswith("dense-xp-model") for k in keys) == 1  # the model is one key, not one per chunk
    expected = model.predict(X)
    model.fit(X, _data()[1], loss=LOSS, epochs=1, progress=False)  # the lazy result keeps its parameters
    np.testing.assert_allclose(out.compute(), expected, rtol=1e-12, atol=1e-14)
    with dask.config.set(scheduler="threads"):  # a local scheduler works too
        np.testing.assert_allclose(model.predict(Xd).compute(), model.predict(X), rtol=1e-12, atol=1e-14)


def test_predict_and_evaluate_take_unknown_chunk_sizes(client):
    model = _model()
    X, y = _data()
    Xd, yd = _dask(X, y, persist=False)
    keep = Xd[:, 0] > -0.5
    Xn, yn = Xd[keep], yd[keep]
    assert np.isnan(Xn.shape[0])
    mask = X[:, 0] > -0.5
    np.testing.assert_allclose(model.predict(Xn).compute(), model.predict(X[mask]), rtol=1e-12, atol=1e-14)
    scores = model.evaluate(Xn, yn, loss=LOSS)
    expected = model.evaluate(X[mask], y[mask], loss=LOSS)
    assert scores == pytest.approx(expected, rel=1e-12)


def test_a_chunk_that_x_and_y_derive_from_is_computed_once():
    X, _ = _data()
    made = []

    def make(block):
        made.append(len(block))
        return block

    Xd = da.from_array(X, chunks=(CHUNKS, 6)).map_blocks(make, dtype=X.dtype)
    yd = da.argmax(Xd[:, :3], axis=1)  # the labels come from the features' chunks
    model = _model()
    made.clear()  # Dask's probe of the output type
    with dask.config.set(scheduler="sync"):
        model.evaluate(Xd, yd, loss=LOSS)
        assert sorted(made) == sorted(CHUNKS)
        made.clear()
        model.fit(Xd, yd, loss=LOSS, epochs=1, batch_size=None, progress=False)
    assert sorted(made) == sorted(CHUNKS * 2)  # the targets' check, then the one step


@pytest.mark.parametrize(("loss", "target"), [(LOSS, "labels"), (LOSS, "one-hot"), ("mse", "one-hot")])
def test_evaluate_equals_in_memory(client, loss, target):
    model = _model()
    X, y = _data()
    if target == "one-hot":
        y = np.eye(3)[y]
    Xd, yd = da.from_array(X, chunks=(CHUNKS, 6)), da.from_array(y, chunks=(CHUNKS, *y.shape[1:]))
    scores = model.evaluate(Xd, yd, loss=loss)
    assert set(scores) == {"loss", "accuracy"}
    assert scores == pytest.approx(model.evaluate(X, y, loss=loss), rel=1e-12)
    assert model.evaluate(Xd, yd, loss=loss, metrics=()) == pytest.approx({"loss": scores["loss"]}, rel=1e-12)


# -- fit -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batch_size", "shuffle", "optimizer"),
    [(None, False, "adam"), (48, False, "adam"), (48, True, "sgd"), (200, True, "adam")],
    ids=["full-batch", "mini-batch", "shuffled-sgd", "shuffled-adam"],
)
def test_fit_equals_in_memory_training(client, monkeypatch, batch_size, shuffle, optimizer):
    X, y = _data()
    Xv, yv = _data(90, seed=1)
    make = (lambda: Adam(lr=0.01)) if optimizer == "adam" else (lambda: SGD(lr=0.1, momentum=0.9))
    ours, ref = _model(), _model()
    graphs = _Graphs(monkeypatch)
    history = ours.fit(
        *_dask(X, y), loss=LOSS, optimizer=make(), epochs=3, batch_size=batch_size, shuffle=shuffle,
        validation_data=_dask(Xv, yv, chunks=(45, 45)), seed=7, progress=False,
    )  # fmt: skip
    expected = ref.fit(
        X, y, loss=LOSS, optimizer=make(), epochs=3, batch_size=batch_size or len(X), shuffle=shuffle,
        validation_data=(Xv, yv), seed=7, progress=False,
    )  # fmt: skip
    _assert_close(ours, ref, 1e-10)
    assert set(history) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(history[name], values, rtol=1e-10)
    assert all(type(p) is np.ndarray for p in ours.parameters())  # concrete, on the client
    steps = [keys for keys in graphs.keys if any(k.startswith("dense-xp-fit-") for k in keys)]
    per_epoch = 1 if batch_size is None else -(-len(X) // batch_size)
    assert len(steps) == 3 * per_epoch
    for keys in steps:  # each step sends the model once, whatever the number of chunks
        assert sum(k.endswith("-model") for k in keys) == 1
    tasks = [[k for k in keys if k.startswith("dense-xp-fit-") and "-sum" not in k and "-model" not in k]
             for keys in steps]  # fmt: skip
    assert max(map(len, tasks)) > 1  # steps spread over chunks


@pytest.mark.parametrize("chunks", [CHUNKS, (100, 100), (37, 63, 100)])
def test_dropout_masks_in_a_dask_fit_equal_in_memory_whatever_the_chunking(client, chunks):
    from dense_xp import Dropout, LayerNorm

    X, y = _data()

    def model(rate=0.4):
        return Sequential(
            [DenseLayer(6, 16, "tanh", seed=0, init="glorot_normal", dtype="float64"), Dropout(rate, seed=3),
             LayerNorm(), DenseLayer(16, 3, None, seed=2, init="glorot_uniform", dtype="float64")]
        )  # fmt: skip

    ours, ref = model(), model()
    kwargs = {"loss": LOSS, "epochs": 2, "batch_size": 32, "seed": 5, "progress": False}
    history = ours.fit(*_dask(X, y, chunks=chunks), optimizer=SGD(lr=0.1), **kwargs)
    expected = ref.fit(X, y, optimizer=SGD(lr=0.1), **kwargs)
    _assert_close(ours, ref, 1e-10)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-10)
    assert model(0.0).fit(X, y, optimizer=SGD(lr=0.1), **kwargs)["loss"] != expected["loss"]  # it dropped


def test_a_batchnorm_model_is_refused_on_dask_data_and_not_changed(client):
    from dense_xp import BatchNorm

    X, y = _data()
    model = Sequential([DenseLayer(6, 8, seed=0, dtype="float64"), BatchNorm(), DenseLayer(8, 3, seed=1)])
    before = _params(model)
    with pytest.raises(
        ValueError, match=r"`layers\[1\]` \(BatchNorm\) normalizes with the statistics of each"
    ):
        model.fit(*_dask(X, y), loss=LOSS, progress=False)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_user_layer_trains_on_dask_data_as_in_memory(client):
    from tests.test_layers_base import Scale

    X, y = _data()

    def model():
        return Sequential([DenseLayer(6, 8, "tanh", seed=0, init="he_normal", dtype="float64"), Scale(0.5),
                           DenseLayer(8, 3, seed=1, dtype="float64")])  # fmt: skip

    ours, ref = model(), model()
    kwargs = {"loss": LOSS, "epochs": 2, "batch_size": 50, "seed": 1, "progress": False}
    ours.fit(*_dask(X, y), optimizer=Adam(0.01), **kwargs)
    ref.fit(X, y, optimizer=Adam(0.01), **kwargs)
    _assert_close(ours, ref, 1e-10)


def test_fit_in_float32_tracks_float64(client):
    X, y = _data()
    ours, ref = _model("float32"), _model("float64")
    ours.fit(
        *_dask(X.astype(np.float32), y), loss=LOSS, epochs=2, batch_size=64, shuffle=False, progress=False
    )
    ref.fit(X, y, loss=LOSS, epochs=2, batch_size=64, shuffle=False, progress=False)
    assert all(p.dtype == np.float32 for p in ours.parameters())
    _assert_close(ours, ref, 2e-4)


def test_fit_on_the_default_scheduler_equals_in_memory():
    X, y = _data()
    ours, ref = _model(), _model()
    with dask.config.set(scheduler="threads"):
        ours.fit(*_dask(X, y, persist=False), loss=LOSS, epochs=2, batch_size=100, seed=3, progress=False)
    ref.fit(X, y, loss=LOSS, epochs=2, batch_size=100, seed=3, progress=False)
    _assert_close(ours, ref, 1e-10)


@pytest.fixture(scope="module")
def saved(client, tmp_path_factory):
    """A model trained on Dask arrays, and the path it was saved to."""
    X, y = _data()
    model = _model()
    model.fit(*_dask(X, y), loss=LOSS, epochs=2, batch_size=64, progress=False)
    path = tmp_path_factory.mktemp("distributed") / "model.npz"
    model.save(path)
    return model, path


def test_model_saved_after_distributed_fit_loads_anywhere(saved, backend):
    xp, device = backend
    model, path = saved
    if wide(xp, device) != "float64":  # a float64 checkpoint is never downcast silently
        with pytest.raises(ValueError, match=r"checkpoint's dtype float64 is not supported on device"):
            dense_xp.load(path, device=device, xp=xp)
        return
    loaded = dense_xp.load(path, device=device, xp=xp)
    assert loaded.device == device
    X, _ = _data()
    np.testing.assert_allclose(host(loaded.predict(X)), model.predict(X), rtol=1e-6, atol=1e-6)
    _assert_close(loaded.to("cpu"), model, 0)


def test_divergence_raises_like_in_memory_and_keeps_finite_weights(client):
    X, y = _data()
    ours, ref = _model(), _model()
    with pytest.raises(dense_xp.TrainingDivergedError) as info:
        ours.fit(
            *_dask(X * 1e3, y), loss=LOSS, optimizer=SGD(lr=1e300), epochs=3, batch_size=32, progress=False
        )
    with pytest.raises(dense_xp.TrainingDivergedError) as expected:
        ref.fit(
            X * 1e3, y, loss=LOSS, optimizer=SGD(lr=1e300), epochs=3, batch_size=32, progress=False,
            check_every=1,  # each Dask step reads its loss on the client: it checks every batch
        )  # fmt: skip
    assert (info.value.epoch, info.value.batch) == (expected.value.epoch, expected.value.batch)
    assert str(info.value) == str(expected.value)
    assert info.value.batch >= 2
    assert all(np.isfinite(p).all() for p in _params(ours))


def test_progress_bar_shows_rows_per_second_and_loss(client, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    X, y = _data()
    _model().fit(*_dask(X, y), loss=LOSS, epochs=1, batch_size=100, progress=True)
    text = screen.getvalue()
    assert "epoch 1/1" in text
    assert "sample/s" in text
    assert "loss=" in text


# -- bad input -----------------------------------------------------------------------------
def _bad_cases():
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=(CHUNKS, 6)), da.from_array(y, chunks=(CHUNKS,))
    unknown_width = da.from_delayed(dask.delayed(X), shape=(len(X), np.nan), dtype=X.dtype)
    return {
        "rows-differ": (
            {"y": da.from_array(y, chunks=100)},
            ValueError,
            r"`y` must have the row chunks of `X`",
        ),
        "unknown-sizes": (
            {"X": Xd[Xd[:, 0] < 9], "y": yd[Xd[:, 0] < 9]},
            ValueError,
            r"`X` has row chunks of unknown size .*compute_chunk_sizes",
        ),
        "unknown-width": (
            {"X": unknown_width},
            ValueError,
            r"`X` must have shape \(n, 6\), got \(200, nan\)",
        ),
        "string-X": ({"X": Xd.astype(str)}, TypeError, r"`X` must hold real numbers, got .* dtype <U"),
        "bool-y": ({"y": yd > 0}, TypeError, r"`y` must hold real numbers, got a Dask array of dtype bool"),
        "host-y": ({"y": y}, TypeError, r"`y` must be a Dask array with the row chunks of `X`, got ndarray"),
        "host-X": ({"X": X}, TypeError, r"`X` must be a Dask array with the row chunks of `y`, got ndarray"),
        "labels-out-of-range": ({"y": yd + 5}, ValueError, r"`y` must hold class labels in \[0, 3\)"),
        "bad-validation": (
            {"validation_data": (Xd, da.from_array(y, chunks=50))},
            ValueError,
            r"`validation_data\[1\]` must have the row chunks of `validation_data\[0\]`",
        ),
        "batch-size": ({"batch_size": 0}, ValueError, r"`batch_size` must be an integer >= 1, got 0"),
        "nan-X": (
            {"X": da.from_array(_spoil(X, [(131, 4), (199, 0)]), chunks=(CHUNKS, 6))},
            ValueError,
            r"`X` must hold finite numbers, got 2 NaN or infinite value\(s\), the first at index \(131, 4\); "
            r".*check_finite=False",
        ),
        "inf-validation": (
            {"validation_data": (da.from_array(_spoil(X, [(7, 1)], np.inf), chunks=(CHUNKS, 6)), yd)},
            ValueError,
            r"`validation_data\[0\]` must hold finite numbers, got 1 .* index \(7, 1\)",
        ),
        "nan-host-validation": (
            {"validation_data": (_spoil(X, [(3, 3)]), y)},
            ValueError,
            r"`validation_data\[0\]` must hold finite numbers, got 1 .* index \(3, 3\)",
        ),
        "check-finite-flag": (
            {"check_finite": 1},
            TypeError,
            r"`check_finite` must be True or False, got int 1",
        ),
        "shuffle-flag": ({"shuffle": "no"}, TypeError, r"`shuffle` must be True or False, got str 'no'"),
        "check-every-0": ({"check_every": 0}, ValueError, r"`check_every` must be an integer >= 1, got 0"),
        "negative-weights": (
            {"sample_weight": da.from_array(-np.ones(200), chunks=(CHUNKS,))},
            ValueError,
            r"`sample_weight` must hold weights >= 0, got a smallest weight of -1.0",
        ),
        "nan-weights": (
            {"sample_weight": da.from_array(_spoil(np.ones((200, 1)), [(9, 0)])[:, 0], chunks=(CHUNKS,))},
            ValueError,
            r"`sample_weight` must hold finite numbers, got 1 NaN",
        ),
        "check-every-str": (
            {"check_every": "x"},
            TypeError,
            r"`check_every` must be an integer >= 1, got str",
        ),
        "one-hot-too-wide": (
            {"y": da.from_array(np.eye(4)[y % 4], chunks=(CHUNKS, 4))},
            ValueError,
            r"`y` must have shape \(n,\) or \(n, 3\) with n >= 1 for softmax_cross_entropy, got shape \(200,",
        ),
        "one-hot-too-wide-validation": (
            {"validation_data": (Xd, da.from_array(np.eye(4)[y % 4], chunks=(CHUNKS, 4)))},
            ValueError,
            r"`validation_data\[1\]` must have shape .*\(n, 3\).*got shape \(200, 4\)",
        ),
    }


def _spoil(X, where, value=np.nan):
    """A copy of ``X`` with ``value`` at each (row, column) of ``where``."""
    X = X.copy()
    for i, j in where:
        X[i, j] = value
    return X


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_and_changes_nothing(client, case):
    kwargs, exc, match = BAD[case]
    X, y = _data()
    args = {"X": da.from_array(X, chunks=(CHUNKS, 6)), "y": da.from_array(y, chunks=(CHUNKS,))} | kwargs
    model, optimizer = _model(), Adam()
    before = _params(model)
    with pytest.raises(exc, match=match):
        model.fit(args.pop("X"), args.pop("y"), loss=LOSS, optimizer=optimizer, progress=False, **args)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)
    assert optimizer.steps == 0
    assert all(not layer.grads for layer in model.layers)


def test_an_optimizer_holding_another_models_state_is_refused_before_any_gradient(client):
    X, y = _data()
    other = Sequential([DenseLayer(6, 2, seed=0, dtype="float64")])
    optimizer = Adam()
    other.fit(X, y % 2, loss=LOSS, optimizer=optimizer, epochs=1, progress=False)
    model = _model()
    before = _params(model)
    with pytest.raises(ValueError, match=r"`params` must match those of the first step"):
        model.fit(*_dask(X, y), loss=LOSS, optimizer=optimizer, progress=False)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)
    assert all(not layer.grads for layer in model.layers)


def test_check_finite_false_skips_the_scan_and_the_guard_still_stops_training(client):
    X, y = _data()
    Xd, yd = _dask(_spoil(X, [(131, 4)]), y)
    model = _model()
    with pytest.raises(dense_xp.TrainingDivergedError, match=r"became NaN or infinite"):
        model.fit(
            Xd, yd, loss=LOSS, epochs=1, batch_size=50, shuffle=False, progress=False, check_finite=False
        )
    assert all(np.isfinite(p).all() for p in _params(model))


def test_predict_and_evaluate_refuse_bad_input(client):
    model = _model()
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=(CHUNKS, 6)), da.from_array(y, chunks=(CHUNKS,))
    with pytest.raises(TypeError, match=r"`X` must hold real numbers, got a Dask array of dtype <U"):
        model.predict(Xd.astype(str))
    with pytest.raises(ValueError, match=r"`X` must have shape \(n, 6\), got \(200, 5\)"):
        model.predict(Xd[:, :5])
    with pytest.raises(ValueError, match=r"`y` must have the row chunks of `X`, got \(100, 100\) and \(70, "):
        model.evaluate(Xd, da.from_array(y, chunks=100), loss=LOSS)
    with pytest.raises(ValueError, match=r"`y` must hold class labels in \[0, 3\), got values in \[5, 7\]"):
        model.evaluate(Xd, yd + 5, loss=LOSS)
    with pytest.raises(ValueError, match=r"`metrics` must be a sequence of names"):
        model.evaluate(Xd, yd, loss=LOSS, metrics=["f1"])


# -- mixed precision -------------------------------------------------------------------------
def test_a_mixed_precision_model_predicts_on_dask_data_and_refuses_to_train_on_it():
    mixed = Sequential(
        [
            DenseLayer(6, 8, "relu", seed=0, param_dtype="float32", compute_dtype="float16"),
            DenseLayer(8, 3, seed=1, param_dtype="float32", compute_dtype="float16"),
        ]
    )
    X, y = _data()
    Xd, yd = _dask(X, y, persist=False)
    out = mixed.predict(Xd)  # the default scheduler: no cluster needed
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.compute(), mixed.predict(X))
    before = _params(mixed)
    with pytest.raises(ValueError, match=r"computes in float16 under float32 .*model.to\(dtype='float32'\)"):
        mixed.fit(Xd, yd, loss=LOSS, progress=False)
    for p, q in zip(_params(mixed), before, strict=True):
        np.testing.assert_array_equal(p, q)


# -- lazy models (xp=dask.array) -----------------------------------------------------------
def _lazy():
    return Sequential([DenseLayer(6, 8, "relu", seed=0, xp=da), DenseLayer(8, 3, seed=1, xp=da)])


def test_a_lazy_model_refuses_to_train_and_points_to_dask_data():
    model = _lazy()
    X, y = _data()
    before = _params(model)
    for data in [(X, y), _dask(X, y, persist=False)]:
        with pytest.raises(TypeError, match=r"not train a lazy model .*NumPy or CuPy model on Dask-array"):
            model.fit(*data, loss=LOSS, progress=False)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_lazy_model_predicts_lazily_and_right():
    model, ref = _lazy(), Sequential([DenseLayer(6, 8, "relu", seed=0), DenseLayer(8, 3, seed=1)])
    X, _ = _data()
    Xd = da.from_array(X, chunks=(CHUNKS, 6))
    for data in (X, Xd, Xd[Xd[:, 0] > 0]):
        out = model.predict(data)
        assert isinstance(out, da.Array)
        expected = ref.predict(X if data is X or data is Xd else X[X[:, 0] > 0])
        np.testing.assert_allclose(out.compute(), expected, rtol=1e-12, atol=1e-14)
    assert isinstance(model.forward(Xd), da.Array)


def test_a_lazy_layer_says_backward_needs_known_chunk_sizes():
    layer = DenseLayer(6, 3, seed=0, xp=da)
    Xd = da.from_array(_data()[0], chunks=(CHUNKS, 6))
    out = layer.forward(Xd[Xd[:, 0] > 0])
    with pytest.raises(ValueError, match=r"unknown number of rows .*compute_chunk_sizes\(\)"):
        layer.backward(da.ones_like(out), lr=0.1)


# -- CuPy chunks ---------------------------------------------------------------------------
def test_cupy_chunks_compute_on_the_gpu():
    reason = dense_xp._backend.cuda_unusable_reason(0)
    if reason is not None:
        pytest.skip(f"no CUDA device answers: {reason}")
    import cupy

    X, y = _data()
    Xg, yg = (
        da.from_array(cupy.asarray(X), chunks=(CHUNKS, 6)),
        da.from_array(cupy.asarray(y), chunks=(CHUNKS,)),
    )
    model, ref = _model(), _model()
    with dask.config.set(scheduler="threads"):
        out = model.predict(Xg).compute()
        assert isinstance(out, cupy.ndarray)
        np.testing.assert_allclose(out.get(), model.predict(X), rtol=1e-12, atol=1e-14)
        assert model.evaluate(Xg, yg, loss=LOSS) == pytest.approx(model.evaluate(X, y, loss=LOSS), rel=1e-12)
        model.fit(Xg, yg, loss=LOSS, epochs=2, batch_size=48, shuffle=True, seed=1, progress=False)
    ref.fit(X, y, loss=LOSS, epochs=2, batch_size=48, shuffle=True, seed=1, progress=False)
    _assert_close(model, ref, 1e-10)


def test_predict_proba_follows_a_distributed_fit(client):
    X, y = _data()
    model = _model()
    model.fit(*_dask(X, y), loss=LOSS, epochs=1, batch_size=32, progress=False)
    proba = host(model.predict_proba(X))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


# -- failures on the workers reach the caller ------------------------------------------------
LIMIT = 120  # seconds: generous on a shared machine; a call that hangs fails the test instead


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    """A cluster of its own, so that a regression that kills workers fails these tests alone."""
    with _cluster(tmp_path_factory.mktemp("dask-fragile")) as cluster, distributed.Client(cluster) as c:
        yield c


def _within(call, *args, **kwargs):
    """``call(*args, **kwargs)`` in a daemon thread: its result, its exception, or a failure after LIMIT s."""
    box = {}

    def target():
        try:
            box["value"] = call(*args, **kwargs)
        except BaseException as error:  # handed to the test's thread
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    if thread.is_alive():
        pytest.fail(
            f"{getattr(call, '__name__', call)} still waits after {LIMIT} s: a worker's error was lost"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def registry():
    """Restores :data:`dense_xp.activations.ACTIVATIONS` after the test."""
    saved = dict(ACTIVATIONS)
    yield ACTIVATIONS
    ACTIVATIONS.clear()
    ACTIVATIONS.update(saved)


def _registry_on_workers():
    return importlib.import_module("dense_xp.activations").ACTIVATIONS


def _registered_on(client, name):
    return set(client.run(lambda: name in _registry_on_workers()).values())


def _cube_model(name):
    return Sequential([DenseLayer(6, 5, name, seed=0, init="glorot_normal"), DenseLayer(5, 3, seed=1)])


def _on(client, call, *args, **kwargs):
    """``call(*args, **kwargs)`` within LIMIT s, with ``client`` as Dask's scheduler.

    ``as_current`` rather than ``dask.config``: a nanny that restarts a worker
    pickles the configuration, which cannot hold a client.
    """

    def run():
        with client.as_current():
            return call(*args, **kwargs)

    return _within(run)


def _calls(client):
    """Each public Dask call on a model and data, as ``name -> call(model, Xd, yd)``."""
    return {
        "predict-result": lambda m, Xd, yd: client.compute(m.predict(Xd)).result(timeout=LIMIT),
        "predict-compute": lambda m, Xd, yd: _on(client, m.predict(Xd).compute),
        "evaluate": lambda m, Xd, yd: _on(client, m.evaluate, Xd, yd, loss=LOSS),
        "fit": lambda m, Xd, yd: _on(
            client, m.fit, Xd, yd, loss=LOSS, epochs=1, batch_size=64, seed=0, progress=False
        ),
    }


CALLS = ["predict-result", "predict-compute", "evaluate", "fit"]


def _unregister(name):
    _registry_on_workers().pop(name, None)


@pytest.fixture
def client_only(fragile, registry):
    """An activation registered in this process after the workers started: they never saw it.

    Its functions are local, so cloudpickle sends them by value.
    """

    def cube(z, *, xp):
        return z * z * z

    def cube_backward(g, z, *, xp):
        return g * 3.0 * z * z

    name = f"cube_{uuid.uuid4().hex[:8]}"
    dense_xp.register_activation(name, cube, cube_backward)
    assert _registered_on(fragile, name) == {False}
    yield name
    fragile.run(_unregister, name)


@pytest.mark.parametrize("call", CALLS)
def test_an_activation_registered_on_the_client_only_travels_with_the_model(fragile, client_only, call):
    X, y = _data()
    Xd, yd = _dask(X, y, persist=False)
    ours, ref = _cube_model(client_only), _cube_model(client_only)
    got = _calls(fragile)[call](ours, Xd, yd)
    if call.startswith("predict"):
        np.testing.assert_allclose(got, ref.predict(X), rtol=1e-12, atol=1e-14)
    elif call == "evaluate":
        assert got == pytest.approx(ref.evaluate(X, y, loss=LOSS), rel=1e-12)
    else:
        ref.fit(X, y, loss=LOSS, epochs=1, batch_size=64, seed=0, progress=False)
        _assert_close(ours, ref, 1e-10)
    assert _registered_on(fragile, client_only) == {True}  # the model registered it where it ran


def test_registering_the_name_again_on_the_client_replaces_it_on_the_workers(fragile, client_only, registry):
    X, _ = _data()
    Xd = da.from_array(X, chunks=(CHUNKS, 6))
    first = fragile.compute(_cube_model(client_only).predict(Xd)).result(timeout=LIMIT)

    def scaled(z, *, xp):
        return 2.0 * z * z * z

    def scaled_backward(g, z, *, xp):
        return g * 6.0 * z * z

    dense_xp.register_activation(client_only, scaled, scaled_backward)
    model = _cube_model(client_only)
    again = fragile.compute(model.predict(Xd)).result(timeout=LIMIT)
    np.testing.assert_allclose(again, model.predict(X), rtol=1e-12, atol=1e-14)
    assert not np.allclose(again, first)


@pytest.fixture
def unimportable(fragile, registry, tmp_path, monkeypatch):
    """An activation from a module that this process imports and the workers cannot."""
    module = f"dense_xp_test_acts_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            def cube(z, *, xp):
                return z * z * z

            def cube_backward(g, z, *, xp):
                return g * 3.0 * z * z
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)  # after the workers started: their sys.path lacks it
    acts = importlib.import_module(module)
    name = f"cube_{module[-8:]}"
    dense_xp.register_activation(name, acts.cube, acts.cube_backward)
    yield name, module
    sys.modules.pop(module, None)


@pytest.mark.parametrize("call", CALLS)
def test_an_activation_the_workers_cannot_load_is_a_task_error_that_reaches_the_caller(
    fragile, unimportable, call
):
    name, module = unimportable
    Xd, yd = _dask(*_data(), persist=False)
    model = _cube_model(name)
    before = _params(model)
    message = (
        rf"activation '{name}', which is not registered in this worker's process, and its functions "
        rf"\(from module '{module}'\) do not load here \(ModuleNotFoundError: No module named '{module}'\)\. "
        rf"Make module '{module}' importable on every worker .*client.upload_file.*, or register it in every "
        rf"worker process: `client.run\(dense_xp.register_activation, '{name}', forward, backward\)` .*"
        r"`client.register_plugin\(plugin\)` with a `distributed.WorkerPlugin`"
    )
    with pytest.raises(ValueError, match=message):
        _calls(fragile)[call](model, Xd, yd)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)
    assert len(fragile.scheduler_info()["workers"]) == 2  # no worker died of it


def test_registering_the_activation_on_the_workers_as_the_message_says_fixes_it(fragile, unimportable):
    name, _ = unimportable

    def cube(z, *, xp):
        return z * z * z

    def cube_backward(g, z, *, xp):
        return g * 3.0 * z * z

    X, _ = _data()
    model = _cube_model(name)
    fragile.run(dense_xp.register_activation, name, cube, cube_backward)
    try:
        out = fragile.compute(model.predict(da.from_array(X, chunks=(CHUNKS, 6)))).result(timeout=LIMIT)
    finally:
        fragile.run(_unregister, name)
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-12, atol=1e-14)


def test_a_payload_unpickles_anywhere_and_its_task_says_what_is_missing(unimportable, monkeypatch, tmp_path):
    name, module = unimportable
    X, _ = _data()
    payload = pickle.dumps(Payload(_cube_model(name), dense_xp.losses.get_loss(LOSS)))
    del ACTIVATIONS[name]  # now a process without the registration and without the module
    del sys.modules[module]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    restored = pickle.loads(payload)  # never raises: what it carries is rebuilt when a task runs
    with pytest.raises(ValueError, match=rf"activation '{name}'.*No module named '{module}'"):
        restored.replica(X)


def test_a_payload_of_an_activation_unregistered_since_says_so_in_its_task(client_only, registry):
    payload = Payload(_cube_model(client_only))
    del ACTIVATIONS[client_only]  # after the model was built and sent, before it was pickled
    restored = pickle.loads(pickle.dumps(payload))
    message = (
        rf"activation '{client_only}', which is not registered in this worker's process, nor was it in the "
        rf"client's when the model was sent\. Register it in every worker process: `client.run"
    )
    with pytest.raises(ValueError, match=message):
        restored.replica(_data()[0])


@pytest.mark.parametrize("call", ["evaluate", "fit"])
def test_a_loss_from_a_module_the_workers_cannot_import_is_a_task_error(fragile, tmp_path, monkeypatch, call):
    module = f"dense_xp_test_loss_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            import dense_xp

            class Loss:
                def __call__(self, out, y):
                    return dense_xp.losses.get_loss("softmax_cross_entropy")(out, y)
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)  # after the workers started
    try:
        loss = importlib.import_module(module).Loss()
        Xd, yd = _dask(*_data(), persist=False)
        model = _model()
        run = {
            "evaluate": model.evaluate,
            "fit": lambda *a, **k: model.fit(*a, **k, epochs=1, progress=False),
        }
        message = (
            r"the model sent to this Dask worker cannot be rebuilt in the worker's process "
            rf"\(ModuleNotFoundError: No module named '{module}'\): every module .* must be importable on "
            r"every worker .*client.upload_file.*cloudpickle.register_pickle_by_value\(module\)"
        )
        with pytest.raises(ValueError, match=message):
            _on(fragile, run[call], Xd, yd, loss=loss)
    finally:
        sys.modules.pop(module, None)
    assert len(fragile.scheduler_info()["workers"]) == 2


class _Loss:
    """A loss of one's own, with no target check, that fails or kills its worker."""

    def __init__(self, what, client_pid):
        self.what, self.client_pid = what, client_pid

    def __call__(self, out, y):
        if os.getpid() != self.client_pid:  # never in the test's process
            if self.what == "raise":
                msg = f"`y` holds a value this loss cannot take: {int(y[0])}"
                raise ValueError(msg)
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
        return dense_xp.losses.get_loss(LOSS)(out, y)


@pytest.mark.parametrize("call", ["evaluate", "fit"])
def test_a_loss_that_raises_on_a_worker_raises_in_the_caller(fragile, call):
    Xd, yd = _dask(*_data(), persist=False)
    model = _model()
    run = {"evaluate": model.evaluate, "fit": lambda *a, **k: model.fit(*a, **k, epochs=1, progress=False)}
    with pytest.raises(ValueError, match=r"`y` holds a value this loss cannot take"):
        _on(fragile, run[call], Xd, yd, loss=_Loss("raise", os.getpid()))


def test_a_worker_that_dies_in_a_step_fails_fit_with_killed_worker(fragile):
    Xd, yd = _dask(*_data(), persist=False)
    model = _model()
    before = _params(model)
    with pytest.raises(distributed.KilledWorker):
        _on(fragile, model.fit, Xd, yd, loss=_Loss("die", os.getpid()), epochs=1, progress=False)
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "keywords",
    [
        {"sample_weight": "dask"},
        {"sample_weight": "host"},
        {"class_weight": {0: 0.5, 2: 2.0}},
        {"validation_split": 0.25},
        {"initial_epoch": 1, "epochs": 3},
        {"validation_data": "weighted"},
    ],
    ids=["sample-weight-dask", "sample-weight-host", "class-weight", "validation-split", "initial-epoch",
         "weighted-validation"],
)  # fmt: skip
def test_fit_keywords_on_dask_data_equal_in_memory(client, keywords):
    X, y = _data()
    weights = np.random.default_rng(2).uniform(0.0, 2.0, size=len(X))
    Xv, yv = _data(90, seed=1)

    def values(dask_side):
        out = dict(keywords)
        if out.get("sample_weight") == "dask":
            out["sample_weight"] = da.from_array(weights, chunks=(CHUNKS,)) if dask_side else weights
        elif out.get("sample_weight") == "host":
            out["sample_weight"] = weights
        if out.get("validation_data") == "weighted":
            w_val = np.linspace(0.1, 1.0, 90)
            on_dask = (*_dask(Xv, yv, chunks=(45, 45)), da.from_array(w_val, chunks=45))
            out["validation_data"] = on_dask if dask_side else (Xv, yv, w_val)
        return out

    kwargs = {"loss": LOSS, "epochs": 2, "batch_size": 32, "seed": 5, "progress": False}
    ours, ref = _model(), _model()
    history = ours.fit(*_dask(X, y), optimizer=Adam(0.01), **(kwargs | values(True)))
    expected = ref.fit(X, y, optimizer=Adam(0.01), **(kwargs | values(False)))
    _assert_close(ours, ref, 1e-10)
    assert set(history) == set(expected)
    for name, series in expected.items():
        np.testing.assert_allclose(history[name], series, rtol=1e-10)


def test_early_stopping_on_dask_data_stops_and_restores_as_in_memory(client):
    from dense_xp.callbacks import EarlyStopping

    X, y = _data()
    Xv, yv = _data(90, seed=1)
    kwargs = {"loss": LOSS, "epochs": 30, "batch_size": 50, "seed": 5, "progress": False}
    ours, ref = _model(), _model()
    runs = []
    for model, data, val in ((ours, _dask(X, y), _dask(Xv, yv, chunks=(45, 45))), (ref, (X, y), (Xv, yv))):
        stop = EarlyStopping(patience=1, restore_best_weights=True)
        runs.append(model.fit(*data, optimizer=Adam(0.05), validation_data=val, callbacks=[stop], **kwargs))
    assert len(runs[0]["loss"]) == len(runs[1]["loss"]) < 30
    _assert_close(ours, ref, 1e-10)
