"""One command for a CUDA machine: probe, backend report, kernel warm-up, tests on NumPy + CuPy, demo,
CUDA benchmark and the two CUDA targets, and dense_xp.sklearn's fit time on CUDA against scikit-learn.

``python -m benchmarks.gpu_check [--out DIR] [--cache-dir DIR] [--dry-run]`` writes into DIR
(default ``benchmarks/runs/gpu-<date>``, untracked), flat, these files and no others:
``summary.json``, ``info.txt``, ``warm.log``, ``pytest.log``, ``demo.log``, ``bench.log``,
``bench.json``, ``bench.png``, ``random.log``, ``random.json`` and ``random.txt`` (dropout masks:
the counter generator against CuPy's and torch's own), ``sklearn.log``, ``sklearn.json`` and
``sklearn.txt``. Every step runs in a child process: this process imports neither CuPy nor torch
nor JAX and never opens a CUDA context. Children get ``CUPY_TF32=0``, ``CUPY_CACHE_DIR``
(``--cache-dir``) and ``XLA_PYTHON_CLIENT_PREALLOCATE=false``.
It exits 0 when every step passed, 1 when one failed or ran out of time, and 2, having run
only the probes, when no CUDA device answers. ``--dry-run`` runs every step on the CPU
instead (tests on NumPy alone, demo and benchmark on the CPU, a tiny benchmark) and exits 0
when the script works. The whole run is bounded by ``--deadline`` seconds (default 480).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FILES", "TARGETS", "main", "print_summary", "pytest_counts", "run_steps", "steps", "targets"]

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
FILES = (
    "summary.json",
    "info.txt",
    "warm.log",
    "pytest.log",
    "demo.log",
    "bench.log",
    "bench.json",
    "bench.png",
    "random.log",
    "random.json",
    "random.txt",
    "sklearn.log",
    "sklearn.json",
    "sklearn.txt",
)
GPU_MODULES = ("cupy", "torch", "jax")
# name: (other implementation, (n, d_in, d_out) on CUDA, the dry run's stand-in, dtype, test on the ratio)
TARGETS = {
    "step_over_cublas_floor": ("floor", (8192, 4096, 4096), (64, 32, 32), "float32", "<= 1.05"),
    "step_over_torch_eager": ("torch", (256, 512, 512), (16, 8, 8), "float32", "< 1"),
}
BENCH = "--impl dense_xp --impl floor --impl torch --activation relu --activation sigmoid --no-txt"
BENCH_CUDA = "--device cuda --dtype float32 --dtype float16 --shapes default --budget 0.5 --passes 3"
BENCH_DRY = "--device cpu --dtype float32 --shapes {} --budget 0.02 --passes 1 --min-repeat 3".format(
    ",".join("x".join(map(str, t[2])) for t in TARGETS.values())
)
RANDOM_CUDA = "--device cuda --library cupy --library torch --budget 0.3"
RANDOM_DRY = "--device cpu --library numpy --shapes 64x32 --budget 0.02 --min-repeat 3"
SKLEARN_CUDA = "--device cuda --epochs 5 --repeat 2 --wait 5"  # on CUDA, against sklearn on the CPU
SKLEARN_DRY = "--sizes 300x8x16 --epochs 2 --repeat 1 --wait 0"
DRY_TESTS = "tests/test_layer.py"
TESTS_CAP_WARM = 200  # the tests' cap when the warm step found every kernel in the cache already


def default_cache_dir() -> Path:
    """``$CUPY_CACHE_DIR``, else CuPy's own default ``~/.cupy/kernel_cache``."""
    return Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")


