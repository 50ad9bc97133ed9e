"""The benchmark CLIs run end to end on a tiny case (timings themselves are not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import pytest_counts

ROOT = Path(__file__).resolve().parents[1]


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


def _report(ratios):
    shapes = [[8, 4, 3], [16, 8, 8], [32, 16, 16]]
    rows = []
    for (n, d_in, d_out), ratio in zip(shapes, ratios, strict=True):
        case = {"n": n, "d_in": d_in, "d_out": d_out, "dtype": "float32"}
        rows += [case | {"impl": "floor", "activation": None, "ms": 1.0}]
        rows += [case | {"impl": "dense_xp", "activation": "relu", "ms": ratio}]
    machine = {"versions": {"dense_xp": "0"}, "cpu_model": "cpu", "date": "2026-01-01"}
    settings = {"dtype": ["float32"], "device": "cpu", "threads": 2}
    return {"machine": machine, "settings": settings, "shapes": shapes, "measurements": rows}


def test_ratio_axis_labels_values_below_one(tmp_path, monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot", reason="the bench extra is not installed")
    from benchmarks._report import plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot(_report([0.25, 0.4, 0.6]), tmp_path / "r.png")
    (fig,) = figures
    fig.canvas.draw()
    ratio_axis = fig.axes[1]
    labels = {t.get_text() for t in ratio_axis.get_yticklabels(minor=True) if t.get_text()}
    labels |= {t.get_text() for t in ratio_axis.get_yticklabels() if t.get_text()}
    assert ratio_axis.get_ylim()[1] < 1.1
    assert {"0.3", "0.5"} <= labels
    plt.close(fig)


def test_bench_dense_writes_to_an_untracked_folder_by_default(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    from benchmarks import bench_dense

    assert bench_dense.OUT_DIR == ROOT / "benchmarks" / "runs"
    if (ROOT / ".git").exists():
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "benchmarks/runs/cpu-2026-01-01.json"], check=False
        )
        assert ignored.returncode == 0, "benchmarks/runs/ must be listed in .gitignore"
    monkeypatch.setattr(bench_dense, "OUT_DIR", tmp_path / "runs")
    argv = ["--dtype", "float32", "--activation", "relu", "--shapes", "4x3x2", "--impl", "dense_xp"]
    argv += ["--passes", "1", "--min-repeat", "1", "--repeat", "1", "--budget", "0.01", "--threads", "1"]
    assert bench_dense.main(argv) == 0
    written = sorted(p.suffix for p in (tmp_path / "runs").iterdir())
    assert written == [".json", ".png", ".txt"]
    assert "wrote " + str(tmp_path / "runs" / "cpu-") in capsys.readouterr().out
