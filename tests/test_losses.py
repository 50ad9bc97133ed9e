"""Losses and accuracy: values against NumPy references, gradients against finite differences."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from dense_xp import _backend, losses
from dense_xp.losses import LOSSES, accuracy, get_loss
from tests.helpers import central_diff, close, host, on, tol, wide

N, K = 5, 3


# -- references, written out independently in float64 ------------------------
def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def ref_mse(y, t):
    return np.mean((y - t.reshape(y.shape)) ** 2)


def ref_bce(z, t):
    t = t.reshape(z.shape)
    return np.mean(-(t * _log_sigmoid(z) + (1 - t) * _log_sigmoid(-z)))


def ref_ce(z, t):
    onehot = np.eye(z.shape[1])[t] if t.ndim == 1 else t
    return -np.mean(np.sum(onehot * _log_softmax(z), axis=1))


def _targets(kind, rng, k, n=N):
    if kind == "real":
        return rng.normal(size=(n, k)) * 2
    if kind == "soft":
        return rng.uniform(size=(n, k))
    if kind == "binary":
        return rng.integers(0, 2, size=(n, k)).astype(np.float64)
    labels = np.arange(n) % k  # every class present
    rng.shuffle(labels)
    if kind == "labels":
        return labels
    if kind == "onehot":
        return np.eye(k)[labels]
    return rng.dirichlet(np.ones(k), size=n)  # "probs"


CASES = [
    ("mse", "real", K, ref_mse),
    ("mse", "real", 1, ref_mse),
    ("binary_cross_entropy", "soft", K, ref_bce),
    ("binary_cross_entropy", "binary", 1, ref_bce),
    ("softmax_cross_entropy", "labels", K, ref_ce),
    ("softmax_cross_entropy", "onehot", K, ref_ce),
    ("softmax_cross_entropy", "probs", K, ref_ce),
]
IDS = [f"{c[0]}-{c[1]}-k{c[2]}" for c in CASES]


@pytest.mark.parametrize(("name", "kind", "k", "ref"), CASES, ids=IDS)
def test_value_matches_reference_and_grad_matches_finite_differences(backend, name, kind, k, ref):
    xp, device = backend
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, k)) * 2
    t = _targets(kind, rng, k)
    loss = LOSSES[name]
    dtype = wide(xp, device)
    value, grad = loss(on(xp, device, z), t)
    assert value.shape == ()
    assert array_api_compat.device(value) == device
    assert float(value) == pytest.approx(ref(z, t), rel=close(dtype) if dtype == "float64" else 1e-6)
    for a in (value, grad):
        assert array_api_compat.array_namespace(a) is xp
    assert array_api_compat.device(grad) == device
    assert grad.dtype == getattr(xp, dtype)
    assert tuple(grad.shape) == (N, k)

    h, rtol, atol = (1e-6, 1e-6, 1e-9) if dtype == "float64" else (1e-2, 2e-3, 2e-5)
    fd = central_diff(lambda zp: float(loss(on(xp, device, zp), t)[0]), z, h=h)
    g = host(grad)
    np.testing.assert_allclose(g / N, fd, rtol=rtol, atol=atol)  # grad is per sample
    assert np.abs(g).max() > 1e-3


@pytest.mark.parametrize(("name", "kind", "k", "ref"), CASES, ids=IDS)
def test_float32_against_float64_reference(backend, name, kind, k, ref):
    xp, device = backend
    rng = np.random.default_rng(1)
    z = rng.normal(size=(N, k)) * 3
    t = _targets(kind, rng, k)
    loss = LOSSES[name]
    v32, g32 = loss(xp.asarray(z, dtype=xp.float32, device=device), t)
    v64, g64 = loss(*([on(xp, device, z)] if wide(xp, device) == "float64" else [z]), t)  # here or NumPy
    assert v32.dtype == xp.float32
    assert g32.dtype == xp.float32
    eps = tol(xp.float32, xp, 1.0)
    assert float(v32) == pytest.approx(float(v64), rel=64 * eps)
    scale = np.abs(host(g64)).max()
    assert scale > 0
    np.testing.assert_allclose(host(g32), host(g64), rtol=0, atol=64 * eps * scale)


def test_float64_targets_do_not_upcast_float32_outputs(backend):
    xp, device = backend
    rng = np.random.default_rng(2)
    z = xp.asarray(rng.normal(size=(N, K)), dtype=xp.float32, device=device)
    t = _targets("onehot", rng, K)  # on the host where the device has no float64
    if wide(xp, device) == "float64":
        t = xp.asarray(t, device=device)
        assert t.dtype == xp.float64
    for loss in LOSSES.values():
        value, grad = loss(z, t)
        assert value.dtype == xp.float32
        assert grad.dtype == xp.float32
    assert accuracy(z, t).dtype == xp.float32


@pytest.mark.parametrize(("name", "kind", "k", "ref"), CASES, ids=IDS)
def test_matches_torch(backend, name, kind, k, ref):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xp, device = backend
    rng = np.random.default_rng(3)
    z = rng.normal(size=(N, k)) * 2
    t = _targets(kind, rng, k)
    value, grad = LOSSES[name](on(xp, device, z), t)
    t64 = wide(xp, device) == "float64"
    zt = torch.tensor(z if t64 else z.astype(np.float32).astype(np.float64), requires_grad=True)
    tt = torch.tensor(t)
    if name == "mse":
        expected = F.mse_loss(zt, tt)
    elif name == "binary_cross_entropy":
        expected = F.binary_cross_entropy_with_logits(zt, tt)
    else:
        expected = F.cross_entropy(zt, tt)
    expected.backward()
    assert float(value) == pytest.approx(expected.item(), rel=1e-12 if t64 else 1e-6)
    np.testing.assert_allclose(
        host(grad) / N, zt.grad.numpy(), rtol=1e-10 if t64 else 1e-5, atol=1e-14 if t64 else 1e-7
    )


LARGE = np.array(
    [
        [1000.0, -1000.0, 0.0],
        [-1000.0, 1000.0, 2.0],
        [1000.0, 1000.0, -1000.0],
        [0.5, -0.5, 1.0],
        [-1000, -3, 1000],
    ]
)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_stay_finite_without_warnings(backend, dtype):
    xp, device = backend
    dtype = dtype if dtype == "float32" else wide(xp, device)
    z = xp.asarray(LARGE, dtype=getattr(xp, dtype), device=device)
    atol = tol(z.dtype, xp)
    t = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.0, 1.0]])
    value, grad = losses.binary_cross_entropy(z, t)
    # row 0: 1000, 1000, log(2); row 1: 1000, 0, 2 + log1p(e^-2)
    assert float(value) == pytest.approx(ref_bce(LARGE, t), rel=atol)
    assert ref_bce(LARGE, t) > 300
    np.testing.assert_allclose(host(grad), (_sigmoid(LARGE) - t) / K, atol=atol)
    np.testing.assert_allclose(host(grad)[0], [1 / 3, -1 / 3, -1 / 6], atol=atol)

    labels = np.array([1, 2, 2, 0, 0])
    value, grad = losses.softmax_cross_entropy(z, labels)
    assert float(value) == pytest.approx(ref_ce(LARGE, labels), rel=atol)
    assert ref_ce(LARGE, labels) > 1000
    softmax = np.exp(_log_softmax(LARGE))
    np.testing.assert_allclose(host(grad), softmax - np.eye(K)[labels], atol=atol)
    np.testing.assert_allclose(host(grad)[:2], [[1, -1, 0], [0, 1, -1]], atol=atol)

    value, grad = losses.binary_cross_entropy(z[:, :1], t[:, 0])
    assert float(value) == pytest.approx(ref_bce(LARGE[:, :1], t[:, 0]), rel=atol)
    np.testing.assert_allclose(host(grad)[:, 0], _sigmoid(LARGE[:, 0]) - t[:, 0], atol=atol)


def test_integer_labels_and_one_hot_agree(backend):
    xp, device = backend
    rng = np.random.default_rng(4)
    z = on(xp, device, rng.normal(size=(N, K)))
    labels = _targets("labels", rng, K)
    onehot = np.eye(K)[labels]
    ref_value, ref_grad = losses.softmax_cross_entropy(z, onehot)
    assert np.abs(host(ref_grad)).max() > 0.1
    for t in (labels, labels.astype(np.int32), labels.astype(np.uint8), labels.tolist()):
        for form in (t, on(xp, device, t)):
            value, grad = losses.softmax_cross_entropy(z, form)
            assert float(value) == pytest.approx(float(ref_value), rel=1e-14)
            np.testing.assert_allclose(host(grad), host(ref_grad), rtol=1e-14, atol=1e-16)
    assert float(accuracy(z, labels)) == float(accuracy(z, onehot))


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy"])
def test_single_output_takes_flat_targets(backend, name):
    xp, device = backend
    z = on(xp, device, [[0.3], [-1.2], [2.0], [0.0], [-0.7]])
    t = np.array([1.0, 0.0, 0.5, 1.0, 0.25])
    flat, column = LOSSES[name](z, t), LOSSES[name](z, t[:, None])
    assert float(flat[0]) == float(column[0]) > 0
    np.testing.assert_array_equal(host(flat[1]), host(column[1]))


def test_accuracy(backend):
    xp, device = backend
    logits = on(xp, device, [[2.0], [-1.0], [0.5], [-3.0], [0.1]])
    acc = accuracy(logits, [1, 0, 0, 0, 0])
    assert acc.shape == ()
    assert acc.dtype == logits.dtype
    assert array_api_compat.device(acc) == device
    assert float(acc) == pytest.approx(0.6)
    assert float(accuracy(logits, on(xp, device, [0.9, 0.4, 0.6, 0.1, 0.5]))) == 1.0
    scores = on(
        xp, device, [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.0, 0.2, 0.1], [0.3, 0.2, 0.1]]
    )
    labels = [1, 0, 0, 1, 2]
    assert float(accuracy(scores, labels)) == pytest.approx(3 / 5)
    assert float(accuracy(scores, np.eye(3)[labels])) == pytest.approx(3 / 5)
    device_labels = xp.asarray(labels, dtype=xp.int32, device=device)
    assert float(accuracy(scores, device_labels)) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match=r"`y_true` must be class indices of shape \(5,\).*got \(2,\)"):
        accuracy(scores, [1, 0])


def test_call_checks_shapes_and_dtypes(backend):
    xp, device = backend
    z = on(xp, device, np.arange(15.0).reshape(N, K) / 7)
    for loss in (losses.mse, losses.binary_cross_entropy):
        with pytest.raises(ValueError, match=r"`y_true` must have y_pred's shape \(5, 3\), got shape \(5,\)"):
            loss(z, [0.0, 1.0, 1.0, 0.0, 1.0])
        with pytest.raises(
            ValueError, match=r"`y_true` must have y_pred's shape \(5, 3\), got shape \(3, 3\)"
        ):
            loss(z, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"`y_true` must be class indices of shape \(5,\).*got \(4,\)"):
        losses.softmax_cross_entropy(z, [0, 1, 1, 0])
    with pytest.raises(
        TypeError, match=r"`y_true` as class indices .* must hold integers, got dtype float(64|32)"
    ):
        losses.softmax_cross_entropy(z, [0.0, 1.0, 1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match=r"`y_true` must have y_pred's shape \(5, 3\), got shape \(5, 4\)"):
        losses.softmax_cross_entropy(z, np.eye(5, 4))
    with pytest.raises(TypeError, match=r"`y_true` must hold real numbers, got dtype bool"):
        losses.mse(z, np.ones((N, K), dtype=bool))
    with pytest.raises(ValueError, match=r"`y_pred` must be a real floating array of shape \(n, k\), got"):
        losses.mse(z[:, 0], np.ones(N))
    with pytest.raises(ValueError, match=r"`y_pred` must be a real floating array of shape \(n, k\), got"):
        losses.binary_cross_entropy(xp.asarray([[1, 0]], device=device), [[1, 0]])
    np.testing.assert_array_equal(host(z), (np.arange(15.0).reshape(N, K) / 7).astype(wide(xp, device)))


VALID = [
    ("mse", np.ones((N, 3)), 3),
    ("mse", [0.5, 1.5, -2.0, 0.0, 3.0], 1),
    ("binary_cross_entropy", np.array([0, 1, 1, 0, 1]), 1),
    ("binary_cross_entropy", np.full((N, 2), 0.25), 2),
    ("softmax_cross_entropy", np.array([0, 2, 1, 2, 0]), 3),
    ("softmax_cross_entropy", np.eye(3)[[0, 2, 1, 2, 0]], 3),
]


@pytest.mark.parametrize(("name", "y", "k"), VALID)
def test_validate_accepts_host_and_device_targets(backend, name, y, k):
    xp, device = backend
    assert LOSSES[name].validate(y, k, n_samples=N) is None
    assert LOSSES[name].validate(on(xp, device, y), k) is None


MSE, BCE, SCE = "mse", "binary_cross_entropy", "softmax_cross_entropy"
BAD = [
    (
        MSE,
        np.ones((4, 2)),
        3,
        ValueError,
        r"`y` must have shape \(n, 3\) with n >= 1 for mse, got shape \(4, 2\)",
    ),
    (MSE, np.ones(4), 3, ValueError, r"`y` must have shape \(n, 3\).*got shape \(4,\)"),
    (MSE, np.ones((0, 1)), 1, ValueError, r"`y` must have shape \(n, 1\) or \(n,\) with n >= 1.*\(0, 1\)"),
    (MSE, np.ones((5, 1)), 1, ValueError, r"`y` must have one row per sample of X \(4\), got 5"),
    (
        MSE,
        [[1.0], [np.nan], [0.0], [1.0]],
        1,
        ValueError,
        r"`y` must hold finite numbers, got values in \[nan",
    ),
    (MSE, [[1.0], [np.inf], [0.0], [1.0]], 1, ValueError, r"`y` must hold finite numbers.*inf\]"),
    (MSE, np.ones((4, 1), dtype=bool), 1, TypeError, r"`y` must hold real numbers, got dtype bool"),
    (MSE, [["a"], ["b"], ["c"], ["d"]], 1, TypeError, r"`y` must hold real numbers, got dtype <U1"),
    (MSE, [[1.0], [2.0, 3.0], [1.0], [1.0]], 1, ValueError, r"`y` must be a rectangular array of real"),
    (
        BCE,
        [0, 1, 2, 0],
        1,
        ValueError,
        r"`y` must hold binary targets in \[0, 1\], got values in \[0.0, 2.0\]",
    ),
    (BCE, [0.0, -0.5, 1.0, 1.0], 1, ValueError, r"binary targets in \[0, 1\], got values in \[-0.5, 1.0\]"),
    (BCE, np.ones((4, 3)), 2, ValueError, r"`y` must have shape \(n, 2\).*got shape \(4, 3\)"),
    (SCE, [0, 1, 3, 2], 3, ValueError, r"`y` must hold class labels in \[0, 3\), got values in \[0, 3\]"),
    (SCE, [0, -1, 2, 2], 3, ValueError, r"class labels in \[0, 3\), got values in \[-1, 2\]"),
    (
        SCE,
        [0.0, 1.0, 2.0, 1.0],
        3,
        TypeError,
        r"`y` as class labels of shape \(n,\) must hold integers, got dtype",
    ),
    (SCE, [[0], [1], [2], [1]], 3, ValueError, r"`y` must have shape \(n,\) or \(n, 3\).*got shape \(4, 1\)"),
    (SCE, np.eye(4), 3, ValueError, r"`y` must have shape \(n,\) or \(n, 3\).*got shape \(4, 4\)"),
    (SCE, 2 * np.eye(3)[[0, 1, 2, 0]], 3, ValueError, r"rows must hold values in \[0, 1\], got \[0.0, 2.0\]"),
    (SCE, np.full((4, 3), 0.5), 3, ValueError, r"rows summing to 1, got sums in \[1.5, 1.5\]"),
    (SCE, [0, 1, 2], 3, ValueError, r"`y` must have one row per sample of X \(4\), got 3"),
]


@pytest.mark.parametrize(("name", "y", "k", "exc", "match"), BAD)
def test_validate_rejects(name, y, k, exc, match):
    before = repr(y)
    with pytest.raises(exc, match=match):
        LOSSES[name].validate(y, k, n_samples=4)
    assert repr(y) == before


def test_validate_checks_its_own_arguments():
    with pytest.raises(ValueError, match=r"`n_outputs` must be an integer >= 1, got 0"):
        losses.mse.validate([1.0, 2.0], 0)
    with pytest.raises(TypeError, match=r"`n_samples` must be an integer >= 1, got float 2.0"):
        losses.mse.validate([1.0, 2.0], 1, n_samples=2.0)


def test_validate_reads_device_values(backend):
    xp, device = backend
    labels = xp.asarray([0, 1, 4, 2, 1], device=device)
    with pytest.raises(ValueError, match=r"class labels in \[0, 4\), got values in \[0, 4\]"):
        losses.softmax_cross_entropy.validate(labels, 4)
    targets = xp.asarray([[0.5], [1.5], [0.0], [1.0], [0.5]], device=device)
    with pytest.raises(ValueError, match=r"binary targets in \[0, 1\], got values in \[0.0, 1.5\]"):
        losses.binary_cross_entropy.validate(targets, 1)
    with pytest.raises(ValueError, match=r"`y` must hold finite numbers, got values in \[0.0, inf\]"):
        losses.mse.validate(xp.asarray([[0.0], [1.0], [np.inf], [2.0], [0.5]], device=device), 1)
    np.testing.assert_array_equal(host(labels), [0, 1, 4, 2, 1])


def test_get_loss():
    for name, loss in LOSSES.items():
        assert get_loss(name) is loss
        assert loss.name == name
        assert repr(loss) == f"{type(loss).__name__}()"

    def custom(y_pred, y_true):
        return y_pred, y_pred

    assert get_loss(custom) is custom
    valid = "'mse', 'binary_cross_entropy', 'softmax_cross_entropy'"
    with pytest.raises(
        ValueError, match=rf"`loss` must be one of {valid} or a callable loss object; got 'l1'"
    ):
        get_loss("l1")
    with pytest.raises(TypeError, match=r"`loss` must be a name or a callable loss object, got int 3"):
        get_loss(3)
    with pytest.raises(TypeError, match=r"pass an instance, not the class"):
        get_loss(losses.MeanSquaredError)


# -- the bound loss and the hit counter of training's hot path -----------------------------------------------
@pytest.mark.parametrize("name", list(LOSSES))
def test_bound_loss_computes_what_the_loss_computes(backend, name):
    xp, device = backend
    dtype = wide(xp, device)
    rng = np.random.default_rng(4)
    z = on(xp, device, rng.standard_normal((7, 3)), dtype)
    target = {"mse": rng.standard_normal((7, 3)), "binary_cross_entropy": rng.random((7, 3))}
    t = on(xp, device, target.get(name, rng.integers(0, 3, 7)), None if name not in target else dtype)
    w = on(xp, device, rng.random(7), dtype)
    loss = LOSSES[name]
    bound = loss.bind(xp)
    for args in ((z, t), (z, t, w)):
        value, grad = loss(*args)
        with _backend.on_device(device):  # the caller of a bound loss makes its device current
            bound_value, bound_grad = bound(*args)
        np.testing.assert_array_equal(host(bound_value), host(value))
        np.testing.assert_array_equal(host(bound_grad), host(grad))


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("form", ["labels", "onehot"])
def test_hit_counter_counts_what_accuracy_measures(backend, k, form):
    xp, device = backend
    dtype = wide(xp, device)
    rng = np.random.default_rng(5)
    z = on(xp, device, rng.standard_normal((50, k)), dtype)
    if k == 1:
        y = rng.random(50)
        t = on(xp, device, y, dtype)
    else:
        labels = rng.integers(0, k, 50)
        t = on(
            xp, device, labels if form == "labels" else np.eye(k)[labels], None if form == "labels" else dtype
        )
    classes = losses.target_classes(t, k)
    with _backend.on_device(device):
        hits = losses.hit_counter(xp)(z, classes)
    assert float(host(hits)) == pytest.approx(float(host(accuracy(z, t))) * 50, abs=1e-4)
    assert 0 < float(host(hits)) < 50  # not a trivial count
