"""Optimizer state as host data: pickling, deep copies, state_dict / load_state_dict, resumed training."""

from __future__ import annotations

import copy
import json
import pickle

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp.optimizers import SGD, Adam, AdamW, RMSprop
from dense_xp.schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR
from tests.helpers import host, wide

SHAPES = [(4, 3), (1, 3)]
SETTINGS = {
    "sgd": lambda: SGD(lr=0.1, momentum=0.9, dampening=0.2),
    "adam": lambda: Adam(lr=0.05, weight_decay=0.1),
    "adamw-clip": lambda: AdamW(lr=0.05, clip_norm=1.0),
    "rmsprop": lambda: RMSprop(lr=0.01, momentum=0.5, centered=True),
    "adam-step-schedule": lambda: Adam(lr=StepLR(0.05, step_size=7, gamma=0.5, interval="step")),
    "sgd-epoch-schedule": lambda: SGD(lr=CosineAnnealingLR(0.1, T_max=4), momentum=0.5, clip_value=0.8),
    "rmsprop-plateau": lambda: RMSprop(lr=ReduceLROnPlateau(0.02, patience=1, factor=0.5, monitor="loss")),
}


def _draws(seed, steps):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES], [[rng.normal(size=s) for s in SHAPES] for _ in range(steps)]


def _steps(opt, params, grads, *, xp, device):
    for step_grads in grads:
        params = opt.step(params, [xp.asarray(g, dtype=params[0].dtype, device=device) for g in step_grads])
    return params


def _train(opt, params, grads, *, xp, device, start=0):
    """``len(grads)`` steps; every 5th step ends an epoch whose metric plateaus."""
    for k, step_grads in enumerate(grads, start=start + 1):
        params = opt.step(params, [xp.asarray(g, dtype=params[0].dtype, device=device) for g in step_grads])
        if k % 5 == 0:
            opt.end_epoch({"loss": 1.0 / min(k, 10)})  # improves, then stays flat
    return params


def _on(xp, device, arrays):
    return [xp.asarray(a.copy(), dtype=getattr(xp, wide(xp, device)), device=device) for a in arrays]