def steps(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """The plan: name, command, log file, time cap, time kept for it (s) and extra environment.

    A step runs for at most its cap, less the time the later steps keep (their ``min``).
    """
    dry, device = args.dry_run, "cpu" if args.dry_run else "cuda"
    tests = args.pytest_args if args.pytest_args is not None else DRY_TESTS if dry else ""
    save = str(Path(tempfile.gettempdir()) / "dense_xp_digits.npz")
    demo = f"--device {device} --save {shlex.quote(save)}" + (" --epochs 2 --no-baseline" if dry else "")
    bench = f"{BENCH} {BENCH_DRY if dry else BENCH_CUDA} --out {shlex.quote(str(out / 'bench'))}"
    masks = f"{RANDOM_DRY if dry else RANDOM_CUDA} --out {shlex.quote(str(out / 'random'))}"
    sklearn = f"{SKLEARN_DRY if dry else SKLEARN_CUDA} --out {shlex.quote(str(out / 'sklearn'))}"
    plan = [
        ("info", "-m dense_xp info", "info.txt", 60, 5, {}),
        ("warm", f"-m benchmarks._gpu_warm --device {device}", "warm.log", 90, 10, {}),
        (
            "tests",
            f"-m pytest -q -p no:cacheprovider {tests}",
            "pytest.log",
            300,
            30,
            {"DENSE_XP_TEST_BACKENDS": "numpy" if dry else "numpy,cupy"},
        ),
        ("demo", f"-m dense_xp demo {demo}", "demo.log", 60, 20, {}),
        ("bench", f"-m benchmarks.bench_dense {bench}", "bench.log", 180, 90, {}),
        ("random", f"-m benchmarks.bench_random {masks}", "random.log", 60, 15, {}),
        ("sklearn", f"-m benchmarks.bench_sklearn {sklearn}", "sklearn.log", 90, 20, {}),
    ]
    return [
        {"name": name, "cmd": [PY, *shlex.split(cmd)], "log": log, "cap": cap, "min": keep, "env": env}
        for name, cmd, log, cap, keep, env in plan
    ]


def child_env(cache_dir: Path) -> dict[str, str]:
    """What every child step gets on top of this process's environment."""
    return {
        "CUPY_TF32": "0",  # float32 matmuls in float32: the tests' tolerances and the floor assume it
        "CUPY_CACHE_DIR": str(cache_dir),
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX would take 75% of the GPU memory
        "DENSE_XP_GPU_CHECK": "1",  # the dry-run test does not start gpu_check again from inside it
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }


def pytest_counts(log: str) -> dict[str, int]:
    """``{"passed": 412, "failed": 1, ...}`` from the last summary line of ``pytest -q``."""
    counts: dict[str, int] = {}
    summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|error|skipped)", line)]
    if summary:
        for number, word in re.findall(r"(\d+) (\w+)", summary[-1]):
            counts[{"error": "errors", "warning": "warnings"}.get(word, word)] = int(number)
    return counts


