"""Time ``fit`` per batch against the floor, a hand-optimized NumPy step, torch, JAX and scikit-learn.

One layer ``relu(X @ W + b)``, float32, mean squared error, SGD (lr 0.01)
or Adam (lr 1e-3), at (32, 64 -> 64), (256, 512 -> 512) and
(4096, 1024 -> 1024). Each implementation trains whole epochs of the same
batches (:mod:`benchmarks._fit_impls`); the time of an epoch divided by its
batches is the time per batch. The implementations that use NumPy's BLAS are
timed alternating within each pass, torch and JAX in blocks of their own
(their thread pools fight); ratios are medians over passes of ratios within
one pass, against the floor (the three GEMMs of a layer step) and against the
hand-optimized step. A training step needs two GEMMs, not three, when the
first layer's ``d_input`` is skipped: the plot draws that physical floor, 0.67x.

    python -m benchmarks.bench_fit --out benchmarks/results/fit-DATE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._fit_impls import BLOCKS, BUILDERS, Skip
from ._report import blas_summary
from ._timing import machine_info, require

SHAPES = {"small": (32, 64, 64), "medium": (256, 512, 512), "large": (4096, 1024, 1024), "tiny": (16, 8, 8)}
OPTIMIZERS = ("sgd", "adam")


def _time(epoch: Any, batches: int, budget_s: float) -> float:
    """Milliseconds per batch: the best of the epochs that fit ``budget_s`` (at least three)."""
    epoch()  # warm-up: first-call costs, compilation
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return 1e3 * best / batches


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every block of every case, ``args.passes`` times; the report (records and machine)."""
    threadpoolctl = require("threadpoolctl")
    records: list[dict[str, Any]] = []
    impls = [name for name in BUILDERS if name not in args.skip]
    if "torch" in sys.modules or any(name.startswith("torch") for name in impls):
        try:
            import torch

            torch.set_num_threads(args.threads)  # its own pool, which threadpoolctl does not reach
        except ImportError:
            pass
    with threadpoolctl.threadpool_limits(args.threads):
        for shape in args.shapes:
            for opt in args.optimizers:
                case = (*SHAPES[shape], opt)
                for block in BLOCKS:
                    built: dict[str, Any] = {}
                    for name in (n for n in block if n in impls):
                        try:
                            built[name] = BUILDERS[name](case)
                        except Skip as exc:
                            records.append(
                                {"impl": name, "shape": shape, "optimizer": opt, "skipped": str(exc)}
                            )
                    times: dict[str, list[float]] = {name: [] for name in built}
                    for p in range(args.passes):
                        order = list(built) if p % 2 == 0 else list(reversed(built))
                        for name in order:
                            times[name].append(_time(*built[name], args.budget))
                    for name, samples in times.items():
                        records.append(
                            {
                                "impl": name,
                                "shape": shape,
                                "optimizer": opt,
                                "ms": samples,
                                "batches": built[name][1],
                            }
                        )
                    print(
                        f"{shape} {opt}: "
                        + ", ".join(f"{k} {statistics.median(v):.4g} ms" for k, v in times.items()),
                        file=sys.stderr,
                        flush=True,
                    )
    return {
        "records": records,
        "machine": machine_info("cpu", args.threads),
        "threads": args.threads,
        "passes": args.passes,
    }


def ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per implementation and case: median ms per batch, and medians of per-pass ratios to floor and hand."""
    timed = [r for r in report["records"] if "ms" in r]
    index = {(r["impl"], r["shape"], r["optimizer"]): r["ms"] for r in timed}
    rows = []
    for r in timed:
        row = {k: r[k] for k in ("impl", "shape", "optimizer")} | {"ms": statistics.median(r["ms"])}
        for base in ("floor", "hand"):
            ref = index.get((base, r["shape"], r["optimizer"]))
            if ref is None:
                continue
            if len(ref) == len(r["ms"]) and r["impl"] in BLOCKS[0]:  # same passes: ratios within a pass
                row[f"x_{base}"] = statistics.median(a / b for a, b in zip(r["ms"], ref, strict=True))
            else:
                row[f"x_{base}"] = row["ms"] / statistics.median(ref)
        rows.append(row)
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The table: one line per implementation and case."""
    m = report["machine"]
    lines = [
        f"fit per batch, float32, relu, mse; {report['passes']} passes; {report['threads']} threads",
        f"machine: {m.get('cpu_model')}; load at start {m.get('loadavg_at_start')}; {m.get('date')}",
        f"versions: {m.get('versions')}; torch {(m.get('torch') or {}).get('version', '-')}",
        f"BLAS: {blas_summary(m.get('blas', []))}",
        f"{'shape':8} {'opt':5} {'implementation':15} {'ms/batch':>10} {'x floor':>8} {'x hand':>8}",
    ]
    for row in ratios(report):
        fl, hd = row.get("x_floor"), row.get("x_hand")
        lines.append(
            f"{row['shape']:8} {row['optimizer']:5} {row['impl']:15} {row['ms']:10.4g} "
            f"{'' if fl is None else f'{fl:8.2f}'} {'' if hd is None else f'{hd:8.2f}'}".rstrip()
        )
    lines += [
        f"skipped {r['impl']} ({r['shape']}, {r['optimizer']}): {r['skipped']}"
        for r in report["records"]
        if "skipped" in r
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Bars of time per batch relative to the three-GEMM floor, with the two-GEMM floor as a line."""
    plt = require("matplotlib.pyplot")
    rows = [r for r in ratios(report) if "x_floor" in r and r["impl"] != "floor"]
    cases = sorted(
        {(r["shape"], r["optimizer"]) for r in rows}, key=lambda c: (list(SHAPES).index(c[0]), c[1])
    )
    impls = [name for name in BUILDERS if any(r["impl"] == name for r in rows)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(impls), 1)
    for j, name in enumerate(impls):
        values = {(r["shape"], r["optimizer"]): r["x_floor"] for r in rows if r["impl"] == name}
        xs = [i + j * width for i, c in enumerate(cases) if c in values]
        ax.bar(xs, [values[c] for c in cases if c in values], width, label=name)
    ax.axhline(1.0, color="black", lw=1, label="three-GEMM floor")
    ax.axhline(2 / 3, color="black", lw=1, ls="--", label="two-GEMM floor (0.67x)")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))], [f"{s}\n{o}" for s, o in cases])
    ax.set_yscale("log")
    ax.set_ylabel("time per batch / three-GEMM floor")
    ax.set_title("fit per batch (float32, relu, mse), lower is better")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fit", description=__doc__)
    parser.add_argument(
        "--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES)[:3], help="tiny: tests"
    )
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    parser.add_argument("--passes", type=int, default=3, help="passes over each block (default 3)")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per timing (default 0.5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=list(BUILDERS), help="implementations to leave out"
    )
    parser.add_argument("--out", type=Path, help="write OUT.json, OUT.txt and OUT.png")
    args = parser.parse_args(argv)
    report = run(args)
    table = format_table(report)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
        args.out.with_suffix(".txt").write_text(table + "\n")
        plot(report, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
