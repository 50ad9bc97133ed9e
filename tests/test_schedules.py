"""Learning-rate schedules: torch's schedulers and Keras' documented formulas, and their use by optimizers."""

from __future__ import annotations

import bisect
import math
import pickle

import numpy as np
import pytest

from dense_xp.optimizers import SGD, Adam, RMSprop
from dense_xp.schedules import (
    SCHEDULES,
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
    from_description,
)
from tests.helpers import host, wide

STEPS = 100
BASE = 0.1
# (ours, torch scheduler class name and keyword arguments); the torch optimizer's lr is BASE
CLOSED = [
    (ConstantLR(BASE, factor=0.5, total_iters=7), ("ConstantLR", {"factor": 0.5, "total_iters": 7})),
    (ConstantLR(BASE), ("ConstantLR", {})),
    (
        LinearLR(BASE, start_factor=0.1, total_iters=10),
        ("LinearLR", {"start_factor": 0.1, "total_iters": 10}),
    ),
    (
        LinearLR(BASE, start_factor=1.0, end_factor=0.05, total_iters=60),
        ("LinearLR", {"start_factor": 1.0, "end_factor": 0.05, "total_iters": 60}),
    ),
    (StepLR(BASE, step_size=7, gamma=0.5), ("StepLR", {"step_size": 7, "gamma": 0.5})),
    (MultiStepLR(BASE, [10, 30, 31], gamma=0.3), ("MultiStepLR", {"milestones": [10, 30, 31], "gamma": 0.3})),
    (ExponentialLR(BASE, gamma=0.95), ("ExponentialLR", {"gamma": 0.95})),
    (ExponentialLR(BASE, gamma=1.02), ("ExponentialLR", {"gamma": 1.02})),  # a learning-rate range test
    (CosineAnnealingLR(BASE, T_max=30, eta_min=1e-3), ("CosineAnnealingLR", {"T_max": 30, "eta_min": 1e-3})),
    (CosineAnnealingLR(BASE, T_max=100), ("CosineAnnealingLR", {"T_max": 100})),
]


