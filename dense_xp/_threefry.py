"""Threefry-4x32, the counter-based block function of :mod:`dense_xp._random`, on ints and on arrays.

Threefry-4x32 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011; the Random123 library's ``threefry4x32``) maps a
128-bit counter under a 128-bit key to 128 random bits, four 32-bit words,
with 32-bit additions, rotations and exclusive ors alone: no multiplication,
no 64-bit type. :func:`threefry4x32` computes it on Python ints (the
reference, checked against Random123's published known-answer vectors);
:func:`threefry4x32_arrays` on arrays of any array API namespace, with the
same bits.

On arrays the words are uint32, whose additions wrap modulo ``2**32`` in
NumPy, CuPy, JAX and array-api-strict; torch 2.13 has no uint32 addition,
shift or comparison kernels, so there they are int32 with the same bit
patterns (:class:`Words`). A constant of 2**31 or more reaches the device as an entry of one small uint32
table rather than as a Python int: JAX without x64 refuses Python ints beyond
int32.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _backend

__all__ = ["MASK", "ROUNDS", "Words", "mix", "schedule", "threefry4x32", "threefry4x32_arrays", "uses_int32"]

ROUNDS = 20  # Random123's default for Threefry-4x32
MASK = 0xFFFFFFFF
_PARITY = 0x1BD11BDA  # Skein's key-schedule parity constant
_ROTATIONS = ((10, 26), (11, 21), (13, 27), (23, 5), (6, 20), (17, 11), (25, 10), (18, 20))
_SCALAR_LIMIT = 1 << 31  # Python ints below this go to kernels as they are


def schedule(key: tuple[int, int, int, int], rounds: int = ROUNDS) -> list[tuple[int, int, int, int]]:
    """The key injections of ``rounds`` rounds (injection 0 is the initial one), each 4 words."""
    ks = [*key, _PARITY ^ key[0] ^ key[1] ^ key[2] ^ key[3]]
    return [
        (ks[s % 5], ks[(s + 1) % 5], ks[(s + 2) % 5], (ks[(s + 3) % 5] + s) & MASK)
        for s in range(rounds // 4 + 1)
    ]


def threefry4x32(
    counter: tuple[int, int, int, int], key: tuple[int, int, int, int], rounds: int = ROUNDS
) -> tuple[int, int, int, int]:
    """Threefry-4x32 of one ``counter`` under ``key`` (four 32-bit words each), on Python ints.

    Other ``rounds`` than 20 are there for the published test vectors (13 and
    72 rounds) and for tests that weaken the mix.
    """
    inject = schedule(key, rounds)
    x = [(c + k) & MASK for c, k in zip(counter, inject[0], strict=True)]
    for r in range(rounds):
        for i, j, rot in _pairs(r):
            x[i] = (x[i] + x[j]) & MASK
            x[j] = (((x[j] << rot) | (x[j] >> (32 - rot))) & MASK) ^ x[i]
        if r % 4 == 3:
            x = [(v + k) & MASK for v, k in zip(x, inject[(r + 1) // 4], strict=True)]
    return x[0], x[1], x[2], x[3]


def _pairs(r: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Round ``r``'s two (added-to word, rotated word, rotation) triples."""
    a, b = _ROTATIONS[r % 8]
    return ((0, 1, a), (2, 3, b)) if r % 2 == 0 else ((0, 3, a), (2, 1, b))


def uses_int32(xp: Any) -> bool:
    """Whether :class:`Words` of ``xp`` are int32 (torch) rather than uint32."""
    return array_api_compat.is_torch_namespace(xp)


