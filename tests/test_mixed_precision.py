"""Mixed precision: the dtype policy, low-precision forward/backward, loss scaling, moves and checkpoints."""

from __future__ import annotations

import itertools

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, Sequential, TrainingDivergedError, _backend, _checks
from dense_xp.checkpoint import CheckpointError, load, save
from dense_xp.demo import train_digits
from dense_xp.losses import get_loss
from dense_xp.optimizers import SGD, Adam
from dense_xp.training._scaling import LossScaler
from tests.helpers import assert_unchanged, central_diff, host, snapshot, tol
from tests.test_checkpoint import _entries, _manifest, _write

RNG = np.random.default_rng(0)
X = RNG.normal(size=(7, 5))
D_OUT = RNG.normal(size=(7, 3))


def _name(dtype):
    return _checks.dtype_name(dtype)


def _has_float16(xp):
    return getattr(xp, "float16", None) is not None


def _strict(name):
    strict = pytest.importorskip("array_api_strict")
    return strict, strict.Device(name)


def _layer(xp, device, activation="tanh", **dtypes):
    """A 5 -> 3 layer with a nonzero bias."""
    layer = DenseLayer(5, 3, activation, seed=3, init="glorot_normal", device=device, xp=xp, **dtypes)
    with _backend.on_device(layer.device):
        layer.b = layer.b + 0.25
    return layer


def _act(z, activation):
    if activation == "tanh":
        return np.tanh(z)
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def _reference(W, b, X, activation):
    """Host float64 forward of the layer's math."""
    return _act(X @ W + b, activation)


def _to16(a):
    return np.asarray(a, dtype=np.float16).astype(np.float64)


@pytest.fixture
def float64_backend(backend):
    """A backend whose device holds float64: the mixed policies below keep float64 master weights."""
    xp, device = backend
    if "float64" not in _checks.device_float_names(xp=xp, device=device):
        pytest.skip("the device has no float64 (its refusal is tested with array-api-strict's no_float64)")
    return backend


# -- the policy ---------------------------------------------------------------------
def test_defaults_are_the_namespace_default_on_the_device(backend):
    xp, device = backend
    layer = DenseLayer(2, 3, device=device, xp=xp)
    default = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    assert layer.param_dtype == layer.compute_dtype == layer.dtype == default
    assert layer.W.dtype == layer.b.dtype == default
    assert "compute_dtype" not in repr(layer)


def test_dtype_sets_both_and_compute_dtype_alone_keeps_default_params(float64_backend):
    xp, device = float64_backend
    layer = DenseLayer(2, 3, dtype="float32", device=device, xp=xp)
    assert layer.param_dtype == layer.compute_dtype == xp.float32
    mixed = DenseLayer(2, 3, compute_dtype="float32", param_dtype="float64", device=device, xp=xp)
    assert (mixed.param_dtype, mixed.compute_dtype) == (xp.float64, xp.float32)
    assert mixed.W.dtype == xp.float64
    assert "param_dtype=float64, compute_dtype=float32" in repr(mixed)
    assert mixed.get_config() == layer.get_config()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"dtype": "float32", "compute_dtype": "float32"},
            TypeError,
            r"`dtype` sets both.*compute_dtype='float32'",
        ),
        (
            {"dtype": "float64", "param_dtype": "float64"},
            TypeError,
            r"`dtype` sets both.*param_dtype='float64'",
        ),
        (
            {"param_dtype": "float32", "compute_dtype": "float64"},
            ValueError,
            r"`compute_dtype` float64 (must be narrower|is not supported on device)",
        ),
        ({"compute_dtype": "int8"}, ValueError, r"`compute_dtype` must be one of bfloat16, float16.*'int8'"),
        ({"compute_dtype": 3}, ValueError, r"`compute_dtype` must be one of .* got 3"),
        ({"param_dtype": "bfloat16"}, ValueError, r"`param_dtype` must be one of float16, float32, float64"),
    ],
)
def test_policy_rejects(backend, kwargs, exc, match):
    xp, device = backend
    with pytest.raises(exc, match=match):
        DenseLayer(2, 3, device=device, xp=xp, **kwargs)


