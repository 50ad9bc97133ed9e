"""LayerNorm and BatchNorm: against torch, by finite differences, in every dtype, in fit and in files."""

from __future__ import annotations

import numpy as np
import pytest

import dense_xp
from dense_xp import BatchNorm, Dense, LayerNorm, Sequential
from dense_xp.testing import check_gradients
from tests.helpers import close, host, on, wide

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 6)) * 3 + 1
G = RNG.normal(size=(12, 6))


def _affine(layer, xp, device, dtype):
    """Non-trivial gamma and beta (never test on the initial ones and zeros alone)."""
    layer.gamma = on(xp, device, 1.0 + 0.5 * RNG.normal(size=(1, 6)), dtype)
    layer.beta = on(xp, device, RNG.normal(size=(1, 6)), dtype)
    return layer


@pytest.mark.parametrize("cls", [LayerNorm, BatchNorm])
@pytest.mark.parametrize("training", [False, True])
def test_gradients_match_finite_differences(backend, cls, training):
    xp, device = backend
    dtype = wide(xp, device)
    layer = _affine(cls(6, dtype=dtype, device=device, xp=xp), xp, device, dtype)
    if cls is BatchNorm:  # running statistics that are not 0 and 1
        layer.running_mean = on(xp, device, RNG.normal(size=(1, 6)), dtype)
        layer.running_var = on(xp, device, RNG.uniform(0.5, 2.0, size=(1, 6)), dtype)
    errors = check_gradients(layer, X, training=training)
    assert set(errors) == {"d_input", "gamma", "beta"}


@pytest.mark.parametrize("training", [False, True])
def test_batchnorm_equals_torch_over_steps(backend, training):
    torch = pytest.importorskip("torch")
    xp, device = backend
    dtype = wide(xp, device)
    ours = _affine(BatchNorm(6, momentum=0.2, eps=1e-3, dtype=dtype, device=device, xp=xp), xp, device, dtype)
    ref = torch.nn.BatchNorm1d(6, momentum=0.2, eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(host(ours.gamma)[0]))
        ref.bias.copy_(torch.from_numpy(host(ours.beta)[0]))
    ref.train(training)
    t = close(dtype) * 100
    for step in range(3):
        x = X * (step + 1)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = ref(xt)
        yt.backward(torch.from_numpy(G))
        y = ours.forward(on(xp, device, x, dtype), training=training)
        d_input = ours.backward(on(xp, device, G, dtype))
        np.testing.assert_allclose(host(y), yt.detach().numpy(), rtol=t, atol=t)
        n = x.shape[0]  # torch's gradients are of the summed loss; ours per sample, batch means
        np.testing.assert_allclose(host(d_input), xt.grad.numpy(), rtol=t, atol=t)
        np.testing.assert_allclose(host(ours.grads["gamma"])[0] * n, ref.weight.grad.numpy(), rtol=t, atol=t)
        np.testing.assert_allclose(host(ours.grads["beta"])[0] * n, ref.bias.grad.numpy(), rtol=t, atol=t)
        np.testing.assert_allclose(host(ours.running_mean)[0], ref.running_mean.numpy(), rtol=t, atol=t)
        np.testing.assert_allclose(host(ours.running_var)[0], ref.running_var.numpy(), rtol=t, atol=t)
        ref.zero_grad()


def test_layernorm_equals_torch(backend):
    torch = pytest.importorskip("torch")
    xp, device = backend
    dtype = wide(xp, device)
    ours = _affine(LayerNorm(6, eps=1e-4, dtype=dtype, device=device, xp=xp), xp, device, dtype)
    ref = torch.nn.LayerNorm(6, eps=1e-4, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(host(ours.gamma)[0]))
        ref.bias.copy_(torch.from_numpy(host(ours.beta)[0]))
    xt = torch.from_numpy(X).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(G))
    t = close(dtype) * 100
    np.testing.assert_allclose(
        host(ours.forward(on(xp, device, X, dtype))), yt.detach().numpy(), rtol=t, atol=t
    )
    np.testing.assert_allclose(host(ours.backward(on(xp, device, G, dtype))), xt.grad.numpy(), rtol=t, atol=t)
    np.testing.assert_allclose(host(ours.grads["gamma"])[0] * 12, ref.weight.grad.numpy(), rtol=t, atol=t)


