"""Counter-based random draws for dropout: the same bits on every backend, for any chunking.

Every element of a ``(rows, n_cols)`` draw is Threefry-4x32-20
(:mod:`dense_xp._threefry`) of its own global position, with nothing carried
from one call to the next:

* key ``(key_lo, key_hi, stream_lo, stream_hi)``: the 64-bit ``key`` (the seed)
  and the 64-bit ``stream`` (e.g. the training step), in 32-bit words;
* counter ``(c // 4, row_lo, row_hi, lane)`` for column ``c`` of global row
  ``row`` (64 bits): one counter gives the words of columns ``4b .. 4b + 3``;
  ``lane`` is 0, and 1 for the second word float64 needs.

So rows ``[start, stop)`` of a chunk, any set of rows in any order, or a
narrower width give exactly the matching rows and columns of the whole draw,
on NumPy, CuPy, torch, JAX (with or without x64) and array-api-strict alike,
and nothing waits for the device: the key schedule is computed on the host
from Python ints, the counters are made on the device with ``arange``.

:func:`keep_mask` is what a dropout layer calls::

    keep = keep_mask(rate, key=seed, stream=step, rows=range(start, start + n), n_cols=width,
                     xp=xp, device=device)
    y = x * keep / keep_probability(rate)       # or xp.where(keep, x / (1 - rate), 0)

Call it eagerly under JAX: inside ``jax.jit``, XLA fuses the final stack of
the four words into the rounds and recomputes them (15 s instead of 47 ms for
a 4096 x 1024 mask on a CPU).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import array_api_compat

from . import _backend
from ._checks import dtype_name, resolve_dtype
from ._threefry import MASK, ROUNDS, Words, mix, schedule, threefry4x32

__all__ = [
    "drop_threshold",
    "fold_in",
    "keep_mask",
    "keep_probability",
    "random_bits",
    "uniform",
    "uniform_from_bits",
]

_BITS = {"bfloat16": 8, "float16": 11, "float32": 24, "float64": 53}  # significand bits
_FOLD_TAG = 0x666F6C64  # "fold": fold_in's counter word 3, no draw's lane
_MAX_ROWS = 2**31 - 1  # rows of one call: its counters are made by an int32 arange


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------
def _word64(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"`{name}` must be an integer in [0, 2**64), got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    number = operator.index(value)
    if not 0 <= number < 1 << 64:
        msg = f"`{name}` must be an integer in [0, 2**64), got {value!r}"
        raise ValueError(msg)
    return number


def _count(value: Any, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"`{name}` must be an integer in [0, {limit}], got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    number = operator.index(value)
    if not 0 <= number <= limit:
        msg = f"`{name}` must be an integer in [0, {limit}], got {value!r}"
        raise ValueError(msg)
    return number


class _Rows:
    """Global row indices: ``range(start, stop)`` (step 1), or a 1-D integer array on the device."""

    def __init__(self, rows: Any, xp: Any) -> None:
        self.array: Any = None
        self.start = 0
        if isinstance(rows, range):
            if rows.step != 1 or rows.start < 0 or rows.stop > 1 << 64:
                msg = f"`rows` as a range must have step 1 and lie in [0, 2**64), got {rows!r}"
                raise ValueError(msg)
            self.start, self.n = rows.start, _count(max(rows.stop - rows.start, 0), "len(rows)", _MAX_ROWS)
        elif array_api_compat.is_array_api_obj(rows) and getattr(rows, "ndim", None) == 1:
            if not xp.isdtype(rows.dtype, "integral"):
                msg = f"`rows` must hold integers (global row indices), got dtype {rows.dtype}"
                raise TypeError(msg)
            self.array, self.n = rows, _count(rows.shape[0], "len(rows)", _MAX_ROWS)
        else:
            shape = getattr(rows, "shape", None)
            msg = (
                "`rows` must be a range(start, stop) or a 1-D integer array of global row indices, "
                f"got {type(rows).__name__}" + ("" if shape is None else f" of shape {shape}")
            )
            raise TypeError(msg)

    def constants(self) -> list[int]:
        return [self.start & MASK, self.start >> 32]

    def words(self, words: Words) -> tuple[Any, Any]:
        """``(row_lo, row_hi)``, each ``(n, 1)``: the indices modulo ``2**64``, in 32-bit words."""
        xp = words.xp
        if self.array is None:
            lo_start, hi_start = self.constants()
            lo = words.add(words.arange(self.n)[:, None], words.const(lo_start), False)
            if lo_start + self.n <= 1 << 32:
                return lo, words.add(xp.zeros_like(lo), words.const(hi_start), False)
            carry = xp.astype(~words.ge(lo, lo_start), lo.dtype)  # the low word wrapped
            return lo, words.add(carry, words.const(hi_start), False)
        a = self.array
        if words.signed or xp.iinfo(a.dtype).bits == 64:
            a = xp.astype(a, xp.int64) if words.signed else a
            lo, hi = words.from_wide(a & MASK), words.from_wide((a >> 32) & MASK)  # -1 is 2**64 - 1
        elif xp.iinfo(a.dtype).min < 0:  # int8..int32 without int64 (JAX without x64, no_x64)
            a = xp.astype(a, xp.int32)
            negative = xp.astype(a < 0, words.dtype)
            lo = xp.astype(a & 0x7FFFFFFF, words.dtype) | (negative << 31)
            hi = xp.zeros_like(negative) - negative  # 0 or 2**32 - 1
        else:
            lo, hi = xp.astype(a, words.dtype), xp.zeros((self.n,), dtype=words.dtype, device=words.device)
        return lo[:, None], hi[:, None]


def drop_threshold(rate: Any) -> int:
    """``round(rate * 2**32)``: :func:`keep_mask` drops an element whose word is below it.

    ``rate`` is a real number in ``[0, 1]``; the drop probability, this
    threshold over ``2**32``, is ``rate`` to within ``2**-33``.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        msg = f"`rate` must be a number in [0, 1], got {type(rate).__name__} {rate!r}"
        raise TypeError(msg)
    value = float(rate)
    if not (math.isfinite(value) and 0 <= value <= 1):
        msg = f"`rate` must be a number in [0, 1], got {rate!r}"
        raise ValueError(msg)
    return round(value * 2.0**32)


