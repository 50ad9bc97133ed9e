"""The planned training step on NumPy (``dense_xp.training._planned``): buffers made once per fit.

Planned training must give the parameters of eager training (``compile=False``)
bit for bit, and the optimizer state too, for every loss, activation, dtype,
optimizer, shuffle and last partial batch it plans; its loss history equals
eager's to rounding. What it does not plan trains eagerly, and each reason is
named.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import dense_xp
from dense_xp import _loss_plans, losses, schedules
from dense_xp.callbacks import Callback
from dense_xp.layers._dense_plan import DensePlan
from dense_xp.training import _planned

from .conftest import load_backend


def _data(n: int = 150, d: int = 6, k: int = 3, labels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = (X[:, :k] @ rng.standard_normal((k, k)) > 0).argmax(axis=1)
    return X, y if labels else 0.8 * np.eye(k)[y] + 0.2 * rng.dirichlet(np.ones(k), n)  # soft rows


def _model(acts: tuple[Any, ...] = ("tanh", None), dtype: str = "float64", k: int = 3, **kw: Any) -> Any:
    widths = [6, *([8] * (len(acts) - 1)), k]
    return dense_xp.Sequential(
        [
            dense_xp.DenseLayer(widths[i], widths[i + 1], act, seed=i, dtype=dtype, **kw)
            for i, act in enumerate(acts)
        ]
    )


class _Counter:
    """Counts the planned steps taken (a spy around ``PlannedStep.__call__``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _planned.PlannedStep.__call__

        def counted(step: Any, index: Any, m: int) -> Any:
            self.calls += 1
            return real(step, index, m)

        monkeypatch.setattr(_planned.PlannedStep, "__call__", counted)


def _pair(make: Any, X: Any, y: Any, monkeypatch: pytest.MonkeyPatch, **fit: Any) -> tuple[Any, Any]:
    """Train the same model eagerly and planned: both ``(model, optimizer, history)``; the plan ran."""
    out, counter = [], _Counter(monkeypatch)
    for compile in (False, None):
        model, optimizer = make()
        history = model.fit(X, y, optimizer=optimizer, compile=compile, verbose=0, **{"seed": 0, **fit})
        out.append((model, optimizer, history))
    assert counter.calls > 0, "the planned step did not run"
    return out[0], out[1]


def _same(eager: Any, planned: Any, rtol: float) -> None:
    for a, b in zip(eager[0].parameters(), planned[0].parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    for s, t in zip(eager[1].state, planned[1].state, strict=True):
        for name in s:
            np.testing.assert_array_equal(s[name], t[name])
    assert eager[1].steps == planned[1].steps
    for name in eager[2]:
        np.testing.assert_allclose(planned[2][name], eager[2][name], rtol=rtol, atol=0)


OPTIMIZERS = {
    "sgd": lambda: dense_xp.SGD(0.05),
    "sgd-momentum-nesterov": lambda: dense_xp.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam-clip-norm": lambda: dense_xp.Adam(1e-2, clip_norm=0.5),
    "adamw-cosine": lambda: dense_xp.AdamW(schedules.CosineAnnealingLR(1e-2, 7, interval="step")),
    "rmsprop-clip-value": lambda: dense_xp.RMSprop(1e-2, momentum=0.5, centered=True, clip_value=0.1),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_planned_equals_eager_per_optimizer(name: str, shuffle: bool, monkeypatch: Any) -> None:
    eager, planned = _pair(
        lambda: (_model(("relu", "sigmoid", None)), OPTIMIZERS[name]()), *_data(), monkeypatch,
        loss="softmax_cross_entropy", epochs=3, batch_size=32, seed=3, shuffle=shuffle,  # a last batch of 22
    )  # fmt: skip
    _same(eager, planned, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("loss", "acts", "k", "labels"),
    [
        ("mse", ("relu", "linear"), 3, False),
        ("mse", ("tanh",), 1, True),  # targets of shape (n,) for one output; hits from logit > 0
        ("softmax_cross_entropy", ("relu", None), 3, True),
        ("softmax_cross_entropy", ("sigmoid", "tanh", None), 3, False),  # probability rows
        ("binary_cross_entropy", ("relu", None), 1, True),
        ("binary_cross_entropy", ("tanh", "linear"), 3, False),  # three labels per row, soft targets
    ],
)
def test_planned_equals_eager_per_loss(
    dtype: str, loss: str, acts: tuple[Any, ...], k: int, labels: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _data(k=k, labels=labels)
    if k == 1:
        y = (X[:, 0] > 0).astype(np.float64)
    eager, planned = _pair(
        lambda: (_model(acts, dtype=dtype, k=k), dense_xp.Adam(1e-2)), X, y, monkeypatch,
        loss=loss, epochs=2, batch_size=40, seed=1,
    )  # fmt: skip
    _same(eager, planned, rtol=1e-13 if dtype == "float64" else 1e-5)


def test_planned_without_bias_and_with_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    eager, planned = _pair(
        lambda: (_model(("relu", None), use_bias=False), dense_xp.SGD(0.1, momentum=0.9)),
        *_data(), monkeypatch,
        loss="softmax_cross_entropy", epochs=2, batch_size=50, validation_split=0.2,
    )  # fmt: skip
    _same(eager, planned, rtol=1e-13)
    assert "val_loss" in planned[2]


class _Replace(Callback):
    """Replaces the first layer's ``W`` by a new array after every other batch (the step must read it)."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        if batch % 2:
            layer = self.model.layers[0]
            layer.W = layer.W * 0.99


def test_planned_reads_parameters_replaced_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    eager, planned = _pair(
        lambda: (_model(), dense_xp.SGD(0.05)), *_data(), monkeypatch,
        loss="softmax_cross_entropy", epochs=2, batch_size=32, callbacks=[_Replace()],
    )  # fmt: skip
    _same(eager, planned, rtol=1e-13)


def test_planned_leaves_the_last_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    eager, planned = _pair(
        lambda: (_model(), dense_xp.SGD(0.05)), *_data(), monkeypatch,
        loss="softmax_cross_entropy", epochs=1, batch_size=32,
    )  # fmt: skip
    for a, b in zip(eager[0].gradients(), planned[0].gradients(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_planned_guard_still_stops_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter(monkeypatch)
    model = _model(("relu", None))
    X, y = _data(labels=False)
    with pytest.raises(dense_xp.TrainingDivergedError):
        model.fit(X * 1e200, y, loss="mse", optimizer=dense_xp.SGD(1e10), epochs=2, batch_size=16, verbose=0)
    assert counter.calls > 0
    assert all(np.isfinite(p).all() for p in model.parameters())  # restored to the last finite check


class _Options:
    """What :func:`_planned.plan` reads of the fit's options."""

    def __init__(self, loss: Any = "mse", compile: bool | None = None) -> None:
        self.loss, self.compile = losses.get_loss(loss) if isinstance(loss, str) else loss, compile


class _Halved(losses.MeanSquaredError):
    """A loss of one's own, built on one that has a plan."""

    name = "halved_mse"

    def _compute(self, y_pred: Any, y_true: Any, xp: Any = None) -> tuple[Any, Any]:
        value, grad = super()._compute(y_pred, y_true, xp)
        return value / 2, grad / 2


@pytest.mark.parametrize(
    ("make", "options", "weights", "reason"),
    [
        (_model, _Options(compile=False), None, "compile=False"),
        (_model, _Options(_Halved()), None, "loss 'halved_mse' has no planned step"),
        (_model, _Options(), np.ones(3), "loss scaling and sample weights train eagerly"),
        (lambda: _model(("relu", "gelu")), _Options(), None, "activation 'gelu' has no fused kernel"),
        (lambda: _model(dtype="float16"), _Options(), None, "float32 or float64"),
        (
            lambda: dense_xp.Sequential(
                [dense_xp.DenseLayer(6, 3, "relu", param_dtype="float32", compute_dtype="float16")]
            ),
            _Options(),
            None,
            "mixed precision",
        ),
        (
            lambda: dense_xp.Sequential([dense_xp.DenseLayer(6, 3, "relu", seed=0), dense_xp.Dropout(0.5)]),
            _Options(),
            None,
            "Dropout has no planned step",
        ),
    ],
)
def test_what_is_not_planned_says_why(make: Any, options: _Options, weights: Any, reason: str) -> None:
    said = _planned.plan(make(), options, scaling=False, weights=weights)
    assert said is not None
    assert reason in said


def test_a_plannable_model_is_planned() -> None:
    assert _planned.plan(_model(), _Options("softmax_cross_entropy"), scaling=False, weights=None) is None


def test_a_dense_subclass_of_ones_own_trains_eagerly() -> None:
    class Doubled(dense_xp.DenseLayer):
        def forward(self, X: Any, *, training: bool = False) -> Any:
            return super().forward(X, training=training) * 2

    model = dense_xp.Sequential([Doubled(6, 3, "relu")])
    said = _planned.plan(model, _Options(), scaling=False, weights=None)
    assert said == "Doubled has no planned step"


@pytest.mark.parametrize("backend", ["strict", "cupylike"])
def test_other_libraries_are_not_planned(backend: str) -> None:
    xp, device = load_backend(backend)
    model = dense_xp.Sequential([dense_xp.DenseLayer(6, 3, "relu", xp=xp, device=device)])
    said = _planned.plan(model, _Options(), scaling=False, weights=None)
    assert said == "only NumPy models plan their step"


@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("input_grad", [False, True])
def test_dense_plan_equals_forward_and_backprop(act: str, input_grad: bool) -> None:
    """One layer, one batch: the plan's output, gradients and ``d_input`` are the layer's, bit for bit."""
    rng = np.random.default_rng(4)
    layer = dense_xp.DenseLayer(5, 7, act, seed=2)
    layer.b = rng.standard_normal((1, 7))
    X, g = rng.standard_normal((9, 5)) * 3, rng.standard_normal((9, 7))
    y = layer.forward(X, training=True)
    d_input = layer.backprop(g, input_grad=input_grad)
    want = {k: v.copy() for k, v in layer.grads.items()}
    plan = DensePlan(layer, 9, input_grad=input_grad)
    np.testing.assert_array_equal(plan.forward(X), y)
    got = plan.backward(g)
    for name in want:
        np.testing.assert_array_equal(layer.grads[name], want[name])
    if input_grad:
        np.testing.assert_array_equal(got, d_input)
    else:
        assert got is None


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
@pytest.mark.parametrize("labels", [True, False])
def test_loss_plans_equal_the_losses(name: str, labels: bool) -> None:
    """The gradient bit for bit, the loss sum to rounding, on values that are not all small."""
    rng = np.random.default_rng(5)
    loss = losses.get_loss(name)
    z = rng.standard_normal((11, 4)) * 5
    t = rng.integers(0, 4, 11) if labels and name == "softmax_cross_entropy" else rng.uniform(0, 1, (11, 4))
    if name == "softmax_cross_entropy" and not labels:
        t /= t.sum(axis=1, keepdims=True)  # probability rows
    value, grad = loss(z, t)
    plan = _loss_plans.loss_plan(loss, 11, 4, z.dtype, np)
    total, g = plan(z, _loss_plans.plan_targets(loss, t, z.dtype, np))
    np.testing.assert_array_equal(g, grad)
    np.testing.assert_allclose(total, float(value) * 11, rtol=1e-14)