def test_bfloat16_where_the_library_has_it(backend):
    xp, device = backend
    if getattr(xp, "bfloat16", None) is None:
        with pytest.raises(
            ValueError, match=r"`compute_dtype` bfloat16 is not supported by this .*torch or JAX"
        ):
            DenseLayer(2, 3, param_dtype="float32", compute_dtype="bfloat16", device=device, xp=xp)
        return
    layer = DenseLayer(
        5, 3, "tanh", seed=1, param_dtype="float32", compute_dtype="bfloat16", device=device, xp=xp
    )
    y = layer.forward(X)
    assert y.dtype == xp.bfloat16
    d_input = layer.backward(D_OUT, lr=None)
    assert d_input.dtype == xp.bfloat16
    assert layer.grads["W"].dtype == layer.W.dtype == xp.float32
    W = host(layer.W)
    expected = _reference(W, host(layer.b), X, "tanh")
    np.testing.assert_allclose(host(y), expected, rtol=0, atol=tol(xp.bfloat16, xp, 8.0))


def test_float16_compute_on_a_library_without_float16_is_refused(backend):
    xp, device = backend
    if _has_float16(xp):
        assert DenseLayer(2, 3, compute_dtype="float16", device=device, xp=xp).compute_dtype == xp.float16
        return
    with pytest.raises(
        ValueError, match=r"`compute_dtype` float16 is not supported by this .*pass compute_dtype='float32'"
    ):
        DenseLayer(2, 3, compute_dtype="float16", device=device, xp=xp)


# -- forward and backward ------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_float32_compute_under_float64_params_against_float64_finite_differences(float64_backend, activation):
    """The mixed path on every backend: float32 math, float64 master weights and gradients."""
    xp, device = float64_backend
    layer = _layer(xp, device, activation, param_dtype="float64", compute_dtype="float32")
    twin = _layer(xp, device, activation, dtype="float64")
    y = layer.forward(X)
    assert y.dtype == xp.float32
    d_input = layer.backward(D_OUT, lr=None)
    assert d_input.dtype == xp.float32
    assert layer.W.dtype == layer.b.dtype == xp.float64
    assert {k: g.dtype for k, g in layer.grads.items()} == {"W": xp.float64, "b": xp.float64}
    W, b, n = host(twin.W), host(twin.b), X.shape[0]

    def loss(W=W, b=b, X=X):
        return float(np.sum(_reference(W, b, X, activation) * D_OUT)) / n

    scale = tol(xp.float32, xp, 64.0)
    for name, base in (("W", W), ("b", b)):
        numeric = central_diff(lambda p, name=name: loss(**{name: p}), base)
        analytic = host(layer.grads[name])
        np.testing.assert_allclose(analytic, numeric, rtol=0, atol=scale * np.abs(numeric).max())
        assert np.abs(numeric).max() > 1e-3
    numeric_x = central_diff(lambda x: loss(X=x), X) * n
    np.testing.assert_allclose(host(d_input), numeric_x, rtol=0, atol=scale * np.abs(numeric_x).max())
    np.testing.assert_allclose(host(y), _reference(W, b, X, activation), rtol=0, atol=scale)


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_float16_compute_against_a_float64_reference(backend, activation):
    xp, device = backend
    if not _has_float16(xp):
        pytest.skip(f"{_backend.namespace_name(xp)} has no float16 (refusal tested above)")
    layer = _layer(xp, device, activation, param_dtype="float32", compute_dtype="float16")
    W32, b32 = host(layer.W), host(layer.b)
    y = layer.forward(X)
    d_input = layer.backward(D_OUT, lr=0.5)
    assert (y.dtype, d_input.dtype) == (xp.float16, xp.float16)
    assert layer.W.dtype == layer.grads["W"].dtype == layer.grads["b"].dtype == xp.float32
    # reference: the same float16-rounded operands, then float64 arithmetic
    W16, b16, X16, G16 = _to16(W32), _to16(b32), _to16(X), _to16(D_OUT)
    z = X16 @ W16 + b16
    expected = _act(z, activation)
    eps = tol(xp.float16, xp, 8.0)
    np.testing.assert_allclose(host(y), expected, rtol=0, atol=eps * np.abs(expected).max())
    h = 1e-6
    dz = G16 * (_act(z + h, activation) - _act(z - h, activation)) / (2 * h)
    dW, db, dX = X16.T @ dz / X.shape[0], dz.mean(axis=0, keepdims=True), dz @ W16.T
    for got, ref in ((layer.grads["W"], dW), (layer.grads["b"], db), (d_input, dX)):
        np.testing.assert_allclose(host(got), ref, rtol=0, atol=eps * np.abs(ref).max())
    # the SGD step updates the float32 master weights with the float32 gradients
    step = np.float32(0.5) * host(layer.grads["W"]).astype(np.float32)
    np.testing.assert_array_equal(host(layer.W), W32.astype(np.float32) - step)


