"""One fixture, ``backend``, yields ``(xp, device)`` for every array backend present.

Ids: ``numpy``, ``strict``, ``strict-device1``, ``strict-no_float64``,
``strict-no_x64``, ``cupylike``, ``cupylike-device1``, ``torch``, ``jax``
(float64 enabled), ``jax-float32`` (JAX's defaults: no float64, no explicit
device), ``cupy``. The library backends are made by
:data:`dense_xp.testing.FACTORIES`, once per test (JAX's float64 switch is
process-wide). ``cupylike`` is a CPU simulation of CuPy's multi-device rules
(``tests/cupylike.py``): its second device catches code that computes on the
current device instead of the layer's.

A backend that is missing is skipped, with one summary line per reason at the
end of the run. ``DENSE_XP_TEST_BACKENDS`` (comma-separated families, e.g.
``numpy,cupy``) restricts the run to those families, and the session stops at
once, with one message, when one of them is unavailable, so a GPU job cannot
pass having run nothing on the GPU.

TF32 is pinned off (``CUPY_TF32=0``): float32 tolerances assume float32 products.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

import pytest

import dense_xp
from dense_xp import testing

os.environ["CUPY_TF32"] = "0"  # read when CuPy is imported, which dense_xp never does at import


def _cupylike(index: int) -> Callable[[], tuple[Any, Any]]:
    def load() -> tuple[Any, Any]:
        from tests import cupylike

        xp, device = dense_xp.resolve_device(cupylike.Device(index), xp=cupylike.namespace)
        assert device == cupylike.Device(index), f"asked for simulated device {index}, got {device!r}"
        return xp, device

    return load


_LIBRARIES = ("numpy", "strict", "strict-device1", "strict-no_float64", "strict-no_x64")
BACKENDS: dict[str, Callable[[], tuple[Any, Any]]] = {
    **{name: testing.FACTORIES[name] for name in _LIBRARIES},
    "cupylike": _cupylike(0),
    "cupylike-device1": _cupylike(1),
    **{name: testing.FACTORIES[name] for name in ("torch", "jax", "jax-float32", "cupy")},
}
FAMILIES = {name.split("-")[0] for name in BACKENDS}


def _required() -> set[str]:
    names = {n.strip() for n in os.environ.get("DENSE_XP_TEST_BACKENDS", "").split(",") if n.strip()}
    unknown = names - FAMILIES
    if unknown:
        msg = (
            f"DENSE_XP_TEST_BACKENDS={os.environ['DENSE_XP_TEST_BACKENDS']!r} names unknown backends "
            f"{sorted(unknown)}; known: {', '.join(sorted(FAMILIES))}"
        )
        raise pytest.UsageError(msg)
    return names


REQUIRED = _required()
SELECTED = [n for n in BACKENDS if not REQUIRED or n.split("-")[0] in REQUIRED]


def _load(name: str) -> tuple[Any, Any]:
    return BACKENDS[name]()


def load_backend(name: str) -> tuple[Any, Any]:
    """``(xp, device)`` of backend ``name``; skip if unavailable (required ones were checked at start)."""
    try:
        return _load(name)
    except (ImportError, dense_xp.DeviceUnavailableError, ValueError) as exc:
        pytest.skip(f"backend {name!r} unavailable: {type(exc).__name__}: {exc}")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, with one message, when a backend named in DENSE_XP_TEST_BACKENDS is unavailable."""
    for name in SELECTED:
        if name.split("-")[0] not in REQUIRED:
            continue
        try:
            _load(name)
        except (ImportError, dense_xp.DeviceUnavailableError, ValueError) as exc:
            msg = f"backend {name!r} is required by DENSE_XP_TEST_BACKENDS but unavailable: {exc}"
            pytest.exit(msg, returncode=pytest.ExitCode.TESTS_FAILED)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per skip reason, with its count, instead of one per test location."""
    reasons: collections.Counter[str] = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skips by reason")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:5d} skipped: {reason}")


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