def tee(cmd: list[str], log: Path | None, timeout: float, env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``cmd``, echoing its output and writing it to ``log``; kill it after ``timeout`` s.

    Returns ``(return code or 124 on timeout, output, seconds)``.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the step and everything it started
        else:
            proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    chunks = []
    try:
        with open(log or os.devnull, "w", encoding="utf-8") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            for line in proc.stdout:
                if log is not None:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                f.write(line)
                chunks.append(line)
            rc = proc.wait()
            if expired.is_set():
                rc = 124
                f.write(f"\n[gpu_check: killed after {timeout:.0f} s]\n")
    finally:
        timer.cancel()
    return rc, "".join(chunks), time.monotonic() - start


def probe(env: dict[str, str]) -> dict[str, Any]:
    """What CuPy, torch and JAX see, each in its own child process, and ``nvidia-smi``.

    One after the other: a GPU in EXCLUSIVE_PROCESS mode serves one process's context at a time.
    """
    report: dict[str, Any] = {}
    for lib in GPU_MODULES:
        rc, text, _ = tee([PY, "-m", "benchmarks._gpu_probe", lib], None, 60, env)
        lines = text.strip().splitlines()
        try:
            report[lib] = json.loads(lines[-1]) if rc == 0 and lines else {"error": f"rc {rc}: {text[-500:]}"}
        except json.JSONDecodeError:
            report[lib] = {"error": text[-500:]}
    query = [
        "nvidia-smi",
        "--query-gpu=name,driver_version,memory.total,compute_mode",
        "--format=csv,noheader",
    ]
    try:
        smi = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        report["nvidia_smi"] = smi.stdout.strip().splitlines() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        report["nvidia_smi"] = f"{type(exc).__name__}: {exc}"
    return report


def kernel_files(cache_dir: Path) -> int:
    """How many compiled kernels CuPy's cache holds."""
    return sum(1 for _ in cache_dir.glob("*.cubin")) if cache_dir.is_dir() else 0


def _times(rows: list[dict[str, Any]], impl: str, case: tuple[int, int, int, str]) -> dict[Any, float]:
    """``{activation: median ms}`` of ``impl`` at ``(n, d_in, d_out, dtype)`` (the floor has ``None``)."""
    return {
        r["activation"]: r["ms"]
        for r in rows
        if (r["impl"], r["n"], r["d_in"], r["d_out"], r["dtype"]) == (impl, *case) and "ms" in r
    }


def targets(bench_json: Path, dry_run: bool) -> dict[str, Any]:
    """The two CUDA targets from the benchmark's JSON: the dense_xp step's time over the other's.

    The ratio is the largest over the activations measured; ``met`` is ``None`` where a time is missing.
    """
    rows = json.loads(bench_json.read_text(encoding="utf-8"))["measurements"] if bench_json.exists() else []
    report = {}
    for name, (other, shape, stand_in, dtype, test) in TARGETS.items():
        case = (*(stand_in if dry_run else shape), dtype)
        mine, theirs = _times(rows, "dense_xp", case), _times(rows, other, case)
        ratios = {act: (ms, theirs.get(act, theirs.get(None))) for act, ms in mine.items()}
        ratios = {act: (ms, o, ms / o) for act, (ms, o) in ratios.items() if o}
        entry: dict[str, Any] = {"shape": f"{case[0]}x{case[1]}->{case[2]}", "dtype": dtype, "vs": other}
        entry["target"] = f"ratio {test}"
        if ratios:
            act = max(ratios, key=lambda a: ratios[a][2])
            ms, other_ms, ratio = ratios[act]
            op, limit = test.split()
            entry.update(ratio=round(ratio, 4), activation=act, dense_xp_ms=ms, other_ms=other_ms)
            entry["met"] = ratio <= float(limit) if op == "<=" else ratio < float(limit)
        else:
            entry.update(ratio=None, met=None, reason=f"no dense_xp and {other} times at this shape")
        report[name] = entry
    return report


def run_steps(
    plan: list[dict[str, Any]], out: Path, env: dict[str, str], cache: Path, deadline: float
) -> dict[str, Any]:
    """Run the plan's steps in order, each within its share of the time left; their results."""
    results: dict[str, Any] = {}
    for i, step in enumerate(plan):
        name = step["name"]
        cap = TESTS_CAP_WARM if name == "tests" and results["warm"].get("cache") == "warm" else step["cap"]
        cap = min(cap, deadline - time.monotonic() - sum(s["min"] for s in plan[i + 1 :]))
        if cap < step["min"]:
            results[name] = {"status": "not run", "reason": "out of time"}
            continue
        print(f"\n=== {name} (at most {cap:.0f} s): {shlex.join(step['cmd'])}", flush=True)
        before = kernel_files(cache)
        rc, log, seconds = tee(step["cmd"], out / step["log"], cap, {**env, **step["env"]})
        result: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1), "cap_s": round(cap)}
        result["status"] = "passed" if rc == 0 else "timed out" if rc == 124 else "failed"
        result["log"] = step["log"]
        if name == "warm":
            compiled = kernel_files(cache) - before
            result.update(kernels_cached_before=before, kernels_compiled=compiled)
            result["cache"] = "warm" if before and not compiled else "cold"
        if name == "tests":
            result["counts"] = pytest_counts(log)
        results[name] = result
    return results


