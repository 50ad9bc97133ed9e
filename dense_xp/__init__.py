"""dense_xp: dense neural-network layers written once against the Python array API.

The same code runs on NumPy (CPU), CuPy (CUDA GPUs) and any other array API
library (PyTorch, JAX, Dask, array-api-strict). Pick the device once --
``DENSE_XP_DEVICE=cuda``, :func:`set_default_device` or :func:`use_device` --
or per object with ``device=``.
"""

from ._backend import (
    DeviceUnavailableError,
    get_default_device,
    resolve_device,
    set_default_device,
    to_numpy,
    use_device,
)
from ._info import backend_info
from .activations import ACTIVATIONS, register_activation
from .checkpoint import CheckpointError, load, save
from .layers import Activation, BatchNorm, Dense, DenseLayer, Dropout, Layer, LayerNorm, register_layer
from .losses import get_loss
from .model import Sequential
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, get_optimizer
from .plotting import plot_history
from .training import TrainingDivergedError

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "BatchNorm",
    "CheckpointError",
    "Dense",
    "DenseLayer",
    "DeviceUnavailableError",
    "Dropout",
    "Layer",
    "LayerNorm",
    "Optimizer",
    "RMSprop",
    "Sequential",
    "TrainingDivergedError",
    "__version__",
    "backend_info",
    "get_default_device",
    "get_loss",
    "get_optimizer",
    "load",
    "plot_history",
    "register_activation",
    "register_layer",
    "resolve_device",
    "save",
    "set_default_device",
    "to_numpy",
    "use_device",
]
