"""Optimizers: torch.optim semantics, in-place updates, state placement, names and argument checks."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from dense_xp import resolve_device
from dense_xp.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, RMSprop, get_optimizer
from dense_xp.schedules import StepLR
from tests.helpers import host, tol, wide

SHAPES = [(4, 3), (1, 3)]
SETTINGS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.2}),
    ("sgd", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("adam", {"lr": 0.05}),
    ("adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("adam", {"lr": 0.02, "betas": (0.5, 0.8), "eps": 1e-3}),
    ("adamw", {"lr": 0.05}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.3, "betas": (0.8, 0.9)}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.0}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"lr": 0.1, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.005, "alpha": 0.8, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01, "weight_decay": 0.2}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "clip_norm": 1.0}),
    ("adam", {"lr": 0.05, "clip_norm": 0.5}),
    ("adamw", {"lr": 0.05, "clip_norm": 100.0}),  # never reached: the coefficient is clamped to 1
    ("rmsprop", {"lr": 0.01, "centered": True, "clip_norm": 2.0}),
    ("sgd", {"lr": 0.1, "clip_value": 0.5}),
    ("adam", {"lr": 0.05, "weight_decay": 0.1, "clip_value": 0.3}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "clip_value": 1.0}),
]
IDS = [f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for name, kw in SETTINGS]
STATE_NAMES = {
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
}
TORCH_STEPS = 100


def _draws(seed, steps=5):
    """Host float64 parameters and ``steps`` lists of gradients."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) for s in SHAPES] for _ in range(steps)]
    return params, grads


def _on(xp, device, a, dtype=None):
    """Host data on ``device`` in ``dtype``, float64 by default where the device holds it."""
    return xp.asarray(a, dtype=getattr(xp, dtype or wide(xp, device)), device=device)


def _torch_reference(torch, name, kwargs, params0):
    """The torch optimizer for ``kwargs``, its parameters, and the clipping to apply before each step."""
    kwargs = dict(kwargs)
    clip_norm, clip_value = kwargs.pop("clip_norm", None), kwargs.pop("clip_value", None)
    tensors = [torch.tensor(p, requires_grad=True) for p in params0]
    classes = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
    ref = getattr(torch.optim, classes[name])(tensors, **kwargs)

    def clip():
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(tensors, clip_norm)
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(tensors, clip_value)

    return ref, tensors, clip


@pytest.mark.parametrize(("name", "kwargs"), SETTINGS, ids=IDS)
def test_matches_torch_optim(backend, name, kwargs):
    """100 steps, each compared with torch.optim's (to 1e-12 in float64), then the state."""
    torch = pytest.importorskip("torch")
    xp, device = backend
    params0, grads = _draws(0, steps=TORCH_STEPS)
    ref, ref_params, clip = _torch_reference(torch, name, kwargs, params0)
    opt = get_optimizer(name, **kwargs)
    params = [_on(xp, device, p.copy()) for p in params0]
    rtol, atol = (1e-12, 1e-12) if wide(xp, device) == "float64" else (1e-4, 1e-4)
    for step_grads in grads:
        for tensor, g in zip(ref_params, step_grads, strict=True):
            tensor.grad = torch.tensor(g)
        clip()
        ref.step()
        params = opt.step(params, [_on(xp, device, g) for g in step_grads])
        for got, expected in zip(params, ref_params, strict=True):
            want = expected.detach().numpy()
            np.testing.assert_allclose(host(got), want, rtol=rtol, atol=atol)
    assert opt.steps == len(grads)
    for state, tensor in zip(opt.state, ref_params, strict=True):
        assert set(state) == set(ref.state[tensor]) - {"step"}
        for key, value in state.items():
            np.testing.assert_allclose(host(value), ref.state[tensor][key].numpy(), rtol=rtol, atol=atol)
    moved = max(np.abs(host(p) - p0).max() for p, p0 in zip(params, params0, strict=True))
    assert moved > 1e-2  # the check is not on parameters that stood still


