"""The training progress bar: a scaled rate, a bar that keeps its width, metrics never cut mid-word."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import tqdm.std

from dense_xp import DenseLayer, Sequential, _progress

METRICS = {"loss": "0.0123", "accuracy": "0.9980", "val_loss": "0.0812", "val_accuracy": "0.9756"}
SHOWN = ["loss=0.0123", "acc=0.9980", "val_loss=0.0812", "val_acc=0.9756"]


class _Terminal(io.StringIO):
    """A terminal of the width that ``os.get_terminal_size`` reports (patched by ``_columns``)."""

    def isatty(self):
        return True

    def fileno(self):
        return 2


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, moved by hand: rates and times do not depend on the machine."""
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    return now


def _columns(monkeypatch, columns):
    size = os.terminal_size((columns, 24))
    monkeypatch.setattr(os, "get_terminal_size", lambda *_: size)


def _lines(screen):
    """Every line tqdm drew, in order (it redraws with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", screen.getvalue()) if line.strip()]


def _epoch(clock, screen, *, seconds=0.0081):
    """An epoch of 1347 samples in ``seconds``, with a running loss, then the epoch's four metrics."""
    with _progress.bar(1347, "epoch 20/20", enabled=True, file=screen) as bar:
        clock[0] += seconds * 608 / 1347
        bar.update(608)
        bar.set_postfix(loss="0.1234")
        clock[0] += seconds * (1347 - 608) / 1347
        bar.update(1347 - 608)
        bar.set_postfix(METRICS)
    return _lines(screen)


def _bar_cells(line):
    match = re.search(r"\|([^|]*)\|", line)
    assert match, line
    return len(match[1])


def _postfix(line):
    """The ``name=value`` items of a line, each whole (a cut one does not match)."""
    return re.findall(r"[a-z_]+=\d\.\d{4}(?=, |\]|$)", line)


@pytest.mark.parametrize("columns", [80, 120])
def test_the_line_fits_the_terminal_keeps_the_bar_and_never_cuts_a_metric(monkeypatch, clock, columns):
    _columns(monkeypatch, columns)
    lines = _epoch(clock, _Terminal())
    last = lines[-1]
    for line in lines:
        assert len(line) < columns, line  # tqdm keeps the last column free
        assert _bar_cells(line) >= _progress.MIN_BAR, line
        assert "=" not in line or line.rstrip("]").endswith((*SHOWN, "loss=0.1234")), line
        assert line.count("=") == len(_postfix(line)), line  # every item shown is whole
    assert _postfix(last) == SHOWN[: len(_postfix(last))]  # the first ones kept, the last ones dropped
    assert "166k sample/s" in last  # 1347 samples in 8.1 ms, scaled
    if columns == 120:
        assert _postfix(last) == SHOWN  # all four, names shortened
    else:
        assert _postfix(last) == ["loss=0.0123"]


def test_a_wide_terminal_shows_the_full_line_and_a_wide_bar(monkeypatch, clock):
    _columns(monkeypatch, 200)
    last = _epoch(clock, _Terminal())[-1]
    assert "| 1347/1347 [00:00<00:00, 166k sample/s, " + ", ".join(SHOWN) + "]" in last
    assert len(last) == 199  # the bar takes what is left
    assert _bar_cells(last) > 60


def test_a_narrow_terminal_keeps_the_bar_and_drops_the_rest_whole(monkeypatch, clock):
    _columns(monkeypatch, 40)
    for line in _epoch(clock, _Terminal()):
        assert len(line) < 40
        assert re.fullmatch(r"epoch 20/20: +\d+%\|[^|]{10,}\|", line), line


@pytest.mark.parametrize(
    ("seconds", "rate"), [(0.0081, "166k sample/s"), (13.47, "100 sample/s"), (2694.0, "0.50 sample/s")]
)
def test_the_rate_is_scaled_as_a_person_reads_it(monkeypatch, clock, seconds, rate):
    _columns(monkeypatch, 120)
    last = _epoch(clock, _Terminal(), seconds=seconds)[-1]
    assert f" {rate}," in last
    assert not re.search(r"\d{4,}\.\d", last)  # never 165058.92sample/s


def test_without_a_known_width_the_line_is_tqdms_own(clock):
    class Shown(io.StringIO):  # a terminal whose size is unknown
        def isatty(self):
            return True

    screen = Shown()
    last = _epoch(clock, screen)[-1]
    assert last.startswith("epoch 20/20: 100%|##########| 1347/1347 [00:00<00:00, 166k sample/s, ")
    assert last.endswith(", ".join(SHOWN) + "]")


def test_a_disabled_bar_writes_nothing(clock):
    screen = _Terminal()
    with _progress.bar(10, "epoch 1/1", enabled=False, file=screen) as bar:
        bar.update(10)
        bar.set_postfix(METRICS)
    assert screen.getvalue() == ""


def test_fit_draws_its_bar_with_validation_metrics_fitted_to_the_terminal(monkeypatch):
    _columns(monkeypatch, 80)
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 2, 64)
    model = Sequential([DenseLayer(4, 8, "relu", seed=0), DenseLayer(8, 2, seed=1)])
    model.fit(X, y, loss="softmax_cross_entropy", epochs=2, batch_size=16, validation_data=(X, y))
    lines = _lines(screen)
    assert any(line.startswith("epoch 2/2: 100%|") for line in lines)
    for line in lines:
        assert len(line) < 80, line
        assert _bar_cells(line) >= _progress.MIN_BAR, line
        assert line.count("=") == len(_postfix(line)), line
        assert re.search(r" \d+(\.\d+)?[kMG]? sample/s|\? sample/s", line), line
