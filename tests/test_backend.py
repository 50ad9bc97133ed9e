"""Device selection, CUDA probing and host transfer."""

from __future__ import annotations

import subprocess
import sys

import array_api_compat
import numpy as np
import pytest

import dense_xp
from dense_xp import _backend


@pytest.fixture(autouse=True)
def _clean_defaults(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    dense_xp.set_default_device(None)
    yield
    dense_xp.set_default_device(None)


def test_cpu_is_the_fallback():
    xp, device = dense_xp.resolve_device()
    assert device == "cpu"
    assert xp.__name__ == "array_api_compat.numpy"
    assert dense_xp.get_default_device() == "cpu"


def test_resolution_order(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda:3")
    assert dense_xp.get_default_device() == "cuda:3"
    dense_xp.set_default_device("auto")
    assert dense_xp.get_default_device() == "auto"
    with dense_xp.use_device("cpu"):
        assert dense_xp.get_default_device() == "cpu"
        with dense_xp.use_device("cuda:1"):
            assert dense_xp.get_default_device() == "cuda:1"
        assert dense_xp.get_default_device() == "cpu"
        assert dense_xp.resolve_device()[1] == "cpu"
        assert dense_xp.DenseLayer(2, 2).device == "cpu"
    assert dense_xp.get_default_device() == "auto"
    dense_xp.set_default_device(None)
    assert dense_xp.get_default_device() == "cuda:3"


def test_environment_variable_selects_the_device(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda:99")
    with pytest.raises(dense_xp.DeviceUnavailableError, match=r"'cuda:99' is unavailable"):
        dense_xp.DenseLayer(2, 2)
    assert dense_xp.DenseLayer(2, 2, device="cpu").device == "cpu"


def test_missing_cuda_device_says_why_and_how_to_fix():
    with pytest.raises(dense_xp.DeviceUnavailableError) as info:
        dense_xp.resolve_device("cuda:99")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "'cuda:99' is unavailable" in message
    assert "To fix it, " in message  # the fix for each cause: tests/test_devices.py
    assert 'device="auto"' in message
    assert any(
        why in message
        for why in ("not installed", "NVIDIA driver", "no CUDA device 99", "reports no device", "not visible")
    )


def test_auto_picks_cuda_exactly_when_a_device_answers():
    xp, device = dense_xp.resolve_device("auto")
    if _backend.cuda_unusable_reason(0) is None:
        assert xp.__name__ == "array_api_compat.cupy"
    else:
        assert device == "cpu"
        with pytest.raises(dense_xp.DeviceUnavailableError, match=r"'cuda' is unavailable: "):
            dense_xp.resolve_device("cuda")


def test_cupy_not_installed_is_reported(monkeypatch):
    for probe in (_backend._cuda._cupy, _backend.cuda_device_count, _backend.cuda_problem):
        probe.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    try:
        with pytest.raises(dense_xp.DeviceUnavailableError, match="CuPy is not installed"):
            dense_xp.resolve_device("cuda")
        assert dense_xp.resolve_device("auto")[1] == "cpu"
        cupy = _backend.cuda_report()
        assert cupy["available"] is False
        assert cupy["reason"] == "CuPy is not installed"
    finally:
        for probe in (_backend._cuda._cupy, _backend.cuda_device_count, _backend.cuda_problem):
            probe.cache_clear()


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:0", "", "auto:1"])
def test_bad_device_strings(bad):
    with pytest.raises(ValueError, match=r'`device` must be "cpu", "cuda", "cuda:N" or "auto"'):
        dense_xp.set_default_device(bad)
    with pytest.raises(ValueError, match=r"`device` must be"), dense_xp.use_device(bad):
        pass
    assert dense_xp.get_default_device() == "cpu"


def test_device_object_of_another_namespace_is_refused():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(
        TypeError, match=r"a device object of array_api_strict: pass `xp=` with its array namespace"
    ):
        dense_xp.resolve_device(strict.Device("device1"))
    with pytest.raises(ValueError, match=r"`device` 'nowhere' is not a usable device of array_api_strict"):
        dense_xp.resolve_device("nowhere", xp=strict)
    with pytest.raises(ValueError, match=r"`device` 'cuda' is not a device of numpy"):
        dense_xp.resolve_device("cuda", xp=np)


def test_plain_library_modules_map_to_their_compatible_namespace():
    xp, device = dense_xp.resolve_device(xp=np)
    assert (xp.__name__, device) == ("array_api_compat.numpy", "cpu")
    with pytest.raises(TypeError, match=r"`xp` must be an array API namespace, got 42"):
        dense_xp.resolve_device(xp=42)


def test_to_numpy_from_every_backend(backend):
    xp, device = backend
    a = xp.asarray([[1.5, -2.0], [3.0, 4.0]], device=device)
    out = dense_xp.to_numpy(a)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [[1.5, -2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(dense_xp.to_numpy([[1, 2]]), [[1, 2]])


def test_backend_info_lists_numpy_and_cupy():
    report = {entry["name"]: entry for entry in dense_xp.backend_info()}
    assert report["numpy"]["available"] is True
    assert report["numpy"]["version"] == np.__version__
    assert "cupy" in report
    assert report["cupy"]["available"] == (_backend.cuda_unusable_reason(0) is None)
    assert report["cupy"]["available"] or report["cupy"]["reason"]


def test_info_command_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dense_xp", "info"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "numpy" in result.stdout
    assert "cupy" in result.stdout
    assert "default device request 'cpu' -> numpy on 'cpu'" in result.stdout


def _bad_requests():
    strict = pytest.importorskip("array_api_strict")
    torch = pytest.importorskip("torch")
    return [b"cpu", ["cpu"], object(), 1.5, strict.Device("device1"), torch.device("cpu")]


def test_device_requests_are_checked_at_the_call():
    dense_xp.set_default_device("cpu")
    for bad in _bad_requests():
        with pytest.raises(TypeError, match=r"`device` "):
            dense_xp.set_default_device(bad)
        with pytest.raises(TypeError, match=r"`device` "):
            dense_xp.use_device(bad)  # refused at the call, before any `with`
        assert dense_xp.get_default_device() == "cpu"
        assert dense_xp.DenseLayer(2, 2).device == "cpu"
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match=r"`device` 'nowhere' is not a usable device of array_api_strict"):
        dense_xp.use_device("nowhere", xp=strict)
    with pytest.raises(TypeError, match=r"`xp` must be an array API namespace, got 42"):
        dense_xp.set_default_device("cpu", xp=42)
    assert dense_xp.get_default_device() == "cpu"


def test_a_device_of_any_library_with_its_namespace(backend):
    xp, device = backend
    with dense_xp.use_device(device, xp=xp):
        assert dense_xp.get_default_device() == device
        layer = dense_xp.DenseLayer(3, 2)
        assert (layer.xp, layer.device) == (xp, device)
        assert dense_xp.DenseLayer(3, 2, xp=xp).device == device
    assert dense_xp.DenseLayer(3, 2).device == "cpu"
    dense_xp.set_default_device(device, xp=xp)
    layer = dense_xp.DenseLayer(3, 2)
    assert (layer.xp, layer.device) == (xp, device)
    dense_xp.set_default_device(None)
    assert dense_xp.DenseLayer(3, 2).device == "cpu"


def test_strict_second_device_is_used_not_ignored():
    strict = pytest.importorskip("array_api_strict")
    with dense_xp.use_device(strict.Device("device1"), xp=strict):
        layer = dense_xp.DenseLayer(3, 2)
    assert layer.device == strict.Device("device1")
    with dense_xp.use_device(None, xp=strict):  # the namespace's default device
        assert dense_xp.DenseLayer(3, 2).device == strict.Device("CPU_DEVICE")


def test_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "gpu")
    assert dense_xp.get_default_device() == "gpu"  # reported as it is, checked where used
    with pytest.raises(ValueError, match=r"`DENSE_XP_DEVICE` must be \"cpu\", .* got 'gpu'"):
        dense_xp.DenseLayer(2, 2)
    assert dense_xp.DenseLayer(2, 2, device="cpu").device == "cpu"
    monkeypatch.setenv(_backend.ENV_VAR, "cuda:99")
    if _backend.cuda_unusable_reason(99) is not None:
        with pytest.raises(
            dense_xp.DeviceUnavailableError,
            match=r"requested by the environment variable DENSE_XP_DEVICE='cuda:99'",
        ):
            dense_xp.DenseLayer(2, 2)


def test_a_bad_environment_variable_is_named_with_its_value(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "bogus")
    match = r"`DENSE_XP_DEVICE` must be \"cpu\", \"cuda\", \"cuda:N\" or \"auto\", got 'bogus'"
    with pytest.raises(ValueError, match=match):
        dense_xp.DenseLayer(2, 2)
    assert dense_xp.DenseLayer(2, 2, device="cpu").device == "cpu"
    with dense_xp.use_device("cpu"):
        assert dense_xp.get_default_device() == "cpu"
    report = dense_xp._info.format_info([])
    assert report == f"default device request: invalid, {match.replace(chr(92), '')}"


def test_jax_without_a_device_gets_the_device_its_arrays_land_on(tmp_path):
    """JAX reports its default device as None: layers, models and load take the one its arrays use."""
    jnp = pytest.importorskip("jax.numpy")
    _, device = dense_xp.resolve_device(xp=jnp)
    assert device is not None
    assert device == array_api_compat.device(jnp.zeros(1))
    layer = dense_xp.DenseLayer(4, 3, xp=jnp)
    assert layer.device == device
    assert layer.forward(jnp.ones((2, 4))).shape == (2, 3)  # its own arrays are accepted
    model = dense_xp.Sequential(
        [dense_xp.DenseLayer(4, 3, "relu", seed=0, xp=jnp), dense_xp.DenseLayer(3, 2, xp=jnp)]
    )
    out = model.forward(jnp.ones((2, 4)))
    model.save(tmp_path / "m.npz")
    back = dense_xp.load(tmp_path / "m.npz", xp=jnp)
    assert back.device == device
    np.testing.assert_array_equal(dense_xp.to_numpy(back.forward(jnp.ones((2, 4)))), dense_xp.to_numpy(out))


def test_rows_of_device_arrays_take_slices_past_the_end_and_device_index_dtypes():
    strict = pytest.importorskip("array_api_strict")
    device = strict.Device("no_x64")
    data = strict.reshape(strict.arange(12, dtype=strict.float32, device=device), (6, 2))
    last = _backend.rows(data, slice(4, 36), xp=strict, device=device)  # strict refuses stops past the end
    np.testing.assert_array_equal(dense_xp.to_numpy(last), [[8, 9], [10, 11]])
    picked = _backend.rows(data, np.array([5, 0]), xp=strict, device=device)  # int64 index, no int64 there
    np.testing.assert_array_equal(dense_xp.to_numpy(picked), [[10, 11], [0, 1]])
    labels = _backend.rows(np.arange(6), np.array([1, 2]), xp=strict, device=device)
    assert labels.dtype == np.int32  # a host batch in a dtype the device holds
    X = _backend.rows(np.ones((6, 2)), slice(0, 2), xp=strict, device=device)
    assert X.dtype == np.float32


def test_device_spec_round_trips_and_falls_back_to_a_cpu(backend):
    xp, device = backend
    name, spec = _backend.device_spec(xp, device)
    assert _backend.restore_device(name, spec) == (xp, device)
    gone = {
        "array_api_compat.cupy": ("array_api_compat.cupy", "cuda:99"),
        "array_api_compat.torch": ("array_api_compat.torch", "cuda:99"),
        "jax.numpy": ("jax.numpy", "gpu:99"),
    }
    if name in gone:
        cpu_xp, cpu_device = _backend.restore_device(*gone[name])
        assert cpu_xp is (xp if name != "array_api_compat.cupy" else dense_xp.resolve_device("cpu")[0])
        assert "cpu" in str(cpu_device).lower()
    assert _backend.restore_device("no_such_array_library", "tpu:0") == dense_xp.resolve_device("cpu")


def test_writeable_answers_as_array_api_compat_per_array_type() -> None:
    frozen = np.ones(3)
    frozen.flags.writeable = False
    assert _backend.writeable(np.ones(3)) is True
    assert _backend.writeable(frozen) is False  # NumPy's answer is per array, never kept per type
    assert _backend.writeable(np.ones(3)) is True
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0, 2.0])
    assert _backend.writeable(a) is bool(array_api_compat.is_writeable_array(a))
