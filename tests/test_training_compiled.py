"""The compiled training step (``dense_xp.training._compiled``): ``jax.jit`` of the whole step on JAX.

Compiled training must equal eager training (``compile=False``) exactly in
float64: parameters, optimizer state and history, with momentum, Adam,
clipping, schedules, weights, shuffling, a last partial batch and BatchNorm's
running statistics. Random layers train eagerly (a trace would freeze their
masks); the step is traced once per batch shape, not per batch or per fit.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp import losses, schedules
from dense_xp.callbacks import EarlyStopping
from dense_xp.training import _compiled

from .conftest import load_backend
from .helpers import wide


@pytest.fixture(params=["jax", "jax-float32"])
def jax_backend(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return load_backend(request.param)


def _data(n: int = 150, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    return X, (X[:, :k] @ rng.standard_normal((k, k)) > 0).argmax(axis=1)


def _model(xp: Any, device: Any, *extra: Any, dtype: str = "float64") -> dense_xp.Sequential:
    return dense_xp.Sequential(
        [
            dense_xp.DenseLayer(6, 8, "tanh", seed=0, xp=xp, device=device, dtype=dtype),
            *extra,
            dense_xp.DenseLayer(8, 3, None, seed=1, xp=xp, device=device, dtype=dtype),
        ]
    )


def _host(model: dense_xp.Sequential) -> list[np.ndarray]:
    return [dense_xp.to_numpy(a) for a in model.parameters() + model.states()]


def _pair(make: Any, compile: bool | None = None, gives_up: bool = False, **fit: Any) -> tuple[Any, Any]:
    """Train the same model eagerly and compiled; return both ``(model, optimizer, history)``.

    The compiled fit must have run compiled to its end (unless it ``gives_up``):
    a step that gave up trains eagerly, equal to eager training by construction.
    """
    out = []
    for mode in (False, compile):
        model, optimizer = make()
        history = model.fit(*_data(), optimizer=optimizer, compile=mode, verbose=0, **fit)
        out.append((model, optimizer, history))
    assert (_compiled_reason(model) is not None) == gives_up, _compiled_reason(model)
    return out[0], out[1]


def _compiled_reason(model: Any) -> str | None:
    """Why the model's last compiled step gave up, or ``None`` where it ran to the end of the fit."""
    assert model in _compiled._LAST, "the fit did not compile its step"
    return _compiled._LAST[model][1].reason


def _assert_trained_alike(eager: Any, compiled: Any, *, steps: int, rtol: float, atol: float) -> None:
    """The two ``(model, optimizer, history)`` of :func:`_pair` agree: parameters, state, steps, history."""
    for a, b in zip(_host(eager[0]), _host(compiled[0]), strict=True):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
    for s, t in zip(eager[1].state, compiled[1].state, strict=True):
        for key in s:
            got, want = dense_xp.to_numpy(t[key]), dense_xp.to_numpy(s[key])
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert compiled[1].steps == eager[1].steps == steps
    for key, values in eager[2].items():
        np.testing.assert_allclose(compiled[2][key], values, rtol=rtol)