class Words:
    """32-bit words in ``xp`` on ``device``: uint32, or in torch int32 holding the same bit patterns.

    Torch 2.13 has no uint32 addition, shift or comparison kernels; its int32
    additions and left shifts wrap modulo ``2**32`` like uint32 ones (eager
    torch computes them in two's complement, and casts int32 to uint32
    modulo ``2**32``), and the right shifts and comparisons below undo the
    sign. ``constants`` are the values (in ``[0, 2**32)``) that :meth:`const`
    will be asked for: those of 2**31 or more go to the device at once, in one
    table, except in torch, which takes them as Python ints.
    """

    def __init__(self, xp: Any, device: Any, constants: list[int]) -> None:
        self.xp, self.device = xp, device
        self.signed = uses_int32(xp)
        self.dtype = xp.int32 if self.signed else xp.uint32
        self._big: dict[int, Any] = {}
        big = sorted({c for c in constants if c >= _SCALAR_LIMIT})
        if big and not self.signed:
            table = xp.asarray(big, dtype=self.dtype, device=device)
            self._big = {c: table[i] for i, c in enumerate(big)}

    def const(self, value: int) -> Any:
        """``value`` (in ``[0, 2**32)``) as an operand: a Python int, or a 0-d word from the table."""
        if self.signed:
            return value - (1 << 32) if value >= _SCALAR_LIMIT else value
        return self._big.get(value, value)

    def add(self, a: Any, b: Any, inplace: bool) -> Any:
        """``a + b`` modulo ``2**32``; ``inplace`` updates ``a`` (which must have the result's shape)."""
        if inplace:
            a += b
            return a
        return a + b

    def shr(self, x: Any, s: int) -> Any:
        """``x >> s`` (logical), a new array."""
        return (x >> s) & ((1 << (32 - s)) - 1) if self.signed else x >> s

    def half_round(self, a: Any, b: Any, rot: int, inplace: bool) -> tuple[Any, Any]:
        """One half-round: ``a += b; b = rotl(b, rot) ^ a``."""
        a = self.add(a, b, inplace)
        low = self.shr(b, 32 - rot)
        if inplace:
            b <<= rot
            b |= low
            b ^= a
            return a, b
        return a, ((b << rot) | low) ^ a

    def ge(self, x: Any, value: int) -> Any:
        """``x >= value`` as unsigned 32-bit numbers (``value`` in ``[0, 2**32)``)."""
        if self.signed:  # flipping the sign bit maps [0, 2**32) onto int32 in order
            return (x ^ -_SCALAR_LIMIT) >= value - _SCALAR_LIMIT
        return x >= self.const(value)

    def arange(self, n: int) -> Any:
        """``0 .. n - 1`` (``n < 2**31``) as words."""
        xp = self.xp
        return xp.astype(xp.arange(n, dtype=xp.int32, device=self.device), self.dtype)

    def from_wide(self, x: Any) -> Any:
        """Words from an int64 or uint64 array of values in ``[0, 2**32)``."""
        if self.signed:
            x = (x ^ _SCALAR_LIMIT) - _SCALAR_LIMIT  # in int32's range: the cast is exact
        return self.xp.astype(x, self.dtype)

    def to_uint32(self, x: Any) -> Any:
        """The uint32 array of the words ``x`` (torch casts int32 to uint32 modulo ``2**32``)."""
        return self.xp.astype(x, self.xp.uint32) if self.signed else x


def mix(words: Words, inject: list[tuple[int, int, int, int]], counter: list[Any], rounds: int) -> list[Any]:
    """Threefry-4x32 of the counter words (broadcastable arrays; the result has their common shape).

    The first two rounds broadcast (words 1 to 3 may be columns, word 0 a row);
    the others update in place.
    """
    x = [words.add(c, words.const(k), False) for c, k in zip(counter, inject[0], strict=True)]
    for r in range(rounds):
        for i, j, rot in _pairs(r):
            x[i], x[j] = words.half_round(x[i], x[j], rot, inplace=r >= 2)
        if r % 4 == 3:
            x = [words.add(v, words.const(k), True) for v, k in zip(x, inject[(r + 1) // 4], strict=True)]
    return x


def threefry4x32_arrays(
    counter: list[Any], key: tuple[int, int, int, int], *, xp: Any, device: Any, rounds: int = ROUNDS
) -> list[Any]:
    """Threefry-4x32 of arrays: ``counter`` is four integer arrays of one shape, values in ``[0, 2**32)``.

    Returns the four output words as uint32 arrays of that shape, as
    :func:`threefry4x32` gives them one counter at a time.
    """
    with _backend.on_device(device):
        inject = schedule(key, rounds)
        words = Words(xp, device, [c for k in inject for c in k])
        if words.signed:  # torch: through int64, where the values fit
            counter = [words.from_wide(xp.astype(c, xp.int64)) for c in counter]
        out = mix(words, inject, [xp.astype(c, words.dtype) for c in counter], rounds)
        return [words.to_uint32(w) for w in out]
