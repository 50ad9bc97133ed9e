"""The estimators' network: a :class:`dense_xp.Sequential` of :class:`dense_xp.DenseLayer`.

Everything that reads or writes a layer's parameters goes through
:func:`set_layer_params` and :func:`layer_params`, the one place that knows how
a layer holds them (``W`` of shape ``(n_in, n_out)``, ``b`` of shape
``(1, n_out)``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, cast

import array_api_compat

from .. import _backend
from ..layers import DenseLayer
from ..model import Sequential
from ._params import ACTIVATIONS

__all__ = [
    "build",
    "dense_layers",
    "initial_params",
    "layer_params",
    "matches",
    "placement_of",
    "set_layer_params",
]


def dense_layers(net: Sequential) -> list[DenseLayer]:
    """The layers of a network :func:`build` made: dense layers, each with ``W`` and ``b``."""
    return cast("list[DenseLayer]", list(net.layers))


def set_layer_params(layer: DenseLayer, W: Any, b: Any) -> None:
    """Give ``layer`` the weights ``W`` ``(n_in, n_out)`` and the intercepts ``b`` ``(n_out,)``."""
    layer.W = W
    layer.b = array_api_compat.array_namespace(b).reshape(b, (1, b.shape[0]))


def layer_params(layer: DenseLayer) -> tuple[Any, Any]:
    """``(W, b)`` of ``layer``: ``(n_in, n_out)`` and ``(n_out,)``, the arrays it holds (or views)."""
    W, b = layer.W, layer.b
    return W, layer.xp.reshape(b, (W.shape[1],))


def placement_of(a: Any) -> tuple[Any, Any]:
    """``(namespace, device)`` of the array ``a``."""
    return array_api_compat.array_namespace(a), array_api_compat.device(a)


def initial_params(rng: Any, layer_units: Sequence[int], activation: str) -> list[tuple[Any, Any]]:
    """scikit-learn's initial weights and intercepts (``_init_coef``), as float64 host arrays.

    Glorot uniform: both drawn from ``U(-bound, bound)`` with
    ``bound = sqrt(factor / (fan_in + fan_out))``, ``factor`` 2 for the
    logistic activation and 6 otherwise, layer after layer, weights before
    intercepts, from ``rng`` (a ``numpy.random.RandomState``), so one
    ``random_state`` gives scikit-learn's initial ``coefs_`` and ``intercepts_``.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    params = []
    for fan_in, fan_out in itertools.pairwise(layer_units):
        bound = math.sqrt(factor / (fan_in + fan_out))
        coef = rng.uniform(-bound, bound, (fan_in, fan_out))
        intercept = rng.uniform(-bound, bound, fan_out)
        params.append((coef, intercept))
    return params


def to_device(host: Any, *, xp: Any, device: Any, dtype: Any) -> Any:
    """A host array on ``device`` of ``xp`` as ``dtype``."""
    with _backend.on_device(device):
        return _backend.from_host(host, xp=xp, device=device, dtype=dtype)


def build(coefs: Sequence[Any], intercepts: Sequence[Any], activation: str) -> Sequential:
    """The network computing ``coefs``/``intercepts`` (arrays of one namespace, device and dtype).

    Hidden layers use ``activation`` (scikit-learn's name); the last layer is
    linear: the output activation belongs to the loss (see ``_losses.output``).
    """
    xp, device = placement_of(coefs[0])
    hidden = ACTIVATIONS[activation]
    layers = []
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        act = hidden if i < len(coefs) - 1 else None
        layer = DenseLayer(W.shape[0], W.shape[1], act, init="zeros", dtype=W.dtype, device=device, xp=xp)
        set_layer_params(layer, W, b)
        layers.append(layer)
    return Sequential(layers)


def matches(net: Any, coefs: Sequence[Any], activation: str) -> bool:
    """Whether ``net`` has the namespace, device, dtype, shapes and activation of ``coefs``."""
    if not isinstance(net, Sequential) or len(net.layers) != len(coefs):
        return False
    xp, device = placement_of(coefs[0])
    if net.xp is not xp or net.device != device or net.dtype != coefs[0].dtype:
        return False
    hidden = ACTIVATIONS.get(activation, "?")
    for i, (layer, W) in enumerate(zip(dense_layers(net), coefs, strict=True)):
        act = hidden if i < len(coefs) - 1 else None
        if tuple(layer.W.shape) != tuple(W.shape) or layer.activation != act or W.dtype != layer.dtype:
            return False
    return True
