"""Threefry-4x32 on Python ints and on arrays: Random123's known answers, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import dense_xp
from dense_xp._threefry import MASK, ROUNDS, threefry4x32, threefry4x32_arrays

ZEROS, ONES = (0, 0, 0, 0), (MASK,) * 4
PI_CTR, PI_KEY = (
    (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
    (0xA4093822, 0x299F31D0, 0x082EFA98, 0xEC4E6C89),
)
# Random123 1.14, tests/kat_vectors: "threefry4x32 ROUNDS counter key -> output"
KNOWN_ANSWERS = [
    (13, ZEROS, ZEROS, (0x531C7E4F, 0x39491EE5, 0x2C855A92, 0x3D6ABF9A)),
    (13, ONES, ONES, (0xC4189358, 0x1C9CC83A, 0xD5881C67, 0x6A0A89E0)),
    (13, PI_CTR, PI_KEY, (0x4AA71D8F, 0x734738C2, 0x431FC6A8, 0xAE6DEBF1)),
    (20, ZEROS, ZEROS, (0x9C6CA96A, 0xE17EAE66, 0xFC10ECD4, 0x5256A7D8)),
    (20, ONES, ONES, (0x2A881696, 0x57012287, 0xF6C7446E, 0xA16A6732)),
    (20, PI_CTR, PI_KEY, (0x59CD1DBB, 0xB8879579, 0x86B5D00C, 0xAC8B6D84)),
    (72, ZEROS, ZEROS, (0x93171DA6, 0x9220326D, 0xB392B7B1, 0xFF58A002)),
    (72, ONES, ONES, (0x60743F3D, 0x9961E684, 0xAAB21C34, 0x8C65FB7D)),
    (72, PI_CTR, PI_KEY, (0x09930ADF, 0x7F27BD55, 0x9ED68CE1, 0x97F803F6)),
]


@pytest.mark.parametrize(("rounds", "counter", "key", "expected"), KNOWN_ANSWERS)
def test_python_block_function_gives_the_published_answers(rounds, counter, key, expected):
    assert threefry4x32(counter, key, rounds) == expected


def test_the_published_answers_catch_one_round_more_or_less():
    for rounds, counter, key, expected in KNOWN_ANSWERS:
        if rounds == ROUNDS:
            assert threefry4x32(counter, key, rounds - 1) != expected
            assert threefry4x32(counter, key, rounds + 1) != expected


def _counter_arrays(xp, device, counters):
    """Four uint32 arrays (torch's uint32 holds them, it only lacks arithmetic) from a list of counters."""
    return [xp.asarray([c[i] for c in counters], dtype=xp.uint32, device=device) for i in range(4)]


@pytest.mark.parametrize("rounds", [13, 20])
def test_array_block_function_gives_the_published_answers(backend, rounds):
    xp, device = backend
    cases = [case for case in KNOWN_ANSWERS if case[0] == rounds]
    for _, _, key, _ in cases:  # every counter under each key: the published answer where it is one
        words = threefry4x32_arrays(
            _counter_arrays(xp, device, [c[1] for c in cases]), key, xp=xp, device=device, rounds=rounds
        )
        got = np.stack([dense_xp.to_numpy(w) for w in words], axis=-1)
        assert got.dtype == np.uint32
        for i, (_, counter, case_key, expected) in enumerate(cases):
            assert tuple(int(v) for v in got[i]) == threefry4x32(counter, key, rounds)
            if case_key == key:
                assert tuple(int(v) for v in got[i]) == expected


def test_array_block_function_matches_the_python_one_on_random_counters(backend):
    xp, device = backend
    rng = np.random.default_rng(5)
    counters = [tuple(int(v) for v in rng.integers(0, 2**32, 4)) for _ in range(64)]
    key = tuple(int(v) for v in rng.integers(0, 2**32, 4))
    words = threefry4x32_arrays(_counter_arrays(xp, device, counters), key, xp=xp, device=device)
    got = np.stack([dense_xp.to_numpy(w) for w in words], axis=-1)
    assert [tuple(int(v) for v in row) for row in got] == [threefry4x32(c, key) for c in counters]


def test_array_block_function_leaves_its_counters_alone():
    xp, device = dense_xp.resolve_device("cpu")
    counter = [xp.asarray([1, 2, 3], dtype=xp.uint32) for _ in range(4)]
    before = [np.array(c, copy=True) for c in counter]
    threefry4x32_arrays(counter, PI_KEY, xp=xp, device=device)
    for c, b in zip(counter, before, strict=True):
        np.testing.assert_array_equal(c, b)
