"""What each array backend offers on this machine: ``dense_xp.backend_info()``."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from typing import Any

from . import _backend

__all__ = ["backend_info", "format_info"]


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:
        return None


def _torch() -> dict[str, Any]:
    torch = importlib.import_module("torch")
    devices = ["cpu"] + [
        f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
    ]
    return {"devices": devices}


def _strict() -> dict[str, Any]:
    strict = importlib.import_module("array_api_strict")
    return {"devices": [str(d) for d in strict.__array_namespace_info__().devices()]}


def _jax() -> dict[str, Any]:
    jax = importlib.import_module("jax")
    return {"devices": [str(d) for d in jax.devices()]}


def backend_info() -> list[dict[str, Any]]:
    """Report every array backend: name, version, availability, devices, and why not.

    Returns
    -------
    list of dict
        One entry per backend with keys ``name``, ``version``, ``available``,
        ``devices`` (list of str) and ``reason`` (``None`` when usable).
        NumPy and CuPy are always listed; torch, array_api_strict, jax and
        dask only when installed.
    """
    report = [
        {
            "name": "numpy",
            "version": _version("numpy"),
            "available": True,
            "devices": ["cpu"],
            "reason": None,
        },
        {"name": "cupy", **_backend.cuda_report()},
    ]
    for name, probe in (("torch", _torch), ("array_api_strict", _strict), ("jax", _jax), ("dask", None)):
        if importlib.util.find_spec(name) is None:
            continue
        entry: dict[str, Any] = {"name": name, "version": _version(name), "devices": ["cpu"], "reason": None}
        try:
            entry.update(probe() if probe else {})
            entry["available"] = True
        except Exception as exc:
            entry.update(available=False, reason=f"{type(exc).__name__}: {exc}")
        report.append(entry)
    return report


def format_info(report: list[dict[str, Any]]) -> str:
    """``backend_info()`` as the table that ``python -m dense_xp info`` prints."""
    lines = []
    for entry in report:
        state = "available" if entry["available"] else "unavailable"
        lines.append(f"{entry['name']:<17} {entry['version'] or '-':<12} {state}")
        lines.extend(f"    device {device}" for device in entry["devices"])
        if entry.get("reason"):
            lines.append(f"    reason: {entry['reason']}")
        if entry.get("fix"):
            lines.append(f"    fix: {entry['fix']}")
        pool = entry.get("memory_pool")
        if pool:
            limit = "none" if pool["limit_bytes"] is None else f"{pool['limit_bytes'] / 2**20:.0f} MiB"
            lines.append(
                f"    memory pool: {pool['used_bytes'] / 2**20:.1f} MiB in use, "
                f"{pool['held_bytes'] / 2**20:.1f} MiB held, limit {limit}"
            )
    request = _backend.get_default_device()
    try:
        xp, device = _backend.resolve_device()
        resolved = f"{_backend.namespace_name(xp)} on {device!r}"
    except ValueError as exc:  # a bad DENSE_XP_DEVICE: reported, and the report goes on
        lines.append(f"default device request: invalid, {exc}")
        return "\n".join(lines)
    except _backend.DeviceUnavailableError as exc:
        resolved = f"unavailable ({exc})"
    lines.append(f"default device request {request!r} -> {resolved}")
    return "\n".join(lines)
