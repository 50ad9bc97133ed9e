"""Sequential.fit keeps finite weights, changes nothing when it refuses a call, and syncs rarely."""

from __future__ import annotations

import itertools
import math
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_xp
from dense_xp import DenseLayer, Sequential, TrainingDivergedError
from dense_xp.losses import mse
from dense_xp.optimizers import SGD, Adam
from tests.conftest import load_backend
from tests.helpers import central_diff, host, on, wide


def _model(xp=None, device=None, *, sizes=(4, 6, 3), dtype=None, seed=0):
    if dtype is None:  # float64 where the device holds it
        dtype = "float64" if xp is None else wide(xp, device)
    kw = {"init": "glorot_normal", "dtype": dtype, "device": device, "xp": xp}
    return Sequential(
        [
            DenseLayer(a, b, "relu" if i == 0 else None, seed=seed + i, **kw)
            for i, (a, b) in enumerate(itertools.pairwise(sizes))
        ]
    )


def _problem(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.normal(size=(n, 3))


def _state(model):
    """Everything a refused call must leave as it was."""
    return (
        [host(p) for p in model.parameters()],
        [dict(layer.grads) for layer in model.layers],
        [layer._cache for layer in model.layers],
    )


def _assert_unchanged(model, before):
    params, grads, caches = _state(model)
    for p, q in zip(params, before[0], strict=True):
        np.testing.assert_array_equal(p, q)
    for now, then in zip(grads, before[1], strict=True):
        assert now.keys() == then.keys()
        assert all(now[k] is then[k] for k in then)
    assert all(a is b for a, b in zip(caches, before[2], strict=True))


def _assert_finite(model):
    assert all(np.isfinite(host(p)).all() for p in model.parameters())


# -- item 1: non-finite data is refused up front, naming the argument ---------------------------------
@pytest.mark.parametrize("where", ["X", "y", "validation_data[0]", "validation_data[1]"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("on_device", [False, True])
def test_fit_refuses_non_finite_data_and_names_it(backend, where, bad, on_device):
    xp, device = backend
    model = _model(xp, device)
    X, y = _problem()
    data = {"X": X, "y": y, "validation_data[0]": X[:8].copy(), "validation_data[1]": y[:8].copy()}
    data[where][3, 1] = bad
    if on_device:
        data = {k: on(xp, device, v) for k, v in data.items()}
    before = _state(model)
    pattern = (
        rf"`{re.escape(where)}` must hold finite numbers, got 1 NaN or infinite value\(s\), the first at "
    )
    with pytest.raises(ValueError, match=pattern + r"index \(3, 1\).*pass check_finite=False"):
        model.fit(
            data["X"],
            data["y"],
            loss="mse",
            epochs=1,
            progress=False,
            validation_data=(data["validation_data[0]"], data["validation_data[1]"]),
        )
    _assert_unchanged(model, before)


def _trained_for(xp, device, X, y, batches, *, batch_size, optimizer, compile=None):
    """A model trained on exactly the first ``batches`` batches (the reference to restore to).

    ``compile`` as the run it is compared with bit for bit (a compiled JAX step rounds
    differently from an eager one, by an ulp; a loss of the test's own trains eagerly).
    """
    model = _model(xp, device)
    if batches:
        model.fit(
            X[: batches * batch_size],
            y[: batches * batch_size],
            loss="mse",
            optimizer=optimizer,
            epochs=1,
            batch_size=batch_size,
            shuffle=False,
            progress=False,
            compile=compile,
        )
    return [host(p) for p in model.parameters()]


def test_nan_data_unchecked_cannot_corrupt_the_weights(backend):
    """With the up-front check off, a NaN row is caught in training on every backend (relu of NaN
    is NaN on some libraries and 0 on others; either way the weights went NaN)."""
    xp, device = backend
    X, y = _problem()
    X[21, 2] = math.nan  # batch 3 of 8 samples
    model = _model(xp, device)
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(
            X,
            y,
            loss="mse",
            optimizer="adam",
            epochs=2,
            batch_size=8,
            shuffle=False,
            progress=False,
            check_finite=False,
            check_every=1,
        )
    error = info.value
    assert (error.epoch, error.batch_start, error.batch_end, error.batch) == (1, 3, 3, 3)
    _assert_finite(model)
    expected = _trained_for(xp, device, X, y, 2, batch_size=8, optimizer=Adam())
    for p, q in zip(model.parameters(), expected, strict=True):
        np.testing.assert_array_equal(host(p), q)


class _PoisonedGradient:
    """Mean squared error whose gradient turns ``bad`` at call ``at``; the loss itself stays finite."""

    def __init__(self, at, bad):
        self.at, self.bad, self.calls = at, bad, 0

    def __call__(self, y_pred, y_true):
        self.calls += 1
        value, grad = mse(y_pred, y_true)
        return value, grad * self.bad if self.calls == self.at else grad


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(lr=0.05, momentum=0.9), Adam], ids=["sgd", "adam"])
def test_non_finite_gradients_raise_and_restore_the_last_checked_weights(backend, bad, make_optimizer):
    xp, device = backend
    X, y = _problem()
    model, optimizer = _model(xp, device), make_optimizer()
    with pytest.raises(
        TrainingDivergedError, match=r"epoch 1, batch 6: .* in batches 5-6 \(checked every 2"
    ) as info:
        model.fit(
            X,
            y,
            loss=_PoisonedGradient(5, bad),
            optimizer=optimizer,
            epochs=1,
            batch_size=8,
            shuffle=False,
            progress=False,
            check_every=2,
        )
    error = info.value
    assert (error.epoch, error.batch_start, error.batch_end, error.batch) == (1, 5, 6, 6)
    assert "`layers[1].W`" in str(error)  # the poisoned gradient reached the parameters
    expected = _trained_for(xp, device, X, y, 4, batch_size=8, optimizer=make_optimizer(), compile=False)
    for p, q in zip(model.parameters(), expected, strict=True):
        np.testing.assert_array_equal(host(p), q)
    assert optimizer.steps == 4
    assert all(np.isfinite(host(a)).all() for s in optimizer.state for a in s.values())
    # the restored optimizer trains on as if the poisoned batches had never run
    model.fit(
        X[32:], y[32:], loss="mse", optimizer=optimizer, epochs=1, batch_size=8, shuffle=False, progress=False
    )
    _assert_finite(model)


def test_divergence_before_the_first_check_restores_the_initial_weights():
    X, y = _problem()
    model = _model()
    initial = [host(p) for p in model.parameters()]
    optimizer = SGD(lr=1e200)
    with pytest.raises(TrainingDivergedError, match=r"at the start of the epoch") as info:
        model.fit(
            X, y, loss="mse", optimizer=optimizer, epochs=1, batch_size=8, progress=False, check_every=100
        )
    assert (info.value.batch_start, info.value.batch_end) == (1, 6)
    for p, q in zip(model.parameters(), initial, strict=True):
        np.testing.assert_array_equal(host(p), q)
    assert optimizer.steps == 0
    assert optimizer.state == []


# -- issue 7: no host synchronisation per batch ------------------------------------------------------
_SYNCS = (
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__complex__",
    "__array__",
    "__dlpack__",
    "item",
    "tolist",
    "numpy",
)


def _count_syncs(monkeypatch, array_type):
    """Count every call that reads an array's values back to the host."""
    calls = []
    for name in _SYNCS:
        original = getattr(array_type, name, None)
        if original is None:
            continue

        def spy(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(array_type, name, spy)
    return calls


@pytest.mark.parametrize("name", ["strict", "torch"])
def test_fit_reads_the_device_once_per_check_not_once_per_batch(monkeypatch, name):
    xp, device = load_backend(name)
    X, y = _problem(n=320)  # 80 batches of 4 per epoch
    epochs, batches, every = 2, 80, 16
    array_type = type(xp.asarray([1.0], device=device))
    counts = {}
    for k in (every, 1):
        model = _model(xp, device)
        with monkeypatch.context() as patch:
            calls = _count_syncs(patch, array_type)
            model.fit(X, y, loss="mse", epochs=epochs, batch_size=4, progress=False, check_every=k, seed=0)
        counts[k] = len(calls)
    # one read per check (batches / k of them), plus the epoch's accuracy: O(batches / k)
    assert counts[every] <= epochs * (batches // every + 2)
    assert counts[1] >= epochs * batches  # the spy sees every read: checking every batch reads every batch


# -- item 2: one layer object twice is refused ---------------------------------------------------------
def test_the_same_layer_twice_is_refused():
    a, b = DenseLayer(3, 3, seed=0), DenseLayer(3, 3, seed=1)
    with pytest.raises(ValueError, match=r"`layers\[1\]` is the same DenseLayer object as `layers\[0\]`"):
        Sequential([a, a])
    with pytest.raises(ValueError, match=r"`layers\[2\]` is the same DenseLayer object as `layers\[0\]`"):
        Sequential([a, b, a])
    # equal weights in two objects are two layers: the gradient of each is exact
    twin = DenseLayer(3, 3, seed=0)
    model = Sequential([a, twin])
    X = np.random.default_rng(0).normal(size=(5, 3))
    t = np.random.default_rng(1).normal(size=(5, 3))
    _, grad = mse(model.forward(X), t)
    model.backward(grad)
    base = host(a.W)

    def loss_of(W):
        a.W = W
        return float(mse(model.forward(X), t)[0])

    numeric = central_diff(loss_of, base)
    np.testing.assert_allclose(host(model.layers[0].grads["W"]), numeric, rtol=1e-6, atol=1e-9)


# -- item 3: torch inputs that require grad never drag the parameters into autograd ---------------------
def test_torch_inputs_requiring_grad_are_detached():
    torch = pytest.importorskip("torch")
    kw = {"xp": torch, "device": torch.device("cpu"), "dtype": "float64"}
    layer = DenseLayer(4, 3, "tanh", seed=0, **kw)
    reference = DenseLayer(4, 3, "tanh", seed=0, **kw)
    X = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    d_out = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    for _ in range(5):
        layer.forward(X)
        layer.backward(d_out, lr=0.1)
        reference.forward(X.detach())
        reference.backward(d_out.detach(), lr=0.1)
    for array in (layer.W, layer.b, *layer.grads.values()):
        assert not array.requires_grad
        assert array.grad_fn is None
    torch.testing.assert_close(layer.W, reference.W, rtol=0, atol=0)
    assert X.requires_grad  # the caller's tensor is left as it was

    model = Sequential([DenseLayer(4, 6, "relu", seed=0, **kw), DenseLayer(6, 3, seed=1, **kw)])
    Xt = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    yt = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    model.fit(Xt, yt, loss="mse", epochs=2, batch_size=4, progress=False, validation_data=(Xt, yt))
    for p in model.parameters():
        assert not p.requires_grad
        assert p.grad_fn is None
    assert not model.predict(Xt).requires_grad


# -- item 4: an optimizer of another model is refused before any gradient is computed -------------------
def test_optimizer_of_other_shapes_is_refused_before_backward():
    X, y = _problem(n=16)
    optimizer = Adam()
    _model(sizes=(4, 5, 3)).fit(X, y, loss="mse", optimizer=optimizer, epochs=1, progress=False)
    steps, moments = optimizer.steps, [host(a) for s in optimizer.state for a in s.values()]
    model = _model(sizes=(4, 6, 3))
    model.backward(mse(model.forward(X), y)[1])  # gradients the refused call must not overwrite
    before = _state(model)
    with pytest.raises(ValueError, match=r"`params` must match those of the first step .*call reset\(\)"):
        model.fit(X, y, loss="mse", optimizer=optimizer, epochs=1, progress=False)
    _assert_unchanged(model, before)
    assert optimizer.steps == steps
    for a, b in zip([host(a) for s in optimizer.state for a in s.values()], moments, strict=True):
        np.testing.assert_array_equal(a, b)
    optimizer.reset()
    optimizer.check(model.parameters())  # after reset any parameters fit
    model.fit(X, y, loss="mse", optimizer=optimizer, epochs=1, progress=False)


# -- item 7: the stack cannot be edited after construction ---------------------------------------------
def test_layers_cannot_be_edited_after_construction():
    model = _model()
    before = _state(model)
    assert isinstance(model.layers, tuple)
    with pytest.raises(TypeError):
        model.layers[1] = DenseLayer(5, 3)
    with pytest.raises(AttributeError):
        model.layers.append(DenseLayer(3, 3))
    with pytest.raises(AttributeError):
        model.layers = [DenseLayer(4, 3)]
    _assert_unchanged(model, before)
    assert model.predict(np.ones((2, 4))).shape == (2, 3)


# -- fuzzing: any fit arguments give success or a clear error, and a refusal changes nothing ------------
_X, _Y = _problem(n=12)
_LABELS = np.arange(12) % 3
_NAN_X = _X.copy()
_NAN_X[2, 1] = math.nan
X_CASES = [_X, _X[:, :3], _NAN_X, _X[0], np.zeros((0, 4)), _X > 0, _X.tolist(), "X", None]
Y_CASES = [_LABELS, _Y, _LABELS[:11], _LABELS + 3, np.where(_Y > 0, math.inf, _Y), _LABELS > 0, None]
FLAGS = st.sampled_from([True, False, "no", None, 1, 0, 1.0])
_VALID_INTS = st.one_of(st.integers(-1, 3), st.sampled_from([1.5, "2", None, True]))


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    x=st.sampled_from(range(len(X_CASES))),
    y=st.sampled_from(range(len(Y_CASES))),
    loss=st.sampled_from(["softmax_cross_entropy", "mse", "hinge", None, 3]),
    optimizer=st.sampled_from(["adam", "sgd", "lbfgs", 3, None, "SGD(lr=0.1)"]),
    epochs=_VALID_INTS,
    batch_size=st.one_of(st.integers(-1, 14), st.sampled_from([0.5, "4", None])),
    check_every=_VALID_INTS,
    shuffle=FLAGS,
    progress=FLAGS,
    check_finite=FLAGS,
    seed=st.sampled_from([None, 0, 7, -1, 2**32, 1.5, "0"]),
    validation=st.sampled_from(["none", "same", "single", "short", "nan", "array"]),
)
def test_fit_arguments_fuzzed(
    x, y, loss, optimizer, epochs, batch_size, check_every, shuffle, progress, check_finite, seed, validation
):
    model = _model()
    X, Y = X_CASES[x], Y_CASES[y]
    validation_data = {
        "none": None,
        "same": (_X, _LABELS),
        "single": (_X,),
        "short": (_X[:5], _LABELS[:4]),
        "nan": (_NAN_X, _LABELS),
        "array": _X,
    }[validation]
    optimizer = SGD(lr=0.1) if optimizer == "SGD(lr=0.1)" else optimizer
    before = _state(model)
    try:
        history = model.fit(
            X,
            Y,
            loss=loss,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            validation_data=validation_data,
            seed=seed,
            progress=progress,
            check_finite=check_finite,
            check_every=check_every,
        )
    except (TypeError, ValueError) as exc:
        refusal = str(exc)
    except TrainingDivergedError:  # only unchecked non-finite data can make this small problem diverge
        assert check_finite is False
        _assert_finite(model)
        return
    else:
        assert all(isinstance(flag, bool) for flag in (shuffle, progress, check_finite))
        assert all(type(v) is int and v >= 1 for v in (batch_size, check_every))
        assert type(epochs) is int
        assert len(history["loss"]) == epochs
        assert np.isfinite(history["loss"]).all()
        _assert_finite(model)
        return
    assert re.search(r"`\w+", refusal), f"the message names no argument: {refusal}"
    _assert_unchanged(model, before)


def test_readme_reliability_section_names_existing_tests():
    """The README's promises point at tests that exist."""
    root = pathlib.Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("### Reliability", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`tests/(test_\w+\.py)::(test_\w+)`", section)
    assert len(names) >= 3
    for file, test in names:
        assert f"def {test}(" in (root / "tests" / file).read_text(encoding="utf-8"), (file, test)
    assert "tests/test_checkpoint" in section
    assert dense_xp.TrainingDivergedError.__name__ in section