def print_summary(summary: dict[str, Any], path: Path) -> None:
    """Each step's status and the two targets, on the terminal."""
    print(f"\n=== summary ({path}, {summary['seconds']} s)")
    for name, s in summary["steps"].items():
        extra = f" {s['counts']}" if s.get("counts") else f" ({s['reason']})" if "reason" in s else ""
        timing = f" (rc {s['rc']}, {s['seconds']} s of {s['cap_s']})" if "rc" in s else ""
        print(f"  {name:<6} {s['status']}{extra}{timing}")
    for name, t in summary["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3f}"
        print(f"  {name}: {ratio} at {t['shape']} {t['dtype']} ({t['target']}): {verdict}")


def _write(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", help="folder for the result files (default benchmarks/runs/gpu-<date>, untracked)"
    )
    parser.add_argument(
        "--cache-dir",
        help="CuPy's kernel cache, kept between runs (default $CUPY_CACHE_DIR or ~/.cupy/kernel_cache)",
    )
    parser.add_argument(
        "--deadline", type=float, default=480.0, help="seconds for the whole run (default 480)"
    )
    parser.add_argument("--dry-run", action="store_true", help="run every step on the CPU, with stand-ins")
    parser.add_argument(
        "--pytest-args",
        help=f"arguments for pytest (default: none, the whole suite; {DRY_TESTS!r} with --dry-run)",
    )
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # echoed child output on a console that is not UTF-8
    start = time.monotonic()
    deadline = start + args.deadline
    date = datetime.date.today().isoformat()
    out = Path(args.out or ROOT / "benchmarks" / "runs" / f"gpu-{date}").resolve()
    cache = Path(args.cache_dir).resolve() if args.cache_dir else default_cache_dir()
    env = child_env(cache)
    plan = steps(args, out)
    mode = "dry run on the CPU" if args.dry_run else "CUDA"
    print(f"gpu_check plan ({mode}; results in {out}; at most {args.deadline:.0f} s in all):")
    print(f"  every step: {' '.join(f'{k}={v}' for k, v in env.items())}")
    print(f"  probe  python -m benchmarks._gpu_probe {' | '.join(GPU_MODULES)}, nvidia-smi  -> summary.json")
    for step in plan:
        extra = " ".join(f"{k}={v}" for k, v in step["env"].items())
        print(
            f"  {step['name']:<6} {extra + ' ' if extra else ''}{shlex.join(step['cmd'])}  -> {step['log']}"
        )
    out.mkdir(parents=True, exist_ok=True)
    for stale in FILES:  # a file left by an earlier run must not pass for this run's
        (out / stale).unlink(missing_ok=True)
    summary: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "cache_dir": str(cache),
        "env": env,
    }
    print("\n=== probe", flush=True)
    summary["probe"] = probe(env)
    summary["probe_seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(summary["probe"], indent=1, default=str))
    cupy = summary["probe"]["cupy"]
    if not args.dry_run and not cupy.get("available"):
        reason = cupy.get("reason") or cupy.get("error") or "CuPy reports no usable CUDA device"
        summary.update(ok=False, reason=f"no CUDA device answers: {reason}")
        _write(out / "summary.json", summary)
        print(f"gpu_check: nothing was run: {reason}", file=sys.stderr)
        return 2
    summary["steps"] = run_steps(plan, out, env, cache, deadline)
    summary["targets"] = targets(out / "bench.json", args.dry_run)
    summary["parent_imported"] = [m for m in GPU_MODULES if m in sys.modules]  # stays empty
    summary["seconds"] = round(time.monotonic() - start, 1)
    summary["ok"] = all(s["status"] == "passed" for s in summary["steps"].values())
    _write(out / "summary.json", summary)
    print_summary(summary, out / "summary.json")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
