"""What the activations cost in a layer step, per compute dtype, against another source tree.

One case is ``layer.forward(X)`` then ``layer.backward(g, lr=None)`` of a
``DenseLayer(512, 512, activation)`` on a ``(256, 512)`` batch (``--shape``),
on NumPy or torch (CPU), in float32 or with ``param_dtype="float32",
compute_dtype="float16"``. Each (library, source tree) pair runs in its own
subprocess, one after the other, so that NumPy's and torch's thread pools never
meet, and the trees alternate ``--rounds`` times; every case is timed like
:mod:`timeit` (loops of at least 0.2 s) and keeps its fastest time. With
``--shape 256x1x512`` the matrix products are negligible and the step is the
activation's share: bias, forward, derivative on a (256, 512) array.
``--baseline DIR`` names a checkout of another commit (``git worktree add
/tmp/before COMMIT``): the table then shows both trees and the ratio this
tree / baseline.

    python -m benchmarks.bench_activations --baseline /tmp/before

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset in the subprocesses (they
slow a current OpenBLAS); the report names the CPU flags and the BLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "silu")
POLICIES = {
    "float32": {"dtype": "float32"},
    "float16": {"param_dtype": "float32", "compute_dtype": "float16"},
}


def _child(library: str, shape: tuple[int, int, int], repeat: int) -> dict[str, float]:
    """Seconds per step of every case, in this process (the tree on ``sys.path`` is the one timed)."""
    import numpy as np

    import dense_xp

    n, d_in, d_out = shape
    rng = np.random.default_rng(0)
    xp: Any = None
    if library == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        xp = torch
    results = {}
    for policy, dtypes in POLICIES.items():
        for name in NAMES:
            layer = dense_xp.DenseLayer(d_in, d_out, name, seed=0, init="he_normal", xp=xp, **dtypes)
            X = dense_xp.to_numpy(layer.forward(rng.normal(size=(1, d_in))))  # warm the namespace
            X = rng.normal(size=(n, d_in)).astype(policy)
            g = rng.normal(size=(n, d_out)).astype(policy)
            if xp is not None:
                X, g = xp.asarray(X), xp.asarray(g)

            def step(layer: Any = layer, X: Any = X, g: Any = g) -> None:
                layer.forward(X)
                layer.backward(g, lr=None)

            timer = timeit.Timer(step)
            loops = max(timer.autorange()[0], 1)
            results[f"{policy}/{name}"] = min(timer.repeat(repeat=repeat, number=loops)) / loops
    return results


def _machine() -> dict[str, str]:
    info = {"python": sys.version.split()[0], "cpus": str(os.cpu_count())}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in cpuinfo if line.startswith("flags"))
        info["cpu flags (avx*, f16c, fma)"] = " ".join(
            f for f in flags.split(":", 1)[1].split() if f.startswith(("avx", "f16c", "fma"))
        )
        model = next(line for line in cpuinfo if "model name" in line)
        info["cpu"] = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    try:
        import threadpoolctl

        info["blas"] = "; ".join(
            f"{p['internal_api']} {p['version']} ({p.get('architecture')}, {p['num_threads']} threads)"
            for p in threadpoolctl.threadpool_info()
        )
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def _run(tree: Path, library: str, shape: str, repeat: int) -> dict[str, Any]:
    """``{"times", "machine", "dense_xp"}`` from a subprocess that imports dense_xp from ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, __file__, "--child", library, "--shape", shape, "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit, timed beside this tree")
    parser.add_argument("--library", action="append", choices=("numpy", "torch"), help="default: both")
    parser.add_argument("--shape", default="256x512x512", help="N x D_IN x D_OUT (default 256x512x512)")
    parser.add_argument("--repeat", type=int, default=5, help="samples per case and round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the trees (default 3)")
    parser.add_argument("--child", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    if args.child:
        import dense_xp

        times = _child(args.child, shape, args.repeat)  # type: ignore[arg-type]
        print(json.dumps({"times": times, "machine": _machine(), "dense_xp": dense_xp.__file__}))
        return 0
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    libraries = args.library or ["numpy", "torch"]
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(args.rounds):  # the trees alternate; each case keeps its fastest time of all rounds
        for lib in libraries:
            for label, tree in trees.items():
                run = _run(tree, lib, args.shape, args.repeat)
                if (lib, label) in runs:
                    best = runs[lib, label]["times"]
                    run["times"] = {k: min(v, best[k]) for k, v in run["times"].items()}
                runs[lib, label] = run
    n, d_in, d_out = shape
    print(f"layer forward + backward, {n} x {d_in} -> {d_out}, ms per step (fastest of {args.rounds} rounds)")
    for key, value in next(iter(runs.values()))["machine"].items():
        print(f"  {key}: {value}")
    for (lib, label), run in runs.items():
        print(f"  {lib}, {label}: dense_xp from {run['dense_xp']}")
    header = f"{'library':7s} {'policy':8s} {'activation':11s} {'this':>9s}"
    print(header + (f" {'baseline':>9s} {'ratio':>7s}" if args.baseline else ""))
    for lib in libraries:
        for case, seconds in runs[lib, "this"]["times"].items():
            policy, name = case.split("/")
            line = f"{lib:7s} {policy:8s} {name:11s} {seconds * 1e3:9.3f}"
            if args.baseline:
                base = runs[lib, "baseline"]["times"][case]
                line += f" {base * 1e3:9.3f} {seconds / base:7.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