@pytest.mark.parametrize(
    "clone", [lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy], ids=["pickle", "deepcopy"]
)
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_trained_optimizer_pickles_and_deep_copies(backend, name, clone):
    """JAX's Device objects do not pickle: the state must go through the host and come back on its device."""
    xp, device = backend
    make = {"sgd": lambda: SGD(lr=0.1, momentum=0.9), "adam": lambda: Adam(lr=0.05)}[name]
    params0, grads = _draws(0, steps=6)
    opt = make()
    params = _steps(opt, _on(xp, device, params0), grads[:3], xp=xp, device=device)
    twin = clone(opt)
    assert (twin.steps, repr(twin)) == (opt.steps, repr(opt))
    for mine, theirs in zip(opt.state, twin.state, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            a, b = mine[key], theirs[key]
            assert b is not a
            assert array_api_compat.array_namespace(b) is array_api_compat.array_namespace(a)
            assert (array_api_compat.device(b), b.dtype) == (array_api_compat.device(a), a.dtype)
            np.testing.assert_array_equal(host(b), host(a))
    copied = [xp.asarray(p, copy=True, device=device) for p in params]
    ours = _steps(opt, params, grads[3:], xp=xp, device=device)
    theirs = _steps(twin, copied, grads[3:], xp=xp, device=device)  # the clone trains on its own state
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(host(b), host(a))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_optimizer_pickles_with_its_schedule(backend, name):
    xp, device = backend
    params0, grads = _draws(1, steps=12)
    opt = SETTINGS[name]()
    params = _train(opt, _on(xp, device, params0), grads[:6], xp=xp, device=device)
    twin = pickle.loads(pickle.dumps(opt))
    assert (twin.lr, twin.epochs) == (opt.lr, opt.epochs)
    assert (twin.schedule is None) == (opt.schedule is None)
    assert twin.schedule is None or twin.schedule is not opt.schedule
    copied = [xp.asarray(p, copy=True, device=device) for p in params]
    a = _train(opt, params, grads[6:], xp=xp, device=device, start=6)
    b = _train(twin, copied, grads[6:], xp=xp, device=device, start=6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(host(y), host(x))


def test_unpickling_where_the_device_is_gone_falls_back_to_the_cpu():
    """State pickled on CUDA device 0 (CuPy) comes back on NumPy where CUDA does not answer, as layers do."""
    if dense_xp._backend.cuda_unusable_reason(0) is None:
        pytest.skip("CUDA answers here: the state would come back on the GPU")
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step([np.ones((2, 3))], [np.full((2, 3), 0.5)])
    state = opt.__getstate__()
    state["_signatures"] = [(s[0], s[1], ("array_api_compat.cupy", "cuda:0")) for s in state["_signatures"]]
    back = SGD.__new__(SGD)
    back.__setstate__(state)
    assert isinstance(back.state[0]["momentum_buffer"], np.ndarray)
    out = back.step([np.ones((2, 3))], [np.full((2, 3), 0.5)])
    np.testing.assert_allclose(out[0], 1 - 0.1 * (0.9 * 0.5 + 0.5))


@pytest.mark.parametrize("deferred", [True, False], ids=["load-then-step", "load-with-params"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_resumed_training_equals_uninterrupted(backend, name, deferred):
    """50 steps, against 25, a state dict through the host, a new optimizer, and 25 more."""
    xp, device = backend
    params0, grads = _draws(2, steps=50)
    whole = SETTINGS[name]()
    expected = _train(whole, _on(xp, device, params0), grads, xp=xp, device=device)
    first = SETTINGS[name]()
    params = _train(first, _on(xp, device, params0), grads[:25], xp=xp, device=device)
    saved = first.state_dict()
    json.dumps({k: v for k, v in saved.items() if k != "state"})  # all but the arrays is JSON
    assert all(isinstance(a, np.ndarray) for s in saved["state"] for a in s.values())
    params = _on(xp, device, [host(p) for p in params])  # the model comes back from its checkpoint
    resumed = SETTINGS[name]()
    if deferred:
        resumed.load_state_dict(saved)
        assert resumed.state == []  # placed on the parameters' device at the next step
    else:
        resumed.load_state_dict(saved, params)
        assert all(array_api_compat.device(a) == device for s in resumed.state for a in s.values())
    assert (resumed.steps, resumed.epochs, resumed.lr) == (25, 5, first.lr)
    got = _train(resumed, params, grads[25:], xp=xp, device=device, start=25)
    tolerance = 1e-12 if wide(xp, device) == "float64" else 1e-6
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(host(a), host(b), rtol=tolerance, atol=tolerance)
    assert resumed.lr == whole.lr
    assert resumed.state_dict()["schedule"] == whole.state_dict()["schedule"]


def test_state_dict_is_a_host_copy_with_counts_hyperparameters_and_schedule():
    opt = Adam(lr=StepLR(0.1, step_size=2, interval="step"), betas=(0.8, 0.9), clip_value=2.0)
    p = np.ones((2, 3))
    opt.step([p], [np.full((2, 3), 0.5)])
    saved = opt.state_dict()
    assert saved["optimizer"] == "Adam"
    assert saved["hyperparameters"] == {
        "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.0, "clip_norm": None, "clip_value": 2.0
    }  # fmt: skip
    assert saved["schedule"] == {
        "name": "StepLR",
        "config": {"lr": 0.1, "interval": "step", "step_size": 2, "gamma": 0.1},
        "state": {},
    }
    assert (saved["lr"], saved["steps"], saved["epochs"]) == (0.1, 1, 0)
    assert saved["params"] == [{"shape": (2, 3), "dtype": "float64"}]
    assert saved["loss_scale"] is None
    before = saved["state"][0]["exp_avg"].copy()
    opt.step([p], [np.full((2, 3), 0.5)])
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)  # not a view of the live state
    assert opt.state_dict()["lr"] == pytest.approx(0.01)


def test_load_restores_hyperparameters_and_keeps_an_equal_schedule_object():
    source = SGD(lr=ReduceLROnPlateau(0.1, patience=0, monitor="loss"), momentum=0.9, weight_decay=0.1)
    source.step([np.ones(3)], [np.ones(3)])
    source.end_epoch({"loss": 1.0})
    source.end_epoch({"loss": 2.0})  # no improvement, patience 0: lr 0.01
    schedule = ReduceLROnPlateau(0.1, patience=0, monitor="loss")
    target = SGD(lr=schedule, momentum=0.5)
    target.load_state_dict(source.state_dict())
    assert target.schedule is schedule  # the user's object, at the loaded position
    assert (schedule.best, target.momentum, target.weight_decay) == (1.0, 0.9, 0.1)
    assert schedule.lr == target.lr == pytest.approx(0.01, rel=1e-15)
    other = SGD(lr=0.5)
    other.load_state_dict(source.state_dict())
    assert other.schedule is not schedule
    assert other.schedule.describe() == schedule.describe()
    constant = SGD(lr=StepLR(0.3, 2))
    constant.load_state_dict(SGD(lr=0.25).state_dict())
    assert (constant.schedule, constant.lr) == (None, 0.25)


def test_a_callable_lr_must_be_given_again():
    def halving(t):
        return 0.1 * 0.5**t

    opt = SGD(lr=halving)
    opt.step([np.ones(3)], [np.ones(3)])
    saved = opt.state_dict()
    assert saved["schedule"] == {"name": "callable"}
    with pytest.raises(ValueError, match=r"saved with a callable `lr`, which a state dict cannot hold"):
        SGD(lr=0.1).load_state_dict(saved)
    again = SGD(lr=halving)
    again.load_state_dict(saved)
    assert again.lr == 0.05


def test_loss_scale_has_its_place():
    opt = Adam()
    opt.loss_scale = {"scale": 1024.0, "growth_interval": 2000, "clean_steps": 7}
    opt.step([np.ones(3)], [np.ones(3)])
    saved = opt.state_dict()
    assert saved["loss_scale"] == {"scale": 1024.0, "growth_interval": 2000, "clean_steps": 7}
    back = Adam()
    back.load_state_dict(saved)
    assert back.loss_scale == saved["loss_scale"]
    assert back.loss_scale is not saved["loss_scale"]


def _bad(saved, change):
    bad = copy.deepcopy(saved)
    change(bad)
    return bad


def test_load_refuses_a_bad_state_dict_and_changes_nothing():
    opt = Adam(lr=0.05)
    params = [np.ones((4, 3)), np.ones((1, 3))]
    opt.step(params, [np.full((4, 3), 0.5), np.full((1, 3), 0.25)])
    saved = opt.state_dict()
    target = RMSprop(lr=0.3)
    adam = Adam(lr=0.3, betas=(0.5, 0.6))
    cases = [
        (target, saved, r"`state_dict` is of a Adam, not of a RMSprop"),
        (adam, {"steps": 3}, r"`state_dict` must be what state_dict\(\) returns, with keys optimizer, "),
        (adam, [], r"`state_dict` must be what state_dict\(\) returns.*got list"),
        (
            adam,
            _bad(saved, lambda d: d["state"][1].__setitem__("exp_avg", np.ones((3, 1)))),
            r"`state_dict\['state'\]\[1\]\['exp_avg'\]` must be a NumPy array of shape \(1, 3\) and dtype "
            r"float64 \(parameter 1 is float64\), got ndarray \(3, 1\) float64",
        ),
        (
            adam,
            _bad(saved, lambda d: d["state"][0].__setitem__("exp_avg_sq", np.ones((4, 3), np.float32))),
            r"`state_dict\['state'\]\[0\]\['exp_avg_sq'\]` must be .*got ndarray \(4, 3\) float32",
        ),
        (
            adam,
            _bad(saved, lambda d: d["state"][0].pop("exp_avg")),
            r"`state_dict\['state'\]\[0\]` must be a dict",
        ),
        (adam, _bad(saved, lambda d: d["state"].pop()), r"`state_dict\['state'\]` must be a list of 2 dicts"),
        (adam, _bad(saved, lambda d: d["params"][0].update(dtype="int8")), r"`state_dict\['params'\]\[0\]`"),
        (adam, _bad(saved, lambda d: d.update(steps=-1)), r"`state_dict\['steps'\]` must be an integer >= 0"),
        (
            adam,
            _bad(saved, lambda d: d["hyperparameters"].update(eps=0)),
            r"`eps` must be a finite number > 0",
        ),
        (adam, _bad(saved, lambda d: d["hyperparameters"].update(momentum=0.9)), r"unexpected keyword"),
        (adam, _bad(saved, lambda d: d.update(loss_scale=3)), r"`state_dict\['loss_scale'\]` must be a dict"),
        (
            adam,
            _bad(saved, lambda d: d.update(schedule={"name": "Nope"})),
            r"`schedule` must describe one of",
        ),
    ]
    for opt_, bad, match in cases:
        before = opt_.state_dict()
        with pytest.raises((ValueError, TypeError), match=match):
            opt_.load_state_dict(bad)
        after = opt_.state_dict()
        assert repr(after) == repr(before)


def test_loaded_state_refuses_parameters_it_does_not_fit(backend):
    xp, device = backend
    source = RMSprop(momentum=0.9)
    source.step([np.ones((4, 3)), np.ones((1, 3))], [np.ones((4, 3)), np.ones((1, 3))])
    saved = source.state_dict()
    dtype = getattr(xp, wide(xp, device))
    good = _on(xp, device, [np.ones((4, 3)), np.ones((1, 3))])
    bad = [good[0], _on(xp, device, [np.ones(3)])[0]]
    opt = RMSprop(momentum=0.9)
    message = r"`params` must fit the loaded state: at position 1 the state is for shape \(1, 3\) float64"
    if wide(xp, device) == "float64":
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(saved, bad)
        assert opt.steps == 0
        opt.load_state_dict(saved)
        with pytest.raises(ValueError, match=message):
            opt.check(bad)
        with pytest.raises(ValueError, match=r"`params` must be the 2 arrays of the loaded state, got 1"):
            opt.step(good[:1], good[:1])
        assert (opt.state, opt.steps) == ([], 1)
    else:  # a float32 device: the float64 state does not fit
        opt.load_state_dict(saved)
        with pytest.raises(ValueError, match=r"at position 0 the state is for shape \(4, 3\) float64"):
            opt.check(good)
        return
    opt.check(good)  # places the state on the parameters' device
    for state in opt.state:
        for a in state.values():
            assert array_api_compat.device(a) == device
            assert a.dtype == dtype
    out = opt.step(good, good)
    ref = RMSprop(momentum=0.9)
    ref.load_state_dict(saved)
    expected = ref.step([np.ones((4, 3)), np.ones((1, 3))], [np.ones((4, 3)), np.ones((1, 3))])
    for a, b in zip(out, expected, strict=True):
        np.testing.assert_allclose(host(a), b, rtol=1e-12)


def test_float16_parameters_save_float32_state(backend):
    xp, device = backend
    if getattr(xp, "float16", None) is None:
        pytest.skip("this namespace has no float16")
    opt = Adam(lr=0.01)
    p = xp.ones((2, 3), dtype=xp.float16, device=device)
    p = opt.step([p], [xp.full((2, 3), 0.5, dtype=xp.float16, device=device)])[0]
    saved = opt.state_dict()
    assert saved["params"] == [{"shape": (2, 3), "dtype": "float16"}]
    assert {a.dtype.name for a in saved["state"][0].values()} == {"float32"}
    back = Adam()
    back.load_state_dict(saved, [p])
    assert all(a.dtype == xp.float32 for a in back.state[0].values())
    twin = pickle.loads(pickle.dumps(opt))
    assert all(a.dtype == xp.float32 for a in twin.state[0].values())
