"""Small helpers shared by the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

import dense_xp
from dense_xp._checks import device_float_names


def tol(dtype: Any, xp: Any, scale: float = 64.0) -> float:
    """``scale`` machine epsilons of ``dtype``."""
    return scale * float(xp.finfo(dtype).eps)


def wide(xp: Any, device: Any) -> str:
    """``"float64"`` where ``device`` holds it, else ``"float32"`` (strict's no_float64, JAX without x64)."""
    return "float64" if "float64" in device_float_names(xp=xp, device=device) else "float32"


def on(xp: Any, device: Any, a: Any, dtype: str | None = None) -> Any:
    """Host data ``a`` on ``device``: floats in ``dtype`` (default :func:`wide`), integers in
    their own dtype or, where the device lacks it (``no_x64``), in the device's default integer."""
    a = np.asarray(a)
    if dtype is None and a.dtype.kind == "f":
        dtype = wide(xp, device)
    elif dtype is None and a.dtype.kind in "iu":
        info = xp.__array_namespace_info__()
        if a.dtype.name not in info.dtypes(device=device, kind="integral"):
            dtype = dense_xp._checks.dtype_name(info.default_dtypes(device=device)["integral"])
    return xp.asarray(a, dtype=None if dtype is None else getattr(xp, dtype), device=device)


def close(dtype: Any) -> float:
    """A tolerance for results that agree up to rounding: 1e-12 in float64, 1e-5 in float32."""
    return 1e-12 if dense_xp._checks.dtype_name(dtype) == "float64" else 1e-5


def host(x: Any) -> np.ndarray:
    """A float64 NumPy copy of any array."""
    return np.array(dense_xp.to_numpy(x), dtype=np.float64, copy=True)


def snapshot(layer: Any) -> dict[str, Any]:
    """Everything a rejected call must leave unchanged."""
    return {
        "W": host(layer.W),
        "b": None if layer.b is None else host(layer.b),
        "cache": layer._cache,
        "grads": dict(layer.grads),
    }


def assert_unchanged(layer: Any, before: dict[str, Any]) -> None:
    after = snapshot(layer)
    np.testing.assert_array_equal(after["W"], before["W"])
    if before["b"] is not None:
        np.testing.assert_array_equal(after["b"], before["b"])
    assert after["cache"] is before["cache"]
    assert after["grads"].keys() == before["grads"].keys()
    assert all(after["grads"][k] is before["grads"][k] for k in before["grads"])


def central_diff(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar function ``f`` at the host array ``x``."""
    out = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        out[idx] = (f(plus) - f(minus)) / (2 * h)
    return out
