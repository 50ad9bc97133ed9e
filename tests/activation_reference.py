"""Reference values of the built-in activations and their derivatives, and the ulp bounds they are held to.

The reference is evaluated in NumPy's long double (64-bit mantissa on x86-64) at the same ``z`` the code
under test sees, with the same constants (``0.01``, ``sqrt(2/pi)``, ``0.044715``) taken exactly. In float64
``sigmoid`` is the reference layer's ``1 / (1 + exp(-clip(z, -500, 500)))``: its reference clips too.

Bounds (:func:`tolerance`), in ulps of the exact value in the dtype under test:

* float16 and bfloat16 are computed in float32 and rounded once: ``ONE_ROUNDING`` ulp;
* float32 and float64: ``FEW`` ulps (the library's exp, tanh, log1p are 1 to 6 ulps themselves), and
  where the function is ill-conditioned (``ILL_CONDITIONED``: the tails of gelu, whose exponent is a
  cubic in ``z``, and the zeros of gelu' and silu') ``FEW`` more ulps of ``eps * |z * f'(z)|``, what an
  error of a few ulps in ``z`` itself would give;
* an absolute floor where the exact value underflows: float16's smallest subnormal (2**-24), the smallest
  normal of the others; and a subnormal ``z`` of bfloat16, float32 or float64 may read as 0 (hardware that
  flushes subnormal inputs: XLA on the CPU, CUDA with ``-ftz``, some BLAS), which only relu' and
  leaky_relu' can tell apart. On a backend that flushes subnormals to zero (XLA on the CPU, CUDA with
  ``-ftz``) an exponential below the smallest normal is 0, and what it would have contributed is at most
  ``tiny * (1 + |z|)**3`` (gelu' multiplies it by ``z * u'(z)``, about ``0.2 |z|**3``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

L = np.longdouble
EXTENDED = np.finfo(L).nmant >= 63  # long double is wider than float64 (x86-64 Linux)
C = np.sqrt(L(2) / np.arccos(L(-1)))
A = L("0.044715")
LEAK = L("0.01")
ONE_ROUNDING = 1.0
FEW = 6.0
ILL_CONDITIONED = {("gelu", 0), ("gelu", 1), ("silu", 1)}  # (name, order of the derivative)
NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "silu")
# mantissa bits (with the implicit one), smallest normal exponent
BITS = {"float16": (11, -14), "bfloat16": (8, -126), "float32": (24, -126), "float64": (53, -1022)}
EPS = {name: 2.0 ** (1 - p) for name, (p, _) in BITS.items()}


def _sig(z: np.ndarray) -> np.ndarray:
    t = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + t), t / (1 + t))


def _dsig(z: np.ndarray) -> np.ndarray:
    t = np.exp(-np.abs(z))
    return t / (1 + t) ** 2


def _gelu_u2(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``2u(z)`` and its derivative: gelu(z) = z * sigmoid(2u)."""
    return 2 * C * z * (1 + A * z * z), 2 * C * (1 + 3 * A * z * z)


def _exact(name: str, z: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(f(z), f'(z))`` in long double."""
    nan = np.isnan(z)
    if name == "linear":
        return z, np.ones_like(z)
    if name == "relu":
        return np.where(z < 0, 0, z), np.where(nan, np.nan, (z > 0).astype(L))
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAK * z), np.where(nan, np.nan, np.where(z > 0, 1, LEAK))
    if name == "sigmoid":
        return _sig(np.clip(z, -500, 500) if dtype == "float64" else z), _dsig(z)
    if name == "tanh":
        t = np.exp(-2 * np.abs(z))
        return np.tanh(z), 4 * t / (1 + t) ** 2
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), _sig(z)
    if name == "silu":
        return z * _sig(z), _sig(z) * (1 + z * _sig(-z))
    if name == "gelu":
        u2, du2 = _gelu_u2(z)
        return z * _sig(u2), _sig(u2) + z * du2 * _dsig(u2)
    raise KeyError(name)


def from_output(name: str, y: np.ndarray) -> np.ndarray:
    """``act'(z)`` written in the output ``y``, exactly, at the ``y`` a layer saved (long double)."""
    y = np.asarray(y, dtype=L)
    with np.errstate(all="ignore"):
        return {
            "relu": lambda: np.sign(y),
            "leaky_relu": lambda: np.where(np.isnan(y), np.nan, np.where(y > 0, 1, LEAK)),
            "sigmoid": lambda: y * (1 - y),
            "tanh": lambda: (1 - y) * (1 + y),  # 1 - y*y cancels even in long double
            "softplus": lambda: -np.expm1(-y),
        }[name]()


