"""Checkpoints from someone else: special files, zip bombs, lying headers, and fuzzed bytes.

A hostile file must be refused with :class:`CheckpointError` while costing no
more memory than the model its manifest describes, and ``load`` must never
block or raise anything else.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_xp import DenseLayer, checkpoint
from dense_xp.checkpoint import CheckpointError, load, save
from dense_xp.sequential import Sequential

BOMB_SIZE = 256 * 2**20  # bytes a bomb member inflates to (its file is about 1.1 MiB)
PEAK_LIMIT = 2**20  # bytes of Python and NumPy memory a refusal may use


# -- building files by hand --------------------------------------------------------
def _members(path):
    """The (name, uncompressed bytes) of every member of the zip at ``path``, in order."""
    with zipfile.ZipFile(path) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def _stored(name, data):
    return name, 0, zlib.crc32(data), len(data), data


def _zip(members):
    """Zip bytes from (name, method, crc, uncompressed size, stored data) tuples, as given."""
    out, central = bytearray(), bytearray()
    for name, method, crc, size, data in members:
        raw = name.encode()
        fields = (20, 0, method, 0, 0x21, crc, len(data), size, len(raw))
        central += struct.pack("<I6H3I5HII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, len(out)) + raw
        out += struct.pack("<I5H3I2H", 0x04034B50, *fields, 0) + raw + data
    n = len(members)
    return bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0))


def _npy_header(descr, shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


_CHUNK = 2**20
_ZEROS = zlib.compressobj(1, zlib.DEFLATED, -15)
_ZEROS_BLOCK = _ZEROS.compress(bytes(_CHUNK)) + _ZEROS.flush(zlib.Z_FULL_FLUSH)  # needs no history


def _bomb(name, prefix):
    """A deflated member: ``prefix`` then zeros, BOMB_SIZE bytes in all, in about 1.1 MiB."""
    head = zlib.compressobj(1, zlib.DEFLATED, -15)
    data = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)
    data += _ZEROS_BLOCK * (BOMB_SIZE // _CHUNK) + b"\x03\x00"  # then an empty final block
    crc = zlib.crc32(prefix)
    zeros = bytes(_CHUNK)
    for _ in range(BOMB_SIZE // _CHUNK):
        crc = zlib.crc32(zeros, crc)
    return name, 8, crc, len(prefix) + BOMB_SIZE, data


def _replace(members, name, member):
    return [member if m[0] == name else m for m in members]


def _valid(tmp_path):
    path = tmp_path / "model.npz"
    save(DenseLayer(4, 3, "relu", seed=1, dtype="float32"), path)
    return [_stored(name, data) for name, data in _members(path)]


def _lying(descr, shape):
    """``layers.0.W.npy`` of the right size whose header claims ``shape``."""
    header = _npy_header("<f4", (4, 3))
    lie = _npy_header(descr, shape)
    return _stored("layers.0.W.npy", lie + bytes(len(header) + 48 - len(lie)))


HOSTILE = {
    "extra junk.npy": (
        lambda m: [*m, _bomb("junk.npy", _npy_header("|u1", (BOMB_SIZE,)))],
        r"members the manifest does not name: \['junk.npy'\]",
    ),
    "oversized layers.0.W": (
        lambda m: _replace(m, "layers.0.W.npy", _bomb("layers.0.W.npy", _npy_header("<f4", (8192, 8192)))),
        r"'layers.0.W.npy' inflates to 268435584 bytes; the manifest's \(4, 3\) <f4 needs 48",
    ),
    "non-.npy member": (
        lambda m: [*m, _bomb("junk.bin", b"")],
        r"members the manifest does not name: \['junk.bin'\]",
    ),
    "header lying about the shape": (
        lambda m: _replace(m, "layers.0.W.npy", _lying("<f4", (8192, 8192))),
        r"array 'layers.0.W' has shape \(8192, 8192\), not \(4, 3\)",
    ),
    "oversized manifest": (
        lambda m: _replace(m, "manifest.npy", _bomb("manifest.npy", _npy_header("|u1", (BOMB_SIZE,)))),
        r"its manifest inflates to 268435584 bytes, more than the 1048576 a checkpoint may hold",
    ),
}


def _peak(fn):
    """Peak traced memory (bytes) while ``fn()`` runs, and what it raised."""
    tracemalloc.start()
    try:
        fn()
    except BaseException as exc:
        return tracemalloc.get_traced_memory()[1], exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, None


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_refused_within_its_claimed_size(tmp_path, case):
    build, match = HOSTILE[case]
    members = _valid(tmp_path)
    load(tmp_path / "model.npz", "cpu")  # imports and caches warm before measuring
    path = tmp_path / "hostile.npz"
    path.write_bytes(_zip(build(members)))
    assert path.stat().st_size < 2**21
    peak, exc = _peak(lambda: load(path, "cpu"))
    assert isinstance(exc, CheckpointError), repr(exc)
    assert str(path) in str(exc)
    assert peak < PEAK_LIMIT, f"refusing {case!r} peaked at {peak / 2**20:.1f} MiB"
    with pytest.raises(CheckpointError, match=match):
        load(path, "cpu")


def test_the_bombs_are_real(tmp_path):
    """Each bomb is a valid zip member that inflates to BOMB_SIZE bytes (read here in 1 MiB steps)."""
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip([_bomb("junk.npy", _npy_header("|u1", (BOMB_SIZE,)))]))
    assert path.stat().st_size < 1.2 * 2**20
    total = 0
    with zipfile.ZipFile(path) as zf, zf.open("junk.npy") as member:  # checks the CRC at the end
        while chunk := member.read(_CHUNK):
            total += len(chunk)
    assert total == len(_npy_header("|u1", (BOMB_SIZE,))) + BOMB_SIZE


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_lying("<f4", (10**6, 10**6)), r"'layers.0.W' has shape \(1000000, 1000000\), not \(4, 3\)"),
        (
            _lying("<f4", (2**40, 2**40)),
            r"'layers.0.W' has shape \(1099511627776, 1099511627776\), not \(4, 3",
        ),
        (_lying("<f8", (4, 3)), r"'layers.0.W' has dtype '<f8', the manifest says '<f4'"),
        (_lying("<f4", (-1, 3)), r"'layers.0.W.npy' has an invalid \.npy header.*shape"),
        (_stored("layers.0.W.npy", b"\x93NUMPY\x01\x00\xff\xff" + bytes(118)), r"header of 65535 bytes"),
        (_stored("layers.0.W.npy", b"not an npy file " * 11), r"'layers.0.W.npy' is not a \.npy array"),
        (_stored("layers.0.W.npy", _npy_header("<f4", (4, 3)) + bytes(40)), r"holds 168 bytes.*says 176"),
    ],
)
def test_array_header_checked_before_its_data(tmp_path, member, match):
    members = _replace(_valid(tmp_path), "layers.0.W.npy", member)
    path = tmp_path / "lying.npz"
    path.write_bytes(_zip(members))
    with pytest.raises(CheckpointError, match=match):
        load(path, "cpu")


def test_fortran_ordered_array_reads_the_same(tmp_path):
    layer = DenseLayer(4, 3, "relu", seed=1, dtype="float32")
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(layer.W))
    assert b"'fortran_order': True" in buf.getvalue()
    path = tmp_path / "fortran.npz"
    path.write_bytes(
        _zip(_replace(_valid(tmp_path), "layers.0.W.npy", _stored("layers.0.W.npy", buf.getvalue())))
    )
    np.testing.assert_array_equal(load(path, "cpu").W, layer.W)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: [*m, m[0]], r"lists member 'layers.0.W.npy' twice"),
        (lambda m: [x for x in m if x[0] != "layers.0.b.npy"], r"array 'layers.0.b' is missing"),
        (lambda m: [x for x in m if x[0] != "manifest.npy"], r"no 'manifest' entry"),
        (lambda m: [_stored("manifest", m[-1][4]), *m[:-1]], r"no 'manifest' entry"),
    ],
)
def test_member_list_checked_against_the_manifest(tmp_path, change, match):
    path = tmp_path / "members.npz"
    path.write_bytes(_zip(change(_valid(tmp_path))))
    with pytest.raises(CheckpointError, match=match):
        load(path, "cpu")


def test_many_unknown_members_named_in_short(tmp_path):
    members = _valid(tmp_path) + [_stored(f"junk{i:03}", b"") for i in range(200)]
    path = tmp_path / "many.npz"
    path.write_bytes(_zip(members))
    with pytest.raises(CheckpointError, match=r"name: \['junk000', .*'junk004'\] and 195 more$"):
        load(path, "cpu")


def test_save_refuses_a_manifest_load_would_refuse(tmp_path, monkeypatch):
    model = Sequential([DenseLayer(2, 2, seed=i) for i in range(3)])
    monkeypatch.setattr(checkpoint._manifest, "MAX_BYTES", 600)
    with pytest.raises(ValueError, match=r"`obj` has 3 layers: its manifest would take \d+ bytes, more than"):
        save(model, tmp_path / "big.npz")
    assert os.listdir(tmp_path) == []


# -- special files ---------------------------------------------------------------------
def _load_with_deadline(path, seconds=60.0):
    """What ``load(path)`` raised, or fail if it is still blocked after ``seconds``.

    A blocked ``open()`` of a FIFO waits forever; the generous deadline only keeps a
    busy machine from failing a refusal that takes milliseconds.
    """
    outcome = {}

    def target():
        try:
            outcome["result"] = load(path, "cpu")
        except BaseException as exc:
            outcome["exc"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a writer releases the blocked open()
        os.close(fd)
        thread.join(seconds)
        pytest.fail(f"load({str(path)!r}) blocked for {seconds} s")
    return outcome.get("exc")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    exc = _load_with_deadline(path)
    assert isinstance(exc, CheckpointError), repr(exc)
    assert "`path` is a FIFO (named pipe), not a regular file" in str(exc)
    assert str(path) in str(exc)


def test_directory_refused(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(
        CheckpointError, match=r"checkpoint '.*dir.npz': `path` is a directory, not a regular"
    ):
        load(tmp_path / "dir.npz", "cpu")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
@pytest.mark.parametrize("device_file", ["/dev/zero", "/dev/null"])
def test_device_file_refused(device_file):
    with pytest.raises(
        CheckpointError, match=rf"'{device_file}': `path` is a character device, not a regular"
    ):
        load(device_file, "cpu")


def test_symlink_to_a_checkpoint_loads(tmp_path):
    layer = DenseLayer(3, 2, seed=4)
    save(layer, tmp_path / "real.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    np.testing.assert_array_equal(load(tmp_path / "link.npz", "cpu").W, layer.W)


# -- fuzzing -------------------------------------------------------------------------------
def _original():
    model = Sequential([DenseLayer(3, 4, "tanh", seed=1), DenseLayer(4, 2, seed=2)])
    for layer in model.layers:
        layer.b = layer.b + 0.5
    return model


ORIGINAL = _original()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The members of ORIGINAL's checkpoint, stored uncompressed."""
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    save(ORIGINAL, path)
    return [_stored(name, data) for name, data in _members(path)]