# z, activation, act(z), act'(z): float64 values, each a few ulps from float16's and bfloat16's nearest
REPORTED = [
    (-12.0, "sigmoid", 6.144174602214718e-06, 6.1441368513331755e-06),  # was 4.5e-5 (a clip at -10) and 0
    (10.0, "sigmoid", 0.9999546021312976, 4.5395807735951673e-05),  # sigmoid'(10) was y (1 - y) = 0
    (-6.0, "tanh", -0.9999877116507956, 2.4576547405332702e-05),  # tanh'(-6) was 1 - y*y = 0
    (-800.0, "silu", -0.0, -0.0),  # was -0.036: z * sigmoid(-10)
    (-1000.0, "gelu", -0.0, 0.0),  # gelu' was NaN: z*z*z overflowed, inf * 0
    (1000.0, "gelu", 1000.0, 1.0),
    (-20.0, "softplus", 2.061153620314381e-09, 2.0611536181902037e-09),  # float16: both underflow
]


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_the_reported_16_bit_activation_values(backend, compute):
    """param_dtype="float32", compute_dtype="float16" (or bfloat16): the values the bug report gave, and
    their neighbours, through a layer with W = 1 and b = 0 (its output act(z), its d_input act'(z))."""
    xp, device = backend
    if getattr(xp, compute, None) is None:
        pytest.skip(f"{_backend.namespace_name(xp)} has no {compute} (refusal tested above)")
    eps = float(xp.finfo(getattr(xp, compute)).eps)
    for z, activation, value, slope in REPORTED:
        layer = DenseLayer(
            1, 1, activation, init="zeros", param_dtype="float32", compute_dtype=compute, device=device, xp=xp
        )
        with _backend.on_device(layer.device):
            layer.W = layer.W + 1.0
        y = host(layer.forward([[z]]))
        d_input = host(layer.backward([[1.0]], lr=None))
        # 2**-24: float16's smallest subnormal, where a value underflows
        np.testing.assert_allclose(y, [[value]], rtol=eps, atol=2.0**-24, err_msg=f"{activation}({z})")
        np.testing.assert_allclose(d_input, [[slope]], rtol=eps, atol=2.0**-24, err_msg=f"{activation}'({z})")


def test_forward_casts_inputs_and_keeps_parameters(float64_backend):
    xp, device = float64_backend
    layer = _layer(xp, device, param_dtype="float64", compute_dtype="float32")
    W = host(layer.W)
    out = layer.forward(xp.asarray(X, dtype=xp.float64, device=device))
    assert out.dtype == xp.float32
    np.testing.assert_array_equal(host(layer.W), W)
    assert layer.W.dtype == xp.float64


