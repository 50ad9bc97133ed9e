"""Counter-based draws: the same bits on every backend and for any chunking, sound statistics, exact rates."""

from __future__ import annotations

import itertools

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import dense_xp
from dense_xp import _random, _threefry
from dense_xp._checks import device_float_names
from dense_xp._random import (
    drop_threshold,
    fold_in,
    keep_mask,
    keep_probability,
    random_bits,
    uniform,
    uniform_from_bits,
)
from dense_xp._threefry import MASK, threefry4x32
from tests.helpers import on

NP = dense_xp.resolve_device("cpu")
KEY, STREAM = 0x0123456789ABCDEF, 2**40 + 17  # both words of each matter
ACROSS = range(2**32 - 3, 2**32 + 5)  # rows whose high word changes inside the chunk
FLOATS = ("bfloat16", "float16", "float32", "float64")
# random_bits(0, 0, range(2), 6) and random_bits(KEY, STREAM, range(2**40, 2**40 + 1), 5): the layout
# of counters is part of every seed's masks, so these must never change. Row 0's first four words are
# Random123's known answer for a zero counter and key.
PINNED_ZERO = [
    [0x9C6CA96A, 0xE17EAE66, 0xFC10ECD4, 0x5256A7D8, 0x606694A5, 0x55A9572A],
    [0x3EC033F6, 0xBF323558, 0x7ABF01DB, 0xA6A8DB82, 0xCAD54C59, 0x7C591535],
]
PINNED_HIGH = [[0x26FFC533, 0xE1C02813, 0x4B131816, 0x8F7A3CB8, 0x4FA735E2]]


def np_bits(key, stream, rows, n_cols):
    """The draw on NumPy; ``rows`` a range, an array, or a list of ints (as uint64)."""
    rows = np.asarray(rows, dtype=np.uint64) if isinstance(rows, list) else rows
    return np.asarray(random_bits(key, stream, rows, n_cols, xp=NP[0], device=NP[1]))


