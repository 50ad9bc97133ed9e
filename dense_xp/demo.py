"""The main job: train an MLP on scikit-learn's bundled digits and compare with ``MLPClassifier``.

``python -m dense_xp demo [--device auto|cpu|cuda] [--epochs N]`` -- no download:
the 1,797 8x8 digits ship inside scikit-learn (the ``demo`` extra, which also
brings matplotlib for the learning curves).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import _backend, _checks, _progress
from .layers import DenseLayer
from .model import Sequential
from .optimizers import Adam
from .plotting import plot_history

__all__ = ["TARGET_ACCURACY", "build_model", "load_digits_split", "train_digits"]

HIDDEN = 128
LR = 3e-3
BATCH = 32
TARGET_ACCURACY = 0.97
_INSTALL = 'pip install "dense-xp[demo]"'


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        names = {"sklearn": "scikit-learn"}
        msg = f"the digits demo needs {' and '.join(names.get(m, m) for m in missing)}: {_INSTALL}"
        raise ImportError(msg)


def load_digits_split(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Digits scaled to [0, 1], split 75/25 stratified: ``X_train, X_test, y_train, y_test`` on the host.

    Returns
    -------
    X_train, X_test : numpy.ndarray, shapes (1347, 64) and (450, 64)
    y_train, y_test : numpy.ndarray of int, shapes (1347,) and (450,)
    """
    _require("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=seed, stratify=y
    )
    return X_train, X_test, y_train, y_test


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


def _sklearn_baseline(
    X_train: Any, y_train: Any, X_test: Any, y_test: Any, *, seed: int, epochs: int, progress: bool
) -> float:
    """``MLPClassifier`` with the same network, optimizer, learning rate, batch size and epochs.

    One ``partial_fit`` per epoch (each a shuffled pass over the data), so the
    progress bar counts epochs; scikit-learn's defaults otherwise (its small
    L2 penalty, ``alpha=1e-4``, included).
    """
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), learning_rate_init=LR, batch_size=BATCH, random_state=seed
    )
    classes = sorted(set(y_train.tolist()))  # every label, as partial_fit needs on its first call
    with _progress.bar(epochs, "scikit-learn", enabled=progress, unit="epoch") as bar:
        for _ in range(epochs):
            clf.partial_fit(X_train, y_train, classes=classes)
            bar.update(1)
    return float(clf.score(X_test, y_test))


def _dtypes(model: Sequential) -> str:
    """The dtypes the model really trains in: ``float32`` or ``float32 parameters, float16 compute``."""
    param = _checks.dtype_name(model.layers[0].param_dtype)
    compute = _checks.dtype_name(model.layers[0].compute_dtype)
    return param if compute == param else f"{param} parameters, {compute} compute"


def _scores_text(scores: dict[str, float], history: dict[str, list[float]], n_test: int) -> list[str]:
    """The test scores with digits enough to tell two runs apart (float16 from float32 compute, say)."""
    hits = round(scores["accuracy"] * n_test)
    parts = [
        f"test accuracy {scores['accuracy']:.4f} ({hits}/{n_test}, target >= {TARGET_ACCURACY}), "
        f"test loss {scores['loss']:.6g}"
    ]
    if history["loss"]:
        parts.append(f"final training loss {history['loss'][-1]:.6g}")
    if history.get("loss_scale"):
        skipped = sum(history["skipped_steps"])
        parts.append(f"loss scale {history['loss_scale'][-1]:g}, {skipped} steps skipped")
    return parts


class _Steps:
    """Numbered steps, each announced before it starts and timed when it ends."""

    def __init__(self, total: int, log: Callable[[str], None] | None) -> None:
        self.total, self.log, self.done = total, log, 0
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, title: str) -> Iterator[list[str]]:
        self.done += 1
        if self.log:
            self.log(f"[{self.done}/{self.total}] {title} ...")
        detail: list[str] = []
        start = time.perf_counter()
        yield detail
        self.seconds[key] = time.perf_counter() - start
        if self.log:
            self.log(f"      {'; '.join(detail) + ' ' if detail else ''}({self.seconds[key]:.2f} s)")