# -- moves and dtypes a device lacks ---------------------------------------------------
def test_to_a_device_without_float64_names_what_it_has_and_changes_nothing():
    strict, cpu = _strict("CPU_DEVICE")
    _, no64 = _strict("no_float64")
    layer = _layer(strict, cpu, dtype="float64")
    layer.forward(X)
    before = snapshot(layer)
    with pytest.raises(
        ValueError,
        match=r"the layer's dtype float64 is not supported on device .*no_float64.*: it has float32; "
        r"pass dtype='float32' \(nothing is converted silently\)",
    ):
        layer.to(no64, xp=strict)
    assert_unchanged(layer, before)
    assert layer.device == cpu
    W = host(layer.W)
    assert layer.to(no64, xp=strict, dtype="float32") is layer
    assert layer.device == no64
    assert layer.param_dtype == layer.compute_dtype == strict.float32
    np.testing.assert_array_equal(host(layer.W), W.astype(np.float32))
    with pytest.raises(ValueError, match=r"`dtype` float64 is not supported on device .*no_float64"):
        DenseLayer(2, 3, dtype="float64", device=no64, xp=strict)


def test_to_a_library_without_the_layer_dtype_says_how_to_convert():
    strict, cpu = _strict("CPU_DEVICE")
    layer = _layer(None, "cpu", dtype="float16")
    W = host(layer.W)
    with pytest.raises(
        ValueError, match=r"the layer's dtype float16 is not supported by .*strict.*pass dtype="
    ):
        layer.to(cpu, xp=strict)
    assert layer.device == "cpu"
    np.testing.assert_array_equal(host(layer.W), W)
    layer.to(cpu, xp=strict, dtype="float32")
    np.testing.assert_array_equal(host(layer.W), W)  # float16 values are exact in float32


def test_sequential_to_checks_before_any_layer_moves():
    strict, cpu = _strict("CPU_DEVICE")
    _, no64 = _strict("no_float64")
    model = Sequential(
        [_layer(strict, cpu, dtype="float64"), DenseLayer(3, 2, dtype="float64", device=cpu, xp=strict)]
    )
    with pytest.raises(ValueError, match=r"the model's dtype float64 is not supported on device"):
        model.to(no64, xp=strict)
    assert all(layer.device == cpu and layer.dtype == strict.float64 for layer in model.layers)
    model.to(no64, xp=strict, param_dtype="float32")
    assert all(layer.device == no64 and layer.dtype == strict.float32 for layer in model.layers)


def test_to_keeps_a_mixed_policy_unless_asked(float64_backend):
    xp, device = float64_backend
    layer = _layer(xp, device, param_dtype="float64", compute_dtype="float32")
    layer.to(device, xp=xp)
    assert (layer.param_dtype, layer.compute_dtype) == (xp.float64, xp.float32)
    layer.to(device, xp=xp, param_dtype="float32")
    assert (layer.param_dtype, layer.compute_dtype) == (xp.float32, xp.float32)
    layer.to(device, xp=xp, param_dtype="float64", compute_dtype="float32")
    layer.to(device, xp=xp, dtype="float64")
    assert (layer.param_dtype, layer.compute_dtype) == (xp.float64, xp.float64)
    with pytest.raises(
        ValueError, match=r"`compute_dtype` float64 must be narrower than `param_dtype` float32"
    ):
        layer.to(device, xp=xp, param_dtype="float32", compute_dtype="float64")
    assert (layer.param_dtype, layer.compute_dtype) == (xp.float64, xp.float64)


def test_load_on_a_device_without_float64(tmp_path):
    strict, cpu = _strict("CPU_DEVICE")
    _, no64 = _strict("no_float64")
    saved = _layer(strict, cpu, dtype="float64")
    save(saved, tmp_path / "m.npz")
    with pytest.raises(
        ValueError, match=r"the checkpoint's dtype float64 is not supported .*dtype='float32'"
    ) as info:
        load(tmp_path / "m.npz", no64, xp=strict)
    assert not isinstance(info.value, CheckpointError)
    back = load(tmp_path / "m.npz", no64, xp=strict, dtype="float32")
    assert back.device == no64
    assert back.dtype == strict.float32
    np.testing.assert_array_equal(host(back.W), host(saved.W).astype(np.float32))


