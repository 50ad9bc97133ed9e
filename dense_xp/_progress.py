"""The progress bar of training: tqdm, with a scaled rate and metrics that never run past the terminal.

The training loop (:mod:`dense_xp.training._loop`) and the demo's baseline get
their bar from :func:`bar`. The line is fitted to the terminal with tqdm's own
``dynamic_ncols`` and ``bar_format``: tqdm gives ``{bar}`` whatever columns the
rest of the line leaves (down to one block) and then cuts the line at the
terminal's width, mid-word if need be. Here the rest of the line gives way
first, whole pieces at a time, so that the bar keeps :data:`MIN_BAR` columns:

1. the full line, ``epoch 3/20:  45%|████▌     | 608/1347 [00:00<00:00, 165k sample/s, loss=0.1234]``;
2. without the ``608/1347`` count (the percentage says as much);
3. then without postfix metrics, the last ones first, each ``name=value``
   dropped whole;
4. then without the times, and last without the rate.

Metric names are shortened (``accuracy`` to ``acc``, ``val_accuracy`` to
``val_acc``), and the rate is scaled (``165k sample/s``, not
``165058.92sample/s``).
"""

from __future__ import annotations

from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.utils import disp_len

__all__ = ["FORMATS", "MIN_BAR", "SHORT_NAMES", "bar"]

MIN_BAR = 10
"""Columns the bar itself keeps before the metrics beside it give way."""

SHORT_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}
"""Metric names as the bar shows them."""

FORMATS = (
    "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]",
    "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}, {rate_noinv_fmt}{postfix}",
    "{desc}: {percentage:3.0f}%|{bar}| {rate_noinv_fmt}",
    "{desc}: {percentage:3.0f}%|{bar}|",
)
"""tqdm ``bar_format`` strings, the fullest first: the first that fits the terminal is used."""


class _Bar(tqdm):  # type: ignore[misc]  # tqdm is untyped
    """A tqdm bar whose postfix has short names and whose line is fitted to the terminal."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        if self.disable:  # nothing shows it: skip tqdm's formatting (fit calls this once per check)
            return
        items = {**dict(ordered_dict or {}), **dict(sorted(kwargs.items()))}  # tqdm sorts the keywords
        super().set_postfix({SHORT_NAMES.get(k, k): v for k, v in items.items()}, refresh=refresh)

    @property
    def format_dict(self) -> Any:
        meter = super().format_dict  # `close` renders the last line with `disable` already set
        width = meter.get("ncols")
        return _fitted(meter, width) if width and "bar_format" in meter else meter


class _Hidden:
    """What :func:`bar` gives when it is disabled: tqdm's methods that ``fit`` calls, doing nothing."""

    disable = True

    def __enter__(self) -> _Hidden:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        return None

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def _width(meter: dict[str, Any], bar_format: str, items: list[str]) -> int:
    """Columns of the line with ``bar_format``, these postfix items and a bar of MIN_BAR columns."""
    fixed = bar_format.replace("{bar}", f"{{bar:{MIN_BAR}}}")
    line = tqdm.format_meter(**{**meter, "ncols": None, "bar_format": fixed, "postfix": ", ".join(items)})
    return int(disp_len(line))


def _fitted(meter: dict[str, Any], width: int) -> dict[str, Any]:
    """``meter`` (tqdm's ``format_dict``) with the fullest ``bar_format`` and postfix that fit ``width``."""
    postfix = meter.get("postfix")
    items = postfix.split(", ") if isinstance(postfix, str) and postfix else []
    candidates = [(FORMATS[0], items)]
    candidates += [(FORMATS[1], items[:keep]) for keep in range(len(items), -1, -1)]
    candidates += [(bar_format, []) for bar_format in FORMATS[2:]]
    for bar_format, shown in candidates:
        if _width(meter, bar_format, shown) <= width:
            break
    return {**meter, "bar_format": bar_format, "postfix": ", ".join(shown)}


def bar(total: int, desc: str, *, enabled: bool, unit: str = "sample", file: IO[str] | None = None) -> Any:
    """A tqdm progress bar of ``total`` units, labelled ``desc``.

    Parameters
    ----------
    total : int
        Units (samples, epochs) the bar counts to.
    desc : str
        Its label, such as ``"epoch 3/20"``.
    enabled : bool
        ``True`` shows the bar where ``file`` is a terminal (tqdm's
        ``disable=None``); ``False`` never shows it.
    unit : str
        The unit of the rate, shown scaled: ``"165k sample/s"``.
    file : file object, optional
        Where the bar is written (tqdm's default, standard error, if ``None``).

    Returns
    -------
    tqdm.tqdm
        The bar, a context manager; ``update`` and ``set_postfix`` as in tqdm.
        Disabled, a stand-in with those methods that does nothing (a tqdm
        bar costs tens of microseconds to make even when hidden: ``fit``
        makes one per epoch).
    """
    if not enabled:
        return _Hidden()
    return _Bar(
        total=total,
        desc=desc,
        unit=f" {unit}",
        unit_scale=True,
        dynamic_ncols=True,
        bar_format=FORMATS[0],
        disable=None,
        file=file,
    )
