"""dense_xp on Dask arrays: predict and one training epoch on a LocalCluster of 1 and 2 worker
processes against in-memory NumPy, the fixed cost of a training step, and a dataset larger than
the workers' memory.

``python -m benchmarks.bench_dask [--rows 1000000] [--out STEM]``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dense_xp import DenseLayer, Sequential

from ._timing import machine_info, require

__all__ = ["main", "run"]

LOSS = "softmax_cross_entropy"
D_IN, HIDDEN, D_OUT = 64, 128, 10


def _model() -> Sequential:
    return Sequential(
        [
            DenseLayer(D_IN, HIDDEN, "relu", seed=0, init="he_normal", dtype="float32"),
            DenseLayer(HIDDEN, D_OUT, seed=1, init="glorot_uniform", dtype="float32"),
        ]
    )


def _dask_data(rows: int, chunk: int, seed: int = 0) -> tuple[Any, Any]:
    """Lazy float32 features in [0, 1), made chunk by chunk on the workers, and integer labels."""
    da = require("dask.array", "dask")
    X = da.random.default_rng(seed).random((rows, D_IN), chunks=(chunk, D_IN), dtype="float32")
    return X, da.argmax(X[:, :D_OUT], axis=1)


def _median_time(call: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _rows_of(_model: Any, X: Any, y: Any) -> tuple[int, int]:
    return X.shape[0], y.shape[0]


def _bare_step(dask: Any, X: Any, y: Any) -> Any:
    """A step's graph without the work: one model key, a task per chunk, their sum, to the client."""
    key = dask.delayed(_model(), name=f"bare-model-{uuid.uuid4().hex}", traverse=False)
    task = dask.delayed(_rows_of, pure=False)
    parts = [task(key, xb, yb) for xb, yb in zip(X.to_delayed().ravel(), y.to_delayed().ravel(), strict=True)]
    return dask.compute(dask.delayed(sum, pure=False)(parts, ()))[0]


def in_memory(rows: int, batch_size: int, repeat: int, threads: int) -> dict[str, Any]:
    """Predict and one training epoch of the same model on NumPy arrays in this process."""
    threadpoolctl = require("threadpoolctl")
    rng = np.random.default_rng(0)
    X = rng.random((rows, D_IN), dtype=np.float32)
    y = np.argmax(X[:, :D_OUT], axis=1)
    model = _model()
    with threadpoolctl.threadpool_limits(threads):
        model.predict(X[:1000])
        predict_s, predict_all = _median_time(lambda: model.predict(X, batch_size=65_536), repeat)
        epoch_s, _ = _median_time(
            lambda: model.fit(X, y, loss=LOSS, epochs=1, batch_size=batch_size, progress=False), 1
        )
    return {
        "case": f"numpy, {threads} thread{'s' if threads > 1 else ''}",
        "threads": threads,
        "predict_s": predict_s,
        "predict_samples_s": predict_all,
        "predict_rows_per_s": rows / predict_s,
        "epoch_s": epoch_s,
        "epoch_rows_per_s": rows / epoch_s,
    }


def _cluster(distributed: Any, workers: int, memory_limit: Any) -> Any:
    """A LocalCluster of ``workers`` single-threaded processes on ports the system picks.

    ``dashboard_address=None`` would still try port 8787 (and warn when it is taken).
    """
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        scheduler_port=0,
        dashboard_address=":0",
        memory_limit=memory_limit,
    )


