"""Optimizers (SGD, Adam, AdamW, RMSprop) as ``torch.optim``, written against the array API.

``opt.step(params, grads)`` returns the updated parameters: the same arrays,
updated in place, where the library allows writing (NumPy, CuPy, PyTorch,
array-api-strict), new arrays otherwise (JAX). State -- momentum buffers,
Adam moments -- is created on the first step on each parameter's device and
dtype, and kept per parameter position; :meth:`Optimizer.reset` clears it.
Gradients are never modified.

A 16-bit parameter (float16, bfloat16) keeps its state in float32 and is
updated through float32: in float16, Adam's ``eps=1e-8`` is 0 and ``g * g``
underflows for gradients below about 2e-4.

Every optimizer takes ``lr`` as a number, a schedule of
:mod:`dense_xp.schedules` or a callable of the step count, and clips
gradients with ``clip_norm`` or ``clip_value``. :meth:`Optimizer.state_dict`
and :meth:`Optimizer.load_state_dict` carry the state through a checkpoint as
host data; pickling and :func:`copy.deepcopy` go through the host too.

Names follow ``torch.optim``: ``lr``, not Keras' ``learning_rate`` (a
``TypeError`` says so), so that one spelling runs through configs, reprs and
state dicts.
"""

from __future__ import annotations

from typing import Any

from ._adam import Adam, AdamW
from ._args import suggest
from ._base import Optimizer
from ._rmsprop import RMSprop
from ._sgd import SGD

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "get_optimizer"]

OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(optimizer: Any, **kwargs: Any) -> Optimizer:
    """An optimizer by name (:data:`OPTIMIZERS`, any case) built with ``kwargs``, or ``optimizer`` itself.

    Raises
    ------
    ValueError
        ``optimizer`` names no known optimizer; the message lists them and
        suggests the closest.
    TypeError
        ``optimizer`` is neither a name nor an :class:`Optimizer`, or
        ``kwargs`` are given with an instance, or a keyword the optimizer
        does not take.
    """
    if isinstance(optimizer, str):
        try:
            cls = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            valid = ", ".join(repr(name) for name in OPTIMIZERS)
            hint = suggest(optimizer.lower(), OPTIMIZERS)
            msg = f"`optimizer` must be one of {valid} or an Optimizer instance; got {optimizer!r}{hint}"
            raise ValueError(msg) from None
        return cls(**kwargs)
    if isinstance(optimizer, Optimizer):
        if kwargs:
            msg = f"keyword arguments {sorted(kwargs)} apply only to an optimizer name, not to an instance"
            raise TypeError(msg)
        return optimizer
    msg = f"`optimizer` must be an optimizer name or an Optimizer instance, got {type(optimizer).__name__}"
    raise TypeError(msg)
