"""Layers: one contract (:class:`Layer`), the built-in layers, and :func:`register_layer`.

A layer of one's own subclasses :class:`Layer` and writes ``build``,
``forward``, ``backward`` and ``get_config`` (see :mod:`dense_xp.layers.base`);
:func:`register_layer` makes it loadable from checkpoints by name.
"""

from .activation import Activation
from .base import LAYERS, Layer, batch_position, get_layer_class, register_layer, training_batch
from .dense import Dense, DenseLayer
from .dropout import Dropout
from .norm import BatchNorm, LayerNorm

__all__ = [
    "LAYERS",
    "Activation",
    "BatchNorm",
    "Dense",
    "DenseLayer",
    "Dropout",
    "Layer",
    "LayerNorm",
    "batch_position",
    "get_layer_class",
    "register_layer",
    "training_batch",
]
