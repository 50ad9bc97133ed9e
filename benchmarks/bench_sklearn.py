"""Fit time of dense_xp.sklearn's MLPs against scikit-learn's, at a few sizes, as ratios.

Both estimators get the same parameters and run the same number of epochs
(``tol=0``, ``n_iter_no_change=inf``): they compute the same updates, so the
ratio is the cost of the same work. NumPy runs come first (scikit-learn and
dense_xp on the CPU, alternating); then, where asked for, dense_xp on CUDA
(``--device cuda``: NumPy in and out) and on torch under scikit-learn's array
API dispatch (``--torch``), each in its own block.

``python -m benchmarks.bench_sklearn [--sizes 2000x64x100,...] [--epochs 5] [--device cuda] [--torch]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._timing import machine_info, require, wait_for_idle

__all__ = ["main", "run"]

OUT_DIR = Path(__file__).resolve().parent / "runs"
SIZES = "2000x64x100,10000x128x256,20000x256x512-256"


def _sizes(text: str) -> list[tuple[int, int, tuple[int, ...]]]:
    sizes = []
    for item in text.split(","):
        n, d, hidden = item.split("x")
        sizes.append((int(n), int(d), tuple(int(h) for h in hidden.split("-"))))
    return sizes


def _data(n: int, d: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(dtype)
    k = min(d, 10)
    y = (X[:, :k] @ rng.standard_normal(k) > 0).astype(np.int64) + (X[:, 0] > 1)  # 3 classes
    return X, y


def _params(hidden: tuple[int, ...], epochs: int) -> dict[str, Any]:
    return {"hidden_layer_sizes": hidden, "max_iter": epochs, "tol": 0.0, "n_iter_no_change": math.inf,
            "random_state": 0}  # fmt: skip


def _fit_time(make: Callable[[], Any], X: Any, y: Any, sync: Callable[[], None]) -> tuple[float, Any]:
    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are fixed on purpose
        start = time.perf_counter()
        model.fit(X, y)
        sync()
        return time.perf_counter() - start, model


def _block(cases: dict[str, Callable[[], tuple[float, Any]]], repeat: int) -> dict[str, Any]:
    """Median fit seconds of each case, the cases alternating in each round; and the final losses."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    losses: dict[str, float] = {}
    for _ in range(repeat):
        for name, fit in cases.items():
            seconds, model = fit()
            times[name].append(seconds)
            losses[name] = float(model.loss_)
    return {
        name: {"s": statistics.median(t), "s_min": min(t), "samples": t, "loss": losses[name]}
        for name, t in times.items()
    }


def _no_sync() -> None:
    """NumPy computes synchronously."""


def _row(args: argparse.Namespace, n: int, d: int, hidden: tuple[int, ...]) -> dict[str, Any]:
    from sklearn import config_context
    from sklearn.neural_network import MLPClassifier as Reference

    from dense_xp.sklearn import MLPClassifier

    X, y = _data(n, d, args.dtype)
    params = _params(hidden, args.epochs)
    row: dict[str, Any] = {"n": n, "features": d, "hidden": hidden, "epochs": args.epochs}
    with require("threadpoolctl").threadpool_limits(args.threads):
        cases = {
            "sklearn": lambda: _fit_time(lambda: Reference(**params), X, y, _no_sync),
            "dense_xp": lambda: _fit_time(lambda: MLPClassifier(**params), X, y, _no_sync),
        }
        row["cpu"] = _block(cases, args.repeat)
    if args.device.startswith("cuda"):
        cupy = require("cupy", "cuda12")
        sync = cupy.cuda.get_current_stream().synchronize
        on_gpu = lambda: MLPClassifier(**params, device=args.device)
        _fit_time(on_gpu, X[:256], y[:256], sync)  # compiles the kernels
        row["cuda"] = _block({"dense_xp": lambda: _fit_time(on_gpu, X, y, sync)}, args.repeat)
    if args.torch:
        torch = require("torch", "test")
        torch.set_num_threads(args.threads)
        where = "cuda" if args.device.startswith("cuda") else "cpu"
        Xt, yt = torch.asarray(X, device=where), torch.asarray(y, device=where)
        sync = torch.cuda.synchronize if where == "cuda" else _no_sync
        os.environ.setdefault("SCIPY_ARRAY_API", "1")  # scikit-learn's dispatch needs it
        with config_context(array_api_dispatch=True):
            make = lambda: MLPClassifier(**params)
            _fit_time(make, Xt[:256], yt[:256], sync)  # warms torch up
            row[f"torch-{where}"] = _block({"dense_xp": lambda: _fit_time(make, Xt, yt, sync)}, args.repeat)
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every size of ``args.sizes``; returns the report (machine, settings, rows)."""
    report: dict[str, Any] = {"machine": machine_info(args.device, args.threads)}
    report["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    report["busy_before"] = wait_for_idle(args.wait)
    report["rows"] = []
    for n, d, hidden in _sizes(args.sizes):
        row = _row(args, n, d, hidden)
        report["rows"].append(row)
        print(_line(row), flush=True)
    return report


def _line(row: dict[str, Any]) -> str:
    """One size: scikit-learn's median fit time, and each dense_xp case's as a ratio (median, min)."""
    base = row["cpu"]["sklearn"]
    text = f"{row['n']:>7} x {row['features']:<4} hidden {row['hidden']!s:<12} sklearn {base['s']:8.3f} s"
    for block, cases in row.items():
        if isinstance(cases, dict) and "dense_xp" in cases:
            ours = cases["dense_xp"]
            ratio, best = ours["s"] / base["s"], ours["s_min"] / base["s_min"]
            text += f" | dense_xp {block} {ours['s']:8.3f} s = {ratio:5.2f}x (min {best:5.2f}x)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sklearn", description=__doc__)
    parser.add_argument(
        "--sizes", default=SIZES, help=f"NxFEATURESxHIDDEN[-HIDDEN], comma-separated ({SIZES})"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (default 5)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=3, help="fits per case, alternating (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS and torch threads")
    parser.add_argument("--device", default="cpu", help="also time dense_xp on this CUDA device ('cuda')")
    parser.add_argument("--torch", action="store_true", help="also time dense_xp on torch (dispatch)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for idle CPUs at most")
    parser.add_argument("--out", help="path stem for <out>.json/.txt (default benchmarks/runs/sklearn-DATE)")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out or OUT_DIR / f"sklearn-{datetime.date.today().isoformat()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    table = "\n".join(_line(row) for row in report["rows"])
    head = (
        f"dense_xp.sklearn vs sklearn.neural_network MLPClassifier, {args.dtype}, {args.epochs} epochs, "
        f"fit time (median of {args.repeat}), {args.threads} threads"
    )
    out.parent.joinpath(out.name + ".txt").write_text(f"{head}\n{table}\n")
    out.parent.joinpath(out.name + ".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {out}.json, {out}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
