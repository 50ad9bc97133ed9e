"""Checkpoints: round trips across backends, atomic writes, and every damaged file rejected."""

from __future__ import annotations

import json
import os
import re

import array_api_compat
import numpy as np
import pytest

from dense_xp import DenseLayer, _backend, checkpoint, register_activation
from dense_xp.activations import ACTIVATIONS
from dense_xp.checkpoint import CheckpointError, load, save
from dense_xp.sequential import Sequential
from tests.helpers import host, tol, wide

X = np.random.default_rng(0).normal(size=(6, 4)) * 3


def _trained(layer, X_in):
    """One SGD step with a large rate, so that ``b`` is not zero."""
    out = layer.forward(X_in)
    layer.backward(host(out) - 1.0, lr=5.0)
    return layer


def _layer(*args, xp, device, **kwargs):
    """A DenseLayer with a nonzero bias."""
    layer = DenseLayer(*args, device=device, xp=xp, **kwargs)
    if layer.b is not None:
        with _backend.on_device(device):  # CuPy computes on the current device
            layer.b = layer.b + 0.5
    return layer


def _assert_same_params(a, b):
    assert a.get_config() == b.get_config()
    assert a.parameters().keys() == b.parameters().keys()
    for name, value in a.parameters().items():
        left, right = _backend.to_numpy(value), _backend.to_numpy(b.parameters()[name])
        assert left.dtype == right.dtype
        np.testing.assert_array_equal(left, right)  # bit for bit
        assert np.any(left != 0)


