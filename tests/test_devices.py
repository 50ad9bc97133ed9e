"""Multi-device correctness: every entry point computes on the layer's device, whatever device is current.

CuPy allocates, runs cuBLAS and launches kernels on its *current* device. The
CuPy-like namespace of ``tests/cupylike.py`` reproduces that on the CPU: these
tests call dense_xp from a thread whose current device is 0 and put the model on
device 1. The CUDA probes and the advice for each cause of an unusable GPU are
checked against a stand-in for CuPy's runtime.
"""

from __future__ import annotations

import threading
import types

import numpy as np
import pytest

import dense_xp
from dense_xp import DenseLayer, Sequential, _backend, losses
from dense_xp.optimizers import SGD, Adam
from tests import cupylike
from tests.helpers import host

XP = cupylike.namespace
ONE, ZERO = cupylike.Device(1), cupylike.Device(0)


def _model(device=ONE, dtype="float32"):
    return Sequential(
        [
            DenseLayer(5, 8, "relu", seed=0, dtype=dtype, device=device, xp=XP),
            DenseLayer(8, 3, seed=1, dtype=dtype, device=device, xp=XP),
        ]
    )


def _data(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, size=n)


def _assert_current_is_zero():
    assert XP.__array_namespace_info__().default_device() == ZERO


def test_every_entry_point_computes_on_the_models_device(tmp_path):
    X, y = _data()
    model = _model()
    _assert_current_is_zero()
    for layer in model.layers:
        assert all(p.device == ONE for p in layer.parameters().values())
    out = model.forward(X)
    assert out.device == ONE
    model.backward(out, lr=0.1)
    assert all(g.device == ONE for layer in model.layers for g in layer.grads.values())
    optimizer = Adam(lr=0.01)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=2, batch_size=8)
    assert history["loss"][-1] < history["loss"][0]
    assert all(a.device == ONE for state in optimizer.state for a in state.values())
    assert model.predict(X, batch_size=10).device == ONE
    assert set(model.evaluate(X, y, loss="softmax_cross_entropy")) == {"loss", "accuracy"}
    value, grad = losses.softmax_cross_entropy(model.predict(X), y)
    assert value.device == grad.device == ONE
    assert losses.accuracy(model.predict(X), y).device == ONE
    model.save(tmp_path / "m.npz")
    loaded = dense_xp.load(tmp_path / "m.npz", ONE, xp=XP)
    np.testing.assert_array_equal(host(loaded.predict(X)), host(model.predict(X)))
    _assert_current_is_zero()


