"""One fixture, ``backend``, yields ``(xp, device)`` for every array backend present.

Ids: ``numpy``, ``strict``, ``strict-device1``, ``strict-no_float64``,
``strict-no_x64``, ``torch``, ``jax`` (float64 enabled), ``jax-float32`` (JAX's
defaults: no float64, no explicit device), ``cupy``; made by
:data:`dense_xp.testing.FACTORIES`, once per test (JAX's float64 switch is
process-wide). A backend that is missing is skipped with the reason. ``DENSE_XP_TEST_BACKENDS``
(comma-separated families, e.g. ``numpy,cupy``) restricts the run to those
families and makes an unavailable one *fail*, so a GPU job cannot pass having
run nothing on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

import dense_xp
from dense_xp import testing

BACKENDS: dict[str, Callable[[], tuple[Any, Any]]] = {
    name: testing.FACTORIES[name]
    for name in (
        "numpy",
        "strict",
        "strict-device1",
        "strict-no_float64",
        "strict-no_x64",
        "torch",
        "jax",
        "jax-float32",
        "cupy",
    )
}
FAMILIES = {name.split("-")[0] for name in BACKENDS}


def _required() -> set[str]:
    names = {n.strip() for n in os.environ.get("DENSE_XP_TEST_BACKENDS", "").split(",") if n.strip()}
    unknown = names - FAMILIES
    if unknown:
        msg = f"DENSE_XP_TEST_BACKENDS names unknown backends {sorted(unknown)}; known: {sorted(FAMILIES)}"
        raise pytest.UsageError(msg)
    return names


REQUIRED = _required()
SELECTED = [n for n in BACKENDS if not REQUIRED or n.split("-")[0] in REQUIRED]


def load_backend(name: str) -> tuple[Any, Any]:
    """``(xp, device)`` of backend ``name``; skip if unavailable, fail if required."""
    try:
        return BACKENDS[name]()
    except (ImportError, dense_xp.DeviceUnavailableError, ValueError) as exc:
        reason = f"backend {name!r} unavailable: {type(exc).__name__}: {exc}"
        if name.split("-")[0] in REQUIRED:
            pytest.fail(f"{reason} (required by DENSE_XP_TEST_BACKENDS)")
        pytest.skip(reason)


@pytest.fixture(params=SELECTED)
def backend(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """``(xp, device)`` of one available backend."""
    return load_backend(request.param)


@pytest.fixture(params=[n for n in SELECTED if n in ("numpy", "cupy")], scope="session")
def fused_backend(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """``(xp, device)`` of the backends with fused kernels (NumPy, CuPy)."""
    return load_backend(request.param)


@pytest.fixture
def xp(backend: tuple[Any, Any]) -> Any:
    return backend[0]


@pytest.fixture
def device(backend: tuple[Any, Any]) -> Any:
    return backend[1]
