"""The conformance table's layer columns: each layer of dense_xp, and one written by a user.

A column checks its layer between two dense layers: the gradients (training
mode for Dropout and BatchNorm) against central differences, ``fit`` (the loss
falls; not for a lazy Dask model, which refuses to train), and a checkpoint
and a pickle that give back the same outputs.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import dense_xp
from dense_xp import Activation, BatchNorm, Dense, Dropout, Layer, LayerNorm, Sequential, register_layer
from dense_xp.testing import Backend, check_gradients

__all__ = ["LAYER_CHECKS", "Residual"]

_RNG = np.random.default_rng(1)
X = _RNG.normal(size=(48, 6))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


@register_layer
class Residual(Layer):
    """``y = x + tanh(x @ W)``, a layer a user writes against the array API alone."""

    def __init__(self, seed: int = 0, **placement: Any) -> None:
        self.seed = seed
        super().__init__(**placement)

    def build(self, input_size: int) -> int:
        draw = np.random.default_rng(self.seed).normal(size=(input_size, input_size)) * 0.3
        self.add_parameter("W", (input_size, input_size), lambda: draw)
        return input_size

    def forward(self, X: Any, *, training: bool = False) -> Any:
        self.X, self.t = X, self.xp.tanh(X @ self.cast(self.W))
        return X + self.t

    def backward(self, d_out: Any) -> Any:
        dz = d_out * (1.0 - self.t * self.t)
        self.grads = {"W": self.widen(self.X.T @ dz / d_out.shape[0])}
        return d_out + dz @ self.cast(self.W).T

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


LAYERS: dict[str, tuple[Callable[..., Layer], bool]] = {  # (make(**placement), check in training mode)
    "Activation": (lambda **kw: Activation("softmax", **kw), False),
    "Dropout": (lambda **kw: Dropout(0.25, seed=3, **kw), True),
    "LayerNorm": (lambda **kw: LayerNorm(**kw), False),
    "BatchNorm": (lambda **kw: BatchNorm(**kw), True),
    "user layer": (lambda **kw: Residual(**kw), False),
}


def _host(a: Any) -> np.ndarray:
    return np.asarray(dense_xp.to_numpy(a), dtype=np.float64)


def check_layer(b: Backend, name: str) -> None:
    make, training = LAYERS[name]
    kw = {"device": b.device, "xp": b.xp}
    model = Sequential([Dense(8, "tanh", seed=1, init="he_normal", **kw), make(**kw), Dense(3, seed=2, **kw)])
    model.build(6)
    check_gradients(model, X[:6], training=training)
    if b.id != "dask":
        history = model.fit(
            X, Y, loss="softmax_cross_entropy", epochs=4, batch_size=16, seed=0, progress=False
        )
        if not history["loss"][-1] < history["loss"][0]:
            raise AssertionError(f"the loss did not fall: {history['loss']}")
    expected = _host(model.predict(X))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m.npz")
        loaded = dense_xp.load(Path(tmp) / "m.npz", b.device, xp=b.xp)
    for back in (loaded, pickle.loads(pickle.dumps(model))):
        if type(back.layers[1]) is not type(model.layers[1]):
            raise AssertionError(f"came back as {back.layers[1]!r}")
        np.testing.assert_allclose(_host(back.predict(X)), expected, rtol=1e-6, atol=1e-6)


LAYER_CHECKS: dict[str, Callable[[Backend], None]] = {
    name: (lambda b, name=name: check_layer(b, name)) for name in LAYERS
}
