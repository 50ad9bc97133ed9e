"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dense_xp.demo import load_digits_split

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_the_examples():
    assert len(BLOCKS) == 4


def test_quickstart_runs():
    namespace: dict = {}
    exec(BLOCKS[0], namespace)
    assert namespace["y"].shape == (1, 2)
    assert namespace["host"].shape == (256, 1024)
    assert namespace["layer"].device == "cpu"


def test_other_namespaces_example_runs():
    pytest.importorskip("torch")
    pytest.importorskip("array_api_strict")
    exec(BLOCKS[1], {})


def test_training_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X_train, X_test, y_train, y_test = load_digits_split(0)
    namespace = {"X_train": X_train, "y_train": y_train, "X_val": X_test, "y_val": y_test}
    namespace |= {"X_test": X_test, "y_test": y_test}
    exec(BLOCKS[2].replace("epochs=40", "epochs=2"), namespace)
    assert (tmp_path / "digits.npz").exists()
    assert len(namespace["history"]["loss"]) == 2
    assert namespace["probs"].shape == (len(X_test), 10)


def test_scale_out_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}  # as a script runs
    exec(BLOCKS[3], namespace)
    assert (tmp_path / "model.npz").exists()
    assert len(namespace["history"]["loss"]) == 2
    assert namespace["scores"]["accuracy"] > 0.9
    assert namespace["probs"].shape == (20_000, 2)
