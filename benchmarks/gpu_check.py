"""One command for a CUDA machine: backend report, test suite on NumPy + CuPy, demo, CUDA benchmark.

``python -m benchmarks.gpu_check [--out DIR]`` writes into DIR (default
``benchmarks/runs/gpu-<date>``, untracked), flat: ``info.txt``, ``pytest.log``,
``demo.log``, ``bench.log``, ``bench.json``, ``bench.png`` and ``summary.json``.
It exits 0 when every step passed, 1 when one failed (the tests, the demo or
the benchmark), and 2 without running anything when no CUDA device answers.
The whole run is bounded by ``--deadline`` seconds (default 345).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "pytest_counts"]

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BENCH = [
    *("--device", "cuda", "--dtype", "float32", "--dtype", "float16"),
    *("--activation", "relu", "--activation", "sigmoid", "--shapes", "default"),
    *("--budget", "0.5", "--no-txt"),
]


def steps(out: Path) -> list[dict[str, Any]]:
    """The plan: name, command, log file, time cap (s) and extra environment of each step."""
    return [
        {"name": "info", "cmd": [PY, "-m", "dense_xp", "info"], "log": "info.txt", "cap": 60},
        {
            "name": "tests",
            "cmd": [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            "log": "pytest.log",
            "cap": 180,
            "env": {"DENSE_XP_TEST_BACKENDS": "numpy,cupy"},
        },
        {
            "name": "demo",
            "cmd": [
                PY,
                "-m",
                "dense_xp",
                "demo",
                "--device",
                "cuda",
                "--save",
                str(Path(tempfile.gettempdir()) / "dense_xp_digits.npz"),
            ],
            "log": "demo.log",
            "cap": 60,
        },
        {
            "name": "bench",
            "cmd": [PY, "-m", "benchmarks.bench_dense", *BENCH, "--out", str(out / "bench")],
            "log": "bench.log",
            "cap": 170,
        },
    ]


def pytest_counts(log: str) -> dict[str, int]:
    """``{"passed": 412, "failed": 1, ...}`` from the last summary line of ``pytest -q``."""
    counts: dict[str, int] = {}
    summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|error|skipped)", line)]
    if summary:
        for number, word in re.findall(r"(\d+) (\w+)", summary[-1]):
            counts[{"error": "errors", "warning": "warnings"}.get(word, word)] = int(number)
    return counts


def tee(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[int, str, float]:
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
        errors="replace",
        start_new_session=True,
    )
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    chunks = []
    try:
        with log.open("w", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            for line in proc.stdout:
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


def gpu_report() -> dict[str, Any]:
    """GPU name(s), driver, CuPy and CUDA versions (CuPy's view, plus nvidia-smi's when present)."""
    import dense_xp

    cupy = next(e for e in dense_xp.backend_info() if e["name"] == "cupy")
    report = {k: cupy.get(k) for k in ("devices", "version", "cuda_runtime", "cuda_driver")}
    report["cupy"] = report.pop("version")
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        smi = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        report["nvidia_smi"] = smi.stdout.strip().splitlines()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", help="output folder (default benchmarks/runs/gpu-<date>, untracked)")
    parser.add_argument("--deadline", type=float, default=345.0, help="seconds for the whole run")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    out = Path(args.out or ROOT / "benchmarks" / "runs" / f"gpu-{date}").resolve()
    plan = steps(out)
    print(f"gpu_check plan (output in {out}, at most {args.deadline:.0f} s in all):")
    for step in plan:
        env = " ".join(f"{k}={v}" for k, v in step.get("env", {}).items())
        print(f"  {step['name']:<6} {env + ' ' if env else ''}{' '.join(step['cmd'])}  -> {step['log']}")
    if args.dry_run:
        return 0

    import dense_xp

    try:
        dense_xp.resolve_device("cuda")
    except dense_xp.DeviceUnavailableError as exc:
        print(f"gpu_check: nothing was run: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    summary["gpu"] = gpu_report()
    summary["steps"] = {}
    deadline = time.monotonic() + args.deadline
    for step in plan:
        left = deadline - time.monotonic()
        if left < 10:
            summary["steps"][step["name"]] = {"status": "not run", "reason": "out of time"}
            continue
        print(f"\n=== {step['name']}: {' '.join(step['cmd'])}", flush=True)
        rc, log, seconds = tee(step["cmd"], out / step["log"], min(step["cap"], left), step.get("env", {}))
        result = {"rc": rc, "seconds": round(seconds, 1), "log": step["log"]}
        result["status"] = "passed" if rc == 0 else "timed out" if rc == 124 else "failed"
        if step["name"] == "tests":
            result["counts"] = pytest_counts(log)
        summary["steps"][step["name"]] = result
    summary["ok"] = all(s["status"] in ("passed", "skipped") for s in summary["steps"].values())
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"\n=== summary ({out / 'summary.json'})")
    for name, s in summary["steps"].items():
        extra = f" {s['counts']}" if s.get("counts") else f" ({s['reason']})" if "reason" in s else ""
        print(
            f"  {name:<6} {s['status']}{extra}" + (f" (rc {s['rc']}, {s['seconds']} s)" if "rc" in s else "")
        )
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