def test_optimizer_steps_on_the_parameters_device():
    layer = DenseLayer(4, 2, seed=0, device=ONE, xp=XP)
    for optimizer in (SGD(lr=0.1, momentum=0.9), Adam(), dense_xp.AdamW()):
        layer.forward(np.ones((3, 4)))
        layer.backward(np.ones((3, 2)), lr=None)
        params = optimizer.step(list(layer.parameters().values()), [layer.grads["W"], layer.grads["b"]])
        assert all(p.device == ONE for p in params)
        assert all(a.device == ONE for state in optimizer.state for a in state.values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_converts_on_the_target_device(dtype):
    layer = DenseLayer(4, 3, "tanh", seed=2, dtype="float64" if dtype == "float32" else "float32", xp=XP)
    assert layer.device == ZERO
    layer.forward(np.ones((2, 4)))
    layer.backward(np.ones((2, 3)), lr=None)
    W = host(layer.W)
    layer.to(ONE, xp=XP)
    assert layer.W.device == layer.b.device == layer.grads["W"].device == ONE
    np.testing.assert_allclose(host(layer.W), W, rtol=1e-6)
    assert layer.forward(np.ones((2, 4))).device == ONE


def test_the_callers_current_device_is_restored_even_on_errors():
    layer = DenseLayer(4, 3, seed=0, device=ONE, xp=XP)
    with ZERO:
        with pytest.raises(ValueError, match="`X` must have shape"):
            layer.forward(np.ones((2, 5)))
        _assert_current_is_zero()
        layer.forward(np.ones((2, 4)))
        _assert_current_is_zero()


def test_threads_keep_their_own_current_device():
    layers = {i: DenseLayer(6, 4, "relu", seed=i, device=cupylike.Device(i), xp=XP) for i in (0, 1)}
    errors: list[BaseException] = []

    def work(i):
        try:
            for _ in range(50):
                out = layers[i].forward(np.ones((3, 6)))
                assert out.device == cupylike.Device(i)
                layers[i].backward(np.ones((3, 4)), lr=0.01)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_on_device_costs_nothing_where_there_is_no_current_device(backend):
    _, device = backend
    if type(device) is cupylike.Device:
        assert _backend.on_device(device) is device
    else:
        assert _backend.on_device(device) is _backend.on_device("cpu")  # one shared no-op context


@pytest.mark.parametrize("use_bias", [True])
def test_a_bias_of_another_dtype_is_refused_before_anything_changes(backend, use_bias):
    xp, device = backend
    if "float64" not in xp.__array_namespace_info__().dtypes(device=device):
        pytest.skip("the device has no float64")
    layer = DenseLayer(3, 2, "relu", seed=0, dtype="float32", device=device, xp=xp)
    layer.forward(np.ones((2, 3)))
    cache, b = layer._cache, layer.b
    with pytest.raises(TypeError, match=r"`b` must have the layer's param_dtype float32, got float64"):
        layer.b = xp.asarray(np.full((1, 2), 0.5), dtype=xp.float64, device=device)
    assert layer._cache is cache
    assert layer.b is b


def test_tf32_is_pinned_off_in_the_suite():
    import os

    assert os.environ["CUPY_TF32"] == "0"


# --------------------------------------------------------------------------
# CUDA probes: the advice follows the cause (a stand-in for CuPy's runtime)
# --------------------------------------------------------------------------
class _CUDARuntimeError(RuntimeError):
    pass


def _fake_cupy(*, count=2, driver=13020, runtime=13020, count_error=None, compute_error=None):
    state = threading.local()

    def get_device_count():
        if count_error:
            raise _CUDARuntimeError(count_error)
        return count

    class Device:
        def __init__(self, index=None):
            self.id = getattr(state, "current", 0) if index is None else index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    class Sum:
        def sum(self):
            if compute_error:
                raise compute_error
            return 6.0

    rt = types.SimpleNamespace(
        getDeviceCount=get_device_count,
        runtimeGetVersion=lambda: runtime,
        driverGetVersion=lambda: driver,
        getDevice=lambda: getattr(state, "current", 0),
        setDevice=lambda i: setattr(state, "current", i),
    )
    cuda = types.SimpleNamespace(runtime=rt, Device=Device)
    return types.SimpleNamespace(cuda=cuda, arange=lambda *a, **k: Sum(), float32="float32")


@pytest.fixture
def fake_cupy(monkeypatch):
    def install(**kwargs):
        fake = _fake_cupy(**kwargs)
        monkeypatch.setattr(_backend._cuda, "_cupy", lambda: (fake, None))
        _backend.cuda_device_count.cache_clear()
        _backend.cuda_problem.cache_clear()
        return fake

    yield install
    _backend.cuda_device_count.cache_clear()
    _backend.cuda_problem.cache_clear()


def _message(request="cuda"):
    with pytest.raises(dense_xp.DeviceUnavailableError) as info:
        dense_xp.resolve_device(request)
    return str(info.value)


def test_no_driver_asks_for_the_driver_not_for_cupy(fake_cupy):
    fake_cupy(driver=0, count_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    message = _message()
    assert "no NVIDIA driver was found" in message
    assert "install the NVIDIA driver" in message
    assert "580" in message
    assert "pip install" not in message


def test_an_old_driver_names_both_cuda_majors(fake_cupy):
    fake_cupy(driver=12040, count_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    message = _message()
    assert "supports CUDA 12.4, older than the CUDA 13.2" in message
    assert 'pip install "dense-xp[cuda12]"' in message
    assert "cupy-cuda13x" in message


def test_a_missing_device_names_the_count_and_cuda_visible_devices(fake_cupy, monkeypatch):
    fake_cupy(count=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    message = _message("cuda:5")
    assert "there is no CUDA device 5 (this machine shows 2: cuda:0 to cuda:1)" in message
    assert "CUDA_VISIBLE_DEVICES='2,3'" in message


def test_hidden_devices_name_cuda_visible_devices(fake_cupy, monkeypatch):
    fake_cupy(count_error="cudaErrorNoDevice: no CUDA-capable device is detected")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    message = _message()
    assert "no CUDA device is visible" in message
    assert "CUDA_VISIBLE_DEVICES=''" in message


def test_a_kernel_compiler_failure_asks_for_the_toolkit(fake_cupy):
    fake_cupy(
        compute_error=RuntimeError("CuPy failed to load libnvrtc.so.13: cannot open shared object file")
    )
    message = _message()
    assert "cannot compile kernels" in message
    assert "[ctk]" in message
    assert "CUDA Toolkit" in message


def test_cupy_missing_asks_for_the_extra(monkeypatch):
    monkeypatch.setattr(
        _backend._cuda,
        "_cupy",
        lambda: (None, _backend.CudaProblem("CuPy is not installed", _backend._cuda._INSTALL)),
    )
    _backend.cuda_device_count.cache_clear()
    _backend.cuda_problem.cache_clear()
    try:
        message = _message()
    finally:
        _backend.cuda_device_count.cache_clear()
        _backend.cuda_problem.cache_clear()
    assert "CuPy is not installed" in message
    assert 'pip install "dense-xp[cuda13]"' in message
    assert "driver >= 580" in message


def test_cuda_current_restores_the_callers_device(fake_cupy):
    fake = fake_cupy()
    with _backend._cuda._cuda_current(fake.cuda.Device(1)):
        assert fake.cuda.runtime.getDevice() == 1
        with _backend._cuda._cuda_current(fake.cuda.Device(0)):
            assert fake.cuda.runtime.getDevice() == 0
        assert fake.cuda.runtime.getDevice() == 1
    assert fake.cuda.runtime.getDevice() == 0


def test_cuda_extras_bring_the_toolkit_wheels():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["cuda12"] == ["cupy-cuda12x[ctk]>=14.0"]
    assert extras["cuda13"] == ["cupy-cuda13x[ctk]>=14.0"]


def test_device_batches_hand_over_the_rows_of_every_batch(backend):
    xp, device = backend
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(10, 4)), rng.integers(0, 3, size=10)
    default = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    X_dev = xp.asarray(X, dtype=default, device=device)
    batches = [slice(0, 4), np.array([9, 1, 5]), slice(8, 10)]
    seen = list(_backend.device_batches((X, y, X_dev), batches, xp=xp, device=device))
    assert len(seen) == len(batches)
    for (Xb, yb, Xb_dev), index in zip(seen, batches, strict=True):
        np.testing.assert_allclose(host(Xb), X[index], rtol=1e-6)  # float32 where the device has no float64
        np.testing.assert_array_equal(host(yb), y[index])
        np.testing.assert_allclose(host(Xb_dev), X[index], rtol=1e-6)
        assert dense_xp.resolve_device(xp=xp, device=device)[1] == device
