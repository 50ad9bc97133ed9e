"""plot_history: learning curves as an image, matplotlib imported only when called."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dense_xp

HISTORY = {
    "loss": [2.0, 0.9, 0.5, 0.3],
    "accuracy": [0.4, 0.7, 0.85, 0.9],
    "val_loss": [2.1, 1.0, 0.7, 0.6],
    "val_accuracy": [0.35, 0.66, 0.8, 0.84],
}


def _image(path):
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert image.ndim == 3
    return image


def test_plot_history_writes_two_panels(tmp_path):
    pytest.importorskip("matplotlib")
    out = dense_xp.plot_history(HISTORY, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = _image(out)
    assert image.shape[:2] == (380, 1000)  # two 5 x 3.8 inch panels at 100 dpi
    assert np.unique(image.reshape(-1, image.shape[2]), axis=0).shape[0] > 20  # curves, not a blank page


def test_plot_history_with_loss_alone_has_one_panel(tmp_path):
    pytest.importorskip("matplotlib")
    out = dense_xp.plot_history({"loss": [1.0, 0.5]}, tmp_path / "loss.png")
    assert _image(out).shape[:2] == (380, 500)


@pytest.mark.parametrize(
    ("history", "scale"),
    [
        (HISTORY, "log"),
        ({"loss": [1.0, -0.5, 0.0]}, "linear"),
        ({"loss": [1.0], "val_loss": [0.0]}, "linear"),
    ],
)
def test_plot_history_uses_a_log_loss_axis_for_positive_losses(tmp_path, monkeypatch, history, scale):
    figure = pytest.importorskip("matplotlib.figure")
    saved = []
    monkeypatch.setattr(figure.Figure, "savefig", lambda self, *args, **kwargs: saved.append(self))
    dense_xp.plot_history(history, tmp_path / "curves.png")
    (fig,) = saved
    assert fig.axes[0].get_yscale() == scale
    assert fig.axes[0].get_xlabel() == "epoch"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["training", "validation"][
        : len([k for k in ("loss", "val_loss") if k in history])
    ]


def test_plot_history_plots_what_fit_returns(tmp_path):
    pytest.importorskip("matplotlib")
    model = dense_xp.Sequential([dense_xp.DenseLayer(3, 2, seed=0)])
    X, y = np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=3, validation_data=(X, y), progress=False)
    assert dense_xp.plot_history(history, tmp_path / "fit.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("history", "exc", "match"),
    [
        ([1.0, 0.5], TypeError, r"`history` must be the dict that Sequential.fit returns, got list"),
        (
            {"accuracy": [0.5]},
            ValueError,
            r"`history` must hold a non-empty 'loss' list, got keys \['accuracy'\]",
        ),
        ({"loss": []}, ValueError, r"`history` must hold a non-empty 'loss' list"),
        ({"loss": "0.5"}, TypeError, r"`history\['loss'\]` must be a list of numbers, got '0.5'"),
        ({"loss": [0.5, "x"]}, TypeError, r"`history\['loss'\]` must be a list of numbers, got \[0.5, 'x'\]"),
    ],
)
def test_plot_history_rejects_bad_history_and_writes_nothing(tmp_path, history, exc, match):
    with pytest.raises(exc, match=match):
        dense_xp.plot_history(history, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_history_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'plot_history needs matplotlib: pip install "dense-xp\[demo\]"'):
        dense_xp.plot_history(HISTORY, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_importing_dense_xp_does_not_import_matplotlib():
    code = "import sys, dense_xp; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