@pytest.mark.parametrize("cls", [LayerNorm, BatchNorm])
def test_a_float16_compute_dtype_normalizes_in_float32(backend, cls):
    """Statistics of float16 inputs in float16 lose digits (and overflow past 256**2): computed in float32."""
    xp, device = backend
    if getattr(xp, "float16", None) is None:
        pytest.skip("this namespace has no float16")
    mixed = cls(6, param_dtype="float32", compute_dtype="float16", device=device, xp=xp)
    single = cls(6, dtype="float32", device=device, xp=xp)
    x = X * 400  # squares beyond float16's range
    x16 = on(xp, device, x, "float16")
    y = mixed.forward(x16, training=True)
    assert y.dtype == xp.float16
    ref = single.forward(xp.astype(x16, xp.float32), training=True)
    np.testing.assert_allclose(host(y), host(ref), rtol=2e-3, atol=2e-3)  # float16 rounding of the output
    assert np.isfinite(host(y)).all()
    d_input = mixed.backward(on(xp, device, G, "float16"))
    assert d_input.dtype == xp.float16
    assert mixed.grads["gamma"].dtype == xp.float32


def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_at_inference():
    layer = BatchNorm(6, momentum=1.0)
    y = host(layer.forward(X, training=True))
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-3)
    np.testing.assert_allclose(host(layer.running_mean)[0], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(host(layer.running_var)[0], X.var(axis=0, ddof=1), rtol=1e-12)
    inference = host(layer.forward(X[:3]))  # one row at a time would do: the running statistics
    np.testing.assert_allclose(inference, (X[:3] - X.mean(axis=0)) / np.sqrt(X.var(axis=0, ddof=1) + 1e-5))


def test_batchnorm_in_training_needs_two_rows():
    with pytest.raises(ValueError, match=r"`X` must have more than one row for BatchNorm in training"):
        BatchNorm(6).forward(X[:1], training=True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eps": 0.0}, ValueError, r"`eps` must be a finite number > 0, got 0.0"),
        ({"eps": "1e-5"}, TypeError, r"`eps` must be a finite number > 0, got str"),
        ({"momentum": 1.5}, ValueError, r"`momentum` must be a finite number in \(0, 1\], got 1.5"),
        ({"features": 0}, ValueError, r"`features` must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BatchNorm(**({"features": 6} | kwargs))


def test_fit_updates_the_running_statistics_and_checkpoints_keep_them(backend, tmp_path):
    xp, device = backend
    dtype = wide(xp, device)
    kwargs = {"dtype": dtype, "device": device, "xp": xp}
    model = Sequential(
        [Dense(8, "relu", seed=0, init="he_normal", **kwargs), BatchNorm(**kwargs), LayerNorm(**kwargs),
         Dense(3, seed=1, **kwargs)]
    )  # fmt: skip
    y = (X[:, 0] > 1).astype(np.int64) + (X[:, 1] > 1)
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=5, batch_size=4, seed=0, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    stats = host(model.layers[1].running_mean)
    assert np.abs(stats).max() > 0.01  # moved from zeros
    model.save(tmp_path / "m.npz")
    back = dense_xp.load(tmp_path / "m.npz", device, xp=xp)
    assert [type(layer) for layer in back.layers] == [Dense, BatchNorm, LayerNorm, Dense]
    np.testing.assert_array_equal(host(back.layers[1].running_mean), stats)
    np.testing.assert_allclose(host(back.predict(X)), host(model.predict(X)), rtol=close(dtype))


@pytest.mark.slow
def test_on_digits_dropout_and_batchnorm_train_as_well_as_the_plain_mlp():
    """The main job's data: a 64-256-256-10 MLP with BatchNorm and Dropout, against the same MLP without."""
    pytest.importorskip("sklearn", reason="the demo extra is not installed")
    from dense_xp import Dropout
    from dense_xp.demo import load_digits_split

    X_train, X_test, y_train, y_test = load_digits_split(0)

    def accuracy(regularized):
        layers = []
        for i in range(2):
            layers.append(Dense(256, "relu", seed=i, init="he_normal", dtype="float32"))
            layers += (
                [BatchNorm(dtype="float32"), Dropout(0.2, seed=10 + i, dtype="float32")]
                if regularized
                else []
            )
        model = Sequential([*layers, Dense(10, seed=2, init="glorot_uniform", dtype="float32")])
        model.fit(
            X_train, y_train, loss="softmax_cross_entropy", epochs=20, batch_size=32, seed=0, progress=False
        )
        return model.evaluate(X_test, y_test, loss="softmax_cross_entropy")["accuracy"]

    plain, regularized = accuracy(False), accuracy(True)
    assert plain >= 0.97
    assert regularized >= plain - 0.01  # within 4 of the 450 test images; a mean over seeds is in benchmarks
