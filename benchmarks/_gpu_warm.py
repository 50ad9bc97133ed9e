"""Run every kernel path of dense_xp once on one device, so that CuPy compiles and caches it.

``python -m benchmarks._gpu_warm --device cuda [--threads N]``: for each activation,
dtype (float16, float32, float64) and bias or none, a layer's forward and backward
on the fused kernels and on the generic array API path; then, for each loss,
optimizer and dtype (float32, float64), a two-layer model's ``fit``, ``predict`` and
``evaluate``. With CuPy, each kernel met for the first time is compiled (NVRTC, about
a second each) and written to ``CUPY_CACHE_DIR``, so a later process finds it
there. Jobs run in threads: NVRTC releases the GIL, so compilations overlap.
On ``--device cpu`` the same jobs run on NumPy (a dry run of this script).
Prints one line per job, then a JSON line ``{"jobs", "failed", "seconds"}``;
exits 1 when a job failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import dense_xp
from dense_xp.activations import ACTIVATIONS
from dense_xp.losses import LOSSES
from dense_xp.optimizers import OPTIMIZERS

__all__ = ["jobs", "main"]

Job = tuple[str, Callable[[], None]]


def _finite(x: Any, what: str) -> None:
    host = dense_xp.to_numpy(x)  # synchronises the device
    if not np.all(np.isfinite(host)):
        msg = f"{what}: non-finite values"
        raise FloatingPointError(msg)


def _layer(device: str, activation: str | None, dtype: str, bias: bool, fused: bool) -> None:
    rng = np.random.default_rng(0)
    layer = dense_xp.DenseLayer(6, 5, activation, seed=0, dtype=dtype, device=device, use_bias=bias)
    if not fused:
        layer._fused = None  # the generic path of dense_xp.activations, which the tests compare against
    for _ in range(2):
        layer.forward(rng.normal(size=(7, 6)))
        d_input = layer.backward(rng.normal(size=(7, 5)), lr=0.01)
    _finite(d_input, "d_input")


def _model(device: str, loss: str, optimizer: str, dtype: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 6))
    if loss == "softmax_cross_entropy":
        k, y = 3, rng.integers(0, 3, size=16)
    elif loss == "binary_cross_entropy":
        k, y = 1, rng.integers(0, 2, size=(16, 1)).astype(float)
    else:
        k, y = 2, rng.normal(size=(16, 2))
    model = dense_xp.Sequential(
        [
            dense_xp.DenseLayer(6, 8, "relu", seed=0, dtype=dtype, device=device),
            dense_xp.DenseLayer(8, k, None, seed=1, dtype=dtype, device=device),
        ]
    )
    model.fit(X, y, loss=loss, optimizer=optimizer, epochs=2, batch_size=8, seed=0, progress=False)
    _finite(model.predict(X), "predict")
    model.evaluate(X, y, loss=loss)


def jobs(device: str) -> Iterator[Job]:
    """``(label, run)`` of every job, in order."""
    names = [name for name in ACTIVATIONS if name is not None]
    for activation, dtype, bias, fused in itertools.product(
        names, ("float16", "float32", "float64"), (True, False), (True, False)
    ):
        label = (
            f"layer {activation} {dtype} {'bias' if bias else 'no-bias'} {'fused' if fused else 'generic'}"
        )
        yield label, lambda a=activation, d=dtype, b=bias, f=fused: _layer(device, a, d, b, f)
    for loss, optimizer, dtype in itertools.product(LOSSES, OPTIMIZERS, ("float32", "float64")):
        yield (
            f"model {loss} {optimizer} {dtype}",
            lambda lo=loss, o=optimizer, d=dtype: _model(device, lo, o, d),
        )


def _run(job: Job) -> tuple[str, float, str | None]:
    label, run = job
    start = time.perf_counter()
    try:
        run()
    except Exception as exc:
        return label, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return label, time.perf_counter() - start, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._gpu_warm", description=__doc__)
    parser.add_argument("--device", default="cuda", help="cuda[:N] or cpu (default cuda)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, args.threads)) as pool:
        for label, seconds, error in pool.map(_run, jobs(args.device)):
            print(
                f"{'FAILED' if error else 'ok':<6} {seconds:6.2f} s  {label}"
                + (f": {error}" if error else "")
            )
            if error:
                failed.append(f"{label}: {error}")
    n = sum(1 for _ in jobs(args.device))
    print(json.dumps({"jobs": n, "failed": failed, "seconds": round(time.perf_counter() - start, 1)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
