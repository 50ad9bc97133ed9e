"""The main job: train an MLP on scikit-learn's bundled digits and compare with ``MLPClassifier``.

``python -m dense_xp demo [--device auto|cpu|cuda] [--epochs N]`` -- no download:
the 1,797 8x8 digits ship inside scikit-learn (the ``demo`` extra).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from . import _backend, _checks
from .layer import DenseLayer
from .optimizers import Adam
from .sequential import Sequential

__all__ = ["build_model", "load_digits_split", "train_digits"]

HIDDEN = 128


def load_digits_split(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Digits scaled to [0, 1], split 75/25 stratified: ``X_train, X_test, y_train, y_test`` on the host."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        msg = 'the digits demo needs scikit-learn: pip install "dense-xp[demo]"'
        raise ImportError(msg) from None
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)


def build_model(
    seed: int = 0, *, dtype: Any = "float32", compute_dtype: Any = None, device: Any = None, xp: Any = None
) -> Sequential:
    """The 64 -> 128 (relu) -> 10 MLP of the demo.

    Parameters in ``dtype``; forward and backward in ``compute_dtype``, which
    is ``dtype`` when ``None`` (``"float16"`` is mixed precision).
    """
    kwargs = {"param_dtype": dtype, "compute_dtype": compute_dtype, "device": device, "xp": xp}
    return Sequential(
        [
            DenseLayer(64, HIDDEN, "relu", seed=seed, init="he_normal", **kwargs),
            DenseLayer(HIDDEN, 10, seed=seed + 1, init="glorot_uniform", **kwargs),
        ]
    )


def _sklearn_baseline(X_train: Any, y_train: Any, X_test: Any, y_test: Any, seed: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), random_state=seed, max_iter=500)
        return float(clf.fit(X_train, y_train).score(X_test, y_test))


def train_digits(
    *,
    device: Any = None,
    xp: Any = None,
    epochs: int = 40,
    seed: int = 0,
    dtype: Any = "float32",
    compute_dtype: Any = None,
    progress: bool = True,
    baseline: bool = True,
    save_to: Any = None,
) -> dict[str, Any]:
    """Train the demo MLP (see :func:`build_model` for the dtypes); return accuracies, timings and the model.

    Returns
    -------
    dict
        ``device``, ``test_accuracy``, ``train_seconds``, ``history``,
        ``model`` and, with ``baseline=True``, ``sklearn_accuracy``.
    """
    epochs = _checks.check_int(epochs, "epochs", minimum=0)
    X_train, X_test, y_train, y_test = load_digits_split(seed)
    model = build_model(seed, dtype=dtype, compute_dtype=compute_dtype, device=device, xp=xp)
    start = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        loss="softmax_cross_entropy",
        optimizer=Adam(lr=3e-3),
        epochs=epochs,
        batch_size=32,
        seed=seed,
        progress=progress,
    )
    train_seconds = time.perf_counter() - start
    scores = model.evaluate(X_test, y_test, loss="softmax_cross_entropy")
    result = {
        "device": f"{_backend.namespace_name(model.xp)} on {model.device!r}",
        "test_accuracy": scores["accuracy"],
        "train_seconds": train_seconds,
        "history": history,
        "model": model,
    }
    if baseline:
        result["sklearn_accuracy"] = _sklearn_baseline(X_train, y_train, X_test, y_test, seed)
    if save_to is not None:
        model.save(save_to)
    return result