# -- checkpoints ------------------------------------------------------------------------
def test_mixed_checkpoint_round_trip(backend, tmp_path):
    xp, device = backend
    compute = "float16" if _has_float16(xp) else "float32"
    params = "float32" if compute == "float16" else "float64"
    if params not in _checks.device_float_names(xp=xp, device=device):
        pytest.skip("the device has float32 alone: there is no mixed policy to save")
    model = Sequential(
        [
            _layer(xp, device, param_dtype=params, compute_dtype=compute),
            DenseLayer(3, 2, "relu", seed=4, param_dtype=params, compute_dtype=compute, device=device, xp=xp),
        ]
    )
    save(model, tmp_path / "m.npz")
    layers = _manifest(_entries(tmp_path / "m.npz"))["layers"]
    assert [(entry["dtype"], entry["compute_dtype"]) for entry in layers] == [(params, compute)] * 2
    back = load(tmp_path / "m.npz", device, xp=xp)
    assert (_name(back.param_dtype), _name(back.compute_dtype)) == (params, compute)
    np.testing.assert_array_equal(host(back.predict(X)), host(model.predict(X)))
    plain = load(tmp_path / "m.npz", device, xp=xp, compute_dtype=params)
    assert plain.param_dtype == plain.compute_dtype == getattr(xp, params)


def test_checkpoint_without_compute_dtype_computes_in_its_dtype(backend, tmp_path):
    xp, device = backend
    save(_layer(xp, device, dtype="float32"), tmp_path / "a.npz")
    entries = _entries(tmp_path / "a.npz")
    assert "compute_dtype" not in _manifest(entries)["layers"][0]  # files stay as they were before
    back = load(tmp_path / "a.npz", device, xp=xp)
    assert back.param_dtype == back.compute_dtype == xp.float32


@pytest.mark.parametrize(
    ("compute", "match"),
    [
        ("float64", r"compute_dtype must be its dtype or a narrower one of .*got 'float64'"),
        ("int8", r"compute_dtype must be its dtype or a narrower one of .*got 'int8'"),
        (["float16"], r"compute_dtype must be its dtype or a narrower one of .*got \['float16'\]"),
    ],
)
def test_tampered_compute_dtype_is_refused(tmp_path, compute, match):
    path = tmp_path / "a.npz"
    save(_layer(None, "cpu", dtype="float32"), path)
    entries = _entries(path)
    manifest = _manifest(entries)
    manifest["layers"][0]["compute_dtype"] = compute
    _write(path, entries, manifest)
    with pytest.raises(CheckpointError, match=match):
        load(path)


def test_layers_of_a_checkpoint_share_one_compute_dtype(tmp_path):
    path = tmp_path / "a.npz"
    save(Sequential([_layer(None, "cpu", dtype="float32"), DenseLayer(3, 2, dtype="float32")]), path)
    entries = _entries(path)
    manifest = _manifest(entries)
    manifest["layers"][1]["compute_dtype"] = "float16"
    _write(path, entries, manifest)
    with pytest.raises(CheckpointError, match=r"layer 1 computes in float16 but layer 0 in float32"):
        load(path)


def test_a_bfloat16_checkpoint_on_numpy_says_how_to_load_it(tmp_path):
    path = tmp_path / "a.npz"
    save(_layer(None, "cpu", dtype="float32"), path)
    entries = _entries(path)
    manifest = _manifest(entries)
    manifest["layers"][0]["compute_dtype"] = "bfloat16"
    _write(path, entries, manifest)
    with pytest.raises(
        ValueError, match=r"checkpoint's compute_dtype bfloat16 is not .*numpy.*compute_dtype='float16'"
    ):
        load(path)
    assert load(path, compute_dtype="float16").compute_dtype == np.float16