def keep_probability(rate: Any) -> float:
    """The exact probability that :func:`keep_mask` keeps an element, ``1 - drop_threshold(rate) / 2**32``."""
    return 1.0 - drop_threshold(rate) * 2.0**-32


def fold_in(key: Any, data: Any) -> int:
    """A new 64-bit key from ``key`` and ``data`` (ints in ``[0, 2**64)``): one per layer, say.

    Threefry-4x32-20 of the counter ``(data_lo, data_hi, 0, "fold")`` under
    ``(key_lo, key_hi, 0, 0)``, its first two words: no draw uses that counter.
    """
    k, d = _word64(key, "key"), _word64(data, "data")
    out = threefry4x32((d & MASK, d >> 32, 0, _FOLD_TAG), (k & MASK, k >> 32, 0, 0))
    return out[0] | out[1] << 32


# --------------------------------------------------------------------------
# Draws
# --------------------------------------------------------------------------
def _draw(
    key: int, stream: int, rows: _Rows, n_cols: int, *, xp: Any, device: Any, lanes: int = 1, extra: int = 0
) -> tuple[Words, list[list[Any]]]:
    """The block words of each lane: four ``(n, ceil(n_cols / 4))`` arrays per lane.

    Runs with the device current; ``extra`` is one more constant for :meth:`Words.const`.
    """
    inject = schedule((key & MASK, key >> 32, stream & MASK, stream >> 32))
    words = Words(xp, device, [c for k in inject for c in k] + rows.constants() + [extra])
    lo, hi = rows.words(words)
    block = words.arange(-(-n_cols // 4))[None, :]
    return words, [
        mix(words, inject, [block, lo, hi, words.add(xp.zeros_like(hi), lane, False)], ROUNDS)
        for lane in range(lanes)
    ]


def _interleave(xp: Any, blocks: list[Any], n_cols: int) -> Any:
    """``(n, n_cols)``: column ``c`` is word ``c % 4`` of block ``c // 4``."""
    n, n_blocks = blocks[0].shape
    return xp.reshape(xp.stack(blocks, axis=-1), (n, 4 * n_blocks))[:, :n_cols]


def _request(key: Any, stream: Any, rows: Any, n_cols: Any, xp: Any) -> tuple[int, int, _Rows, int]:
    return (
        _word64(key, "key"),
        _word64(stream, "stream"),
        _Rows(rows, xp),
        _count(n_cols, "n_cols", 1 << 32),
    )


def random_bits(key: Any, stream: Any, rows: Any, n_cols: Any, *, xp: Any, device: Any) -> Any:
    """Random 32-bit words, one per element of global rows ``rows`` and columns ``0 .. n_cols - 1``.

    Parameters
    ----------
    key, stream : int
        The seed and the stream (e.g. the training step), each in ``[0, 2**64)``.
    rows : range or array
        Global row indices: ``range(start, stop)`` (step 1, within ``[0, 2**64)``),
        or a 1-D integer array on ``device`` (its values are taken modulo
        ``2**64``, so -1 is row ``2**64 - 1``; they are not checked, which would
        wait for the device). At most ``2**31 - 1`` rows per call.
    n_cols : int
        The width, in ``[0, 2**32]``.
    xp, device
        The array namespace and device of the result.

    Returns
    -------
    array of uint32, shape (len(rows), n_cols)
        Element ``(i, c)`` is a function of ``key``, ``stream``, ``rows[i]`` and ``c`` alone.
    """
    key, stream, spec, n_cols = _request(key, stream, rows, n_cols, xp)
    with _backend.on_device(device):
        words, (blocks,) = _draw(key, stream, spec, n_cols, xp=xp, device=device)
        out = _interleave(xp, blocks, n_cols)
        return words.to_uint32(out)


def uniform(key: Any, stream: Any, rows: Any, n_cols: Any, *, xp: Any, device: Any, dtype: Any = None) -> Any:
    """Floats uniform in ``[0, 1)``, the same values on every backend (arguments of :func:`random_bits`).

    A ``dtype`` with a ``p``-bit significand gets ``k * 2**-p``, ``k`` the top
    ``p`` bits of the element's word: bfloat16 8 bits, float16 11, float32 24;
    float64 takes 53 bits from two words (the top 27 bits of the word the
    others use, then 26 bits of a second one), so each dtype's value is the
    float64 value rounded down to its precision. 0 can come out, 1 never does.

    Returns
    -------
    array of ``dtype``, shape (len(rows), n_cols)
        ``dtype`` (float16, bfloat16 where ``xp`` has it, float32, float64)
        defaults to the namespace's default float on ``device``.
    """
    key, stream, spec, n_cols = _request(key, stream, rows, n_cols, xp)
    with _backend.on_device(device):
        dtype = resolve_dtype(dtype, xp=xp, device=device, compute=True)
        lanes = 1 if _BITS[dtype_name(dtype)] <= 32 else 2
        words, blocks = _draw(key, stream, spec, n_cols, xp=xp, device=device, lanes=lanes)
        floats = [_floats(words, *lane_words, dtype=dtype) for lane_words in zip(*blocks, strict=True)]
        return _interleave(xp, floats, n_cols)


def uniform_from_bits(high: Any, low: Any = None, *, dtype: Any, xp: Any, device: Any) -> Any:
    """The floats of :func:`uniform` made from given uint32 words ``high`` (and ``low``, float64 only).

    ``high`` and ``low`` are uint32 arrays of one shape on ``device``, as
    :func:`random_bits` returns them; ``low`` is needed for float64 alone.
    """
    with _backend.on_device(device):
        dtype = resolve_dtype(dtype, xp=xp, device=device, compute=True)
        if _BITS[dtype_name(dtype)] > 32 and low is None:
            msg = f"`low` is needed for {dtype_name(dtype)}, which takes 53 bits from two words"
            raise ValueError(msg)
        words = Words(xp, device, [])
        if words.signed:  # torch's uint32 has no shift kernels: int32 words, through int64
            high = words.from_wide(xp.astype(high, xp.int64))
            low = None if low is None else words.from_wide(xp.astype(low, xp.int64))
        return _floats(words, high, low, dtype=dtype)


def _floats(words: Words, high: Any, low: Any = None, *, dtype: Any) -> Any:
    """``k * 2**-p`` for ``k`` the top ``p`` significand bits (53 from two words for float64)."""
    xp, bits = words.xp, _BITS[dtype_name(dtype)]
    if bits > 32:
        top, rest = xp.astype(words.shr(high, 5), dtype), xp.astype(words.shr(low, 6), dtype)
        return (top * 2.0**26 + rest) * 2.0**-53
    out = xp.astype(words.shr(high, 32 - bits), xp.float32) * 2.0**-bits  # exact: at most 24 bits
    return out if out.dtype == dtype else xp.astype(out, dtype)


def keep_mask(rate: Any, key: Any, stream: Any, rows: Any, n_cols: Any, *, xp: Any, device: Any) -> Any:
    """A dropout keep-mask: True where the element's word (:func:`random_bits`) is not below the threshold.

    The comparison is on the 32-bit words, so the mask depends on no float
    dtype, and an element is kept with probability :func:`keep_probability`,
    ``1 - rate`` to within ``2**-33``, for a rate near 0 or 1 too. Rate 0 keeps
    everything and rate 1 drops everything, without drawing.

    Returns
    -------
    array of bool, shape (len(rows), n_cols), on ``device``
    """
    threshold = drop_threshold(rate)
    key, stream, spec, n_cols = _request(key, stream, rows, n_cols, xp)
    with _backend.on_device(device):
        if threshold in (0, 1 << 32):
            return xp.full((spec.n, n_cols), threshold == 0, dtype=xp.bool, device=device)
        words, (blocks,) = _draw(key, stream, spec, n_cols, xp=xp, device=device, extra=threshold)
        return _interleave(xp, [words.ge(w, threshold) for w in blocks], n_cols)
