"""Testing helpers for code built on dense_xp: every backend present, and gradient checks.

* :func:`backends` lists the ``(xp, device)`` pairs available here, with
  readable ids, and :func:`backend_fixture` makes a pytest fixture of them, so
  a test suite runs on every backend installed:

  .. code-block:: python

      # conftest.py
      from dense_xp.testing import backend_fixture

      backend = backend_fixture()  # a test taking `backend` runs once per backend

      # test_mine.py
      def test_forward(backend):
          layer = DenseLayer(3, 2, xp=backend.xp, device=backend.device)

* :func:`check_gradients` compares every gradient of a layer or a model with
  central differences; :func:`dense_xp.register_activation` activations
  included.

Backend ids: ``numpy``; ``strict``, ``strict-device1``, ``strict-no_float64``,
``strict-no_x64`` (array-api-strict on its CPU device and on its simulated
devices); ``torch`` (CPU) and ``torch-cuda:N``; ``jax`` (JAX with float64
enabled, on its CPU) and ``jax-float32`` (JAX as configured by default: no
float64, no explicit device); ``cupy`` (``cuda:0``) and ``cupy-cuda:N``.
JAX's float64 switch is process-wide: the two JAX entries set it when they are
made and again in :meth:`Backend.activate`, which the fixture calls before
each test.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ._backend import DeviceUnavailableError, cuda_device_count, resolve_device
from ._gradients import check_gradients

__all__ = ["FACTORIES", "Backend", "backend_fixture", "backends", "check_gradients", "factory"]

_UNAVAILABLE = (ImportError, DeviceUnavailableError, ValueError, RuntimeError)


class Backend(NamedTuple):
    """One array backend: ``id`` (``"torch"``...), namespace ``xp`` and ``device``."""

    id: str
    xp: Any
    device: Any

    def activate(self) -> Backend:
        """Apply this backend's process-wide settings (JAX's float64 switch); returns a fresh entry."""
        return Backend(self.id, *factory(self.id)())


def _strict(name: str) -> tuple[Any, Any]:
    strict = importlib.import_module("array_api_strict")
    return resolve_device(strict.Device(name), xp=strict)


def _torch(device: str) -> tuple[Any, Any]:
    torch = importlib.import_module("torch")
    return resolve_device(torch.device(device), xp=torch)


def _jax(*, x64: bool) -> tuple[Any, Any]:
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", x64)
    jnp = importlib.import_module("jax.numpy")
    return resolve_device(jax.devices("cpu")[0], xp=jnp) if x64 else resolve_device(xp=jnp)


FACTORIES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "numpy": functools.partial(resolve_device, "cpu"),
    "strict": functools.partial(_strict, "CPU_DEVICE"),
    "strict-device1": functools.partial(_strict, "device1"),
    "strict-no_float64": functools.partial(_strict, "no_float64"),
    "strict-no_x64": functools.partial(_strict, "no_x64"),
    "torch": functools.partial(_torch, "cpu"),
    "jax": functools.partial(_jax, x64=True),
    "jax-float32": functools.partial(_jax, x64=False),
    "cupy": functools.partial(resolve_device, "cuda:0"),
}
"""Every backend id with a fixed name, and the function making its ``(xp, device)`` pair.

A factory raises ImportError, :class:`dense_xp.DeviceUnavailableError` or
ValueError where its backend is not available.
"""


def factory(backend_id: str) -> Callable[[], tuple[Any, Any]]:
    """The factory of ``backend_id``: an id of :data:`FACTORIES`, ``"torch-cuda:N"`` or ``"cupy-cuda:N"``."""
    if backend_id in FACTORIES:
        return FACTORIES[backend_id]
    family, _, device = backend_id.partition("-")
    if family in ("torch", "cupy") and device.startswith("cuda:") and device[5:].isdigit():
        return (
            functools.partial(_torch, device)
            if family == "torch"
            else functools.partial(resolve_device, device)
        )
    msg = f"`backend_id` must be one of {sorted(FACTORIES)}, 'torch-cuda:N' or 'cupy-cuda:N'"
    msg += f"; got {backend_id!r}"
    raise ValueError(msg)


def _cuda_ids() -> list[str]:
    ids = [f"cupy-cuda:{i}" for i in range(1, cuda_device_count()[0])]
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return ids
    return ids + [f"torch-cuda:{i}" for i in range(torch.cuda.device_count())]


def backends(include: Iterable[str] | None = None) -> list[Backend]:
    """The backends available here, as ``Backend(id, xp, device)`` named tuples.

    Parameters
    ----------
    include : iterable of str, optional
        Ids (``"strict-device1"``) or families (``"strict"`` is every
        ``strict-*`` id); ``None`` is every backend.

    Returns
    -------
    list of Backend
        In the order of the module docstring, leaving out backends that are
        not installed or cannot run here. JAX's float64 switch is left as it
        was: call :meth:`Backend.activate` before using a JAX entry.

    Raises
    ------
    ValueError
        ``include`` names no known id or family.
    """
    ids = list(FACTORIES) + _cuda_ids()
    ids.sort(key=lambda i: list(FACTORIES).index(i.split("-")[0]))
    if include is not None:
        wanted = {include} if isinstance(include, str) else set(include)
        unknown = sorted(w for w in wanted if w not in ids and w not in {i.split("-")[0] for i in FACTORIES})
        if unknown:
            msg = f"`include` names unknown backends {unknown}; known: {sorted(FACTORIES)}"
            raise ValueError(msg)
        ids = [i for i in ids if i in wanted or i.split("-")[0] in wanted]
    x64: list[bool] = []  # JAX's switch as found, to restore
    found = []
    try:
        for backend_id in ids:
            try:
                if backend_id.startswith("jax") and not x64:
                    x64.append(bool(importlib.import_module("jax").config.jax_enable_x64))
                found.append(Backend(backend_id, *factory(backend_id)()))
            except _UNAVAILABLE:
                continue
    finally:
        if x64:
            importlib.import_module("jax").config.update("jax_enable_x64", x64[0])
    return found


def backend_fixture(include: Iterable[str] | None = None, *, name: str = "backend") -> Any:
    """A pytest fixture, ``name``, parametrized over :func:`backends` (``include``) by id.

    Assign it in a ``conftest.py`` (``backend = backend_fixture()``); each test
    taking it runs once per available backend and receives an activated
    :class:`Backend`.
    """
    import pytest

    ids = [b.id for b in backends(include)]

    @pytest.fixture(name=name, params=ids, ids=ids)
    def _fixture(request: Any) -> Backend:
        return Backend(request.param, *factory(request.param)())

    return _fixture
