"""Training: ``fit`` checks its arguments once, then the data picks the engine.

Host or device arrays train in memory (:mod:`._memory`); Dask arrays train
data-parallel with Dask as the engine (:mod:`dense_xp.distributed`). One epoch
loop (:mod:`._loop`: progress bar, history, validation, the divergence guard)
drives either. :meth:`dense_xp.Sequential.fit` is this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _backend, _checks, _data, distributed
from ..losses import get_loss
from ..optimizers import get_optimizer
from . import _dask, _loop, _memory
from ._guard import TrainingDivergedError

__all__ = ["CHECK_EVERY", "FitOptions", "TrainingDivergedError", "fit"]

CHECK_EVERY = 32  # batches between two divergence checks in memory


@dataclass(frozen=True)
class FitOptions:
    """The checked arguments of :func:`fit` that the engines and the loop read."""

    loss: Any
    optimizer: Any
    epochs: int
    batch_size: int | None  # None: all rows in one batch
    shuffle: bool
    rng: Any  # the host generator of the shuffles
    progress: bool
    check_finite: bool
    check_every: int


def fit(
    model: Any,
    X: Any,
    y: Any,
    *,
    loss: Any,
    optimizer: Any = "adam",
    epochs: int = 10,
    batch_size: int | None = 32,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    seed: int | None = None,
    progress: bool = True,
    check_finite: bool = True,
    check_every: int = CHECK_EVERY,
) -> dict[str, list[float]]:
    """Train ``model`` with mini-batches; host data moves to the device batch by batch.

    Parameters
    ----------
    model : Sequential
    X : array_like or dask.array.Array, shape (n, input_size)
    y : array_like or dask.array.Array, shape (n,) or (n, output_size)
        Targets for ``loss``. Dask arrays (both, with the same row chunks)
        train data-parallel on their chunks (see :mod:`dense_xp.distributed`).
    loss : str or callable
        A name from :data:`dense_xp.losses.LOSSES` or a loss object.
    optimizer : str or Optimizer, default "adam"
    epochs : int
    batch_size : int or None, default 32
        Rows per step; ``None`` takes all rows at each step.
    shuffle : bool
        Shuffle every epoch with a host generator seeded by ``seed``.
    validation_data : (X_val, y_val), optional
    progress : bool
        A tqdm bar per epoch when a terminal is attached.
    check_finite : bool, default True
        Refuse ``X``, ``y`` and ``validation_data`` holding NaN or infinity
        (a ValueError naming the argument) before training. ``False`` skips
        this pass over the data; divergence is still caught.
    check_every : int, default 32
        Check that the loss, the parameters and the optimizer state are
        finite every ``check_every`` batches and at the end of each epoch:
        one device reduction and one transfer of a number per check, and no
        host synchronisation in between. Smaller values locate a divergence
        more precisely; 1 checks every batch. (On Dask arrays every step is
        checked: its loss reaches the client anyway.)

    Returns
    -------
    dict
        Per-epoch ``"loss"`` and ``"accuracy"`` (and ``"val_loss"``,
        ``"val_accuracy"`` with validation data). With a float16
        ``compute_dtype`` under wider parameters, dynamic loss scaling
        (see :mod:`dense_xp.training._scaling`) adds the scale at the end of
        each epoch, ``"loss_scale"``, and the steps it skipped,
        ``"skipped_steps"``.

    Raises
    ------
    TrainingDivergedError
        The loss, a parameter or the optimizer state became NaN or infinite
        (for example from non-finite gradients). The parameters and the
        optimizer state are restored to their last checked finite values;
        the error names the epoch and the window of batches. With loss
        scaling, also when the gradients overflow at every loss scale.
    TypeError, ValueError
        A bad argument, a model whose layers disagree (see
        :meth:`Sequential.check`), or an optimizer holding state for
        parameters of other shapes; nothing is changed.

    Notes
    -----
    The layers run in training mode. The loss is computed in ``param_dtype``:
    the model's output is cast up to it, and the loss gradient back down to
    ``compute_dtype``. Loss scaling reads one value from the device per batch
    (whether the gradients are finite), as ``torch.amp.GradScaler`` does.
    """
    options = _options(
        loss, optimizer, epochs, batch_size, shuffle, seed, progress, check_finite, check_every
    )
    if validation_data is not None and (
        not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2
    ):
        msg = f"`validation_data` must be a pair (X_val, y_val), got {type(validation_data).__name__}"
        raise TypeError(msg)
    with _backend.on_device(model.device):
        model.check()
        if distributed.is_dask(X, y) or distributed.is_lazy(model):
            engine, validation_data = _dask.prepare(
                model, X, y, options=options, validation_data=validation_data
            )
        else:
            engine, validation_data = _in_memory(model, X, y, options, validation_data)
        model.fitted_loss = getattr(options.loss, "name", None)  # read by predict_proba
        with _backend.float_errors_ignored():  # divergence is reported as TrainingDivergedError
            return _loop.run(engine, options, validation_data)


def _options(
    loss: Any, optimizer: Any, epochs: Any, batch_size: Any, shuffle: Any, seed: Any, progress: Any,
    check_finite: Any, check_every: Any,
) -> FitOptions:  # fmt: skip
    """Every argument check both engines share, before anything is computed."""
    loss, optimizer = get_loss(loss), get_optimizer(optimizer)
    epochs = _checks.check_int(epochs, "epochs", minimum=0)
    if batch_size is not None:
        batch_size = _checks.check_int(batch_size, "batch_size", minimum=1)
    check_every = _checks.check_int(check_every, "check_every", minimum=1)
    for name, flag in (("shuffle", shuffle), ("progress", progress), ("check_finite", check_finite)):
        _checks.check_bool(flag, name)
    rng = _backend.host_rng(_checks.check_seed(seed))
    return FitOptions(loss, optimizer, epochs, batch_size, shuffle, rng, progress, check_finite, check_every)


def _in_memory(model: Any, X: Any, y: Any, options: FitOptions, validation_data: Any) -> tuple[Any, Any]:
    """The in-memory engine on checked data, and the checked validation data."""
    X, y = _data.check_pair(model, X, y, options.loss, check_finite=options.check_finite)
    if not model.built:
        model.build(int(X.shape[1]))
        X, y = _data.check_pair(model, X, y, options.loss)  # the targets against the output width now
    options.optimizer.check(model.parameters())
    if validation_data is not None:
        names = ("validation_data[0]", "validation_data[1]")
        X_val, y_val = validation_data
        validation_data = _data.check_pair(
            model, X_val, y_val, options.loss, names=names, check_finite=options.check_finite
        )
    return _memory.Engine(model, X, y, options), validation_data