@pytest.mark.parametrize(("name", "kwargs"), SETTINGS, ids=IDS)
def test_updates_in_place_and_leaves_grads_alone(backend, name, kwargs):
    xp, device = backend
    params0, grads = _draws(1, steps=2)
    opt = get_optimizer(name, **kwargs)
    params = [_on(xp, device, p.copy()) for p in params0]
    for step_grads in grads:
        given = [_on(xp, device, g) for g in step_grads]
        new = opt.step(params, given)
        for g, g0 in zip(given, step_grads, strict=True):
            np.testing.assert_array_equal(host(g), g0.astype(wide(xp, device)))
        for p, q, p0 in zip(params, new, params0, strict=True):
            assert tuple(q.shape) == p0.shape
            if array_api_compat.is_writeable_array(p):
                assert q is p
            else:  # immutable arrays (JAX): the old parameters are left as they were
                assert q is not p
                np.testing.assert_array_equal(host(p), p0.astype(wide(xp, device)))
        params, params0 = new, [host(q) for q in new]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("name", "kwargs"), [SETTINGS[i] for i in (2, 7, 10)], ids=[IDS[i] for i in (2, 7, 10)]
)
def test_state_and_results_keep_device_and_dtype(backend, dtype, name, kwargs):
    xp, device = backend
    dtype = dtype if dtype == "float32" else wide(xp, device)
    params0, grads = _draws(2)
    opt = get_optimizer(name, **kwargs)
    params = [xp.asarray(p.copy(), dtype=getattr(xp, dtype), device=device) for p in params0]
    assert opt.state == []
    for step_grads in grads:
        params = opt.step(
            params, [xp.asarray(g, dtype=getattr(xp, dtype), device=device) for g in step_grads]
        )
    for p, state in zip(params, opt.state, strict=True):
        assert set(state) == set(STATE_NAMES[name])
        for a in (p, *state.values()):
            assert array_api_compat.array_namespace(a) is xp
            assert array_api_compat.device(a) == device
            assert a.dtype == getattr(xp, dtype)
            assert tuple(a.shape) == tuple(p.shape)


@pytest.mark.parametrize(("name", "kwargs"), SETTINGS[5:10:2], ids=IDS[5:10:2])
def test_float32_against_float64(backend, name, kwargs):
    xp, device = backend
    params0, grads = _draws(3)
    results = {}
    for dtype in ("float32", "float64"):
        on = (xp, device) if dtype == wide(xp, device) or dtype == "float32" else resolve_device("cpu")
        opt = get_optimizer(name, **kwargs)
        params = [_on(*on, p.copy(), dtype) for p in params0]  # the float64 reference: here or on NumPy
        for step_grads in grads:
            params = opt.step(params, [_on(*on, g, dtype) for g in step_grads])
        results[dtype] = [host(p) for p in params]
    for got, ref in zip(results["float32"], results["float64"], strict=True):
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol(xp.float32, xp, 256.0) * scale)


@pytest.mark.parametrize(
    ("name", "kwargs"), [SETTINGS[i] for i in (1, 6, 9)], ids=[IDS[i] for i in (1, 6, 9)]
)
def test_float16_parameters_keep_float32_state(backend, name, kwargs):
    """In float16, Adam's eps=1e-8 is 0 and g*g underflows: state and arithmetic are float32."""
    xp, device = backend
    if getattr(xp, "float16", None) is None:
        pytest.skip("this namespace has no float16")
    params0, grads = _draws(5)
    grads = [[g * 1e-4 for g in step] for step in grads]  # g*g underflows float16
    opt, ref = get_optimizer(name, **kwargs), get_optimizer(name, **kwargs)
    params = [xp.asarray(p, dtype=xp.float16, device=device) for p in params0]
    expected = [xp.asarray(p, dtype=xp.float16, device=device) for p in params0]
    for step in grads:
        half = [xp.asarray(g, dtype=xp.float16, device=device) for g in step]
        new = opt.step(params, half)
        for p, q in zip(params, new, strict=True):
            assert (q is p) == array_api_compat.is_writeable_array(p)
            assert q.dtype == xp.float16
        params = new
        wide = ref.step(
            [xp.astype(p, xp.float32) for p in expected], [xp.astype(g, xp.float32) for g in half]
        )
        expected = [xp.astype(p, xp.float16) for p in wide]
        for got, want in zip(params, expected, strict=True):
            np.testing.assert_array_equal(host(got), host(want))  # the float32 update, rounded once
    assert all(a.dtype == xp.float32 for state in opt.state for a in state.values())
    moved = max(np.abs(host(p) - p0).max() for p, p0 in zip(params, params0, strict=True))
    assert 1e-4 < moved < 1


