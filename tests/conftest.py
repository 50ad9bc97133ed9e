"""One fixture, ``backend``, yields ``(xp, device)`` for every array backend present.

Ids: ``numpy``, ``strict``, ``strict-device1``, ``torch``, ``jax``, ``cupy``.
A backend that is missing is skipped with the reason. ``DENSE_XP_TEST_BACKENDS``
(comma-separated families, e.g. ``numpy,cupy``) restricts the run to those
families and makes an unavailable one *fail*, so a GPU job cannot pass having
run nothing on the GPU.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import pytest

import dense_xp


def _strict(name: str) -> Callable[[], tuple[Any, Any]]:
    def load() -> tuple[Any, Any]:
        strict = importlib.import_module("array_api_strict")
        return strict, strict.Device(name)

    return load


def _torch() -> tuple[Any, Any]:
    torch = importlib.import_module("torch")
    return dense_xp.resolve_device(torch.device("cpu"), xp=torch)


def _jax() -> tuple[Any, Any]:
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    return dense_xp.resolve_device(jax.devices("cpu")[0], xp=importlib.import_module("jax.numpy"))


BACKENDS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "numpy": lambda: dense_xp.resolve_device("cpu"),
    "strict": _strict("CPU_DEVICE"),
    "strict-device1": _strict("device1"),
    "torch": _torch,
    "jax": _jax,
    "cupy": lambda: dense_xp.resolve_device("cuda"),
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


@pytest.fixture(params=SELECTED, scope="session")
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
