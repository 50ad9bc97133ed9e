"""Time the main job, ``python -m dense_xp demo``, as a user runs it: a fresh process each run.

Each run is timed from outside (wall-clock time from start to exit, and the
CPU time the process and its children used), and the demo's own times are
read from its output: each part's ``(X s)`` and ``done in X s`` (the time
after the interpreter started and dense_xp was imported). The first run pays
for cold file caches; the median of the runs is the figure to quote.

    python -m benchmarks.bench_demo [--runs 5] [--out STEM] [-- DEMO OPTIONS...]

Options after ``--`` go to the demo (``-- --device cuda``, ``-- --no-baseline``);
its checkpoint and curves are written to a temporary folder. Results go to
``benchmarks/runs/demo-DATE.txt/.json`` unless ``--out`` names another stem.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._report import blas_summary
from ._timing import machine_info

OUT_DIR = Path(__file__).resolve().parent / "runs"
PARTS = {"loading": "load", "training with": "train", "training scikit": "baseline", "saving": "save"}
_TITLE = re.compile(r"^\[\d+/\d+\] (.*) \.\.\.$")
_TIMED = re.compile(r"^ {6}.*\((\d+(?:\.\d+)?) s\)$")


def _children_cpu() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse(output: str) -> dict[str, float]:
    """Each part's seconds (``load``, ``train``, ``baseline``, ``save``) and ``done_in``, from its output."""
    seconds: dict[str, float] = {}
    part = None
    for line in output.splitlines():
        title, timed = _TITLE.match(line), _TIMED.match(line)
        if title:
            part = next((key for start, key in PARTS.items() if title[1].startswith(start)), title[1])
        elif timed and part is not None:
            seconds[part], part = float(timed[1]), None
        elif line.startswith("done in "):
            seconds["done_in"] = float(line.split()[2])
    return seconds


def run_once(demo_args: Sequence[str], folder: str) -> dict[str, Any]:
    """One ``python -m dense_xp demo`` in a fresh process: its wall and CPU seconds and its own times."""
    command = [sys.executable, "-m", "dense_xp", "demo", *demo_args, "--save", os.path.join(folder, "d.npz")]
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    wall = time.perf_counter() - start
    after = _children_cpu()
    if done.returncode != 0:
        msg = f"the demo failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)
    return {
        "wall_s": wall,
        "cpu_s": None if cpu is None or after is None else after - cpu,
        **parse(done.stdout),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(report: dict[str, Any]) -> str:
    """The runs, their medians and the machine, as ``bench_demo`` prints them."""
    info, runs = report["machine"], report["runs"]
    columns = ["wall_s", "cpu_s", "done_in", *[p for p in PARTS.values() if any(p in r for r in runs)]]
    lines = [
        f"python -m dense_xp demo {' '.join(report['demo_args'])}".rstrip()
        + f": {len(runs)} runs, each in a fresh process",
        f"machine: {info['cpu_model']}, {info['cpu_count']} CPUs, load average at start "
        f"{info['loadavg_at_start']}; {info['platform']}; Python {info['python']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
        f"BLAS: {blas_summary(info['blas'])}",
        f"environment: {info['env'] or 'no BLAS or CUDA variables set'}",
        "",
        "run  " + "  ".join(f"{c:>9}" for c in columns),
    ]
    for i, r in enumerate(runs, start=1):
        lines.append(f"{i:<3}  " + "  ".join(f"{_cell(r.get(c)):>9}" for c in columns))
    medians = {c: _median([r.get(c) for r in runs]) for c in columns}
    lines.append("med  " + "  ".join(f"{_cell(medians[c]):>9}" for c in columns))
    lines.append("(seconds; wall_s and cpu_s from outside the process, the others printed by the demo)")
    return "\n".join(lines)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_demo", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes to time (default 5)")
    parser.add_argument("--out", help="path stem for <out>.txt/.json (default benchmarks/runs/demo-DATE)")
    parser.add_argument("demo_args", nargs="*", help="options for the demo, after --")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    machine = machine_info("cpu", os.cpu_count() or 1)
    machine["versions"]["scikit-learn"] = _sklearn_version()
    with tempfile.TemporaryDirectory(prefix="bench_demo-") as folder:
        runs = [run_once(args.demo_args, folder) for _ in range(args.runs)]
    report = {"demo_args": args.demo_args, "machine": machine, "runs": runs}
    table = format_table(report)
    print(table)
    out = Path(args.out) if args.out else OUT_DIR / f"demo-{datetime.date.today().isoformat()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(
        json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8"
    )
    out.parent.joinpath(out.name + ".txt").write_text(table + "\n", encoding="utf-8")
    print(f"wrote {out}.txt, {out}.json")
    return 0


def _sklearn_version() -> str | None:
    try:
        import sklearn
    except ImportError:
        return None
    return str(sklearn.__version__)


if __name__ == "__main__":
    sys.exit(main())