def _snapshot(opt, params):
    return (
        opt.steps,
        [{k: host(v) for k, v in s.items()} for s in opt.state],
        [host(p) for p in params],
    )


def _assert_same(before, after):
    assert after[0] == before[0]
    assert len(after[1]) == len(before[1])
    for a, b in zip(after[1], before[1], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    for a, b in zip(after[2], before[2], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_mismatched_later_step_raises_and_changes_nothing(backend, name):
    xp, device = backend
    params0, grads = _draws(4, steps=1)
    opt = get_optimizer(name, **({"momentum": 0.9} if name == "sgd" else {}))
    params = [_on(xp, device, p.copy()) for p in params0]
    params = opt.step(params, [_on(xp, device, g) for g in grads[0]])
    bigger = _on(xp, device, np.ones((5, 3)))
    thinner = xp.asarray(np.ones((4, 3)), dtype=xp.float32, device=device)
    cases = [
        ([params[0]], [params[0]]),  # one parameter fewer
        ([bigger, params[1]], [bigger, params[1]]),  # another shape
        ([thinner, params[1]], [thinner, params[1]]),  # another dtype (where the device has two)
    ][: 3 if wide(xp, device) == "float64" else 2]
    for bad_params, bad_grads in cases:
        before = _snapshot(opt, params)
        with pytest.raises(ValueError, match=r"`params` must match those of the first step \(2 arrays"):
            opt.step(bad_params, bad_grads)
        _assert_same(before, _snapshot(opt, params))
        np.testing.assert_array_equal(host(bad_params[0]), host(bad_grads[0]))
    opt.reset()
    assert (opt.steps, opt.state) == (0, [])
    out = opt.step([bigger], [bigger])
    assert opt.steps == 1
    assert tuple(opt.state[0][STATE_NAMES[name][0]].shape) == (5, 3)
    assert np.all(host(out[0]) < 1)


def test_grads_must_match_params(backend):
    xp, device = backend
    p = _on(xp, device, np.ones((2, 3)))
    opt = SGD(momentum=0.5)
    ints = xp.ones(3, dtype=xp.int32, device=device)
    bad = [
        ([p], [], ValueError, r"`grads` must hold one array per parameter \(1\), got 0"),
        ([], [], ValueError, r"`params` must hold at least one array, got an empty sequence"),
        (
            [p],
            [xp.ones((3, 2), dtype=p.dtype, device=device)],
            ValueError,
            r"`grads` must match `params` in shape",
        ),
        *(
            [
                (
                    [p],
                    [xp.ones((2, 3), dtype=xp.float32, device=device)],
                    ValueError,
                    r"`grads` must match.*position 0",
                )
            ]
            if p.dtype != xp.float32
            else []
        ),
        ({"W": p}, [p], TypeError, r"`params` must be a sequence \(list or tuple\) of arrays, got dict"),
        ([p], p, TypeError, r"`grads` must be a sequence \(list or tuple\) of arrays, got"),
        ([ints], [ints], TypeError, r"`params` must be real floating arrays, got dtype"),
    ]
    for params, grads, exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.step(params, grads)
        assert (opt.steps, opt.state) == (0, [])
        np.testing.assert_array_equal(host(p), np.ones((2, 3)))


def test_mixed_libraries_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"`params` and `grads` must be arrays of one array library"):
        Adam().step([np.ones(3)], [torch.ones(3, dtype=torch.float64)])


@pytest.mark.parametrize(
    ("cls", "kwargs", "exc", "match"),
    [
        (SGD, {"lr": -0.1}, ValueError, r"`lr` must be a finite number >= 0, got -0.1"),
        (SGD, {"lr": float("nan")}, ValueError, r"`lr` must be a finite number >= 0, got nan"),
        (SGD, {"lr": None}, TypeError, r"`lr` must be a finite number >= 0, a schedule .*got NoneType None"),
        (Adam, {"lr": "0.1"}, TypeError, r"`lr` must be a finite number >= 0, a schedule .*got str '0.1'"),
        (RMSprop, {"lr": True}, TypeError, r"`lr` must be a finite number >= 0, a schedule .*got bool True"),
        (Adam, {"lr": StepLR}, TypeError, r"`lr` must be .*a callable of the step count, got type <class"),
        (SGD, {"momentum": -0.5}, ValueError, r"`momentum` must be a finite number >= 0, got -0.5"),
        (SGD, {"momentum": True}, TypeError, r"`momentum` must be a finite number >= 0, got bool True"),
        (SGD, {"momentum": float("inf")}, ValueError, r"`momentum` must be a finite number >= 0, got inf"),
        (SGD, {"nesterov": 1, "momentum": 0.9}, TypeError, r"`nesterov` must be True or False, got int 1"),
        (SGD, {"nesterov": True}, ValueError, r"`nesterov=True` requires `momentum` > 0 and `dampening` = 0"),
        (
            SGD,
            {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
            ValueError,
            r"`nesterov=True` requires .* \(as torch.optim.SGD\), got momentum=0.9, dampening=0.1",
        ),
        (SGD, {"dampening": 1.5}, ValueError, r"`dampening` must be a finite number in \[0, 1\], got 1.5"),
        (
            SGD,
            {"dampening": None},
            TypeError,
            r"`dampening` must be a finite number in \[0, 1\], got NoneType",
        ),
        (RMSprop, {"alpha": 1.01}, ValueError, r"`alpha` must be a finite number in \[0, 1\], got 1.01"),
        (RMSprop, {"eps": 0.0}, ValueError, r"`eps` must be a finite number > 0, got 0.0"),
        (RMSprop, {"momentum": -0.1}, ValueError, r"`momentum` must be a finite number >= 0, got -0.1"),
        (RMSprop, {"weight_decay": -1.0}, ValueError, r"`weight_decay` must be a finite number >= 0"),
        (RMSprop, {"centered": 1}, TypeError, r"`centered` must be True or False, got int 1"),
        (
            Adam,
            {"clip_norm": 0.0},
            ValueError,
            r"`clip_norm` must be a finite number > 0 \(or None\), got 0.0",
        ),
        (
            SGD,
            {"clip_value": -1},
            ValueError,
            r"`clip_value` must be a finite number > 0 \(or None\), got -1",
        ),
        (
            AdamW,
            {"clip_norm": "1"},
            TypeError,
            r"`clip_norm` must be a finite number > 0 \(or None\), got str",
        ),
        (
            RMSprop,
            {"clip_norm": 1.0, "clip_value": 0.5},
            ValueError,
            r"`clip_norm` and `clip_value` exclude each other, got clip_norm=1.0 and clip_value=0.5",
        ),
        (SGD, {"weight_decay": -1}, ValueError, r"`weight_decay` must be a finite number >= 0, got -1"),
        (Adam, {"weight_decay": float("inf")}, ValueError, r"`weight_decay` must be a finite number >= 0"),
        (
            AdamW,
            {"weight_decay": -0.01},
            ValueError,
            r"`weight_decay` must be a finite number >= 0, got -0.01",
        ),
        (
            Adam,
            {"betas": (0.9, 1.0)},
            ValueError,
            r"`betas` must be a pair of numbers \(beta1, beta2\), each in \[0, 1\), got \(0.9, 1.0\)",
        ),
        (AdamW, {"betas": (-0.1, 0.9)}, ValueError, r"`betas` must be a pair.*got \(-0.1, 0.9\)"),
        (Adam, {"betas": (float("nan"), 0.9)}, ValueError, r"`betas` must be a pair.*got \(nan, 0.9\)"),
        (Adam, {"betas": 0.9}, TypeError, r"`betas` must be a pair of numbers.*got float 0.9"),
        (Adam, {"betas": (0.9,)}, TypeError, r"`betas` must be a pair.*got tuple \(0.9,\)"),
        (Adam, {"betas": ("0.9", 0.99)}, TypeError, r"`betas` must be a pair.*got tuple \('0.9', 0.99\)"),
        (Adam, {"eps": 0}, ValueError, r"`eps` must be a finite number > 0, got 0"),
        (AdamW, {"eps": -1e-8}, ValueError, r"`eps` must be a finite number > 0, got -1e-08"),
        (Adam, {"eps": "1e-8"}, TypeError, r"`eps` must be a finite number > 0, got str '1e-8'"),
    ],
)
def test_constructor_rejects(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_lr_can_change_between_steps_but_only_to_a_valid_value():
    opt = SGD(lr=0.1)
    p = np.ones(3)
    opt.step([p], [np.ones(3)])
    opt.lr = 0.5
    opt.step([p], [np.ones(3)])
    np.testing.assert_allclose(p, 1 - 0.1 - 0.5)
    with pytest.raises(ValueError, match=r"`lr` must be a finite number >= 0, got -1"):
        opt.lr = -1
    assert opt.lr == 0.5


def test_defaults_and_repr():
    clip = "clip_norm=None, clip_value=None"
    assert (
        repr(SGD()) == f"SGD(lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0, {clip})"
    )
    assert repr(Adam()) == f"Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0, {clip})"
    assert repr(AdamW()) == f"AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01, {clip})"
    assert repr(RMSprop(clip_norm=1)) == (
        "RMSprop(lr=0.01, alpha=0.99, eps=1e-08, weight_decay=0.0, momentum=0.0, centered=False, "
        "clip_norm=1.0, clip_value=None)"
    )


def test_get_optimizer():
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}
    for name, cls in OPTIMIZERS.items():
        opt = get_optimizer(name, lr=0.25)
        assert type(opt) is cls
        assert opt.lr == 0.25
        assert isinstance(opt, Optimizer)
        assert get_optimizer(opt) is opt
    assert get_optimizer("AdamW").weight_decay == 0.01
    assert get_optimizer("sgd", momentum=0.9, nesterov=True).nesterov is True
    assert type(get_optimizer("RMSprop", centered=True)) is RMSprop
    valid = "'sgd', 'adam', 'adamw', 'rmsprop'"
    with pytest.raises(
        ValueError, match=rf"`optimizer` must be one of {valid} or an Optimizer instance; got 'lbfgs'$"
    ):
        get_optimizer("lbfgs")  # nothing close: no suggestion
    with pytest.raises(TypeError, match=r"keyword arguments \['lr'\] apply only to an optimizer name"):
        get_optimizer(SGD(), lr=0.1)
    with pytest.raises(
        TypeError, match=r"`optimizer` must be an optimizer name or an Optimizer instance, got type"
    ):
        get_optimizer(SGD)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'momentum'"):
        get_optimizer("adam", momentum=0.9)


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("adamw_", "adamw"),
        ("sgd_momentum", "sgd"),
        ("RMS_prop", "rmsprop"),
        ("adma", "adam"),
        ("nadam", "adam"),
    ],
)
def test_unknown_name_suggests_the_closest(name, closest):
    with pytest.raises(ValueError, match=rf"got {name!r}; did you mean {closest!r}\?$"):
        get_optimizer(name)