def _assert_equal_to_original(model):
    assert isinstance(model, Sequential)
    assert len(model.layers) == len(ORIGINAL.layers)
    for ours, theirs in zip(model.layers, ORIGINAL.layers, strict=True):
        assert ours.get_config() == theirs.get_config()
        for name, value in theirs.parameters().items():
            got = ours.parameters()[name]
            assert got.dtype == value.dtype
            np.testing.assert_array_equal(got, value)


def _restructure(members, kind, i, j):
    """Swap the contents or the names of members ``i`` and ``j``, drop ``i``, or add ``i``'s name again."""
    i, j = i % len(members), j % len(members)
    names, contents = [m[0] for m in members], [m[4] for m in members]
    if kind == "swap contents":
        contents[i], contents[j] = contents[j], contents[i]
    elif kind == "swap names":
        names[i], names[j] = names[j], names[i]
    elif kind == "drop":
        del names[i], contents[i]
    elif kind == "repeat":
        names.append(names[i])
        contents.append(contents[j])
    return [_stored(n, c) for n, c in zip(names, contents, strict=True)]


def _damage(data, kind, position, masks):
    """Flip bits at ``position`` onwards, truncate there, or append ``masks`` as bytes."""
    if kind == "append":
        return data + bytes(masks)
    if kind == "truncate" or not data:
        return data[: position % max(len(data), 1)]
    out = bytearray(data)
    for k, mask in enumerate(masks):
        out[(position + 97 * k) % len(out)] ^= mask
    return bytes(out)