OPTIMIZERS = {
    "sgd-momentum-nesterov": lambda: dense_xp.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd-dampening": lambda: dense_xp.SGD(0.05, momentum=0.5, dampening=0.3),
    "adam-clip-norm": lambda: dense_xp.Adam(1e-2, clip_norm=0.5),
    "adamw-cosine": lambda: dense_xp.AdamW(schedules.CosineAnnealingLR(1e-2, 7, interval="step")),
    "rmsprop-centered-clip-value": lambda: dense_xp.RMSprop(
        1e-2, momentum=0.5, centered=True, clip_value=0.1
    ),
    "adam-callable-lr": lambda: dense_xp.Adam(lambda step: 1e-2 / (1 + step)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_compiled_equals_eager_float64(name: str) -> None:
    xp, device = load_backend("jax")
    eager, compiled = _pair(
        lambda: (_model(xp, device), OPTIMIZERS[name]()),
        loss="softmax_cross_entropy", epochs=3, batch_size=32, seed=3,  # 150 rows: a last batch of 22
    )  # fmt: skip
    _assert_trained_alike(eager, compiled, steps=15, rtol=1e-12, atol=1e-14)


def test_compiled_equals_eager_with_weights_batchnorm_and_validation(jax_backend: tuple[Any, Any]) -> None:
    xp, device = jax_backend
    dtype = wide(xp, device)
    weights = np.linspace(0.5, 2.0, 150)

    def make() -> tuple[Any, Any]:
        norm = dense_xp.BatchNorm(8, momentum=0.2, xp=xp, device=device, dtype=dtype)
        return _model(xp, device, norm, dtype=dtype), dense_xp.Adam(1e-2)

    eager, compiled = _pair(
        make, loss="softmax_cross_entropy", epochs=2, batch_size=40, seed=1, sample_weight=weights,
        validation_split=0.2,
    )  # fmt: skip
    # float32: XLA fuses and reorders the step's sums, so rounding differs from eager (by ~1e-5 a step)
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (1e-3, 1e-4)
    for a, b in zip(_host(eager[0]), _host(compiled[0]), strict=True):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
    np.testing.assert_allclose(compiled[2]["val_loss"], eager[2]["val_loss"], rtol=rtol)
    assert compiled[2]["accuracy"] == eager[2]["accuracy"]


def test_the_step_is_traced_once_for_many_batches_and_fits() -> None:
    xp, device = load_backend("jax")
    calls = []

    class Counted:
        def __call__(self, y_pred: Any, y_true: Any, sample_weight: Any = None) -> Any:
            calls.append(1)
            return losses.mse(y_pred, y_true)

    model, optimizer, loss = _model(xp, device), dense_xp.SGD(0.01), Counted()
    X, y = _data(128)
    target = np.eye(3)[y]
    for _ in range(3):  # fit(epochs=1) in a loop, as a hand-written training loop does
        model.fit(X, target, loss=loss, optimizer=optimizer, epochs=1, batch_size=16, verbose=0, compile=True)
    assert optimizer.steps == 24
    assert len(calls) == 2  # the first, eager step and one trace: not 24
    calls.clear()
    model.fit(X, target, loss=loss, optimizer=optimizer, epochs=1, batch_size=16, verbose=0)
    assert len(calls) == 8  # a loss of one's own runs eagerly unless compile=True: its Python runs each step


def test_dropout_trains_eagerly_with_its_masks() -> None:
    xp, device = load_backend("jax")
    eager, compiled = _pair(
        lambda: (_model(xp, device, dense_xp.Dropout(0.3, seed=5, xp=xp, device=device)), dense_xp.SGD(0.05)),
        loss="softmax_cross_entropy", epochs=2, batch_size=50, seed=0, gives_up=True,
    )  # fmt: skip
    for a, b in zip(_host(eager[0]), _host(compiled[0]), strict=True):
        np.testing.assert_array_equal(b, a)  # a frozen mask would change every step after the first


def test_after_a_compiled_fit_everything_is_concrete() -> None:
    xp, device = load_backend("jax")
    model = _model(xp, device)
    model.fit(*_data(), loss="softmax_cross_entropy", optimizer="adam", epochs=1, batch_size=30, verbose=0)
    for a in model.parameters() + model.gradients():
        assert isinstance(dense_xp.to_numpy(a), np.ndarray)
    out = model.forward(_data()[0][:4], training=True)
    model.backward(xp.ones_like(out))  # the layers' caches are this forward's
    assert model.predict(_data()[0][:5]).shape == (5, 3)


def test_early_stopping_restores_the_same_weights_compiled() -> None:
    xp, device = load_backend("jax")

    def run(compile: Any) -> list[np.ndarray]:
        model = _model(xp, device)
        stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
        X, y = _data()
        optimizer = dense_xp.SGD(0.5, momentum=0.9)
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=12, batch_size=25,
                  validation_split=0.3, callbacks=[stop], compile=compile, verbose=0, seed=2)  # fmt: skip
        return _host(model)

    for a, b in zip(run(False), run(None), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_divergence_is_caught_and_restored_compiled() -> None:
    xp, device = load_backend("jax")
    model = _model(xp, device)
    X, y = _data()
    with pytest.raises(dense_xp.TrainingDivergedError):
        model.fit(X * 1e150, np.eye(3)[y], loss="mse", optimizer=dense_xp.SGD(1e10), epochs=2, batch_size=10,
                  check_finite=False, check_every=4, verbose=0)  # fmt: skip
    assert all(np.isfinite(a).all() for a in _host(model))


def test_compile_argument_is_checked(backend: tuple[Any, Any]) -> None:
    xp, device = backend
    model = _model(xp, device, dtype=wide(xp, device))
    X, y = _data()
    with pytest.raises(TypeError, match="`compile`"):
        model.fit(X, y, loss="softmax_cross_entropy", compile="yes", verbose=0)
    before = _host(model)
    if array_api_compat.is_jax_namespace(xp) or array_api_compat.is_torch_namespace(xp):
        model.fit(X, y, loss="softmax_cross_entropy", compile=True, epochs=1, batch_size=50, verbose=0)
        assert _compiled_reason(model) is None
        return
    with pytest.raises(ValueError, match="`compile=True` cannot compile"):
        model.fit(X, y, loss="softmax_cross_entropy", compile=True, verbose=0)
    for a, b in zip(before, _host(model), strict=True):
        np.testing.assert_array_equal(a, b)


# torch.compile: opt-in, from the same array API code. Each test compiles (seconds on a CPU).
@pytest.mark.parametrize("name", ["sgd-momentum-nesterov", "adam-clip-norm"])
def test_torch_compile_equals_eager(name: str) -> None:
    xp, device = load_backend("torch")
    eager, compiled = _pair(
        lambda: (_model(xp, device), OPTIMIZERS[name]()), compile=True,
        loss="softmax_cross_entropy", epochs=2, batch_size=32, seed=3,  # a last batch of 22: two graphs
    )  # fmt: skip
    # inductor fuses the elementwise passes: float64 rounding may differ from eager's by a few ulps
    _assert_trained_alike(eager, compiled, steps=10, rtol=1e-10, atol=1e-12)


def test_torch_trains_eagerly_unless_asked() -> None:
    xp, device = load_backend("torch")
    model = _model(xp, device)
    model.fit(*_data(), loss="softmax_cross_entropy", optimizer="sgd", epochs=1, verbose=0)
    assert model not in _compiled._LAST  # compile=None: no torch.compile, whose first steps cost seconds


def test_torch_compile_guard_catches_divergence_and_restores() -> None:
    xp, device = load_backend("torch")
    model = _model(xp, device)
    X, y = _data()
    model.fit(X, np.eye(3)[y], loss="mse", optimizer=dense_xp.SGD(1e-3), epochs=1, batch_size=10,
              compile=True, verbose=0)  # fmt: skip
    assert _compiled_reason(model) is None
    with pytest.raises(dense_xp.TrainingDivergedError):
        model.fit(X * 1e150, np.eye(3)[y], loss="mse", optimizer=dense_xp.SGD(1e10), epochs=2, batch_size=10,
                  check_finite=False, check_every=4, compile=True, verbose=0)  # fmt: skip
    assert _compiled_reason(model) is None  # diverged in the compiled step, not in an eager fallback
    assert all(np.isfinite(a).all() for a in _host(model))  # restored to the last window's finite values
