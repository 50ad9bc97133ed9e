"""The dense layer (kept importable from here; it lives in :mod:`dense_xp.layers.dense`)."""

from .layers.dense import DenseLayer

__all__ = ["DenseLayer"]
