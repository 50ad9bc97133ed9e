"""Callbacks of ``fit``, with Keras's protocol: EarlyStopping, ModelCheckpoint, LearningRateScheduler.

A callback is an object with any of these methods, which ``fit`` calls in
order (epochs counted from 0, as Keras counts them)::

    on_train_begin(logs)              once, before the first epoch
    on_epoch_begin(epoch, logs)
    on_train_batch_begin(batch, logs) logs: {"size": rows of the batch}
    on_train_batch_end(batch, logs)
    on_epoch_end(epoch, logs)         logs: the epoch's history entries (loss, accuracy, val_*...)
    on_train_end(logs)                once, after the last epoch (or a stop), logs of the last epoch

Before training ``fit`` sets ``callback.model`` (the model) and
``callback.optimizer``. A callback stops training by setting
``model.stop_training = True``: the current batch ends the epoch, and the
epoch's callbacks still run. The per-batch loss stays on the device (the
divergence guard reads it every ``check_every`` batches): batch logs carry
the batch's size only. Subclass :class:`Callback` for the no-op defaults.
"""

from __future__ import annotations

from ._early_stopping import EarlyStopping
from ._model_checkpoint import ModelCheckpoint
from ._protocol import Callback, CallbackList
from ._scheduler import LearningRateScheduler

__all__ = ["Callback", "CallbackList", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint"]