# -- the loss scaler ---------------------------------------------------------------------
def test_unscale_divides_and_reports_finiteness(backend):
    xp, device = backend
    scaler = LossScaler(scale=8.0)
    values = [RNG.normal(size=(3, 2)), RNG.normal(size=(1, 2))]
    grads = [xp.asarray(v * 8.0, dtype=xp.float32, device=device) for v in values]
    assert scaler.unscale(grads) is True
    for got, want in zip(grads, values, strict=True):
        assert array_api_compat.device(got) == device
        np.testing.assert_allclose(host(got), want.astype(np.float32), rtol=1e-7)
    for bad in (np.inf, np.nan):
        broken = values[0].copy()
        broken[1, 0] = bad
        assert (
            scaler.unscale([xp.asarray(a, dtype=xp.float32, device=device) for a in (values[1], broken)])
            is False
        )


def test_update_halves_on_overflow_and_doubles_after_clean_steps():
    scaler = LossScaler(scale=2.0**4, growth_interval=3, min_scale=2.0**2)
    for _ in range(2):
        scaler.update(True)
    scaler.update(False)  # resets the run of clean steps
    assert (scaler.scale, scaler.skipped) == (8.0, 1)
    for _ in range(2):
        scaler.update(True)
    assert scaler.scale == 8.0
    scaler.update(True)
    assert scaler.scale == 16.0
    assert scaler.record() == {"loss_scale": 16.0, "skipped_steps": 1}
    assert scaler.record() == {"loss_scale": 16.0, "skipped_steps": 0}
    for _ in range(2):
        scaler.update(False)
    assert not scaler.exhausted
    scaler.update(False)
    assert scaler.exhausted
    assert scaler.scale == 2.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"scale": 3.0}, ValueError, r"`scale` must be a power of two > 0, got 3.0"),
        ({"scale": True}, TypeError, r"`scale` must be a power of two > 0, got bool True"),
        ({"scale": float("inf")}, ValueError, r"`scale` must be a power of two > 0, got inf"),
        ({"min_scale": 0.0}, ValueError, r"`min_scale` must be a power of two > 0, got 0.0"),
        ({"growth_interval": 0}, ValueError, r"`growth_interval` must be an integer >= 1, got 0"),
    ],
)
def test_loss_scaler_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LossScaler(**kwargs)


# -- fit ------------------------------------------------------------------------------------
def _mixed_model(xp, device, params="float32", compute="float16"):
    kwargs = {"param_dtype": params, "compute_dtype": compute, "device": device, "xp": xp}
    return Sequential(
        [
            DenseLayer(5, 8, "relu", seed=0, init="he_normal", **kwargs),
            DenseLayer(8, 3, seed=1, init="glorot_uniform", **kwargs),
        ]
    )


@pytest.fixture
def float16_backend(backend):
    xp, device = backend
    if not _has_float16(xp):
        pytest.skip(f"{_backend.namespace_name(xp)} has no float16 (its refusal is tested)")
    return xp, device


def _blobs(n=96, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, 5)) + 2.0 * np.eye(3, 5)[y], y


def test_fit_scales_the_loss_and_keeps_float32_masters(float16_backend):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    X_train, y = _blobs()
    opt = Adam(lr=0.05)
    history = model.fit(
        X_train, y, loss="softmax_cross_entropy", optimizer=opt, epochs=10, seed=0, progress=False
    )
    assert len(history["loss_scale"]) == len(history["skipped_steps"]) == 10
    skipped = sum(history["skipped_steps"])
    assert history["loss_scale"][-1] == 2.0**15 / 2**skipped  # 30 steps: no growth yet
    assert history["loss"][-1] < history["loss"][0] / 4
    assert all(p.dtype == xp.float32 for p in model.parameters())
    assert all(a.dtype == xp.float32 for state in opt.state for a in state.values())
    assert model.predict(X_train).dtype == xp.float16


