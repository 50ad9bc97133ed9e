"""The checked arguments of :func:`dense_xp.training.fit`: options, data, the checks both engines share."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from .. import _backend, _checks
from ..losses import get_loss
from ..optimizers import get_optimizer

__all__ = ["FitData", "FitOptions", "check_monitor", "options", "split", "validation", "verbosity"]


@dataclass(frozen=True)
class FitOptions:
    """The checked arguments of :func:`fit` that the engines and the loop read."""

    loss: Any
    optimizer: Any
    epochs: int
    batch_size: int | None  # None: all rows in one batch
    shuffle: bool
    rng: Any  # the host generator of the shuffles (None without shuffle)
    verbose: int  # 0 silent, 1 a progress bar, 2 one line per epoch
    check_finite: bool
    check_every: int
    initial_epoch: int = 0
    callbacks: Any = None  # a CallbackList
    compile: bool | None = None  # None: compile the step where the model's library can


@dataclass
class FitData:
    """What a fit trains on, before an engine checks it: features, targets, row weights, validation."""

    X: Any
    y: Any
    weights: Any = None  # sample_weight, or None
    class_weight: dict[int, float] | None = None
    validation: tuple[Any, ...] | None = None  # (X, y) or (X, y, sample_weight)


def options(
    loss: Any, optimizer: Any, epochs: Any, batch_size: Any, shuffle: Any, seed: Any, verbose: int,
    check_finite: Any, check_every: Any, initial_epoch: Any, compile: Any = None,
) -> FitOptions:  # fmt: skip
    """Every argument check both engines share, before anything is computed."""
    loss, optimizer = get_loss(loss), get_optimizer(optimizer)
    epochs = _checks.check_int(epochs, "epochs", minimum=0)
    initial_epoch = _checks.check_int(initial_epoch, "initial_epoch", minimum=0)
    if initial_epoch > epochs:
        msg = f"`initial_epoch` ({initial_epoch}) must not exceed `epochs` ({epochs}), the last epoch's index"
        raise ValueError(msg)
    if batch_size is not None:
        batch_size = _checks.check_int(batch_size, "batch_size", minimum=1)
    check_every = _checks.check_int(check_every, "check_every", minimum=1)
    for name, flag in (("shuffle", shuffle), ("check_finite", check_finite)):
        _checks.check_bool(flag, name)
    if compile is not None:
        _checks.check_bool(compile, "compile")
    seed = _checks.check_seed(seed)
    rng = _backend.host_rng(seed) if shuffle else None  # seeding costs ~0.1 ms: only where it shuffles
    return FitOptions(
        loss, optimizer, epochs, batch_size, shuffle, rng, verbose, check_finite, check_every, initial_epoch,
        compile=compile,
    )  # fmt: skip


def verbosity(verbose: Any, progress: Any) -> int:
    _checks.check_bool(progress, "progress")
    if verbose is None:
        return 1 if progress else 0
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        msg = f"`verbose` must be 0 (silent), 1 (a progress bar) or 2 (a line per epoch), got {verbose!r}"
        raise (TypeError if not isinstance(verbose, int) or isinstance(verbose, bool) else ValueError)(msg)
    return int(verbose)


def validation(validation_data: Any, validation_split: Any) -> tuple[Any, ...] | None:
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
        msg = f"`validation_split` must be a number in [0, 1), got {type(validation_split).__name__}"
        raise TypeError(msg)
    if not 0 <= float(validation_split) < 1:
        msg = f"`validation_split` must be a number in [0, 1), got {validation_split!r}"
        raise ValueError(msg)
    if validation_data is None:
        return None
    if validation_split:
        msg = "`validation_data` and `validation_split` cannot both be given: pass one"
        raise ValueError(msg)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        msg = (
            "`validation_data` must be a pair (X_val, y_val) or a triple (X_val, y_val, sample_weight_val), "
            f"got {type(validation_data).__name__}"
        )
        raise TypeError(msg)
    return tuple(validation_data)


def split(data: FitData, validation_split: float) -> FitData:
    """The last ``validation_split`` of the rows as validation data (Keras's split, before shuffling)."""
    if not validation_split:
        return data
    n = data.X.shape[0]
    cut = math.floor(n * (1.0 - validation_split))
    if cut in (0, n):
        msg = (
            f"`validation_split` {validation_split} of {n} rows leaves "
            f"{'no training' if cut == 0 else 'no validation'} row: pass more data or another split"
        )
        raise ValueError(msg)
    weights = data.weights
    train = FitData(data.X[:cut], data.y[:cut], None if weights is None else weights[:cut], data.class_weight)
    train.validation = (data.X[cut:], data.y[cut:]) + (() if weights is None else (weights[cut:],))
    return train


def check_monitor(optimizer: Any, validation: bool) -> None:
    """A plateau schedule watching ``val_*`` needs validation data (refused before training)."""
    monitor = getattr(getattr(optimizer, "schedule", None), "monitor", None)
    if isinstance(monitor, str) and monitor.startswith("val_") and not validation:
        msg = (
            f"the optimizer's schedule monitors {monitor!r}, which needs `validation_data` or "
            "`validation_split`"
        )
        raise ValueError(msg)
