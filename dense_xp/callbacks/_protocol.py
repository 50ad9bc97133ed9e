"""The callback protocol: :class:`Callback`, whose hooks do nothing, and :class:`CallbackList`, which
checks the callbacks of one ``fit`` and calls each hook on every callback that has it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Callback", "CallbackList"]


class Callback:
    """Base class: every hook does nothing; override the ones you need (see :mod:`dense_xp.callbacks`)."""

    model: Any = None
    optimizer: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last epoch, or the epoch a callback stopped training in."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Before epoch ``epoch`` (from 0)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """After epoch ``epoch`` and its validation; ``logs`` holds its history entries."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Before batch ``batch`` (from 0) of the epoch."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After batch ``batch``'s step."""


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end")  # fmt: skip


class CallbackList:
    """The callbacks of one ``fit``, checked once, each hook calling every callback that has it."""

    def __init__(self, callbacks: Iterable[Any] | None, model: Any, optimizer: Any) -> None:
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            msg = f"`callbacks` must be a list of callbacks, got {type(callbacks).__name__} {callbacks!r}"
            raise TypeError(msg)
        for i, callback in enumerate(callbacks):
            if not any(callable(getattr(callback, hook, None)) for hook in _HOOKS):
                msg = f"`callbacks[{i}]` has none of the hooks {', '.join(_HOOKS)}: got {callback!r}"
                raise TypeError(msg)
        self.callbacks = list(callbacks)
        self.batch_hooks = any(
            callable(getattr(c, h, None)) and not _inherited(c, h)
            for c in self.callbacks
            for h in ("on_train_batch_begin", "on_train_batch_end")
        )
        for callback in self.callbacks:
            callback.model, callback.optimizer = model, optimizer

    def call(self, hook: str, *args: Any) -> None:
        """``hook(*args)`` of every callback that has it, in order."""
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if callable(method):
                method(*args)


def _inherited(callback: Any, hook: str) -> bool:
    """Whether ``callback``'s ``hook`` is :class:`Callback`'s no-op."""
    return getattr(type(callback), hook, None) is getattr(Callback, hook)
