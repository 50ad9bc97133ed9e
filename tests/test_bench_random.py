"""benchmarks/bench_random runs end to end on a tiny case (timings themselves are not tested)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_bench_random_writes_table_json_and_ratios(tmp_path):
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_random", "--library", "numpy", "--library", "cupy",
         "--shapes", "8x12", "--budget", "0.02", "--min-repeat", "3", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    generators = {r["generator"] for r in report["measurements"]}
    assert {"counter keep_mask", "counter uniform f32", "default_rng().random f64"} <= generators
    assert all(r["library"] == "numpy" and r["ms"] > 0 and r["samples"] >= 3 for r in report["measurements"])
    assert {(q["counter"], q["native"]) for q in report["ratios"]} >= {
        ("counter keep_mask", "default_rng().random f64")
    }
    assert all(q["ratio"] > 0 and q["shape"] == "8x12" for q in report["ratios"])
    assert report["notes"] == ["cupy skipped: CuPy needs --device cuda"]
    table = out.with_suffix(".txt").read_text()
    assert "counter / native" in table
    assert "CPU:" in table
    assert "BLAS" in table


def test_bench_random_refuses_a_bad_shape():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_random", "--shapes", "8x"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "`--shapes`" in result.stderr
    assert "'8x'" in result.stderr
