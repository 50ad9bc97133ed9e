"""Time a dropout mask from the counter-based generator (``dense_xp._random``) against each library's own
generator, on one device, in one process.

``python -m benchmarks.bench_random --device cpu [--shapes 256x512,4096x1024] [--out STEM]``; see
``benchmarks/README.md`` for what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dense_xp
from dense_xp import _random

from ._report import blas_summary
from ._timing import machine_info, measure, require, summarize, wait_for_idle

__all__ = ["LIBRARIES", "OUT_DIR", "main", "run"]

OUT_DIR = Path(__file__).resolve().parent / "runs"  # untracked (.gitignore)
RATE = 0.1
DEFAULT_SHAPES = "256x512,4096x1024"
# each library gives its generators as (name, maker): maker(shape) -> (step, sync); the counter
# generator's names start with "counter", the library's own generators are the others
Step = tuple[Callable[[], Any], Callable[[], None]]


class Skip(Exception):
    """A library or device this machine lacks."""


def _counter(xp: Any, device: Any, sync: Callable[[], None], kind: str) -> Callable[..., Step]:
    def make(shape: tuple[int, int]) -> Step:
        n, width = shape
        if kind == "mask":
            return lambda: _random.keep_mask(RATE, 7, 1, range(n), width, xp=xp, device=device), sync
        return lambda: _random.uniform(7, 1, range(n), width, xp=xp, device=device, dtype="float32"), sync

    return make


def _numpy(device: str) -> list[tuple[str, Callable[..., Step]]]:
    if device != "cpu":
        raise Skip("NumPy runs on the CPU only")
    np = importlib.import_module("numpy")
    xp, dev = dense_xp.resolve_device("cpu")
    rng = np.random.default_rng(0)
    none = lambda: None
    return [
        ("counter keep_mask", _counter(xp, dev, none, "mask")),
        ("counter uniform f32", _counter(xp, dev, none, "uniform")),
        (
            "default_rng().random f32 >= rate",
            lambda s: (lambda: rng.random(s, dtype=np.float32) >= RATE, none),
        ),
        ("default_rng().random f64", lambda s: (lambda: rng.random(s), none)),
    ]


def _torch(device: str) -> list[tuple[str, Callable[..., Step]]]:
    if importlib.util.find_spec("torch") is None:
        raise Skip("torch is not installed")
    torch = importlib.import_module("torch")
    name = "cpu" if device == "cpu" else device
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Skip("torch has no CUDA here")
    xp, dev = dense_xp.resolve_device(torch.device(name), xp=torch)
    sync = torch.cuda.synchronize if name.startswith("cuda") else (lambda: None)
    gen = torch.Generator(device=dev).manual_seed(0)

    def bernoulli(s: tuple[int, int]) -> Step:
        out = torch.empty(s, device=dev)
        return lambda: out.bernoulli_(1 - RATE, generator=gen), sync

    return [
        ("counter keep_mask", _counter(xp, dev, sync, "mask")),
        ("counter uniform f32", _counter(xp, dev, sync, "uniform")),
        ("torch.rand >= rate", lambda s: (lambda: torch.rand(s, device=dev, generator=gen) >= RATE, sync)),
        ("torch.empty.bernoulli_", bernoulli),
    ]


def _jax(device: str) -> list[tuple[str, Callable[..., Step]]]:
    if importlib.util.find_spec("jax") is None:
        raise Skip("JAX is not installed")
    jax = importlib.import_module("jax")
    platform = "cpu" if device == "cpu" else "gpu"
    try:
        dev = jax.devices(platform)[0]
    except RuntimeError as exc:
        raise Skip(f"JAX has no {platform} device: {exc}") from None
    xp, dev = dense_xp.resolve_device(dev, xp=importlib.import_module("jax.numpy"))
    last: list[Any] = [None]

    def keep(result: Any) -> Any:
        last[0] = result
        return result

    def sync() -> None:
        if last[0] is not None:
            last[0].block_until_ready()

    key = jax.device_put(jax.random.key(0), dev)

    def counter(kind: str) -> Callable[..., Step]:
        def make(shape: tuple[int, int]) -> Step:
            step, _ = _counter(xp, dev, sync, kind)(shape)
            return lambda: keep(step()), sync

        return make

    return [
        ("counter keep_mask", counter("mask")),
        ("counter uniform f32", counter("uniform")),
        ("jax.random.uniform >= rate", lambda s: (lambda: keep(jax.random.uniform(key, s) >= RATE), sync)),
        ("jax.random.bernoulli", lambda s: (lambda: keep(jax.random.bernoulli(key, 1 - RATE, s)), sync)),
    ]


def _cupy(device: str) -> list[tuple[str, Callable[..., Step]]]:
    if device == "cpu":
        raise Skip("CuPy needs --device cuda")
    xp, dev = dense_xp.resolve_device(device)  # DeviceUnavailableError where CUDA cannot work
    cupy = importlib.import_module("cupy")
    stream_sync = lambda: cupy.cuda.get_current_stream().synchronize()
    rng = cupy.random.default_rng(0)

    def on(make: Callable[..., Step]) -> Callable[..., Step]:
        def made(s: tuple[int, int]) -> Step:
            step, sync = make(s)

            def run() -> Any:
                with dense_xp._backend.on_device(dev):
                    return step()

            return run, sync

        return made

    return [
        ("counter keep_mask", on(_counter(xp, dev, stream_sync, "mask"))),
        ("counter uniform f32", on(_counter(xp, dev, stream_sync, "uniform"))),
        (
            "cupy default_rng().random f32 >= rate",
            on(lambda s: (lambda: rng.random(s, dtype="float32") >= RATE, stream_sync)),
        ),
        (
            "cupy.random.rand >= rate",
            on(lambda s: (lambda: cupy.random.rand(*s, dtype="float32") >= RATE, stream_sync)),
        ),
    ]


LIBRARIES: dict[str, Callable[[str], list[tuple[str, Callable[..., Step]]]]] = {
    "numpy": _numpy,
    "torch": _torch,
    "jax": _jax,
    "cupy": _cupy,
}


def _block(library: str, shapes: list[tuple[int, int]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every generator of one library at every shape; one library at a time (thread pools fight)."""
    try:
        generators = LIBRARIES[library](args.device)
    except (Skip, ImportError, dense_xp.DeviceUnavailableError) as exc:
        return [{"library": library, "skipped": str(exc)}]
    rows = []
    for shape in shapes:
        for name, make in generators:
            record: dict[str, Any] = {"library": library, "generator": name, "n": shape[0], "width": shape[1]}
            if args.idle_wait > 0:
                record["cpu_busy_before"] = wait_for_idle(args.idle_wait)  # other processes' load
            try:
                step, sync = make(shape)
                samples = measure(
                    step, sync, budget_s=args.budget, min_repeat=args.min_repeat, max_repeat=200
                )
            except Exception as exc:  # one failing generator must not lose the others
                record["error"] = f"{type(exc).__name__}: {exc}"
            else:
                record.update(summarize(samples))
            rows.append(record)
            shown = f"{record['ms']:.4g} ms" if "ms" in record else record["error"]
            print(f"{library:<6} {shape[0]}x{shape[1]} {name}: {shown}", file=sys.stderr, flush=True)
    return rows


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each library and shape: each counter generator's time over each native one's."""
    timed = [r for r in rows if "ms" in r]
    out = []
    for mine in (r for r in timed if r["generator"].startswith("counter")):
        for other in timed:
            same = (other["library"], other["n"], other["width"]) == (
                mine["library"],
                mine["n"],
                mine["width"],
            )
            if same and not other["generator"].startswith("counter"):
                out.append(
                    {
                        "library": mine["library"],
                        "shape": f"{mine['n']}x{mine['width']}",
                        "counter": mine["generator"],
                        "native": other["generator"],
                        "ratio": mine["ms"] / other["ms"],
                    }
                )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, the ratios, and the machine report."""
    threadpoolctl = require("threadpoolctl")
    if "torch" in args.library and importlib.util.find_spec("torch") is not None:
        importlib.import_module("torch").set_num_threads(args.threads)  # before the limits, as bench_dense
    shapes = [(int(a), int(b)) for a, b in (s.lower().split("x") for s in args.shapes.split(","))]
    rows: list[dict[str, Any]] = []
    with threadpoolctl.threadpool_limits(limits=args.threads):
        info = machine_info(args.device, args.threads)
        for library in args.library:
            rows += _block(library, shapes, args)
    notes = [f"{r['library']} skipped: {r['skipped']}" for r in rows if "skipped" in r]
    notes += [f"{r['library']} {r['generator']} failed: {r['error']}" for r in rows if "error" in r]
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    measurements = [r for r in rows if "skipped" not in r]
    return {
        "machine": info,
        "settings": settings,
        "measurements": measurements,
        "ratios": _ratios(rows),
        "notes": notes,
    }