def from_output_bound(name: str, y: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(exact, bound)`` for a derivative computed from the saved output ``y``: ``FEW`` ulps of
    :func:`from_output`, a subnormal ``y`` read as 0 allowed (as in :func:`tolerance`)."""
    exact = from_output(name, y).astype(np.float64)
    emin = BITS[dtype][1]
    bound = FEW * np.maximum(ulp(exact, dtype), 2.0**emin)
    subnormal = (np.abs(y) < 2.0**emin) & (y != 0)
    bound[subnormal] += np.abs(exact[subnormal] - from_output(name, np.copysign(0.0, y[subnormal])))
    return exact, bound


@functools.cache
def grid(dtype: str) -> np.ndarray:
    """Test points in ``[-1e4, 1e4]`` that ``dtype`` represents, as float64, ±0 included.

    Every value for float16 and bfloat16. For float32 and float64: every float16 value, random values
    (uniform in their bits, in [-30, 30] and in [-1e4, 1e4]), and 201 neighbours of the points where
    exp or the result under- or overflows in some dtype, of the zeros of gelu' and silu', and of ±1e4.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # bit patterns of NaN
        return _grid(dtype)


def _grid(dtype: str) -> np.ndarray:
    if dtype == "float16":
        z = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float64)
    elif dtype == "bfloat16":
        z = (np.arange(2**16, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)
    else:
        rng = np.random.default_rng(20240611)
        width = np.uint32 if dtype == "float32" else np.uint64
        bits = rng.integers(0, np.iinfo(width).max, 20000, dtype=width, endpoint=True)
        parts = [
            np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float64),
            np.zeros(0),
            rng.uniform(-30, 30, 20000),
            rng.uniform(-1e4, 1e4, 5000),
        ]
        typ = np.dtype(dtype).type
        steps = np.arange(-100, 101)
        for c in (
            9.70,
            11.09,
            17.33,
            87.34,
            88.72,
            103.97,
            500.0,
            708.40,
            709.78,
            745.13,
            0.7517,
            1.2785,
            1e4,
        ):
            for point in (c, -c):
                start = typ(point)
                spacing = np.spacing(np.abs(start))
                parts.append((start + steps * spacing).astype(np.float64))
        parts[1] = bits.view(np.float32 if dtype == "float32" else np.float64).astype(np.float64)
        z = np.concatenate(parts).astype(dtype).astype(np.float64)
    z = z[np.isfinite(z) & (np.abs(z) <= 1e4)]
    return np.unique(np.concatenate([z, [0.0, -0.0]]))


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at ``|x|`` (``x`` exact): subnormal spacing below the normal range."""
    p, emin = BITS[dtype]
    x = np.abs(np.asarray(x, dtype=np.float64))
    finite = np.isfinite(x) & (x > 0)
    _, e = np.frexp(np.where(finite, x, 1.0))
    e = np.where(finite, e - 1, emin)
    return np.ldexp(1.0, np.maximum(e, emin) - (p - 1))


def reference_at(name: str, dtype: str, order: int, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f, scale)`` at the float64 points ``z``: ``f`` is the activation (``order`` 0) or its derivative
    (1) in float64, ``scale`` is ``|z * df/dz|`` (the second derivative by central differences)."""
    z = np.asarray(z, dtype=L)
    with np.errstate(all="ignore"):
        f = _exact(name, z, dtype)[order]
        if order == 0:
            df = _exact(name, z, dtype)[1]
        else:
            h = L(2) ** -20 * np.maximum(1, np.abs(z))
            df = (_exact(name, z + h, dtype)[1] - _exact(name, z - h, dtype)[1]) / (2 * h)
    return f.astype(np.float64), np.abs(z * df).astype(np.float64)


@functools.cache
def reference(name: str, dtype: str, order: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reference_at` on :func:`grid` of ``dtype``."""
    return reference_at(name, dtype, order, grid(dtype))


def tolerance(
    name: str,
    dtype: str,
    order: int,
    z: np.ndarray,
    f: np.ndarray,
    scale: np.ndarray,
    *,
    flushes: bool = False,
) -> np.ndarray:
    """The absolute bound, per point ``z`` with exact value ``f`` and ``scale`` of :func:`reference_at`."""
    p, emin = BITS[dtype]
    if dtype == "float16":
        return ONE_ROUNDING * np.maximum(ulp(f, dtype), 2.0 ** (emin - p + 1))
    floor = 2.0**emin * ((1 + np.abs(z)) ** 3 if flushes else 1.0)
    bound = (ONE_ROUNDING if dtype == "bfloat16" else FEW) * np.maximum(ulp(f, dtype), floor)
    if (name, order) in ILL_CONDITIONED and dtype != "bfloat16":
        bound = bound + FEW * EPS[dtype] * scale
    subnormal = (np.abs(z) < 2.0**emin) & (z != 0)
    if subnormal.any():  # read as 0 where inputs are flushed (DAZ): relu' and leaky_relu' step there
        at_zero, _ = reference_at(name, dtype, order, np.copysign(0.0, z[subnormal]))
        bound[subnormal] += np.abs(f[subnormal] - at_zero)
    return bound


def assert_within(
    got: Any, exact: np.ndarray, bound: np.ndarray, z: np.ndarray, dtype: str, what: str
) -> None:
    """Assert ``|got - exact| <= bound`` everywhere (NaN fails), naming the worst points."""
    got = np.asarray(got, dtype=np.float64)
    err = np.abs(got - exact)
    bad = ~(err <= bound)
    if bad.any():
        ratio = np.nan_to_num(err / bound, nan=np.inf)
        worst = np.argsort(-ratio)[:5]
        rows = "; ".join(
            f"z={z[i]!r}: got {got[i]!r}, exact {exact[i]!r} ({err[i] / ulp(exact[i], dtype):.3g} ulp)"
            for i in worst
        )
        msg = f"{what} in {dtype}: {bad.sum()} of {z.size} points off the bound; worst: {rows}"
        raise AssertionError(msg)


def check(got: Any, name: str, dtype: str, order: int, *, flushes: bool = False, what: str = "") -> None:
    """Assert ``got`` (host values on :func:`grid` of ``dtype``) is within :func:`tolerance`."""
    f, scale = reference(name, dtype, order)
    z = grid(dtype)
    bound = tolerance(name, dtype, order, z, f, scale, flushes=flushes)
    kind = "forward" if order == 0 else "derivative"
    assert_within(got, f, bound, z, dtype, f"{what}{name} {kind}")


def flushes_subnormals(xp: Any, device: Any) -> bool:
    """Whether ``xp`` flushes float32 subnormal results to zero (XLA on the CPU does)."""
    x = xp.asarray(-87.5, dtype=xp.float32, device=device)  # exp(-87.5) ~ 1e-38 is subnormal
    return float(xp.exp(x)) == 0.0
