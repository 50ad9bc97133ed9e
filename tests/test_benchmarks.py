"""The benchmark CLIs run end to end on a tiny case (timings themselves are not tested)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_check import FILES, pytest_counts, targets

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


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path):
    if os.environ.get("DENSE_XP_GPU_CHECK"):
        pytest.skip("running inside benchmarks.gpu_check already, which does not start itself again")
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    pytest.importorskip("sklearn", reason="the demo extra is not installed")
    out = tmp_path / "gpu-dry"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(out),
         "--cache-dir", str(tmp_path / "kernels"), "--pytest-args", "tests/test_initializers.py -k zero"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in FILES)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["dry_run"] is True
    assert summary["parent_imported"] == []  # CuPy, torch and JAX only ever ran in child processes
    assert summary["env"]["CUPY_TF32"] == "0"
    assert summary["env"]["CUPY_CACHE_DIR"] == str(tmp_path / "kernels")
    assert set(summary["probe"]) == {"cupy", "torch", "jax", "nvidia_smi"}
    assert [name for name, step in summary["steps"].items() if step["status"] == "passed"] == [
        "info", "warm", "tests", "demo", "bench", "random", "sklearn",
    ]  # fmt: skip
    assert summary["steps"]["tests"]["counts"]["passed"] >= 1
    assert "failed" not in summary["steps"]["tests"]["counts"]
    assert "DENSE_XP_TEST_BACKENDS=numpy " in result.stdout
    assert '"jobs": ' in (out / "warm.log").read_text()
    assert "numpy on 'cpu'" in (out / "demo.log").read_text()
    assert (out / "bench.png").stat().st_size > 1000
    floor, torch = summary["targets"]["step_over_cublas_floor"], summary["targets"]["step_over_torch_eager"]
    assert set(summary["targets"]) == {"step_over_cublas_floor", "step_over_torch_eager"}
    assert (floor["shape"], floor["dtype"], floor["vs"]) == ("64x32->32", "float32", "floor")
    assert floor["ratio"] > 0
    assert floor["met"] is (floor["ratio"] <= 1.05)
    assert torch["shape"] == "16x8->8"
    if importlib.util.find_spec("torch") is None:
        assert torch["met"] is None
    else:
        assert torch["met"] is (torch["ratio"] < 1)


def test_gpu_check_without_cuda_runs_only_the_probes(tmp_path):
    import dense_xp

    if dense_xp._backend.cuda_unusable_reason(0) is None:
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "gpu"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "nothing was run" in result.stderr
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False
    assert "steps" not in summary
    assert summary["reason"].startswith("no CUDA device answers")
    assert summary["probe"]["cupy"]["available"] is False


def test_targets_read_the_two_ratios_from_the_benchmark(tmp_path):
    keys = ("impl", "n", "d_in", "d_out", "dtype", "activation", "ms")
    rows = [
        dict(zip(keys, row, strict=True))
        for row in [
            ("dense_xp", 8192, 4096, 4096, "float32", "relu", 10.4),
            ("dense_xp", 8192, 4096, 4096, "float32", "sigmoid", 10.6),
            ("floor", 8192, 4096, 4096, "float32", None, 10.0),
            ("dense_xp", 256, 512, 512, "float32", "relu", 0.09),
            ("torch", 256, 512, 512, "float32", "relu", 0.1),
            ("torch", 256, 512, 512, "float16", "relu", 0.01),
        ]
    ]
    (tmp_path / "bench.json").write_text(json.dumps({"measurements": rows}))
    found = targets(tmp_path / "bench.json", dry_run=False)
    floor, torch = found["step_over_cublas_floor"], found["step_over_torch_eager"]
    assert (floor["ratio"], floor["activation"], floor["met"]) == (1.06, "sigmoid", False)
    assert (torch["ratio"], torch["activation"], torch["met"]) == (0.9, "relu", True)
    missing = targets(tmp_path / "absent.json", dry_run=False)
    assert [t["met"] for t in missing.values()] == [None, None]


def test_pytest_counts_reads_the_summary_line():
    log = "....\n=== 12 passed, 3 skipped, 1 failed in 2.0s ===\n"
    assert pytest_counts(log) == {"passed": 12, "skipped": 3, "failed": 1}
    assert pytest_counts("no summary here") == {}


def test_gpu_check_out_of_time_runs_no_step_and_fails(tmp_path):
    out = tmp_path / "late"
    out.mkdir()
    (out / "bench.json").write_text('{"measurements": []}')  # an earlier run's file
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--deadline", "1", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False
    assert {s["status"] for s in summary["steps"].values()} == {"not run"}
    assert [t["met"] for t in summary["targets"].values()] == [None, None]


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


def test_bench_dask_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_dask", "--rows", "2000", "--chunk", "500", "--batch-size",
         "1000", "--workers", "1", "--repeat", "1", "--steps", "2", "--stream-rows", "0", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dask, 1 worker" in out.with_suffix(".txt").read_text()
    assert out.with_suffix(".png").stat().st_size > 1000
    report = json.loads(out.with_suffix(".json").read_text())
    assert [c["workers"] for c in report["cluster"]] == [1]
    rows = report["in_memory"] + report["cluster"]
    assert all(r["predict_rows_per_s"] > 0 and r["epoch_rows_per_s"] > 0 for r in rows)
    assert report["cluster"][0]["step_ms"] > 0
    assert "streaming" not in report


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
    numpy = {name: "-" if name == "mixed bfloat16" else "yes" for name in conformance.CHECKS}  # no bfloat16
    assert lines[2] == "| `numpy` |" + "".join(f" {cell} |" for cell in numpy.values())
    assert lines[3].startswith("| `strict-no_float64` | yes |")
    strict = lines[3].strip("| ").split(" | ")
    cells = dict(zip(["backend", *conformance.CHECKS], strict, strict=True))
    assert [cells[k] for k in ("float16", "float32", "float64", "mixed float16", "mixed bfloat16")] == [
        "-", "yes", "-", "-", "-"
    ]  # no float16 nor bfloat16, and no float64 there  # fmt: skip
    assert all(
        cells[name] == "yes" for name in ("Activation", "Dropout", "LayerNorm", "BatchNorm", "user layer")
    )

    def broken(b):
        raise RuntimeError("boom")

    monkeypatch.setitem(conformance.CHECKS, "pickle", broken)
    ids, rows, notes = conformance.run(["numpy"])
    assert rows["numpy"]["pickle"] == "no [1]"
    assert notes == ["numpy, pickle: RuntimeError: boom"]
    assert "[1] numpy, pickle: RuntimeError: boom" in conformance.format_table(
        ids, rows, notes, markdown=False
    )


def test_bench_demo_times_fresh_processes_and_reads_the_demos_own_times(tmp_path):
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    pytest.importorskip("sklearn", reason="the demo extra is not installed")
    pytest.importorskip("matplotlib", reason="the demo extra is not installed")
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_demo", "--runs", "2", "--out", str(out),
         "--", "--device", "cpu", "--epochs", "1", "--no-baseline"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["demo_args"] == ["--device", "cpu", "--epochs", "1", "--no-baseline"]
    (first, second) = report["runs"]
    for run in (first, second):
        assert set(run) >= {"wall_s", "done_in", "load", "train", "save"}
        assert "baseline" not in run
        assert run["wall_s"] > run["done_in"] >= run["load"] + run["train"] + run["save"] - 0.05
    table = out.with_suffix(".txt").read_text()
    assert table.startswith("python -m dense_xp demo --device cpu --epochs 1 --no-baseline: 2 runs")
    assert "\nmed " in table
    assert not list(tmp_path.glob("*.npz"))  # the demo's files went to a temporary folder


def test_bench_demo_reads_each_part_of_the_demos_output():
    from benchmarks.bench_demo import parse

    output = (
        "dense_xp 0.1.0 demo: a 64-128-10 MLP on scikit-learn's digits, float32\n"
        "[1/4] loading scikit-learn's digits ...\n      1347 training and 450 test images (0.71 s)\n"
        "[2/4] training with dense_xp: 3 epochs, float32 ...\n      test accuracy 0.9267 (417/450) (0.05 s)\n"
        "[3/4] training scikit-learn's MLPClassifier: same network ...\n      test accuracy 0.9533 (0.11 s)\n"
        "[4/4] saving ...\n      model: d.npz; learning curves: d.png (0.51 s)\ndone in 1.4 s\n"
    )
    assert parse(output) == {"load": 0.71, "train": 0.05, "baseline": 0.11, "save": 0.51, "done_in": 1.4}


def test_bench_sklearn_writes_table_and_json(tmp_path):
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    pytest.importorskip("sklearn", minversion="1.6", reason="needs scikit-learn >= 1.6")
    from benchmarks import bench_sklearn

    out = tmp_path / "tiny"
    argv = [
        "--sizes",
        "300x8x16,200x4x3-3",
        "--epochs",
        "2",
        "--repeat",
        "1",
        "--wait",
        "0",
        "--out",
        str(out),
    ]
    assert bench_sklearn.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["n"], r["hidden"]) for r in report["rows"]] == [(300, [16]), (200, [3, 3])]
    for row in report["rows"]:
        cpu = row["cpu"]
        assert cpu["sklearn"]["s"] > 0
        assert cpu["dense_xp"]["s"] > 0
        assert cpu["dense_xp"]["loss"] == pytest.approx(cpu["sklearn"]["loss"], rel=1e-5)  # the same work
    assert "x" in out.with_suffix(".txt").read_text().splitlines()[1]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_bench_fit_implementations_do_the_same_work(opt):
    """After one epoch from the same weights, every training implementation holds the same weights."""
    from benchmarks import _fit_impls

    case = (16, 8, 8, opt)
    reference = _fit_impls.build_dense_xp(case)[0]()
    compared = 0
    for name in ("hand", "torch", "jax.jit", "dense_xp-jax"):
        try:
            epoch, batches = _fit_impls.BUILDERS[name](case)
        except _fit_impls.Skip:
            continue
        assert batches == 400
        for got, want in zip(epoch(), reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=name)
        compared += 1
    assert compared >= 1
    assert not np.allclose(reference[0], _fit_impls._init(8, 8)[0], atol=1e-4)  # the epoch moved the weights


def test_bench_fit_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    pytest.importorskip("threadpoolctl", reason="the bench extra is not installed")
    from benchmarks import bench_fit

    out = tmp_path / "fit"
    argv = ["--shapes", "tiny", "--optimizers", "sgd", "--passes", "2", "--budget", "0.01", "--out", str(out)]
    assert bench_fit.main([*argv, "--skip", "torch.compile"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    timed = {r["impl"] for r in report["records"] if "ms" in r}
    assert {"floor", "hand", "dense_xp"} <= timed
    assert all(len(r["ms"]) == 2 and min(r["ms"]) > 0 for r in report["records"] if "ms" in r)
    table = out.with_suffix(".txt").read_text()
    assert "x floor" in table
    assert "dense_xp" in table
    assert out.with_suffix(".png").stat().st_size > 1000
