"""Layers: one contract (:class:`Layer`), the built-in layers, and :func:`register_layer`.

A layer of one's own subclasses :class:`Layer` and writes ``build``,
``forward``, ``backward`` and ``get_config`` (see :mod:`dense_xp.layers.base`);
:func:`register_layer` makes it loadable from checkpoints by name.
"""

from .base import LAYERS, Layer, get_layer_class, register_layer
from .dense import Dense, DenseLayer

__all__ = ["LAYERS", "Dense", "DenseLayer", "Layer", "get_layer_class", "register_layer"]
