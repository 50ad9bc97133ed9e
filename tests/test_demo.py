"""The digits demo: each part announced and timed, a baseline trained on the same budget."""

from __future__ import annotations

import io
import re
import sys

import pytest

from dense_xp import demo

pytest.importorskip("sklearn", reason="the demo extra is not installed")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_every_part_is_announced_before_it_runs_and_timed_after():
    lines = []
    result = demo.train_digits(device="cpu", epochs=2, progress=False, log=lines.append)
    assert [line[:5] for line in lines[::2]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(line.endswith(" ...") for line in lines[::2])
    assert all(line.startswith("      ") and line.endswith(" s)") for line in lines[1::2])
    assert "MLPClassifier" in lines[4]
    assert set(result["seconds"]) == {"load", "train", "baseline"}
    assert all(s > 0 for s in result["seconds"].values())
    assert result["train_seconds"] == result["seconds"]["train"]
    assert 0.5 < result["sklearn_accuracy"] <= 1
    assert len(result["history"]["val_loss"]) == 2


def test_the_baseline_trains_for_the_given_epochs_with_a_progress_bar(monkeypatch):
    X_train, X_test, y_train, y_test = demo.load_digits_split(0)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    one = demo._sklearn_baseline(X_train, y_train, X_test, y_test, seed=0, epochs=1, progress=True)
    assert "scikit-learn" in terminal.getvalue()
    assert "1/1" in terminal.getvalue()
    three = demo._sklearn_baseline(X_train, y_train, X_test, y_test, seed=0, epochs=3, progress=False)
    assert "3/3" not in terminal.getvalue()
    assert one < three  # more epochs, better fit: the epochs are really trained
    assert three == demo._sklearn_baseline(X_train, y_train, X_test, y_test, seed=0, epochs=3, progress=False)


def test_the_demo_without_matplotlib_asks_for_the_extra_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines = []
    with pytest.raises(ImportError, match=r'needs matplotlib: pip install "dense-xp\[demo\]"'):
        demo.train_digits(device="cpu", epochs=1, plot_to=tmp_path / "c.png", log=lines.append)
    assert lines == []  # nothing started


def test_float16_compute_is_told_apart_from_float32_by_its_scores_and_dtypes():
    runs = {}
    for compute in ("float32", "float16"):
        lines = []
        result = demo.train_digits(
            device="cpu", epochs=2, compute_dtype=compute, progress=False, baseline=False, log=lines.append
        )
        title, scores = lines[2], lines[3]
        runs[compute] = (title, scores, result)
    assert runs["float32"][0].endswith("batches of 32, float32 ...")
    assert runs["float16"][0].endswith("batches of 32, float32 parameters, float16 compute ...")
    for _, scores, result in runs.values():
        hits = round(result["test_accuracy"] * 450)
        assert f"test accuracy {result['test_accuracy']:.4f} ({hits}/450, target >= 0.97)" in scores
        assert f"test loss {result['test_loss']:.6g}; " in scores
        assert f"final training loss {result['history']['loss'][-1]:.6g}" in scores
    assert re.search(r"; loss scale \d+, \d+ steps skipped \(", runs["float16"][1])
    assert "loss scale" not in runs["float32"][1]
    f32, f16 = runs["float32"][2], runs["float16"][2]
    assert f32["test_loss"] != f16["test_loss"]
    assert f"{f32['test_loss']:.6g}" != f"{f16['test_loss']:.6g}"  # the digits printed differ