def on_cluster(
    workers: int, rows: int, chunk: int, batch_size: int, repeat: int, steps: int
) -> dict[str, Any]:
    """Predict, one epoch and the fixed cost per step on a LocalCluster of ``workers`` processes."""
    dask, distributed = require("dask", "dask"), require("distributed", "dask")
    with (
        _cluster(distributed, workers, "3GiB") as cluster,
        distributed.Client(cluster) as client,
    ):
        X, y = dask.persist(*_dask_data(rows, chunk))
        distributed.wait([X, y])
        model = _model()
        model.predict(X[:chunk]).compute()  # the workers import dense_xp

        def predict() -> None:
            out = model.predict(X).persist()  # the outputs stay on the workers
            distributed.wait(out)
            del out

        predict_s, predict_all = _median_time(predict, repeat)
        fit = lambda: model.fit(X, y, loss=LOSS, epochs=1, batch_size=batch_size, progress=False)
        epoch_s, _ = _median_time(fit, 1)
        # the fixed cost of a step: a batch of 64 rows, spread over two chunks of 32
        Xs, ys = dask.persist(*_dask_data(64, 32, seed=1))
        model.fit(Xs, ys, loss=LOSS, epochs=2, batch_size=64, progress=False)
        steps_s, _ = _median_time(
            lambda: model.fit(Xs, ys, loss=LOSS, epochs=steps, batch_size=64, progress=False), 1
        )
        round_trip_s, _ = _median_time(lambda: client.submit(int, 1, pure=False).result(), steps)
        bare_s, _ = _median_time(lambda: _bare_step(dask, Xs, ys), steps)
    return {
        "case": f"dask, {workers} worker{'s' if workers > 1 else ''}",
        "workers": workers,
        "chunk_rows": chunk,
        "predict_s": predict_s,
        "predict_samples_s": predict_all,
        "predict_rows_per_s": rows / predict_s,
        "epoch_s": epoch_s,
        "epoch_rows_per_s": rows / epoch_s,
        "epoch_steps": -(-rows // batch_size),
        "step_ms": steps_s / steps * 1e3,
        "round_trip_ms": round_trip_s * 1e3,
        "bare_step_ms": bare_s * 1e3,
    }


def streaming(rows: int, chunk: int, workers: int, memory_limit: str, batch_chunks: int) -> dict[str, Any]:
    """Evaluate (and, with ``batch_chunks``, one unshuffled epoch) on lazy data larger than the workers'
    memory: every chunk is made, used and dropped."""
    dask, distributed = require("dask", "dask"), require("distributed", "dask")
    from distributed.diagnostics import MemorySampler

    limit = dask.utils.parse_bytes(memory_limit)
    X, y = _dask_data(rows, chunk, seed=2)
    sampler = MemorySampler()
    with (
        _cluster(distributed, workers, limit) as cluster,
        distributed.Client(cluster),
    ):
        model = _model()
        model.predict(X[:chunk]).compute()
        with sampler.sample("evaluate", interval=0.1):
            evaluate_s, _ = _median_time(lambda: model.evaluate(X, y, loss=LOSS), 1)
        epoch_s = None
        if batch_chunks:
            with sampler.sample("fit", interval=0.1):
                fit = lambda: model.fit(
                    X, y, loss=LOSS, epochs=1, batch_size=batch_chunks * chunk, shuffle=False, progress=False
                )
                epoch_s, _ = _median_time(fit, 1)
    peak = max(value for samples in sampler.samples.values() for _, value in samples)
    return {
        "rows": rows,
        "chunk_rows": chunk,
        "dataset_bytes": rows * D_IN * 4,
        "workers": workers,
        "memory_limit_per_worker_bytes": limit,
        "peak_cluster_memory_bytes": peak,
        "evaluate_s": evaluate_s,
        "evaluate_rows_per_s": rows / evaluate_s,
        "epoch_s": epoch_s,
        "epoch_rows_per_s": None if epoch_s is None else rows / epoch_s,
        "epoch_batch_rows": batch_chunks * chunk or None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, with the machine description; ``args`` as :func:`main` parses them."""
    report: dict[str, Any] = {"machine": machine_info("cpu", os.cpu_count() or 1)}
    for name in ("dask", "distributed"):
        report["machine"]["versions"][name] = require(name, "dask").__version__
    report["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    print("in-memory NumPy ...", flush=True)
    report["in_memory"] = [
        in_memory(args.rows, args.batch_size, args.repeat, t) for t in sorted({1, args.threads})
    ]
    report["cluster"] = []
    for workers in args.workers:
        print(f"LocalCluster, {workers} worker(s) ...", flush=True)
        report["cluster"].append(
            on_cluster(workers, args.rows, args.chunk, args.batch_size, args.repeat, args.steps)
        )
    if args.stream_rows:
        print("streaming ...", flush=True)
        report["streaming"] = streaming(
            args.stream_rows,
            args.stream_chunk,
            max(args.workers),
            args.memory_limit,
            args.stream_epoch,
        )
    by_workers = {c["workers"]: c for c in report["cluster"]}
    if 1 in by_workers and 2 in by_workers:
        one, two = by_workers[1], by_workers[2]
        report["scaling"] = {
            f"{what}_speedup_2_over_1": two[f"{what}_rows_per_s"] / one[f"{what}_rows_per_s"]
            for what in ("predict", "epoch")
        }
        report["scaling"] |= {k.replace("speedup", "efficiency"): v / 2 for k, v in report["scaling"].items()}
    report["machine"]["loadavg_at_end"] = list(os.getloadavg())
    return report


def format_table(report: dict[str, Any]) -> str:
    """The terminal summary."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"dense_xp {m['versions']['dense_xp']} on Dask {m['versions']['dask']} / distributed "
        f"{m['versions']['distributed']}, {m['date']}",
        f"CPU: {m['cpu_model']}; {m['cpu_count']} CPUs; load average at start {m['loadavg_at_start']}, "
        f"at end {m['loadavg_at_end']}",
        f"model float32 {D_IN} -> {HIDDEN} (relu) -> {D_OUT}; {s['rows']:,} rows in chunks of "
        f"{s['chunk']:,}; training batch {s['batch_size']:,} rows, shuffled",
        "",
        "step: one training step of a 64-row batch over 2 chunks; bare step: the same graph with no-op "
        "tasks; round trip: client.submit(...).result()",
        f"{'case':<22}{'predict rows/s':>16}{'epoch rows/s':>15}{'epoch s':>9}{'step ms':>9}"
        f"{'bare step ms':>14}{'round trip ms':>15}",
    ]
    for row in report["in_memory"] + report["cluster"]:
        ms = [f"{row[k]:.1f}" if k in row else "-" for k in ("step_ms", "bare_step_ms", "round_trip_ms")]
        lines.append(
            f"{row['case']:<22}{row['predict_rows_per_s']:>16,.0f}{row['epoch_rows_per_s']:>15,.0f}"
            f"{row['epoch_s']:>9.2f}{ms[0]:>9}{ms[1]:>14}{ms[2]:>15}"
        )
    if "scaling" in report:
        sc = report["scaling"]
        lines.append(
            f"2 workers / 1 worker: predict {sc['predict_speedup_2_over_1']:.2f}x "
            f"(efficiency {sc['predict_efficiency_2_over_1']:.0%}), "
            f"epoch {sc['epoch_speedup_2_over_1']:.2f}x "
            f"(efficiency {sc['epoch_efficiency_2_over_1']:.0%})"
        )
    if "streaming" in report:
        st = report["streaming"]
        lines.append(
            f"streaming: {st['rows']:,} rows ({st['dataset_bytes'] / 2**30:.2f} GiB, made lazily) on "
            f"{st['workers']} workers of {st['memory_limit_per_worker_bytes'] / 2**20:.0f} MiB: evaluate "
            f"{st['evaluate_rows_per_s']:,.0f} rows/s"
            + (f", unshuffled epoch {st['epoch_rows_per_s']:,.0f} rows/s" if st["epoch_s"] else "")
            + "; "
            f"peak memory of the whole cluster {st['peak_cluster_memory_bytes'] / 2**20:.0f} MiB"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Predict and epoch throughput per case, and the step cost, as a PNG."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["in_memory"] + report["cluster"]
    names = [r["case"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, title in zip(
        axes[:2], ("predict_rows_per_s", "epoch_rows_per_s"), ("predict", "one training epoch"), strict=True
    ):
        ax.barh(names, [r[key] for r in rows], color=["C2" if "numpy" in n else "C0" for n in names])
        ax.set_xlabel("rows/s")
        ax.set_title(f"{title}: {report['settings']['rows']:,} rows")
        ax.invert_yaxis()
    cluster = report["cluster"]
    labels = [c["case"] for c in cluster]
    width = 0.27
    for i, (key, label, color) in enumerate(
        [("step_ms", "training step", "C0"), ("bare_step_ms", "same graph, no-op", "C1"),
         ("round_trip_ms", "submit round trip", "C7")]
    ):  # fmt: skip
        axes[2].bar([j + (i - 1) * width for j in range(len(cluster))], [c[key] for c in cluster], width,
                    label=label, color=color)  # fmt: skip
    axes[2].set_xticks(range(len(cluster)), labels)
    axes[2].legend()
    axes[2].set_ylabel("ms")
    axes[2].set_title("fixed cost per training step")
    fig.suptitle(f"dense_xp on Dask, {report['machine']['cpu_count']} CPUs, {report['machine']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    return sorted({int(t) for t in text.split(",") if t.strip()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dask", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the main dataset (default 1e6)")
    parser.add_argument("--chunk", type=int, default=125_000, help="rows per chunk (default 125000)")
    parser.add_argument("--batch-size", type=int, default=65_536, help="training batch (default 65536)")
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="worker processes, e.g. 1,2 (default)")
    parser.add_argument("--threads", type=int, default=1, help="in-memory NumPy BLAS threads (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="timed predict samples per case (default 2)")
    parser.add_argument("--steps", type=int, default=30, help="steps timed for the fixed cost (default 30)")
    parser.add_argument(
        "--stream-rows", type=int, default=3_500_000, help="rows of the dataset larger than memory (0: skip)"
    )
    parser.add_argument(
        "--stream-chunk", type=int, default=50_000, help="streaming rows per chunk (default 5e4)"
    )
    parser.add_argument(
        "--memory-limit", default="400MiB", help="per worker, streaming case (default 400MiB)"
    )
    parser.add_argument(
        "--stream-epoch",
        type=int,
        default=0,
        metavar="CHUNKS",
        help="also time an unshuffled epoch on the streamed data, batches of CHUNKS chunks (default 0: no)",
    )
    parser.add_argument("--out", help="path stem for <out>.json/.png (default benchmarks/runs/dask-DATE)")
    args = parser.parse_args(argv)
    if (
        min(args.rows, args.chunk, args.batch_size, args.repeat, args.steps, args.threads) <= 0
        or not args.workers
    ):
        parser.error(
            "--rows, --chunk, --batch-size, --repeat, --steps, --threads and --workers must be positive"
        )
    out = Path(args.out or f"benchmarks/runs/dask-{datetime.date.today().isoformat()}")
    report = run(args)
    table = format_table(report)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.parent.joinpath(out.name + ".txt").write_text(table + "\n")
    plot(report, out.parent / (out.name + ".png"))
    print(f"wrote {out}.json, {out}.txt, {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