def _on(obj, xp, device):
    layer = obj if isinstance(obj, DenseLayer) else obj.layers[0]
    return (
        array_api_compat.array_namespace(layer.W)
        is array_api_compat.array_namespace(xp.empty(0, device=device))
        and array_api_compat.device(layer.W) == device
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_layer_round_trip_through_cpu_and_back(backend, tmp_path, dtype, use_bias):
    xp, device = backend
    dtype = dtype if dtype == "float32" else wide(xp, device)
    layer = DenseLayer(4, 3, "tanh", seed=3, init="glorot_uniform", use_bias=use_bias, dtype=dtype,
                       device=device, xp=xp)  # fmt: skip
    _trained(layer, X[:2])
    save(layer, tmp_path / "a.npz")
    on_cpu = load(tmp_path / "a.npz", "cpu")
    assert isinstance(on_cpu, DenseLayer)
    assert on_cpu.device == "cpu"
    assert (on_cpu.b is None) == (not use_bias)
    _assert_same_params(on_cpu, layer)
    expected = host(layer.forward(X))
    np.testing.assert_allclose(host(on_cpu.forward(X)), expected, rtol=tol(layer.dtype, xp), atol=0)
    save(on_cpu, str(tmp_path / "b.npz"))
    back = load(tmp_path / "b.npz", device, xp=xp)
    assert _on(back, xp, device)
    _assert_same_params(back, layer)
    np.testing.assert_array_equal(host(back.forward(X)), expected)  # bit for bit on the same backend


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sequential_round_trip_through_cpu_and_back(backend, tmp_path, dtype):
    xp, device = backend
    dtype = dtype if dtype == "float32" else wide(xp, device)
    model = Sequential(
        [DenseLayer(4, 8, "relu", seed=1, dtype=dtype), DenseLayer(8, 3, seed=2, dtype=dtype)]
    ).to(device, xp=xp)
    for layer in model.layers:
        with _backend.on_device(device):
            layer.b = layer.b + 0.25  # nonzero biases
    model.save(tmp_path / "seq.npz")
    on_cpu = load(tmp_path / "seq.npz", "cpu")
    assert isinstance(on_cpu, Sequential)
    assert len(on_cpu.layers) == 2
    for ours, theirs in zip(on_cpu.layers, model.layers, strict=True):
        _assert_same_params(ours, theirs)
    expected = host(model.predict(X))
    np.testing.assert_allclose(host(on_cpu.predict(X)), expected, rtol=tol(model.dtype, xp), atol=0)
    save(on_cpu, tmp_path / "seq2.npz")
    back = load(tmp_path / "seq2.npz", device, xp=xp)
    assert isinstance(back, Sequential)
    assert _on(back, xp, device)
    for ours, theirs in zip(back.layers, model.layers, strict=True):
        _assert_same_params(ours, theirs)
    np.testing.assert_array_equal(host(back.predict(X)), expected)


def test_float16_round_trip(backend, tmp_path):
    xp, device = backend
    saved = _layer(3, 2, seed=5, init="he_normal", dtype="float16", device="cpu", xp=None)
    save(saved, tmp_path / "h.npz")
    if getattr(xp, "float16", None) is None:
        with pytest.raises(ValueError, match=r"checkpoint's dtype float16 is not supported by this array"):
            load(tmp_path / "h.npz", device, xp=xp)
        wider = load(tmp_path / "h.npz", device, xp=xp, dtype="float32")  # asked for: float16 is exact in it
        assert wider.dtype == xp.float32
        for name, value in saved.parameters().items():
            np.testing.assert_array_equal(host(wider.parameters()[name]), host(value))
        return
    back = load(tmp_path / "h.npz", device, xp=xp)
    assert _on(back, xp, device)
    _assert_same_params(back, saved)
    save(back, tmp_path / "h2.npz")
    first, second = _entries(tmp_path / "h.npz"), _entries(tmp_path / "h2.npz")
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype
        np.testing.assert_array_equal(first[key], second[key])


def test_manifest_describes_the_file(backend, tmp_path):
    xp, device = backend
    layer = DenseLayer(4, 3, "relu", seed=1, dtype="float32", device=device, xp=xp)
    save(layer, tmp_path / "a.npz")
    entries = _entries(tmp_path / "a.npz")
    manifest = _manifest(entries)
    assert manifest["format"] == "dense_xp"
    assert manifest["format_version"] == checkpoint.FORMAT_VERSION == 2
    assert manifest["kind"] == "Layer"
    assert manifest["layers"] == [
        {
            "class": "DenseLayer",
            "input_size": 4,
            "config": layer.get_config(),
            "dtype": "float32",
            "arrays": {"W": {"shape": [4, 3], "dtype": "<f4"}, "b": {"shape": [1, 3], "dtype": "<f4"}},
        }
    ]
    assert sorted(entries) == ["layers.0.W", "layers.0.b", "manifest"]
    assert entries["layers.0.W"].dtype.str == "<f4"


def _as_format_1(entries):
    """The manifest of a format-2 file of dense layers as 0.1.0 wrote it (format 1)."""
    manifest = _manifest(entries)
    manifest["format_version"], manifest["dense_xp_version"] = 1, "0.1.0"
    if manifest["kind"] == "Layer":
        manifest["kind"] = "DenseLayer"
    for layer in manifest["layers"]:
        del layer["class"], layer["input_size"]
    return manifest


@pytest.mark.parametrize("kind", ["layer", "model"])
def test_format_1_files_still_load(backend, tmp_path, kind):
    xp, device = backend
    dtype = wide(xp, device)
    layers = [
        _layer(4, 8, "relu", seed=1, dtype=dtype, xp=xp, device=device),
        _layer(8, 3, None, seed=2, dtype=dtype, xp=xp, device=device, use_bias=False),
    ]
    obj = layers[0] if kind == "layer" else Sequential(layers)
    save(obj, tmp_path / "new.npz")
    entries = _entries(tmp_path / "new.npz")
    _write(tmp_path / "old.npz", entries, _as_format_1(entries))
    back = load(tmp_path / "old.npz", device, xp=xp)
    assert type(back) is type(obj)
    for a, b in zip(
        [obj] if kind == "layer" else obj.layers, [back] if kind == "layer" else back.layers, strict=True
    ):
        _assert_same_params(a, b)


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("weights.bin", "weights.npz"), ("out.txt", "out.npz"), ("m.h5", "m.npz"), ("weights", "weights.npz")],
)
@pytest.mark.parametrize("how", ["save", "method"])
def test_path_without_npz_suffix_is_refused_and_nothing_is_written(backend, tmp_path, name, suggested, how):
    xp, device = backend
    model = Sequential([_layer(2, 2, seed=4, device=device, xp=xp)])
    target = tmp_path / name
    expected = rf"`path` must name a \.npz file.*got '{re.escape(str(target))}'; save to '.*{suggested}'"
    with pytest.raises(ValueError, match=expected):
        save(model, target) if how == "save" else model.save(target)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_loads_whatever_its_file_name(backend, tmp_path):
    xp, device = backend
    layer = _layer(2, 2, seed=4, device=device, xp=xp)
    save(layer, tmp_path / "weights.npz")
    os.rename(tmp_path / "weights.npz", tmp_path / "weights.bin")  # the contents decide, not the name
    _assert_same_params(load(str(tmp_path / "weights.bin"), device, xp=xp), layer)