def test_fit_unscales_the_gradients(float16_backend):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    X_train, y = _blobs(32)
    history = model.fit(
        X_train, y, loss="softmax_cross_entropy", optimizer=SGD(lr=0.0), epochs=8, batch_size=32,
        shuffle=False, progress=False,
    )  # fmt: skip
    assert history["skipped_steps"][-1] == 0  # the last step's gradients were finite
    fitted = [host(layer.grads[name]) for layer in model.layers for name in ("W", "b")]
    loss = get_loss("softmax_cross_entropy")
    model.backward(loss(xp.astype(model.forward(X_train), xp.float32), y)[1])
    for got, ref in zip(
        fitted, [host(layer.grads[n]) for layer in model.layers for n in ("W", "b")], strict=True
    ):
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol(xp.float16, xp, 4.0) * np.abs(ref).max())
        assert np.abs(ref).max() > 1e-3


def test_fit_skips_a_step_whose_gradients_overflow(float16_backend):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    before = [host(p) for p in model.parameters()]
    X_train = RNG.normal(size=(16, 5))
    targets = np.full((16, 3), 3000.0)  # the loss gradient times 2**15 overflows float16
    history = model.fit(
        X_train, targets, loss="mse", optimizer="sgd", epochs=1, batch_size=16, progress=False
    )
    assert history["skipped_steps"] == [1]
    assert history["loss_scale"] == [2.0**14]
    for p, p0 in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(host(p), p0)


def test_real_divergence_still_raises(float16_backend):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    X_train, y = _blobs(64)
    with pytest.raises(
        TrainingDivergedError, match=r"training diverged at epoch \d+, batch \d+: .*became NaN or infinite"
    ):
        model.fit(X_train, np.eye(3)[y] * 50, loss="mse", optimizer=SGD(lr=50.0), epochs=5, progress=False)
    assert all(bool(xp.all(xp.isfinite(p))) for p in model.parameters())


def test_gradients_non_finite_at_every_scale_raise(float16_backend, monkeypatch):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    before = [host(p) for p in model.parameters()]
    layer = model.layers[0]
    backprop = layer.backprop  # what models call

    def poisoned(d_out, **kwargs):
        d_input = backprop(d_out, **kwargs)
        layer.grads["W"] = layer.grads["W"] * xp.asarray(float("nan"), dtype=xp.float32, device=device)
        return d_input

    monkeypatch.setattr(layer, "backprop", poisoned)
    X_train, y = _blobs(48)
    with pytest.raises(
        TrainingDivergedError, match=r"gradients are not finite even at loss scale 2\.98023e-08"
    ):
        model.fit(X_train, y, loss="softmax_cross_entropy", epochs=1, batch_size=1, progress=False)
    for p, p0 in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(host(p), p0)


def test_float32_compute_under_float64_params_fits_without_scaling(float64_backend):
    xp, device = float64_backend
    model = _mixed_model(xp, device, params="float64", compute="float32")
    X_train, y = _blobs(64)
    history = model.fit(X_train, y, loss="softmax_cross_entropy", epochs=3, seed=0, progress=False)
    assert "loss_scale" not in history
    assert history["loss"][-1] < history["loss"][0]
    assert all(p.dtype == xp.float64 for p in model.parameters())
    scores = model.evaluate(X_train, y, loss="softmax_cross_entropy")
    out = host(model.predict(X_train))
    shifted = out - out.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
    assert scores["loss"] == pytest.approx(expected, rel=1e-12)  # the loss in float64, from float32 outputs