@pytest.mark.parametrize(
    ("cls", "keyword", "hint"),
    [
        (Adam, "learning_rate", r"did you mean `lr`\? \(dense_xp uses torch.optim's names\)"),
        (SGD, "learning_rate", r"did you mean `lr`\?"),
        (AdamW, "beta_1", r"did you mean `betas`\?"),
        (Adam, "epsilon", r"did you mean `eps`\?"),
        (RMSprop, "rho", r"did you mean `alpha`\?"),
        (SGD, "clipnorm", r"did you mean `clip_norm`\?"),
        (Adam, "global_clipnorm", r"did you mean `clip_norm`\?"),
        (RMSprop, "clipvalue", r"did you mean `clip_value`\?"),
        (SGD, "nesterov_", r"did you mean `nesterov`\?"),
        (Adam, "momentum", r"it takes lr, betas, eps, weight_decay, clip_norm, clip_value$"),
        (SGD, "rho", r"it takes lr, momentum, nesterov, weight_decay, dampening, clip_norm, clip_value$"),
    ],
)
def test_other_libraries_keywords_are_refused_with_ours(cls, keyword, hint):
    """Keras spells the learning rate ``learning_rate``: refused, naming ``lr`` (one spelling everywhere)."""
    with pytest.raises(
        TypeError, match=rf"^{cls.__name__}\(\) got an unexpected keyword argument {keyword!r}; {hint}"
    ):
        cls(**{keyword: 0.01})
    with pytest.raises(TypeError, match=rf"unexpected keyword argument {keyword!r}; {hint}"):
        get_optimizer(cls.__name__.lower(), **{keyword: 0.01})