def test_failed_save_keeps_previous_file_and_leaves_no_temp(backend, tmp_path, monkeypatch):
    xp, device = backend
    path = tmp_path / "model.npz"
    old = _layer(3, 2, seed=1, device=device, xp=xp)
    save(old, path)
    before = path.read_bytes()

    def broken(file, arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(_backend, "write_npz", broken)
    with pytest.raises(OSError, match="disk full"):
        save(DenseLayer(3, 2, seed=2, device=device, xp=xp), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    monkeypatch.undo()
    _assert_same_params(load(path, device, xp=xp), old)


@pytest.mark.parametrize(
    ("obj", "path", "exc", "match"),
    [
        (3, "a.npz", TypeError, r"`obj` must be a dense_xp layer or a Sequential, got int 3"),
        ("layer", b"a.npz", TypeError, r"`path` must be a non-empty str or os.PathLike, got bytes"),
        ("layer", "missing/a.npz", FileNotFoundError, r"directory does not exist.*missing"),
    ],
)
def test_save_rejects(backend, tmp_path, obj, path, exc, match):
    xp, device = backend
    layer = DenseLayer(2, 2, seed=1, device=device, xp=xp)
    before = host(layer.W)
    target = tmp_path / path if isinstance(path, str) else path
    with pytest.raises(exc, match=match):
        save(layer if obj == "layer" else obj, target)
    assert os.listdir(tmp_path) == []
    np.testing.assert_array_equal(host(layer.W), before)


# -- damaged and tampered files ---------------------------------------------------
def _entries(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _manifest(entries):
    return json.loads(entries["manifest"].tobytes().decode("utf-8"))


def _encode(manifest):
    return np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)


def _write(path, entries, manifest=None):
    if manifest is not None:
        entries["manifest"] = _encode(manifest)
    with open(path, "wb") as file:
        np.savez(file, **entries)


def _set(manifest, keys, value):
    target = manifest
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def _tamper(**changes):
    def apply(entries, manifest):
        for dotted, value in changes.items():
            _set(manifest, [int(k) if k.isdigit() else k for k in dotted.split("__")], value)
        entries["manifest"] = _encode(manifest)

    return apply


def _arrays(**changes):
    def apply(entries, manifest):
        for key, value in changes.items():
            if value is None:
                del entries[key.replace("__", ".")]
            else:
                entries[key.replace("__", ".")] = value(entries)

    return apply


TAMPERED = [
    (_tamper(format="other"), r"manifest format is 'other', not 'dense_xp'"),
    (_tamper(format_version=3), r"newer dense_xp.*format_version 3.*upgrade dense_xp"),
    (_tamper(format_version=0), r"format_version must be an integer >= 1, got 0"),
    (_tamper(format_version="1"), r"format_version must be an integer >= 1, got '1'"),
    (_tamper(kind="Conv2D"), r"kind must be one of \('Layer', 'DenseLayer', 'Sequential'\), got 'Conv2D'"),
    (_tamper(extra=1), r"unknown keys \['extra'\]"),
    (_tamper(layers=[]), r"'layers' must be a non-empty list"),
    (_tamper(layers__0__config__output_size=9), r"shape \[4, 3\] of 'layers.0.W' contradicts the config"),
    (_tamper(layers__0__config__input_size=0), r"layer 0 has an invalid config: `input_size` must be an"),
    (
        _tamper(layers__0__config__activation="swish"),
        r"layer 0 has an invalid config: `activation` names activation 'swish': it is not registered",
    ),
    (_tamper(layers__0__config__seed=1.5), r"layer 0 has an invalid config: `seed`.*float 1.5"),
    (_tamper(layers__0__config__dtype="float16"), r"layer 0 has an invalid config: .*dtype"),
    (_tamper(layers__0__config__use_bias=False), r"lists arrays \['W', 'b'\], its config needs \['W'\]"),
    (_tamper(layers__0__dtype="int32"), r"layer 0 dtype must be a float dtype.*'int32'"),
    (_tamper(layers__0__dtype="float64"), r"manifest dtype '<f4' of 'layers.0.W' does not match .*float64"),
    (
        _tamper(layers__0__arrays__W__shape=[3, 4]),
        r"manifest shape \[3, 4\] of 'layers.0.W' contradicts the config: it declares W \(4, 3\), b \(1, 3\)",
    ),
    (_arrays(layers__0__W=lambda e: e["layers.0.W"].T.copy()), r"has shape \(3, 4\), not \(4, 3\)"),
    (_arrays(layers__0__b=lambda e: e["layers.0.b"][0]), r"'layers.0.b' has shape \(3,\).*\(1, 3\)"),
    (_arrays(layers__0__W=lambda e: e["layers.0.W"].astype(np.int32)), r"dtype '<i4', the manifest says"),
    (_arrays(layers__0__W=lambda e: e["layers.0.W"].astype(">f4")), r"dtype '>f4', the manifest says"),
    (_arrays(layers__0__W=None), r"array 'layers.0.W' is missing"),
    (
        _arrays(layers__1__W=lambda e: e["layers.0.W"]),
        r"members the manifest does not name: \['layers.1.W.npy'\]",
    ),
    (_arrays(manifest=None), r"no 'manifest' entry"),
    (_arrays(manifest=lambda e: np.frombuffer(b"{not json", dtype=np.uint8)), r"not valid UTF-8 JSON"),
    (_arrays(manifest=lambda e: np.frombuffer(b"[1, 2]", dtype=np.uint8)), r"must be a JSON object"),
    (_arrays(manifest=lambda e: e["manifest"].astype(np.float32)), r"not a 1-D uint8 array"),
]


@pytest.mark.parametrize(("change", "match"), TAMPERED)
def test_tampered_file_rejected(backend, tmp_path, change, match):
    xp, device = backend
    path = tmp_path / "a.npz"
    save(DenseLayer(4, 3, "relu", seed=1, dtype="float32", device=device, xp=xp), path)
    entries = _entries(path)
    manifest = _manifest(entries)
    change(entries, manifest)
    _write(path, entries)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=match) as info:
        load(path, device, xp=xp)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.npz"]


def _chain_sizes(entries, layer):
    entries["layers.1.W"] = np.ones((5, 3), dtype=entries["layers.1.W"].dtype)
    layer["config"]["input_size"] = 5
    layer["arrays"]["W"]["shape"] = [5, 3]


def _mix_dtypes(entries, layer):
    for param in ("W", "b"):
        entries[f"layers.1.{param}"] = entries[f"layers.1.{param}"].astype("<f2")
        layer["arrays"][param]["dtype"] = "<f2"
    layer["dtype"] = "float16"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_chain_sizes, r"layer 1 takes 5 inputs but layer 0 gives 8"),
        (_mix_dtypes, r"layer 1 is float16 but layer 0 is float(64|32)"),
    ],
)
def test_sequential_layers_must_fit_together(backend, tmp_path, change, match):
    xp, device = backend
    path = tmp_path / "s.npz"
    dtype = wide(xp, device)
    model = Sequential([DenseLayer(4, 8, "relu", seed=1, dtype=dtype), DenseLayer(8, 3, seed=2, dtype=dtype)])
    model.to(device, xp=xp).save(path)
    entries = _entries(path)
    manifest = _manifest(entries)
    change(entries, manifest["layers"][1])
    _write(path, entries, manifest)
    with pytest.raises(CheckpointError, match=match):
        load(path, device, xp=xp)


