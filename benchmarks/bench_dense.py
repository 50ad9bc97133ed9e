"""Time one training step of ``dense_xp.DenseLayer`` against the bare matrix products, a textbook
NumPy layer and PyTorch, on one device, in one process.

``python -m benchmarks.bench_dense --device cpu --dtype float32 --activation relu --shapes small``;
see ``benchmarks/README.md`` for what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import dense_xp

from ._impls import BUILDERS, IMPLS, Case, Skip
from ._report import format_table, plot
from ._timing import machine_info, measure, require, summarize, wait_for_idle

__all__ = ["OUT_DIR", "SHAPE_SETS", "main", "parse_shapes", "run", "run_block"]

OUT_DIR = Path(__file__).resolve().parent / "runs"  # untracked (.gitignore); commit results deliberately

SHAPE_SETS: dict[str, list[tuple[int, int, int]]] = {
    "small": [(32, 64, 64), (256, 512, 512), (1024, 1024, 1024)],
    "default": [(32, 64, 64), (256, 512, 512), (1024, 1024, 1024), (4096, 1024, 1024), (8192, 1024, 1024)],
    "large": [(4096, 1024, 1024), (8192, 1024, 1024), (8192, 4096, 4096), (16384, 4096, 4096)],
}
CUDA_EXTRA = [(256, 512, 512), (8192, 4096, 4096)]  # added to the named sets on CUDA


def parse_shapes(specs: Sequence[str], device: str) -> list[tuple[int, int, int]]:
    """Shape set names and ``NxIxO`` lists (comma-separated) -> sorted, unique ``(n, d_in, d_out)``."""
    shapes: set[tuple[int, int, int]] = set()
    for spec in specs or ["default"]:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            if item in SHAPE_SETS:
                shapes.update(SHAPE_SETS[item] + (CUDA_EXTRA if device.startswith("cuda") else []))
                continue
            parts = item.lower().replace("->", "x").split("x")
            if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
                msg = f"`--shapes` takes {', '.join(SHAPE_SETS)} or NxIxO (e.g. 256x512x512), got {item!r}"
                raise SystemExit(msg)
            shapes.add((int(parts[0]), int(parts[1]), int(parts[2])))
    return sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s))


def _record(impl: str, case: Case) -> dict[str, Any]:
    n, d_in, d_out, dtype, act = case
    return {"impl": impl, "n": n, "d_in": d_in, "d_out": d_out, "dtype": dtype, "activation": act}


def run_block(impl: str, cases: list[Case], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every case of one implementation, in ``args.passes`` passes whose samples are pooled.

    Passes spread each case's samples over the block, so that a burst of load
    from elsewhere on the machine spoils a part of them, not all.
    """
    records = {case: _record(impl, case) for case in cases}
    built, samples = {}, {case: [] for case in cases}
    for case in cases:
        try:
            built[case] = BUILDERS[impl](case, args.device)
        except Skip as exc:
            records[case]["skipped"] = str(exc)
        except Exception as exc:  # one failing configuration must not lose the others
            records[case]["error"] = f"{type(exc).__name__}: {exc}"
    per_pass = {"budget_s": args.budget / args.passes, "max_repeat": -(-args.repeat // args.passes)}
    per_pass["min_repeat"] = -(-args.min_repeat // args.passes)
    busy: dict[Case, list[float]] = {case: [] for case in cases}
    pass_ms: dict[Case, list[float]] = {case: [] for case in cases}
    for p in range(1, args.passes + 1):
        for case in list(built):
            if args.idle_wait > 0:
                load = wait_for_idle(args.idle_wait)
                busy[case] += [] if load is None else [load]
            try:
                new = measure(*built[case][:2], min_warmup=2 if p == 1 else 1, **per_pass)
            except Exception as exc:
                records[case]["error"] = f"{type(exc).__name__}: {exc}"
                del built[case]
                continue
            samples[case] += new
            pass_ms[case].append(statistics.median(new))
            shown = f"{statistics.median(samples[case]):.4g} ms ({len(samples[case])} samples)"
            print(f"{impl:<8} pass {p}/{args.passes} {case}: {shown}", file=sys.stderr, flush=True)
    for case, (step, _, peak) in built.items():
        records[case].update(summarize(samples[case]), pass_ms=pass_ms[case])
        if busy[case]:
            records[case]["cpu_busy_before"] = busy[case]  # other processes' load before each pass
        if peak is not None:
            n, _, d_out, dtype, _ = case
            try:
                nbytes = peak(step)
            except Exception as exc:
                records[case]["peak_error"] = f"{type(exc).__name__}: {exc}"
                continue
            records[case]["peak_bytes"] = nbytes
            records[case]["peak_activations"] = nbytes / (n * d_out * np.dtype(dtype).itemsize)
    return list(records.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the benchmark, with the machine report and notes."""
    threadpoolctl = require("threadpoolctl")
    if "torch" in args.impl and importlib.util.find_spec("torch") is not None:
        torch = importlib.import_module("torch")  # before the limits, so its OpenMP pool is limited too
        torch.set_num_threads(args.threads)
    shapes = parse_shapes(args.shapes, args.device)
    results = []
    with threadpoolctl.threadpool_limits(limits=args.threads):
        info = machine_info(args.device, args.threads)
        for impl in args.impl:  # each library in its own block: interleaved BLAS pools fight
            acts = [None] if impl == "floor" else args.activation
            cases = [(*shape, dtype, act) for shape in shapes for dtype in args.dtype for act in acts]
            results += run_block(impl, cases, args)
    info["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    notes = sorted({f"{r['impl']} skipped: {r['skipped']}" for r in results if "skipped" in r})
    notes += [f"{_name(r)} failed: {r['error']}" for r in results if "error" in r]
    notes += [f"{_name(r)} memory not measured: {r['peak_error']}" for r in results if "peak_error" in r]
    if args.device == "cpu" and "torch" in args.impl:
        notes.append("torch's CPU memory is not measured (tracemalloc does not see its allocator)")
    if args.no_torch:
        notes.append("torch left out (--no-torch)")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    return {"machine": info, "settings": settings, "shapes": shapes, "measurements": results, "notes": notes}


def _name(r: dict[str, Any]) -> str:
    return f"{r['impl']} {r['n']}x{r['d_in']}->{r['d_out']} {r['dtype']} {r['activation'] or ''}".rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dense", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--dtype", action="append", choices=("float16", "float32", "float64"))
    parser.add_argument("--activation", action="append", choices=("linear", "relu", "sigmoid"))
    parser.add_argument("--shapes", action="append", help="small, default, large, or NxIxO[,NxIxO...]")
    parser.add_argument("--repeat", type=int, default=200, help="most timed samples per case (default 200)")
    parser.add_argument("--passes", type=int, default=5, help="passes over each block of cases (default 5)")
    parser.add_argument(
        "--min-repeat", type=int, default=10, help="fewest timed samples per case (default 10)"
    )
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of samples per case (default 1)")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=0.0,
        help="before each pass of a case, wait up to this many seconds for the CPUs to be <30%% busy",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library")
    parser.add_argument(
        "--impl", action="append", choices=IMPLS, help="implementations to time (default all)"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-txt", action="store_true", help="do not write <out>.txt (the table)")
    parser.add_argument(
        "--out", help="path stem for <out>.json/.png/.txt (default benchmarks/runs/DEVICE-DATE, untracked)"
    )
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or (["float32", "float16"] if cuda else ["float32", "float64"])
    args.activation = args.activation or ["relu", "sigmoid"]
    args.impl = [i for i in IMPLS if i in (args.impl or IMPLS) and not (i == "torch" and args.no_torch)]
    if min(args.repeat, args.min_repeat, args.threads, args.passes, args.budget) <= 0:
        parser.error("--repeat, --min-repeat, --passes, --threads and --budget must be positive")
    if args.min_repeat > args.repeat:
        parser.error("--min-repeat must not exceed --repeat")
    parse_shapes(args.shapes, args.device)  # exits with a message on a bad spec
    try:
        dense_xp.resolve_device(args.device)
    except (dense_xp.DeviceUnavailableError, ValueError) as exc:
        print(f"bench_dense: {exc}", file=sys.stderr)
        return 2
    date = datetime.date.today().isoformat()
    out = Path(args.out) if args.out else OUT_DIR / f"{args.device.replace(':', '')}-{date}"
    report = run(args)
    table = format_table(report)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(
        json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8"
    )
    if not args.no_txt:
        out.parent.joinpath(out.name + ".txt").write_text(table + "\n", encoding="utf-8")
    plot(report, out.parent / (out.name + ".png"))
    print(f"wrote {out}.json, {out}.png" + ("" if args.no_txt else f", {out}.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