structure = st.tuples(st.sampled_from(["keep", "swap contents", "swap names", "drop", "repeat"]),
                      st.integers(0, 9), st.integers(0, 9))  # fmt: skip
damage = st.tuples(st.sampled_from(["flip", "flip", "truncate", "append"]), st.integers(0, 2**16),
                   st.lists(st.integers(1, 255), min_size=1, max_size=4))  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(structure, st.lists(damage, max_size=3))
def test_fuzzed_checkpoint_loads_equal_or_is_refused(saved, tmp_path_factory, change, damages):
    data = _zip(_restructure(saved, *change))
    for args in damages:
        data = _damage(data, *args)
    path = tmp_path_factory.getbasetemp() / "fuzzed.npz"
    path.write_bytes(data)
    try:
        outcome = load(path, "cpu")
    except CheckpointError as exc:
        outcome = exc
    if isinstance(outcome, CheckpointError):
        assert str(path) in str(outcome)
    else:
        _assert_equal_to_original(outcome)


# -- manifests of the other layer classes -------------------------------------------------
def _norm_file(tmp_path):
    from dense_xp import BatchNorm, Dense, Dropout

    model = Sequential([Dense(4, seed=0, input_size=3), BatchNorm(), Dropout(0.5, seed=1), Dense(2, seed=2)])
    path = tmp_path / "norm.npz"
    model.save(path)
    return [_stored(name, data) for name, data in _members(path)]


