"""ModelCheckpoint: save the model and its optimizer after each epoch, or when a monitored key improves."""

from __future__ import annotations

import os
from typing import Any

from .. import _checks
from ._monitor import better, monitored
from ._protocol import Callback

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer) after each epoch, or only when ``monitor`` improves.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` path; ``{epoch}`` (from 1, as Keras names files) and the
        history keys may appear in it as format fields:
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best so far.
    mode : {"auto", "min", "max"}, default "auto"
    save_optimizer : bool, default True
        Include the optimizer's state, step count, schedule position and loss
        scale, so that ``dense_xp.load(path, optimizer=...)`` resumes training
        exactly.

    Notes
    -----
    Written through :func:`dense_xp.save`: atomically, a previous file at the
    path is replaced only by a complete one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        save_optimizer: bool = True,
    ) -> None:
        try:
            self.path = os.fspath(path)
        except TypeError:
            msg = f"`path` must be a str or os.PathLike, got {type(path).__name__} {path!r}"
            raise TypeError(msg) from None
        self.monitor = monitor
        self.save_best_only = _checks.check_bool(save_best_only, "save_best_only")
        self.save_optimizer = _checks.check_bool(save_optimizer, "save_optimizer")
        self._better = better(monitor, mode) if save_best_only else None
        self.best: float | None = None
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Check the path's format fields before the first epoch."""
        try:
            self.path.format(epoch=1, **dict.fromkeys(("loss", "accuracy", "val_loss", "val_accuracy"), 0.0))
        except (KeyError, ValueError, IndexError) as exc:
            msg = f"`path` {self.path!r} has a format field fit cannot fill: {exc}"
            raise ValueError(msg) from None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Save, unless ``save_best_only`` and the monitored value did not improve."""
        logs = logs or {}
        if self._better is not None:
            current = monitored(logs, self.monitor, "ModelCheckpoint")
            if self.best is not None and not self._better(current, self.best):
                return
            self.best = current
        from ..checkpoint import save

        path = self.path.format(epoch=epoch + 1, **logs)
        save(self.model, path, optimizer=self.optimizer if self.save_optimizer else None)
        self.saved.append(path)