def test_dense_layer_kind_needs_one_layer(backend, tmp_path):
    xp, device = backend
    path = tmp_path / "s.npz"
    dtype = wide(xp, device)
    model = Sequential([DenseLayer(4, 8, seed=1, dtype=dtype), DenseLayer(8, 3, seed=2, dtype=dtype)])
    model.to(device, xp=xp).save(path)
    entries = _entries(path)
    manifest = _manifest(entries)
    manifest["kind"] = "DenseLayer"
    _write(path, entries, manifest)
    with pytest.raises(CheckpointError, match=r"DenseLayer checkpoint must describe 1 layer.*2"):
        load(path, device, xp=xp)


def test_pickled_object_array_rejected(backend, tmp_path):
    xp, device = backend
    path = tmp_path / "evil.npz"
    save(DenseLayer(4, 3, seed=1, device=device, xp=xp), path)
    entries = _entries(path)
    entries["layers.0.b"] = np.array([[print, 1, 2]], dtype=object)  # savez pickles object arrays
    _write(path, entries)
    with pytest.raises(CheckpointError, match=r"evil.npz.*pickled object array.*\(pickle\)"):
        load(path, device, xp=xp)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda data: data[: len(data) // 2], r"it is truncated or damaged \(BadZipFile"),
        (lambda data: data[:-30], r"it is truncated or damaged"),
        (lambda data: b"", r"the file is empty"),
        (lambda data: b"hello, world", r"not a .npz file \(it starts with b'hell'"),
        (lambda data: b"\x93NUMPY" + data[6:], r"not a .npz file"),
    ],
)
def test_damaged_file_rejected(backend, tmp_path, damage, match):
    xp, device = backend
    path = tmp_path / "a.npz"
    save(DenseLayer(4, 3, seed=1, device=device, xp=xp), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=match):
        load(path, device, xp=xp)


