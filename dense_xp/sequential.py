"""The model (kept importable from here; it lives in :mod:`dense_xp.model`)."""

from .model import Sequential
from .training import TrainingDivergedError

__all__ = ["Sequential", "TrainingDivergedError"]
