"""Small helpers shared by the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

import dense_xp


def tol(dtype: Any, xp: Any, scale: float = 64.0) -> float:
    """``scale`` machine epsilons of ``dtype``."""
    return scale * float(xp.finfo(dtype).eps)


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
