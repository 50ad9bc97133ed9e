"""Learning curves as a picture: ``dense_xp.plot_history(history, path)`` (needs matplotlib)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_history"]

_PANELS = (("loss", "loss"), ("accuracy", "accuracy"))


def _check_history(history: object) -> dict[str, list[float]]:
    if not isinstance(history, Mapping):
        msg = f"`history` must be the dict that Sequential.fit returns, got {type(history).__name__}"
        raise TypeError(msg)
    curves: dict[str, list[float]] = {}
    for key, values in history.items():
        if not isinstance(values, Sequence) or isinstance(values, str):
            msg = f"`history[{key!r}]` must be a list of numbers, got {values!r}"
            raise TypeError(msg)
        try:
            curves[str(key)] = [float(v) for v in values]
        except (TypeError, ValueError):
            msg = f"`history[{key!r}]` must be a list of numbers, got {values!r}"
            raise TypeError(msg) from None
    if not curves.get("loss"):
        msg = f"`history` must hold a non-empty 'loss' list, got keys {sorted(history)}"
        raise ValueError(msg)
    return curves


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Save the learning curves of a fit as an image: loss and accuracy per epoch.

    Training curves are solid, validation curves (``val_*``) dashed. Needs
    matplotlib (``pip install "dense-xp[demo]"``), imported only here; no
    pyplot state is touched, so it is safe in scripts and notebooks alike.

    Parameters
    ----------
    history : dict of str to list of float
        What :meth:`dense_xp.Sequential.fit` returns: ``"loss"`` and
        optionally ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``, one
        value per epoch.
    path : str or os.PathLike
        The image file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``...).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError, ValueError
        ``history`` is not a dict of number lists with a non-empty ``"loss"``.
    ImportError
        matplotlib is not installed.
    """
    curves = _check_history(history)
    path = Path(path)
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        msg = 'plot_history needs matplotlib: pip install "dense-xp[demo]" (or matplotlib)'
        raise ImportError(msg) from None
    panels = [(key, label) for key, label in _PANELS if curves.get(key) or curves.get(f"val_{key}")]
    width, height = 5.0 * len(panels), 3.8
    fig = Figure(figsize=(width, height))
    # Fixed margins in inches: a layout engine would draw everything twice.
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.15 / height)
    fig.subplots_adjust(wspace=0.25)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, style, what in ((key, "-", "training"), (f"val_{key}", "--", "validation")):
            values = curves.get(name)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="." if len(values) < 30 else None,
                        label=what)  # fmt: skip
        if key == "loss" and all(
            v > 0 and math.isfinite(v) for k in ("loss", "val_loss") for v in curves.get(k, [])
        ):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)
    return path
