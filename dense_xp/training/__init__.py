"""Training: ``fit`` checks its arguments once, then the data picks the engine.

Host or device arrays train in memory (:mod:`._memory`); Dask arrays train
data-parallel with Dask as the engine (:mod:`dense_xp.distributed`). One epoch
loop (:mod:`._loop`: progress bar, history, validation, the divergence guard)
drives either. :meth:`dense_xp.Sequential.fit` is this function.
"""

from __future__ import annotations

from typing import Any

from .. import _backend, _data, distributed
from ..callbacks import CallbackList
from ..losses import Loss
from . import _arguments, _compiled, _dask, _loop, _memory, _weights
from ._arguments import FitData, FitOptions
from ._guard import TrainingDivergedError

__all__ = ["CHECK_EVERY", "FitOptions", "TrainingDivergedError", "fit"]

CHECK_EVERY = 32  # batches between two divergence checks in memory


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
    validation_data: tuple[Any, ...] | None = None,
    validation_split: float = 0.0,
    sample_weight: Any = None,
    class_weight: dict[int, float] | None = None,
    callbacks: Any = None,
    initial_epoch: int = 0,
    seed: int | None = None,
    verbose: int | None = None,
    progress: bool = True,
    check_finite: bool = True,
    check_every: int = CHECK_EVERY,
    compile: bool | None = None,
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
        Its state, step count, schedule and loss scale carry over from one
        ``fit`` to the next.
    epochs : int
        The index of the last epoch: epochs ``initial_epoch + 1`` to
        ``epochs`` are trained (as in Keras).
    batch_size : int or None, default 32
        Rows per step; ``None`` takes all rows at each step.
    shuffle : bool
        Shuffle every epoch with a host generator seeded by ``seed``.
    validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
    validation_split : float, default 0.0
        The last fraction of the rows (before any shuffle, as Keras takes
        them) held out as validation data: rows ``floor(n * (1 - split))``
        on. Not together with ``validation_data``.
    sample_weight : array_like, shape (n,), optional
        A weight per row (finite, >= 0): each row's loss is multiplied by it
        and a batch's loss is the mean over its rows (Keras's reduction).
        The accuracy is not weighted (Keras's ``metrics``).
    class_weight : dict of int to float, optional
        The weight of the rows of each class (1 for classes it leaves out),
        as Keras: from the label, the argmax of a one-hot row, or the rounded
        target of one output. Not together with ``sample_weight``.
    callbacks : list of Callback, optional
        See :mod:`dense_xp.callbacks` (``EarlyStopping``, ``ModelCheckpoint``,
        ``LearningRateScheduler``, or one's own).
    initial_epoch : int, default 0
        The epochs already trained: a later ``fit`` continues the epoch count,
        the shuffles (the same permutations as one uninterrupted fit with this
        ``seed``) and the schedule.
    seed : int, optional
    verbose : {0, 1, 2}, optional
        0 silent, 1 a progress bar per epoch (on a terminal), 2 one line per
        epoch. ``None`` follows ``progress``.
    progress : bool
        A tqdm bar per epoch when a terminal is attached (``verbose`` 1 or 0).
    check_finite : bool, default True
        Refuse ``X``, ``y``, the weights and ``validation_data`` holding NaN
        or infinity (a ValueError naming the argument) before training.
        ``False`` skips this pass over the data; divergence is still caught.
    check_every : int, default 32
        Check that the loss, the parameters and the optimizer state are
        finite every ``check_every`` batches and at the end of each epoch:
        one device reduction and one transfer of a number per check, and no
        host synchronisation in between. Smaller values locate a divergence
        more precisely; 1 checks every batch. (On Dask arrays every step is
        checked: its loss reaches the client anyway.)
    compile : bool, optional
        Whether the training step runs as one compiled function. ``None``
        (the default) compiles where dense_xp can: on JAX, ``jax.jit``
        traces forward, loss, backward, clipping and the optimizer's update
        once per batch shape, with the same results as eager training,
        where the layers and the loss are dense_xp's own. ``True`` also
        traces layers and losses of one's own (they must then be pure array
        code: Python side effects run once, at the trace) and refuses what
        cannot compile (other libraries, Dask data, float16 loss scaling);
        ``False`` trains eagerly. On torch, ``True`` compiles the same step
        with ``torch.compile`` (one graph per batch shape, the optimizer's
        numbers passed in as tensors); its first steps take seconds to
        compile, so ``None`` trains a torch model eagerly. Random layers
        (Dropout) train eagerly either way: a trace would freeze their masks. On NumPy, ``None``
        *plans* the step where the model is a stack of dense_xp's Dense
        layers with relu, sigmoid, tanh or linear activations in float32 or
        float64, trained on one of dense_xp's losses without sample weights:
        its buffers are allocated once per batch size and every batch runs
        in place, with the same parameters as eager training, bit for bit
        (``False`` trains eagerly there too).

    Returns
    -------
    dict
        Per-epoch ``"loss"`` and ``"accuracy"`` (and ``"val_loss"``,
        ``"val_accuracy"`` with validation data), ``"lr"`` where the
        optimizer follows a schedule. With a float16 ``compute_dtype`` under
        wider parameters, dynamic loss scaling (see
        :mod:`dense_xp.training._scaling`) adds the scale at the end of each
        epoch, ``"loss_scale"``, and the steps it skipped, ``"skipped_steps"``.

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
    options = _arguments.options(
        loss, optimizer, epochs, batch_size, shuffle, seed, _arguments.verbosity(verbose, progress),
        check_finite, check_every, initial_epoch, compile,
    )  # fmt: skip
    data = FitData(X, y, sample_weight, _weights.check_class_weight(class_weight, sample_weight))
    data.validation = _arguments.validation(validation_data, validation_split)
    if (data.weights is not None or data.class_weight is not None) and not isinstance(options.loss, Loss):
        msg = (
            f"`sample_weight` and `class_weight` need a dense_xp loss (a dense_xp.losses.Loss, which "
            f"weighs each row), got {options.loss!r}"
        )
        raise TypeError(msg)
    with _backend.on_device(model.device):
        model.check()
        if distributed.is_dask(X, y) or distributed.is_lazy(model):
            if options.compile:
                msg = "`compile=True` needs in-memory data: a Dask fit runs its steps on the workers"
                raise ValueError(msg)
            engine, validation = _dask.prepare(model, _arguments.split(data, validation_split), options)
        else:
            engine, validation = _in_memory(model, data, validation_split, options)
        _arguments.check_monitor(options.optimizer, validation is not None)
        options = _with_callbacks(options, callbacks, model)
        model.fitted_loss = getattr(options.loss, "name", None)  # read by predict_proba
        with _backend.float_errors_ignored():  # divergence is reported as TrainingDivergedError
            return _loop.run(engine, options, validation)


def _in_memory(model: Any, data: FitData, validation_split: float, options: FitOptions) -> tuple[Any, Any]:
    """The in-memory engine on checked data, and the checked validation data.

    Everything is checked before a lazy model is built, so a refused ``fit``
    leaves it as it was.
    """
    width_known = model.output_size is not None  # else the targets are checked once it is built
    X, y = _data.check_pair(model, data.X, data.y, options.loss, check_finite=options.check_finite)
    data = _arguments.split(FitData(X, y, data.weights, data.class_weight, data.validation), validation_split)
    weights = _row_weights(model, data.y, data.weights, data.class_weight, "sample_weight")
    validation = None
    if data.validation is not None:
        names = ("validation_data[0]", "validation_data[1]")
        X_val, y_val = _data.check_pair(
            model, data.validation[0], data.validation[1], options.loss, names=names,
            check_finite=options.check_finite,
        )  # fmt: skip
        w_val = data.validation[2] if len(data.validation) == 3 else None
        validation = (
            X_val,
            y_val,
            _row_weights(model, y_val, w_val, data.class_weight, "validation_data[2]"),
        )
    if not model.built:
        model.build(int(X.shape[1]))
        if not width_known:
            _data.check_pair(model, data.X, data.y, options.loss)
    reason = _compiled.plan(model, options, _memory.loss_scaling(model))
    if options.compile and reason is not None:
        msg = f"`compile=True` cannot compile the training step of this model: {reason}"
        raise ValueError(msg)
    options.optimizer.check(model.parameters())
    return _memory.Engine(model, data.X, data.y, options, weights), validation


def _row_weights(model: Any, y: Any, weights: Any, class_weight: Any, name: str) -> Any:
    """The checked ``weights``, or those of ``class_weight`` for the targets ``y``, or ``None``."""
    if weights is not None:
        return _data.check_weights(model, weights, y.shape[0], name)
    if class_weight is not None:
        return _weights.class_weights(y, class_weight, model.output_size)
    return None


def _with_callbacks(options: FitOptions, callbacks: Any, model: Any) -> FitOptions:
    from dataclasses import replace

    return replace(options, callbacks=CallbackList(callbacks, model, options.optimizer))