def format_table(report: dict[str, Any]) -> str:
    """Milliseconds per mask, then the counter generator's time over each library's own."""
    m, s = report["machine"], report["settings"]
    torch = m.get("torch") or {}
    lines = [
        f"dense_xp {m['versions']['dense_xp']}: a dropout mask (rate {RATE}) on {s['device']}, {m['date']}",
        f"CPU: {m['cpu_model']}; {m['cpu_count']} CPUs, {s['threads']} threads for every library",
        f"{m['platform']}; NumPy {m['versions']['numpy']} BLAS: "
        + blas_summary([p for p in m["blas"] if p["user_api"] == "blas"]),
    ]
    if torch:
        lines.append(f"torch {torch['version']} ({torch['cpu_capability']}, {torch['num_threads']} threads)")
    lines += ["", f"{'library':<7} {'shape':>10}  {'generator':<38} {'ms':>9}  {'q1-q3':>17}"]
    for r in report["measurements"]:
        shape = f"{r['n']}x{r['width']}"
        if "ms" in r:
            spread = f"{r['ms_q1']:.3g}-{r['ms_q3']:.3g}"
            lines.append(f"{r['library']:<7} {shape:>10}  {r['generator']:<38} {r['ms']:>9.3f}  {spread:>17}")
        else:
            lines.append(f"{r['library']:<7} {shape:>10}  {r['generator']:<38} {'failed':>9}")
    lines += ["", "counter / native (time ratio; > 1: the counter generator is slower)"]
    for q in report["ratios"]:
        lines.append(
            f"{q['library']:<7} {q['shape']:>10}  {q['counter']:<20} / {q['native']:<38} {q['ratio']:6.2f}"
        )
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_random", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"NxW[,NxW...] (default {DEFAULT_SHAPES})")
    parser.add_argument("--library", action="append", choices=tuple(LIBRARIES), help="default: all")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of samples per case (default 1)")
    parser.add_argument(
        "--min-repeat", type=int, default=10, help="fewest timed samples per case (default 10)"
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=0.0,
        help="before each case, wait up to this many seconds for the CPUs to be <30%% busy",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library")
    parser.add_argument(
        "--out", help="path stem for <out>.json/.txt (default benchmarks/runs/random-DEVICE-DATE)"
    )
    args = parser.parse_args(argv)
    args.library = args.library or list(LIBRARIES)
    for spec in args.shapes.split(","):
        parts = spec.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"`--shapes` takes NxW[,NxW...] (e.g. 256x512), got {spec!r}")
    if min(args.budget, args.min_repeat, args.threads) <= 0:
        parser.error("--budget, --min-repeat and --threads must be positive")
    date = datetime.date.today().isoformat()
    out = Path(args.out) if args.out else OUT_DIR / f"random-{args.device.replace(':', '')}-{date}"
    report = run(args)
    table = format_table(report)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.parent.joinpath(out.name + ".txt").write_text(table + "\n", encoding="utf-8")
    print(f"wrote {out}.json, {out}.txt")
    return 0 if not any("error" in r for r in report["measurements"]) else 1


if __name__ == "__main__":
    sys.exit(main())