def test_sequential_needs_one_policy(float64_backend):
    xp, device = float64_backend
    a = DenseLayer(2, 3, param_dtype="float64", compute_dtype="float32", device=device, xp=xp)
    b = DenseLayer(3, 2, dtype="float64", device=device, xp=xp)
    with pytest.raises(ValueError, match=r"share one device and dtype \(param_dtype and compute_dtype\)"):
        Sequential([a, b])
    model = Sequential([a, b.to(device, xp=xp, compute_dtype="float32")])
    assert (model.param_dtype, model.compute_dtype, model.dtype) == (xp.float64, xp.float32, xp.float64)


# -- float16 end to end -----------------------------------------------------------------------
@pytest.fixture
def one_thread(float16_backend):
    """torch's thread pool is slow on a loaded small machine, and the results do not depend on it."""
    xp = float16_backend[0]
    if not array_api_compat.is_torch_namespace(xp):
        yield float16_backend
        return
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield float16_backend
    torch.set_num_threads(threads)


def test_float16_params_fit_with_default_adam(one_thread):
    """float16 parameters: Adam keeps float32 state (eps=1e-8 is 0 in float16 and g*g underflows)."""
    xp, device = one_thread
    model = _mixed_model(xp, device, params="float16", compute="float16")
    X_train, y = _blobs()
    history = model.fit(X_train, y, loss="softmax_cross_entropy", epochs=10, seed=0, progress=False)
    assert "loss_scale" not in history  # float16 parameters: nothing wider to unscale into
    assert all(b < a for a, b in itertools.pairwise(history["loss"]))
    assert history["loss"][-1] < 0.9 * history["loss"][0]
    assert all(p.dtype == xp.float16 for p in model.parameters())


def test_mixed_float16_digits_within_0_01_of_float32(one_thread):
    xp, device = one_thread
    runs = {
        compute: train_digits(
            device=device, xp=xp, epochs=10, compute_dtype=compute, progress=False, baseline=False
        )
        for compute in (None, "float16")
    }
    full, mixed = runs[None], runs["float16"]
    assert mixed["model"].compute_dtype == xp.float16
    assert mixed["model"].param_dtype == full["model"].param_dtype == xp.float32
    assert full["test_accuracy"] >= 0.95
    assert mixed["test_accuracy"] >= full["test_accuracy"] - 0.01


def test_check_gradients_checks_a_mixed_model_in_its_widest_dtype(float16_backend):
    xp, device = float16_backend
    dtypes = {"param_dtype": "float32", "compute_dtype": "float16"}
    second = DenseLayer(3, 2, "tanh", seed=4, **dtypes, device=device, xp=xp)
    model = Sequential([_layer(xp, device, **dtypes), second])  # tanh: smooth for central differences
    errors = dense_xp.testing.check_gradients(model, X)
    widest = _checks.device_float_names(xp=xp, device=device)[-1]
    assert max(errors.values()) < (1e-6 if widest == "float64" else 1e-2)
    assert (model.param_dtype, model.compute_dtype) == (xp.float32, xp.float16)  # the caller's model


def test_probabilities_of_a_mixed_model_are_in_param_dtype(float16_backend):
    xp, device = float16_backend
    model = _mixed_model(xp, device)
    p = model.predict_proba(X[:, :5], loss="softmax_cross_entropy")
    assert p.dtype == xp.float32
    np.testing.assert_allclose(host(xp.sum(p, axis=1)), 1.0, rtol=0, atol=tol(xp.float32, xp, 4.0))
    logits = host(model.predict(X[:, :5]))  # float16 values, exact in float64
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(host(p), e / e.sum(axis=1, keepdims=True), rtol=tol(xp.float32, xp, 8.0))


def test_half_matmul_equals_numpy_float16_matmul():
    a = RNG.normal(size=(9, 70)).astype(np.float16)
    b = RNG.normal(size=(70, 11)).astype(np.float16)
    fast = _backend.matmul(dense_xp.resolve_device("cpu")[0], np.float16)
    got = fast(a, b)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), (a @ b).astype(np.float64), rtol=2**-10, atol=0)