def _torch_lrs(torch, build, steps=STEPS):
    """The lr torch's scheduler gives each of ``steps`` optimizer steps (``scheduler.step()`` after each)."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=BASE)
    scheduler = build(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        param.grad = torch.zeros(1)
        opt.step()
        scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize(("ours", "theirs"), CLOSED, ids=[repr(s) for s, _ in CLOSED])
def test_closed_forms_match_torch_schedulers(ours, theirs):
    torch = pytest.importorskip("torch")
    name, kwargs = theirs
    expected = _torch_lrs(torch, lambda opt: getattr(torch.optim.lr_scheduler, name)(opt, **kwargs))
    got = np.array([ours(t) for t in range(STEPS)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert len(set(np.round(got, 12))) > 1 or isinstance(ours, ConstantLR)  # the schedule moves


def test_warmup_then_cosine_matches_torch_sequential_lr():
    torch = pytest.importorskip("torch")
    ours = SequentialLR(
        [LinearLR(BASE, start_factor=0.01, total_iters=10), CosineAnnealingLR(BASE, 90)], [10]
    )
    lrs = torch.optim.lr_scheduler

    def build(opt):
        warm, cos = lrs.LinearLR(opt, start_factor=0.01, total_iters=10), lrs.CosineAnnealingLR(opt, T_max=90)
        return lrs.SequentialLR(opt, [warm, cos], milestones=[10])

    expected = _torch_lrs(torch, build)
    got = np.array([ours(t) for t in range(STEPS)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got[0] == pytest.approx(1e-3)
    assert got.max() == pytest.approx(BASE)


PLATEAU = [
    {},
    {"patience": 2, "factor": 0.5},
    {"patience": 1, "cooldown": 2, "factor": 0.3, "min_lr": 2e-3},
    {"mode": "max", "patience": 1, "threshold": 0.05},
    {"threshold_mode": "abs", "threshold": 0.02, "patience": 0},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 1, "eps": 1e-3},
    {"patience": 0, "factor": 0.9, "eps": 0.02},  # changes smaller than eps are ignored
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=[str(k) for k in PLATEAU])
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    metrics = np.concatenate([np.linspace(1, 0.5, 5), 0.5 + 0.03 * rng.normal(size=40), [np.nan, 0.2, 0.2]])
    metrics = -metrics if kwargs.get("mode") == "max" else metrics
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=BASE)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    ours = ReduceLROnPlateau(BASE, **kwargs)
    changes = 0
    for value in metrics:
        before = ours.lr
        got = ours.step(float(value))
        theirs.step(float(value))
        assert got == ours(123) == opt.param_groups[0]["lr"]
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == (
            theirs.best, theirs.num_bad_epochs, theirs.cooldown_counter
        )  # fmt: skip
        changes += got != before
    too_small = BASE * (1 - kwargs.get("factor", 0.1)) <= kwargs.get("eps", 1e-8)
    assert changes == 0 if too_small else changes >= 1


def _keras_cosine(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    """``keras.optimizers.schedules.CosineDecay`` as its documentation and source write it."""
    if warmup_target is None:
        step = min(step, decay_steps)
        return initial * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial) * (step / warmup_steps) + initial
    step -= warmup_steps
    return warmup_target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)


def test_keras_equivalents_in_the_module_docstring():
    a, n, r = 0.1, 10, 0.6
    for t in range(STEPS):
        exponential = a * r ** (t / n)  # ExponentialDecay(a, n, r)
        staircase = a * r ** (t // n)  # ExponentialDecay(a, n, r, staircase=True)
        assert ExponentialLR(a, gamma=r ** (1 / n), interval="step")(t) == pytest.approx(
            exponential, rel=1e-12
        )
        assert StepLR(a, step_size=n, gamma=r, interval="step")(t) == pytest.approx(staircase, rel=1e-12)
    bounds, values = [10, 40], [0.1, 0.05, 0.01]
    piecewise = lambda t: values[bisect.bisect_left(bounds, t)]
    assert [piecewise(t) for t in (0, 10, 11, 40, 41)] == [0.1, 0.1, 0.05, 0.05, 0.01]  # Keras: step <= bound
    cosine = CosineAnnealingLR(a, T_max=60, eta_min=0.2 * a, interval="step")
    held = SequentialLR([cosine, ConstantLR(0.2 * a, factor=1.0, interval="step")], [60])
    for t in range(STEPS):
        assert held(t) == pytest.approx(_keras_cosine(t, a, 60, alpha=0.2), rel=1e-12)
        if t <= 60:
            assert cosine(t) == pytest.approx(_keras_cosine(t, a, 60, alpha=0.2), rel=1e-12)
    b, w = 0.5, 15
    warm = SequentialLR(
        [
            LinearLR(b, start_factor=a / b, total_iters=w, interval="step"),
            CosineAnnealingLR(b, T_max=STEPS - w, eta_min=0.1 * b, interval="step"),
        ],
        milestones=[w],
    )
    zero = SequentialLR(
        [
            LinearLR(b, start_factor=0.0, total_iters=w, interval="step"),
            CosineAnnealingLR(b, STEPS - w, interval="step"),
        ],
        milestones=[w],
    )
    for t in range(STEPS + 1):
        keras = _keras_cosine(t, a, STEPS - w, alpha=0.1, warmup_target=b, warmup_steps=w)
        assert warm(t) == pytest.approx(keras, rel=1e-12)
        assert zero(t) == pytest.approx(
            _keras_cosine(t, 0.0, STEPS - w, warmup_target=b, warmup_steps=w), abs=1e-15
        )


def _sgd_moves(opt, steps, *, epoch_every=None, metric=None):
    """The lr each step used, read from plain SGD moving a parameter by ``-lr * 1``."""
    p, used = np.zeros(1), []
    for k in range(1, steps + 1):
        before = p.copy()
        p = opt.step([p], [np.ones(1)])[0]
        used.append(float(before[0] - p[0]))
        if epoch_every and k % epoch_every == 0:
            opt.end_epoch(metric(k) if metric else None)
    return np.array(used)


def test_per_step_schedule_and_callable():
    schedule = StepLR(0.4, step_size=3, gamma=0.5, interval="step")
    opt = SGD(lr=schedule)
    assert opt.lr == 0.4
    assert opt.schedule is schedule
    np.testing.assert_allclose(_sgd_moves(opt, 9), [0.4] * 3 + [0.2] * 3 + [0.1] * 3, rtol=1e-12)
    assert opt.lr == pytest.approx(0.05)  # the next step's
    calls = []
    opt = SGD(lr=lambda t: calls.append(t) or 0.1 / (1 + t))
    np.testing.assert_allclose(_sgd_moves(opt, 4), [0.1, 0.05, 0.1 / 3, 0.025], rtol=1e-12)
    assert calls == [0, 1, 2, 3]  # once per step: no other evaluation


def test_per_epoch_schedule_moves_only_at_end_epoch():
    opt = SGD(lr=ExponentialLR(0.2, gamma=0.5))
    used = _sgd_moves(opt, 6, epoch_every=2)
    np.testing.assert_allclose(used, [0.2, 0.2, 0.1, 0.1, 0.05, 0.05], rtol=1e-12)
    assert (opt.epochs, opt.lr) == (3, pytest.approx(0.025))
    assert opt.end_epoch() == pytest.approx(0.0125)
    opt.reset()
    assert (opt.steps, opt.epochs, opt.lr) == (0, 0, 0.2)


def test_epoch_schedule_matches_torch_stepped_per_epoch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(40, 3))
    param = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.Adam([param], lr=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=6, eta_min=0.001)
    opt, p = Adam(lr=CosineAnnealingLR(0.05, T_max=6, eta_min=0.001)), np.zeros(3)
    for k, g in enumerate(grads, start=1):
        param.grad = torch.tensor(g)
        ref.step()
        p = opt.step([p], [g])[0]
        if k % 4 == 0:  # epochs of 4 batches
            scheduler.step()
            assert opt.end_epoch() == pytest.approx(scheduler.get_last_lr()[0], rel=1e-12)
        np.testing.assert_allclose(p, param.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_reduce_on_plateau_through_the_optimizer():
    opt = RMSprop(lr=ReduceLROnPlateau(0.01, patience=1, factor=0.5))
    losses = [1.0, 0.8, 0.8, 0.8, 0.8, 0.8]
    lrs = [opt.end_epoch({"loss": 0.5, "val_loss": v}) for v in losses]
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025]
    assert opt.end_epoch(0.1) == 0.0025  # a bare number is the metric
    with pytest.raises(
        ValueError, match=r"`metric` has no 'val_loss', the metric ReduceLROnPlateau monitors; "
    ):
        opt.end_epoch({"loss": 0.5})
    with pytest.raises(TypeError, match=r"needs the epoch's metric: call end_epoch\(metric\)"):
        opt.end_epoch()
    with pytest.raises(TypeError, match=r"`metric` must be a number, got str 'low'"):
        opt.end_epoch("low")
    assert opt.epochs == 7  # the refused calls counted nothing
    opt.reset()
    assert opt.lr == 0.01


@pytest.mark.parametrize("value", [-0.1, math.nan, "0.1", None])
def test_a_callable_giving_a_bad_rate_is_refused_at_that_step(value):
    opt = SGD(lr=lambda t: 0.1 if t < 2 else value)
    p = np.ones(2)
    p = opt.step([p], [np.ones(2)])[0]
    p = opt.step([p], [np.ones(2)])[0]
    with pytest.raises(
        ValueError, match=r"the `lr` schedule <function .*> gave .* at step 2: it must give a"
    ):
        opt.step([p], [np.ones(2)])
    assert opt.steps == 2
    np.testing.assert_allclose(p, 0.8)


def test_a_numpy_scalar_rate_is_accepted():
    opt = SGD(lr=lambda t: np.float64(0.25))
    assert opt.lr == 0.25
    assert type(opt.lr) is float


def test_schedule_applies_on_every_backend(backend):
    xp, device = backend
    opt = Adam(lr=LinearLR(0.1, start_factor=0.5, total_iters=2, interval="step"))
    dtype = getattr(xp, wide(xp, device))
    p = xp.asarray(np.zeros(3), dtype=dtype, device=device)
    for _ in range(3):
        p = opt.step([p], [xp.asarray(np.ones(3), dtype=dtype, device=device)])[0]
    np.testing.assert_allclose(host(p), -(0.05 + 0.075 + 0.1), rtol=1e-5)  # Adam's first steps move by lr


@pytest.mark.parametrize(
    ("build", "exc", "match"),
    [
        (lambda: StepLR(0.1, 0), ValueError, r"`step_size` must be an integer >= 1, got 0"),
        (lambda: StepLR(0.1, 2, gamma=0), ValueError, r"`gamma` must be a finite number > 0, got 0"),
        (lambda: StepLR(-0.1, 2), ValueError, r"`lr` must be a finite number >= 0, got -0.1"),
        (
            lambda: StepLR(0.1, 2, interval="batch"),
            ValueError,
            r"`interval` must be 'step' or 'epoch', got 'batch'",
        ),
        (
            lambda: ExponentialLR(0.1, gamma=math.inf),
            ValueError,
            r"`gamma` must be a finite number > 0, got inf",
        ),
        (
            lambda: LinearLR(0.1, start_factor=1.5),
            ValueError,
            r"`start_factor` must be a finite number in \[0, 1\]",
        ),
        (lambda: LinearLR(0.1, total_iters=0), ValueError, r"`total_iters` must be an integer >= 1, got 0"),
        (
            lambda: ConstantLR(0.1, factor=-1),
            ValueError,
            r"`factor` must be a finite number in \[0, 1\], got -1",
        ),
        (
            lambda: CosineAnnealingLR(0.1, T_max=2.5),
            TypeError,
            r"`T_max` must be an integer >= 1, got float 2.5",
        ),
        (
            lambda: CosineAnnealingLR(0.1, 5, eta_min=-1),
            ValueError,
            r"`eta_min` must be a finite number >= 0",
        ),
        (
            lambda: MultiStepLR(0.1, [5, 3]),
            ValueError,
            r"`milestones` must be a list of increasing integers >= 1",
        ),
        (lambda: MultiStepLR(0.1, "5"), TypeError, r"`milestones` must be a list of increasing integers"),
        (
            lambda: SequentialLR([], []),
            TypeError,
            r"`schedules` must be a non-empty list of dense_xp schedules",
        ),
        (
            lambda: SequentialLR([ReduceLROnPlateau(0.1), StepLR(0.1, 2)], [3]),
            TypeError,
            r"other than ReduceLROnPlateau",
        ),
        (
            lambda: SequentialLR([StepLR(0.1, 2), StepLR(0.1, 2, interval="step")], [3]),
            ValueError,
            r"`schedules` must share one interval, got \['epoch', 'step'\]",
        ),
        (lambda: SequentialLR([StepLR(0.1, 2)], [3]), ValueError, r"`milestones` must hold one fewer than"),
        (lambda: ReduceLROnPlateau(0.1, mode="up"), ValueError, r"`mode` must be 'min' or 'max', got 'up'"),
        (
            lambda: ReduceLROnPlateau(0.1, factor=1.0),
            ValueError,
            r"`factor` must be a finite number in \[0, 1\)",
        ),
        (
            lambda: ReduceLROnPlateau(0.1, patience=-1),
            ValueError,
            r"`patience` must be an integer >= 0, got -1",
        ),
        (
            lambda: ReduceLROnPlateau(0.1, threshold_mode="pct"),
            ValueError,
            r"`threshold_mode` must be 'rel' or",
        ),
        (lambda: ReduceLROnPlateau(0.1, monitor=1), TypeError, r"`monitor` must be the name of a metric"),
    ],
)
def test_bad_arguments_are_refused(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


def test_descriptions_rebuild_every_schedule_in_its_state():
    plateau = ReduceLROnPlateau(0.1, patience=0, cooldown=1)
    plateau.step(1.0)
    plateau.step(2.0)
    schedules = [
        *(s for s, _ in CLOSED),
        plateau,
        SequentialLR(
            [LinearLR(0.1, 0.0, total_iters=3, interval="step"), StepLR(0.1, 4, interval="step")], [3]
        ),
    ]
    assert {type(s).__name__ for s in schedules} == set(SCHEDULES)
    for schedule in schedules:
        rebuilt = from_description(schedule.describe())
        assert repr(rebuilt) == repr(schedule)
        assert rebuilt.describe() == schedule.describe()
        assert [rebuilt(t) for t in range(20)] == [schedule(t) for t in range(20)]
        assert pickle.loads(pickle.dumps(schedule)).describe() == schedule.describe()
    assert repr(StepLR(0.1, 3)) == "StepLR(lr=0.1, interval='epoch', step_size=3, gamma=0.1)"
    with pytest.raises(ValueError, match=r"`state` of ReduceLROnPlateau must have keys lr, best"):
        from_description({**plateau.describe(), "state": {"lr": 0.1}})