def train_digits(
    *,
    device: Any = None,
    xp: Any = None,
    epochs: int = 20,
    seed: int = 0,
    dtype: Any = "float32",
    compute_dtype: Any = None,
    progress: bool = True,
    baseline: bool = True,
    save_to: Any = None,
    plot_to: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the demo MLP, with the held-out split as validation data; return scores, timings, model.

    Parameters
    ----------
    device, xp
        Where the model lives (see :func:`dense_xp.resolve_device`).
    epochs, seed : int
        Training length and the seed of the split, weights and shuffling.
    dtype : str
        ``"float32"`` or ``"float64"``: the parameter dtype.
    compute_dtype : str, optional
        The dtype of forward and backward, ``dtype`` where ``None``;
        ``"float16"`` is mixed precision (see :func:`build_model`).
    progress : bool
        tqdm bars for both trainings (where a terminal is attached).
    baseline : bool
        Also train scikit-learn's ``MLPClassifier`` with the same network and
        schedule, and report its accuracy.
    save_to, plot_to : path, optional
        Where to write the checkpoint and the learning curves (an image).
    log : callable, optional
        Called with one line of text as each step starts and ends.

    Returns
    -------
    dict
        ``device``, ``test_accuracy``, ``test_loss``, ``train_seconds``, ``history``,
        ``model``, ``seconds`` (each step's time: ``load``, ``train``,
        ``baseline``, ``save``) and, with ``baseline=True``,
        ``sklearn_accuracy``.
    """
    epochs = _checks.check_int(epochs, "epochs", minimum=0)
    _require("sklearn", *(["matplotlib"] if plot_to is not None else []))
    model = build_model(seed, dtype=dtype, compute_dtype=compute_dtype, device=device, xp=xp)
    steps = _Steps(2 + baseline + (save_to is not None or plot_to is not None), log)
    with steps.step("load", "loading scikit-learn's digits") as detail:
        X_train, X_test, y_train, y_test = load_digits_split(seed)
        detail.append(f"{len(X_train)} training and {len(X_test)} test images of 8x8 pixels")
    result: dict[str, Any] = {"device": f"{_backend.namespace_name(model.xp)} on {model.device!r}"}
    title = f"training with dense_xp: {epochs} epochs, Adam lr {LR:g}, batches of {BATCH}, {_dtypes(model)}"
    with steps.step("train", title) as detail:
        history = model.fit(
            X_train,
            y_train,
            loss="softmax_cross_entropy",
            optimizer=Adam(lr=LR),
            epochs=epochs,
            batch_size=BATCH,
            validation_data=(X_test, y_test),
            seed=seed,
            progress=progress,
        )
        scores = model.evaluate(X_test, y_test, loss="softmax_cross_entropy")
        detail.extend(_scores_text(scores, history, len(X_test)))
    result |= {
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        "history": history,
        "model": model,
    }
    if baseline:
        title = "training scikit-learn's MLPClassifier: same network, optimizer, batches and epochs"
        with steps.step("baseline", title) as detail:
            accuracy = _sklearn_baseline(
                X_train, y_train, X_test, y_test, seed=seed, epochs=epochs, progress=progress
            )
            result["sklearn_accuracy"] = accuracy
            detail.append(f"test accuracy {accuracy:.4f}")
    if save_to is not None or plot_to is not None:
        with steps.step("save", "saving") as detail:
            if save_to is not None:
                model.save(save_to)
                detail.append(f"model: {save_to}")
            if plot_to is not None and history["loss"]:
                plot_history(history, Path(plot_to))
                detail.append(f"learning curves: {plot_to}")
    result |= {"seconds": steps.seconds, "train_seconds": steps.seconds["train"]}
    return result