def reference_bits(key, stream, rows, n_cols):
    """The draw from :func:`threefry4x32` one element at a time: the definition of the layout."""
    words = (key & MASK, key >> 32, stream & MASK, stream >> 32)
    out = np.zeros((len(rows), n_cols), dtype=np.uint32)
    for i, row in enumerate(rows):
        for c in range(n_cols):
            out[i, c] = threefry4x32((c // 4, row & MASK, (row >> 32) & MASK, 0), words)[c % 4]
    return out


def host(x):
    return np.asarray(dense_xp.to_numpy(x))


# --------------------------------------------------------------------------
# The layout and the same bits everywhere
# --------------------------------------------------------------------------
def test_bits_are_threefry_of_the_element_position():
    np.testing.assert_array_equal(np_bits(KEY, STREAM, ACROSS, 11), reference_bits(KEY, STREAM, ACROSS, 11))
    np.testing.assert_array_equal(np_bits(0, 0, range(2), 6), PINNED_ZERO)
    np.testing.assert_array_equal(np_bits(KEY, STREAM, range(2**40, 2**40 + 1), 5), PINNED_HIGH)


def test_same_bits_masks_and_floats_on_every_backend(backend):
    xp, device = backend
    rows = on(xp, device, np.array([9, 0, 2**31 - 1, 3, 3]))
    cases = [(ACROSS, 11), (range(50), 37), (rows, 6), (range(0), 5), (range(3), 0)]
    for spec, n_cols in cases:
        bits = random_bits(KEY, STREAM, spec, n_cols, xp=xp, device=device)
        numpy_rows = spec if isinstance(spec, range) else [9, 0, 2**31 - 1, 3, 3]
        expected = np_bits(KEY, STREAM, numpy_rows, n_cols)
        assert array_api_compat.device(bits) == device
        assert host(bits).dtype == np.uint32
        np.testing.assert_array_equal(host(bits), expected)
        for rate in (0.3, 0.9):  # thresholds below and above 2**31
            mask = keep_mask(rate, KEY, STREAM, spec, n_cols, xp=xp, device=device)
            assert mask.dtype == xp.bool
            assert array_api_compat.device(mask) == device
            np.testing.assert_array_equal(host(mask), expected >= drop_threshold(rate))
    for name in device_float_names(xp=xp, device=device, names=FLOATS):
        u = uniform(KEY, STREAM, ACROSS, 11, xp=xp, device=device, dtype=name)
        assert u.dtype == getattr(xp, name)
        assert array_api_compat.device(u) == device
        want = uniform(KEY, STREAM, ACROSS, 11, xp=NP[0], device=NP[1], dtype="float64")
        np.testing.assert_array_equal(host(u).astype(np.float64), _round_down(want, _random._BITS[name]))


def _round_down(u64, bits):
    return np.floor(np.asarray(u64) * 2.0**bits) * 2.0**-bits


def test_float64_takes_53_bits_from_two_lanes():
    u = np.asarray(uniform(KEY, STREAM, ACROSS, 6, xp=NP[0], device=NP[1], dtype="float64"))
    words = (KEY & MASK, KEY >> 32, STREAM & MASK, STREAM >> 32)
    for i, row in enumerate(ACROSS):
        for c in range(6):
            high, low = (threefry4x32((c // 4, row & MASK, row >> 32, lane), words)[c % 4] for lane in (0, 1))
            assert u[i, c] == ((high >> 5) * 2**26 + (low >> 6)) / 2**53


def test_every_dtype_gets_the_float64_value_rounded_down():
    u64 = np.asarray(uniform(3, 4, range(64), 64, xp=NP[0], device=NP[1], dtype="float64"))
    for name, bits in (("float32", 24), ("float16", 11)):
        u = np.asarray(uniform(3, 4, range(64), 64, xp=NP[0], device=NP[1], dtype=name))
        assert u.dtype == name
        np.testing.assert_array_equal(u.astype(np.float64), _round_down(u64, bits))
        assert np.all(u * 2.0**bits == np.floor(u * 2.0**bits))  # multiples of 2**-bits


def test_conversion_reaches_0_and_stays_below_1(backend):
    xp, device = backend
    words = [0, 1, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, MASK]
    high = xp.asarray(words, dtype=xp.uint32, device=device)
    low = xp.asarray([MASK] * len(words), dtype=xp.uint32, device=device)
    for name in device_float_names(xp=xp, device=device, names=FLOATS):
        bits = _random._BITS[name]
        u = host(uniform_from_bits(high, low, dtype=name, xp=xp, device=device)).astype(np.float64)
        if bits > 32:
            expected = [((w >> 5) * 2**26 + (MASK >> 6)) / 2**53 for w in words]
        else:
            expected = [(w >> (32 - bits)) / 2**bits for w in words]
        np.testing.assert_array_equal(u, expected)
        assert u[0] == 0.0 if bits <= 32 else u[0] < 2**-26
        assert u.max() == 1.0 - 2.0**-bits < 1.0  # a naive float32(w / 2**32) rounds to 1.0
    if "float64" in device_float_names(xp=xp, device=device):
        zero = host(uniform_from_bits(high[:1], high[:1], dtype="float64", xp=xp, device=device))
        assert zero[0] == 0.0
        with pytest.raises(ValueError, match="`low` is needed"):
            uniform_from_bits(high, dtype="float64", xp=xp, device=device)


# --------------------------------------------------------------------------
# Chunks, index arrays, widths
# --------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 2**64 - 200),
    cuts=st.lists(st.integers(0, 120), max_size=5),
    n_cols=st.integers(0, 13),
)
def test_any_split_of_the_rows_gives_the_rows_of_the_whole(start, cuts, n_cols):
    whole = np_bits(KEY, STREAM, range(start, start + 120), n_cols)
    edges = [0, *sorted(cuts), 120]
    parts = [np_bits(KEY, STREAM, range(start + a, start + b), n_cols) for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(
        np_bits(KEY, STREAM, range(start, start + 120), n_cols + 7)[:, :n_cols], whole
    )


def test_index_arrays_pick_rows_of_the_whole(backend):
    xp, device = backend
    whole = np_bits(KEY, STREAM, range(64), 9)
    index = np.array([63, 0, 5, 5, 17, 2, 40])
    rows = on(xp, device, index)
    np.testing.assert_array_equal(host(random_bits(KEY, STREAM, rows, 9, xp=xp, device=device)), whole[index])
    chunks = [random_bits(KEY, STREAM, range(a, a + 16), 9, xp=xp, device=device) for a in range(0, 64, 16)]
    np.testing.assert_array_equal(np.concatenate([host(c) for c in chunks]), whole)


def test_index_dtypes_agree_and_negatives_wrap_modulo_2_64(backend):
    xp, device = backend
    values = [0, 1, 100, 127]
    expected = np_bits(KEY, STREAM, values, 6)
    top = np_bits(KEY, STREAM, range(2**64 - 2, 2**64), 6)[::-1]  # rows 2**64 - 1, 2**64 - 2
    integral = dict(xp.__array_namespace_info__().dtypes(device=device, kind="integral"))
    if array_api_compat.is_torch_namespace(xp):  # unlisted: torch has them, with few kernels
        integral.update({name: getattr(xp, name) for name in ("uint16", "uint32", "uint64")})
    assert "int32" in integral
    for name, dtype in integral.items():
        rows = xp.asarray(values, dtype=dtype, device=device)
        np.testing.assert_array_equal(host(random_bits(KEY, STREAM, rows, 6, xp=xp, device=device)), expected)
        if name.startswith("int"):
            rows = xp.asarray([-1, -2], dtype=dtype, device=device)
            np.testing.assert_array_equal(host(random_bits(KEY, STREAM, rows, 6, xp=xp, device=device)), top)


# --------------------------------------------------------------------------
# Keys and streams
# --------------------------------------------------------------------------
def test_other_keys_and_streams_give_other_bits():
    base = np_bits(KEY, STREAM, range(64), 64)
    others = [
        np_bits(KEY ^ 1, STREAM, range(64), 64),
        np_bits(KEY ^ 2**32, STREAM, range(64), 64),  # the high word of the seed counts
        np_bits(KEY, STREAM ^ 1, range(64), 64),
        np_bits(KEY, STREAM ^ 2**40, range(64), 64),  # and the high word of the step
        np_bits(KEY, STREAM, range(64, 128), 64),
        np_bits(fold_in(KEY, 1), STREAM, range(64), 64),
    ]
    for other in others:
        assert np.count_nonzero(other == base) <= 2  # 4096 words, each equal with probability 2**-32
    assert np.unique(base).size >= base.size - 2


def test_fold_in_makes_distinct_keys():
    keys = {fold_in(KEY, data) for data in range(1000)} | {fold_in(k, 0) for k in range(1000)}
    assert len(keys) == 2000
    assert all(0 <= k < 2**64 for k in keys)
    assert fold_in(0, 0) == fold_in(0, 0) != 0
    words = threefry4x32((5, 0, 0, 0x666F6C64), (KEY & MASK, KEY >> 32, 0, 0))
    assert fold_in(KEY, 5) == words[0] | words[1] << 32


# --------------------------------------------------------------------------
# Statistics (one fixed draw of 2**20 words: deterministic, with bounds far from its values)
# --------------------------------------------------------------------------
P_MIN, Z_MAX = 1e-6, 6.0


def _pairs_p(a, b):
    """Chi-square p-value of the 256 joint cells of the top 4 bits of ``a`` and of ``b``."""
    return stats.chisquare(np.bincount(((a >> 28) * 16 + (b >> 28)).ravel(), minlength=256)).pvalue


def statistical_failures():
    """The checks that a draw of 1024 x 1024 words fails (empty when it looks uniform and independent)."""
    w = np_bits(7, 11, range(1024), 1024)
    n = w.size
    failures = []
    bits = (w[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    if np.abs(bits.reshape(-1, 32).mean(axis=0) - 0.5).max() > Z_MAX * 0.5 / np.sqrt(n):
        failures.append("bit frequencies")
    for name, byte in (("top byte", w >> 24), ("low byte", w & 0xFF)):
        if stats.chisquare(np.bincount(byte.ravel(), minlength=256)).pvalue < P_MIN:
            failures.append(name)
    u = np.asarray(uniform(7, 11, range(1024), 1024, xp=NP[0], device=NP[1], dtype="float32"))
    if stats.kstest(u.ravel(), "uniform").pvalue < P_MIN or abs(u.mean() - 0.5) > Z_MAX / np.sqrt(12 * n):
        failures.append("uniform floats")
    neighbours = {
        "adjacent columns": (w[:, :-1], w[:, 1:]),
        "adjacent rows": (w[:-1], w[1:]),
        "adjacent streams": (w, np_bits(7, 12, range(1024), 1024)),
        "adjacent keys": (w, np_bits(6, 11, range(1024), 1024)),
    }
    failures += [name for name, (a, b) in neighbours.items() if _pairs_p(a, b) < P_MIN]
    flipped = np_bits(7, 11, np.arange(1024, dtype=np.int64) ^ 32, 1024)  # one row bit flipped
    changed = np.unpackbits((w ^ flipped).view(np.uint8)).reshape(-1, 32).sum(axis=1)
    if abs(changed.mean() - 16) > Z_MAX * np.sqrt(8 / changed.size):
        failures.append("avalanche")
    return failures


def test_draws_look_uniform_and_independent():
    assert statistical_failures() == []


@pytest.mark.parametrize("rounds", [4, 6])
def test_the_statistics_reject_a_weakened_mix(monkeypatch, rounds):
    """Seven rounds and more pass checks this size; one round less than 20 is caught by the known answers."""
    monkeypatch.setattr(_random, "ROUNDS", rounds)
    failures = statistical_failures()
    assert {"adjacent rows", "adjacent streams", "avalanche"} <= set(failures)


# --------------------------------------------------------------------------
# Keep masks
# --------------------------------------------------------------------------
def test_drop_threshold_and_keep_probability_are_exact():
    assert [drop_threshold(r) for r in (0, 0.25, 0.5, 1)] == [0, 2**30, 2**31, 2**32]
    assert drop_threshold(1e-4) == 429497  # 1e-4 * 2**32 = 429496.7296
    assert drop_threshold(2.0**-40) == 0
    assert [keep_probability(r) for r in (0, 0.5, 1)] == [1.0, 0.5, 0.0]
    assert abs(keep_probability(0.1) - 0.9) <= 2.0**-33


@pytest.mark.parametrize("rate", [0.001, 0.1, 0.5, 0.9, 0.999])
def test_keep_mask_keeps_at_the_rate(rate):
    keep = np.asarray(keep_mask(rate, 2, 3, range(1024), 1024, xp=NP[0], device=NP[1]))
    p, n = keep_probability(rate), keep.size
    assert abs(keep.sum() - p * n) <= Z_MAX * np.sqrt(n * p * (1 - p))
    per_column = keep.mean(axis=0)  # no column (word of a block) is favoured
    assert abs(per_column - p).max() <= Z_MAX * np.sqrt(p * (1 - p) / 1024)


@pytest.mark.parametrize("rate", [1e-4, 1 - 1e-4])
def test_keep_mask_has_no_bias_near_0_and_1(rate):
    """2**22 elements: a float16 uniform (steps of 2**-11) would drop ~2048 at rate 1e-4, not ~419."""
    keep = np.asarray(keep_mask(rate, 9, 1, range(2048), 2048, xp=NP[0], device=NP[1]))
    rare = min(rate, 1 - rate)
    count = keep.size - keep.sum() if rate < 0.5 else keep.sum()
    expected = rare * keep.size
    assert abs(count - expected) <= Z_MAX * np.sqrt(expected)


def test_rates_0_and_1_keep_or_drop_everything(backend):
    xp, device = backend
    for rate, value in ((0, True), (0.0, True), (1, False), (1.0, False)):
        mask = keep_mask(rate, KEY, STREAM, range(5), 7, xp=xp, device=device)
        assert mask.dtype == xp.bool
        assert mask.shape == (5, 7)
        assert array_api_compat.device(mask) == device
        assert np.all(host(mask) == value)


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------
GOOD = {"key": 1, "stream": 2, "rows": range(3), "n_cols": 4}
BAD = [  # (argument, value, error, what the message says: the name, then what was received)
    ("key", -1, ValueError, r"`key`.*got -1"),
    ("key", 2**64, ValueError, r"`key`.*got 18446744073709551616"),
    ("key", 1.0, TypeError, r"`key`.*got float 1.0"),
    ("key", True, TypeError, r"`key`.*got bool True"),
    ("stream", -5, ValueError, r"`stream`.*got -5"),
    ("stream", "3", TypeError, r"`stream`.*got str '3'"),
    ("rows", [0, 1], TypeError, r"`rows`.*got list"),
    ("rows", range(0, 6, 2), ValueError, r"`rows`.*step 1.*range\(0, 6, 2\)"),
    ("rows", range(-1, 3), ValueError, r"`rows`.*range\(-1, 3\)"),
    ("rows", range(2**64 - 1, 2**64 + 1), ValueError, r"`rows`.*2\*\*64"),
    ("rows", range(2**31), ValueError, r"`len\(rows\)`.*got 2147483648"),
    ("rows", np.zeros((2, 2), dtype=np.int64), TypeError, r"`rows`.*ndarray of shape \(2, 2\)"),
    ("rows", np.zeros(3), TypeError, r"`rows` must hold integers.*float64"),
    ("n_cols", -1, ValueError, r"`n_cols`.*got -1"),
    ("n_cols", 2**32 + 1, ValueError, r"`n_cols`.*got 4294967297"),
    ("n_cols", 2.0, TypeError, r"`n_cols`.*got float 2.0"),
]


@pytest.mark.parametrize(("name", "value", "error", "match"), BAD)
def test_bad_arguments_are_refused_by_name(name, value, error, match):
    args = {**GOOD, name: value}
    for draw in (random_bits, uniform, lambda *a, **k: keep_mask(0.5, *a, **k)):
        with pytest.raises(error, match=match):
            draw(args["key"], args["stream"], args["rows"], args["n_cols"], xp=NP[0], device=NP[1])


@pytest.mark.parametrize(
    ("rate", "error"),
    [
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        ("0.5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_rates_are_refused(rate, error):
    with pytest.raises(error, match="`rate`"):
        keep_mask(rate, **GOOD, xp=NP[0], device=NP[1])
    with pytest.raises(error, match="`rate`"):
        keep_probability(rate)


def test_a_dtype_the_device_lacks_is_refused():
    import array_api_strict as strict

    xp, device = dense_xp.resolve_device(strict.Device("no_float64"), xp=strict)
    with pytest.raises(ValueError, match="float64"):
        uniform(**GOOD, xp=xp, device=device, dtype="float64")
    with pytest.raises(ValueError, match="`dtype`"):
        uniform(**GOOD, xp=NP[0], device=NP[1], dtype="int32")
    assert uniform(**GOOD, xp=xp, device=device).dtype == xp.float32  # the device's default


def test_int32_words_give_the_same_draws(monkeypatch):
    """Torch's int32 words, run on NumPy (whose int32 arithmetic wraps too): where torch is not installed."""
    rows = np.array([5, -1, 2**40, 3], dtype=np.int64)
    draws = {
        "bits": lambda: random_bits(KEY, STREAM, ACROSS, 11, xp=NP[0], device=NP[1]),
        "index rows": lambda: random_bits(KEY, STREAM, rows, 7, xp=NP[0], device=NP[1]),
        "mask": lambda: keep_mask(0.9, KEY, STREAM, ACROSS, 9, xp=NP[0], device=NP[1]),
        "float32": lambda: uniform(KEY, STREAM, ACROSS, 9, xp=NP[0], device=NP[1], dtype="float32"),
        "float64": lambda: uniform(KEY, STREAM, ACROSS, 9, xp=NP[0], device=NP[1], dtype="float64"),
        "from bits": lambda: uniform_from_bits(
            np.array([0, 2**31, MASK], dtype=np.uint32), np.array([MASK] * 3, dtype=np.uint32),
            dtype="float64", xp=NP[0], device=NP[1],
        ),
    }  # fmt: skip
    expected = {name: np.asarray(draw()) for name, draw in draws.items()}
    monkeypatch.setattr(_threefry, "uses_int32", lambda xp: True)
    assert _threefry.Words(NP[0], NP[1], []).dtype == np.int32
    for name, draw in draws.items():
        got = np.asarray(draw())
        assert got.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
