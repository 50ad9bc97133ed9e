"""Dropout: identity at inference, inverted dropout in training, the same masks on every backend."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import dense_xp
from dense_xp import Dense, Dropout, Sequential
from dense_xp.layers import training_batch
from dense_xp.testing import check_gradients
from tests.helpers import close, host, on, wide

X = np.random.default_rng(0).normal(size=(64, 40)) + 2.0  # no zeros: a zero in y is a dropped input


def _mask(y):
    return host(y) != 0


def test_inference_is_the_identity_and_training_drops_at_the_rate(backend):
    xp, device = backend
    layer = Dropout(0.25, seed=3, device=device, xp=xp, dtype=wide(xp, device))
    x = on(xp, device, X)
    assert layer.forward(x) is x
    y = host(layer.forward(x, training=True))
    kept = y != 0
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_allclose(y[kept], X[kept] / 0.75, rtol=close(layer.compute_dtype))


def test_masks_are_the_same_on_every_backend(backend):
    """Keyed by (seed, step, row): the NumPy mask, bit for bit, wherever the layer computes."""
    xp, device = backend
    reference = Dropout(0.5, seed=11)
    layer = Dropout(0.5, seed=11, device=device, xp=xp, dtype=wide(xp, device))
    info = xp.__array_namespace_info__()
    wide_rows = "int64" in {
        dense_xp._checks.dtype_name(d) for d in info.dtypes(device=device, kind="integral").values()
    }
    rows = np.array([5, 900, 3, 2**40 + 7 if wide_rows else 2**31 - 2])
    for step, index in ((0, range(64)), (7, range(100, 164)), (2**33, rows)):
        with training_batch(step, index):
            n = len(index)
            expected = _mask(reference.forward(X[:n], training=True))
            got = _mask(layer.forward(on(xp, device, X[:n]), training=True))
        np.testing.assert_array_equal(got, expected)


def test_a_row_gets_its_mask_whatever_the_batch_it_is_in():
    layer = Dropout(0.5, seed=2)
    with training_batch(4, range(10, 20)):
        whole = _mask(layer.forward(X[10:20], training=True))
    with training_batch(4, np.arange(19, 9, -1)):  # the same rows, reversed
        reversed_rows = _mask(layer.forward(X[10:20][::-1], training=True))
    np.testing.assert_array_equal(reversed_rows, whole[::-1])
    with training_batch(5, range(10, 20)):
        assert (_mask(layer.forward(X[10:20], training=True)) != whole).any()  # another step, another mask


def test_outside_fit_each_training_call_draws_a_new_mask_reproducibly():
    a, b = Dropout(0.5, seed=9), Dropout(0.5, seed=9)
    first, second = _mask(a.forward(X, training=True)), _mask(a.forward(X, training=True))
    assert (first != second).any()
    np.testing.assert_array_equal(_mask(b.forward(X, training=True)), first)


def test_rows_beyond_the_device_s_integers_are_refused_not_wrapped():
    strict = pytest.importorskip("array_api_strict")
    layer = Dropout(0.5, seed=1, xp=strict, device=strict.Device("no_x64"), dtype="float32")
    with training_batch(0, np.array([1, 2**40])), pytest.raises(ValueError, match=r"`rows` .* 1099511627776"):
        layer.forward(strict.ones((2, 3), device=strict.Device("no_x64")), training=True)


def test_gradients_with_a_fixed_mask(backend):
    xp, device = backend
    layer = Dropout(0.4, seed=1, device=device, xp=xp, dtype=wide(xp, device))
    errors = check_gradients(layer, X[:8, :6], training=True)
    assert set(errors) == {"d_input"}
    y = layer.forward(on(xp, device, X[:8, :6]), training=True)
    g = layer.backward(on(xp, device, np.ones((8, 6))))
    np.testing.assert_array_equal(host(g) != 0, _mask(y))


def test_fit_is_reproducible_and_the_seed_survives_checkpoints_and_pickles(tmp_path):
    y = (X[:, 0] > 2).astype(np.int64)

    def model(seed):
        return Sequential(
            [Dense(16, "relu", seed=0, init="he_normal"), Dropout(0.3, seed=seed), Dense(2, seed=1)]
        )

    runs = [
        model(5).fit(X, y, loss="softmax_cross_entropy", epochs=2, seed=0, progress=False) for _ in range(2)
    ]
    assert runs[0] == runs[1]
    other = model(6).fit(X, y, loss="softmax_cross_entropy", epochs=2, seed=0, progress=False)
    assert other != runs[0]
    m = model(5).build(40)
    m.save(tmp_path / "m.npz")
    for back in (dense_xp.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(m))):
        assert back.layers[1].seed == 5
        assert back.layers[1].rate == 0.3
    assert len({Dropout(0.1).seed for _ in range(4)}) > 1  # seed=None: drawn when the layer is made


@pytest.mark.parametrize(
    ("rate", "exc"), [(1.0, ValueError), (-0.1, ValueError), ("0.5", TypeError), (True, TypeError)]
)
def test_bad_rates_are_refused(rate, exc):
    with pytest.raises(exc, match=r"`rate` must be a number in \[0, 1\)"):
        Dropout(rate)


def test_fit_on_each_backend_trains_with_the_same_masks(backend):
    """One fit step on any backend equals NumPy's in float64: the masks are the same."""
    xp, device = backend
    dtype = wide(xp, device)
    y = (X[:, 0] > 2).astype(np.int64)

    def fitted(xp, device, dtype):
        kwargs = {"dtype": dtype, "device": device, "xp": xp}
        model = Sequential(
            [Dense(16, "tanh", seed=0, init="he_normal", **kwargs), Dropout(0.5, seed=4, **kwargs),
             Dense(2, seed=1, **kwargs)]
        )  # fmt: skip
        model.fit(X, y, loss="softmax_cross_entropy", optimizer="sgd", epochs=1, batch_size=16, seed=0,
                  progress=False)  # fmt: skip
        return [host(p) for p in model.parameters()]

    for got, want in zip(fitted(xp, device, dtype), fitted(None, "cpu", dtype), strict=True):
        np.testing.assert_allclose(got, want, rtol=close(dtype) * 10, atol=close(dtype) * 10)