def test_missing_file(backend, tmp_path):
    xp, device = backend
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file at this path: .*nothing.npz"):
        load(tmp_path / "nothing.npz", device, xp=xp)
    assert os.listdir(tmp_path) == []


def test_bad_device_rejected_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r'`device` must be "cpu"'):
        load(tmp_path / "nothing.npz", "gpu")
    with pytest.raises(TypeError, match=r"`path` must be a non-empty str or os.PathLike, got int 3"):
        load(3, "cpu")


def _halve(z, *, xp):
    return 0.5 * z


def _halve_backward(g, y, *, xp):
    return 0.5 * g


def test_registered_activation_round_trips_by_name_and_unregistered_is_refused(backend, tmp_path):
    xp, device = backend
    register_activation("test_halve", _halve, _halve_backward, saves="output")
    try:
        layer = _layer(3, 2, "test_halve", seed=1, xp=xp, device=device)
        layer.save(tmp_path / "h.npz")
        back = load(tmp_path / "h.npz", device, xp=xp)
        assert back.activation == "test_halve"
        np.testing.assert_array_equal(host(back.forward(X[:, :3])), host(layer.forward(X[:, :3])))
    finally:
        ACTIVATIONS.pop("test_halve")
    with pytest.raises(
        CheckpointError,
        match=r"layer 0 has an invalid config: `activation` names activation 'test_halve': it is not regis",
    ):
        load(tmp_path / "h.npz", device, xp=xp)