def _with_manifest(members, change):
    """``members`` with the manifest as ``change(manifest dict)`` made it."""
    import json

    (entry,) = [m for m in members if m[0] == "manifest.npy"]
    buf = io.BytesIO(entry[4])
    raw = np.lib.format.read_array(buf, allow_pickle=False).tobytes()
    manifest = json.loads(raw)
    change(manifest)
    out = io.BytesIO()
    np.save(out, np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    return _replace(members, "manifest.npy", _stored("manifest.npy", out.getvalue()))


def _set(key, value, layer=1):
    def change(manifest):
        manifest["layers"][layer][key] = value

    return change


def _bigger_state(manifest):
    entry = manifest["layers"][1]
    entry["input_size"] = entry["config"]["features"] = 10**9
    for name in ("gamma", "beta", "running_mean", "running_var"):
        entry["arrays"][name]["shape"] = [1, 10**9]
    manifest["layers"][0]["config"]["units"] = 10**9


NEW_LAYERS = {
    "state shape against the config": (
        lambda m: _with_manifest(m, lambda d: d["layers"][1]["arrays"]["running_mean"].update(shape=[1, 9])),
        r"shape \[1, 9\] of 'layers.1.running_mean' contradicts the config: it declares gamma \(1, 4\)",
    ),
    "state left out": (
        lambda m: _with_manifest(m, lambda d: d["layers"][1]["arrays"].pop("running_var")),
        r"layer 1 manifest lists arrays \['beta', 'gamma', 'running_mean'\], its config needs",
    ),
    "arrays for a layer without any": (
        lambda m: _with_manifest(
            m, lambda d: d["layers"][2]["arrays"].update(W={"shape": [4, 4], "dtype": "<f8"})
        ),
        r"layer 2 manifest lists arrays \['W'\], its config needs \[\]",
    ),
    "an unregistered class": (
        lambda m: _with_manifest(m, _set("class", "Conv2D")),
        r"layer 1 has an invalid config: layer class 'Conv2D' is not registered in this process",
    ),
    "a class that is not a string": (
        lambda m: _with_manifest(m, _set("class", ["BatchNorm"])),
        r"layer 1 class must be a string, got \['BatchNorm'\]",
    ),
    "a config key of placement": (
        lambda m: _with_manifest(m, lambda d: d["layers"][1]["config"].update(device="cuda")),
        r"layer 1 has an invalid config: it names \['device'\], which the manifest gives apart",
    ),
    "a bad config value": (
        lambda m: _with_manifest(m, lambda d: d["layers"][2]["config"].update(rate=2.0)),
        r"layer 2 has an invalid config: `rate` must be a number in \[0, 1\)",
    ),
    "an entry width against the config's": (
        lambda m: _with_manifest(m, _set("input_size", 5)),
        r"layer 1 config takes 4 inputs but its entry says 5",
    ),
    "a model of 10**9 features with small members": (
        lambda m: _with_manifest(m, _bigger_state),
        r"manifest shape \[3, 4\] of 'layers.0.W' contradicts the config: it declares W \(3, 1000000000\)",
    ),
}


@pytest.mark.parametrize("case", list(NEW_LAYERS))
def test_manifests_of_other_layer_classes_are_checked_before_any_data(tmp_path, case):
    build, match = NEW_LAYERS[case]
    members = _norm_file(tmp_path)
    path = tmp_path / "hostile.npz"
    path.write_bytes(_zip(build(members)))
    peak, exc = _peak(lambda: load(path, "cpu"))
    assert isinstance(exc, CheckpointError), repr(exc)
    assert peak < PEAK_LIMIT, f"refusing {case!r} peaked at {peak / 2**20:.1f} MiB"
    with pytest.raises(CheckpointError, match=match):
        load(path, "cpu")
