"""What one GPU library sees, as one JSON line: ``python -m benchmarks._gpu_probe cupy|torch|jax``.

``benchmarks.gpu_check`` runs this in a child process per library, so that the
parent never imports CuPy, torch or JAX nor holds a CUDA context (a context
left open in the parent would lock out its child steps on a GPU in
EXCLUSIVE_PROCESS mode, and JAX would keep most of the GPU memory).
Nothing here raises: what fails is reported under ``"error"``.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

__all__ = ["main", "probe_cupy", "probe_jax", "probe_torch"]

COMPUTE_MODES = {0: "default", 1: "exclusive thread", 2: "prohibited", 3: "exclusive process"}


def probe_cupy() -> dict[str, Any]:
    """dense_xp's CuPy report, then NVRTC's version and each GPU with its compute mode."""
    from dense_xp import _backend

    report = _backend.cuda_report()  # dense_xp's view (backend_info() would import torch and JAX too)
    if report["version"] is None:  # CuPy is not installed or does not import: the reason says which
        return report
    cupy = importlib.import_module("cupy")
    try:
        report["nvrtc"] = ".".join(map(str, cupy.cuda.nvrtc.getVersion()))
    except Exception as exc:  # kernels cannot compile: the [ctk] extra or a CUDA Toolkit is missing
        report["nvrtc_error"] = f"{type(exc).__name__}: {exc}"
    report["gpus"] = []
    for index in range(len(report["devices"])):
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        report["gpus"].append(
            {
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "compute_capability": f"{props['major']}.{props['minor']}",
                "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
                "compute_mode": COMPUTE_MODES.get(props.get("computeMode"), props.get("computeMode")),
            }
        )
    return report


def probe_torch() -> dict[str, Any]:
    """torch's version, its CUDA build and the devices it sees."""
    torch = importlib.import_module("torch")
    available = torch.cuda.is_available()
    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": available,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if available
        else [],
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def probe_jax() -> dict[str, Any]:
    """JAX's version and devices (the caller sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``)."""
    jax = importlib.import_module("jax")
    return {"version": jax.__version__, "devices": [str(d) for d in jax.devices()]}


PROBES = {"cupy": probe_cupy, "torch": probe_torch, "jax": probe_jax}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PROBES:
        print(f"usage: python -m benchmarks._gpu_probe {'|'.join(PROBES)}", file=sys.stderr)
        return 2
    try:
        report = PROBES[args[0]]()
    except ImportError as exc:
        report = {"installed": False, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
