"""The current device: CuPy computes on it, whatever ``device=`` says."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

# --------------------------------------------------------------------------
# The current device: CuPy computes on it, whatever `device=` says
# --------------------------------------------------------------------------
_NO_CONTEXT = contextlib.nullcontext()
_MAKE_CURRENT: dict[type, Callable[[Any], contextlib.AbstractContextManager[Any]]] = {}


def register_current_device(
    device_type: type, make_current: Callable[[Any], contextlib.AbstractContextManager[Any]]
) -> None:
    """Declare a library whose arrays go to a *current* device, whatever ``device=`` says.

    This is the one seam through which dense_xp treats a namespace like CuPy:
    CuPy allocates (array-api-compat's ``zeros``, ``full``... ignore
    ``device=``), runs cuBLAS and launches kernels on the current device, so
    :func:`on_device` makes a layer's device current around all of its work.
    CuPy registers itself when a CUDA device is first resolved; the test
    suite's CPU simulation of CuPy (``tests/cupylike.py``) registers through
    here too.

    Parameters
    ----------
    device_type : type
        The library's device class (``cupy.cuda.Device``).
    make_current : callable
        ``make_current(device)`` returns a context manager that makes
        ``device`` current for the calling thread and restores the previous
        one on exit.
    """
    _MAKE_CURRENT[device_type] = make_current


def on_device(device: Any) -> contextlib.AbstractContextManager[Any]:
    """A context manager running its block with ``device`` current (see :func:`register_current_device`).

    For libraries without a current device (NumPy, torch, JAX, array-api-strict)
    it does nothing, for the cost of one dictionary lookup.
    """
    make_current = _MAKE_CURRENT.get(type(device))
    return _NO_CONTEXT if make_current is None else make_current(device)


_F = TypeVar("_F", bound=Callable[..., Any])


def runs_on_device(method: _F) -> _F:
    """Decorate a method of an object with a ``device`` attribute: it runs with that device current."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with on_device(self.device):
            return method(self, *args, **kwargs)

    run.runs_on_device = True  # type: ignore[attr-defined]
    return cast(_F, run)
