"""The digits demo: each part announced and timed, a baseline trained on the same budget."""

from __future__ import annotations

import io
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