def test_a_subclass_taking_any_keyword_is_not_second_guessed():
    class Tagged(SGD):
        def __init__(self, lr=0.1, **tags):
            super().__init__(lr)
            self.tags = tags

    assert Tagged(learning_rate=3).tags == {"learning_rate": 3}


# -- the unchecked step of training's hot path, its scalars, and a step taken elsewhere ---------------------
@pytest.mark.parametrize(
    "make",
    [lambda: SGD(0.1, momentum=0.9, dampening=0.2), lambda: Adam(1e-2, clip_norm=0.3), lambda: RMSprop(1e-2)],
    ids=["sgd", "adam", "rmsprop"],
)
def test_step_unchecked_equals_step(make):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(5)]
    a, b = make(), make()
    pa, pb = [p.copy() for p in params], [p.copy() for p in params]
    for g in grads:
        pa = a.step(pa, g)
        pb = b.step_unchecked(pb, g, b.scalars())  # the first falls back to the checked step
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.steps == b.steps == 5


def test_adam_scalars_are_the_bias_corrections_of_the_next_step():
    opt = Adam(1e-2, betas=(0.8, 0.9))
    assert opt.scalars() == {"lr": 1e-2, "step_size": 1e-2 / (1 - 0.8), "root": (1 - 0.9) ** 0.5}
    opt.step([np.ones(2)], [np.ones(2)])
    assert opt.scalars()["step_size"] == pytest.approx(1e-2 / (1 - 0.8**2), rel=1e-15)
    assert SGD(0.1, momentum=0.5, dampening=0.25).scalars()["kept"] == 1.0  # torch: buf = d at first


def test_record_step_takes_a_state_of_the_same_names_only():
    opt = Adam(1e-2)
    opt.step([np.ones(2)], [np.ones(2)])
    state = [{k: v + 1 for k, v in opt.state[0].items()}]
    opt.record_step(state)
    assert opt.steps == 2
    assert opt.state is state
    with pytest.raises(ValueError, match="`state`"):
        opt.record_step([{"exp_avg": np.ones(2)}])
    assert opt.steps == 2
