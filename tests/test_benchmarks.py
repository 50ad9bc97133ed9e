"""The benchmark CLIs run end to end on a tiny case (timings themselves are not tested)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.gpu_check import pytest_counts


def test_bench_dense_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_dense", "--device", "cpu", "--dtype", "float32",
         "--activation", "relu", "--shapes", "8x4x3", "--impl", "dense_xp", "--impl", "floor",
         "--impl", "naive", "--passes", "1", "--min-repeat", "3", "--budget", "0.02", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "8x4->3" in (out.with_suffix(".txt")).read_text()
    assert out.with_suffix(".png").stat().st_size > 1000
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["measurements"]
    assert {(r["impl"], r["n"], r["d_in"], r["d_out"]) for r in rows} == {
        (impl, 8, 4, 3) for impl in ("dense_xp", "floor", "naive")
    }
    assert all(r["ms"] > 0 and r["samples"] >= 3 for r in rows)


def test_gpu_check_refuses_cleanly_without_cuda_and_plans_its_steps():
    import dense_xp

    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for step in ("info", "tests", "demo", "bench"):
        assert step in result.stdout
    assert "DENSE_XP_TEST_BACKENDS=numpy,cupy" in result.stdout
    if dense_xp._backend.cuda_unusable_reason(0) is not None:
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.gpu_check"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert run.returncode == 2
        assert "nothing was run" in run.stderr


def test_pytest_counts_reads_the_summary_line():
    log = "....\n=== 12 passed, 3 skipped, 1 failed in 2.0s ===\n"
    assert pytest_counts(log) == {"passed": 12, "skipped": 3, "failed": 1}
    assert pytest_counts("no summary here") == {}


def test_conformance_table_runs_each_feature_and_reports_failures(monkeypatch):
    from benchmarks import conformance

    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.conformance", "--markdown",
         "--backend", "numpy", "--backend", "strict-no_float64"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "| backend | " + " | ".join(conformance.CHECKS) + " |"
    assert lines[2] == "| `numpy` |" + " yes |" * len(conformance.CHECKS)
    assert lines[3].startswith("| `strict-no_float64` | yes |")
    assert lines[3].endswith("| - | yes | - |")  # no float16 in array-api-strict, no float64 on that device

    def broken(b):
        raise RuntimeError("boom")

    monkeypatch.setitem(conformance.CHECKS, "pickle", broken)
    ids, rows, notes = conformance.run(["numpy"])
    assert rows["numpy"]["pickle"] == "no [1]"
    assert notes == ["numpy, pickle: RuntimeError: boom"]
    assert "[1] numpy, pickle: RuntimeError: boom" in conformance.format_table(
        ids, rows, notes, markdown=False
    )
