"""Which feature works on which backend and dtype, found by running each one.

``python -m benchmarks.conformance`` prints a table (``--markdown`` for the
README's "Supported backends" section): one row per backend of
:func:`dense_xp.testing.backends` that is installed here, plus Dask, and one
column per feature. A cell is ``yes`` when the check passed, ``no`` with a
numbered note when it failed, and ``-`` where the device does not hold that
dtype (the library refuses it with a ValueError, as it should). A refusal
by design (:data:`REFUSED`: ``fit`` on a lazy Dask model) is ``refused`` with
its note. The exit status is 1 when any cell is ``no``.

Every check runs on a small problem against a NumPy float64 reference:

- forward: outputs of host and native inputs against the reference;
- backward: :func:`dense_xp.testing.check_gradients` on a two-layer model;
- fit: three epochs on host data and one on native arrays, shuffled: the loss
  falls; then five more epochs, the last no slower than twice the first;
- evaluate: the loss it reports against ``loss(predict(X))``;
- predict: batched against one pass, on the model's device;
- save/load: the checkpoint reloads on the same device with the same outputs;
- pickle: the same through ``pickle``;
- float16, float32, float64: a forward and backward step in that dtype
  against the reference, within 64 machine epsilons of the output scale;
- mixed float16, mixed bfloat16: float32 parameters computing in the 16-bit
  dtype: the output is in it and matches the reference within 64 of its
  epsilons, and ``fit`` lowers the loss with the parameters (and, for float16,
  dynamic loss scaling: ``loss_scale`` in the history) kept in float32;
- Activation, Dropout, LayerNorm, BatchNorm and a user-written layer
  (:mod:`._conformance_layers`): each between two dense layers, its
  gradients, ``fit``, a checkpoint and a pickle.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

import dense_xp
from dense_xp import DenseLayer, Sequential
from dense_xp.testing import Backend, backends, check_gradients

from ._conformance_layers import LAYER_CHECKS

__all__ = ["FEATURES", "main", "run"]

FEATURES = ("forward", "backward", "fit", "evaluate", "predict", "save/load", "pickle")
DTYPES = ("float16", "float32", "float64")
_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(48, 6))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)  # 3 classes


class Unsupported(Exception):
    """The device does not hold the dtype asked for (a ``-`` cell)."""


def _host(a: Any) -> np.ndarray:
    return np.asarray(dense_xp.to_numpy(a), dtype=np.float64)


def _native(b: Backend, a: np.ndarray) -> Any:
    """Host data as an array of the backend, in a dtype its device holds."""
    kind = "real floating" if a.dtype.kind == "f" else "integral"
    dtype = b.xp.__array_namespace_info__().default_dtypes(device=b.device)[kind]
    return b.xp.asarray(a, dtype=dtype, device=b.device)


def _model(b: Backend, dtype: Any = None, **dtypes: Any) -> Sequential:
    kw = {"device": b.device, "xp": b.xp, "dtype": dtype, **dtypes}
    return Sequential(
        [
            DenseLayer(6, 8, "tanh", seed=1, init="he_normal", **kw),
            DenseLayer(8, 3, seed=2, init="he_normal", **kw),
        ]
    )


def _reference(model: Sequential, X: np.ndarray) -> np.ndarray:
    h = X
    for layer in model.layers:
        h = h @ _host(layer.W) + _host(layer.b)
        h = np.tanh(h) if layer.activation == "tanh" else h
    return h


def _close(got: np.ndarray, ref: np.ndarray, dtype: Any, what: str) -> None:
    name = dense_xp._checks.dtype_name(dtype)
    eps = 2.0**-7 if name == "bfloat16" else float(np.finfo(name).eps)  # NumPy has no bfloat16
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
    if not err <= 64 * eps:
        msg = f"{what} off by {err:.2g} of its scale (allowed {64 * eps:.2g})"
        raise AssertionError(msg)


def check_forward(b: Backend) -> None:
    model = _model(b)
    ref = _reference(model, X)
    _close(_host(model.forward(X)), ref, model.dtype, "host-input output")
    _close(_host(model.forward(_native(b, X))), ref, model.dtype, "native-input output")


def check_backward(b: Backend) -> None:
    check_gradients(_model(b), X[:5])


def check_fit(b: Backend) -> None:
    model = _model(b)
    history = model.fit(X, Y, loss="softmax_cross_entropy", epochs=3, batch_size=16, seed=0, progress=False)
    if not (np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]):
        msg = f"the loss did not fall: {history['loss']}"
        raise AssertionError(msg)
    model.fit(
        _native(b, X), _native(b, Y), loss="softmax_cross_entropy", epochs=1, batch_size=16, progress=False
    )
    times = []  # a step must not cost more as training goes on (a lazy graph that keeps growing)
    for _ in range(5):
        start = time.perf_counter()
        model.fit(X, Y, loss="softmax_cross_entropy", optimizer="sgd", epochs=1, batch_size=8, progress=False)
        times.append(time.perf_counter() - start)
    if times[-1] > 2 * times[0] + 0.25:
        msg = f"epochs get slower: the 5th took {times[-1]:.2f} s against {times[0]:.2f} s for the 1st"
        raise AssertionError(msg)


def check_evaluate(b: Backend) -> None:
    model = _model(b)
    scores = model.evaluate(X, Y, loss="softmax_cross_entropy", batch_size=20)
    value = float(dense_xp.get_loss("softmax_cross_entropy")(model.forward(X), Y)[0])
    _close(np.array([scores["loss"]]), np.array([value]), model.dtype, "evaluate's loss")
    if not 0.0 <= scores["accuracy"] <= 1.0:
        raise AssertionError(f"accuracy {scores['accuracy']}")


def check_predict(b: Backend) -> None:
    model = _model(b)
    out = model.predict(X, batch_size=7)
    if array_api_compat.device(out) != model.device:
        raise AssertionError("predict's output is not on the model's device")
    _close(_host(out), _host(model.predict(X)), model.dtype, "batched predict")


def check_save_load(b: Backend) -> None:
    model = _model(b)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m.npz")
        back = dense_xp.load(Path(tmp) / "m.npz", b.device, xp=b.xp)
    if (back.xp, back.device, back.dtype) != (model.xp, model.device, model.dtype):
        raise AssertionError(f"loaded as {back!r}")
    np.testing.assert_array_equal(_host(back.predict(X)), _host(model.predict(X)))


def check_pickle(b: Backend) -> None:
    model = _model(b)
    back = pickle.loads(pickle.dumps(model))
    if (back.xp, back.device, back.dtype) != (model.xp, model.device, model.dtype):
        raise AssertionError(f"unpickled as {back!r}")
    np.testing.assert_array_equal(_host(back.predict(X)), _host(model.predict(X)))


def check_dtype(b: Backend, dtype: str) -> None:
    try:
        model = _model(b, dtype)
    except ValueError as exc:
        if "not supported" in str(exc):
            raise Unsupported(str(exc)) from None
        raise
    Xd = X.astype(dtype).astype(np.float64)  # the reference sees the same rounded inputs and weights
    out = model.forward(Xd)
    if dense_xp._checks.dtype_name(out.dtype) != dtype:
        raise AssertionError(f"the output is {out.dtype}, not {dtype}")
    _close(_host(out), _reference(model, Xd), dtype, f"{dtype} output")
    g = np.ones((X.shape[0], 3)) / X.shape[0]
    d_in = _host(model.backward(g.astype(dtype), lr=None))
    layer = model.layers[0]
    ref = (1 - np.tanh(Xd @ _host(layer.W) + _host(layer.b)) ** 2) * (g @ _host(model.layers[1].W).T)
    _close(d_in, ref @ _host(layer.W).T, dtype, f"{dtype} d_input")


def check_mixed(b: Backend, compute: str) -> None:
    try:
        model = _model(b, param_dtype="float32", compute_dtype=compute)
    except ValueError as exc:
        if "not supported" in str(exc):
            raise Unsupported(str(exc)) from None
        raise
    out = model.forward(X)
    if dense_xp._checks.dtype_name(out.dtype) != compute:
        raise AssertionError(f"the output is {out.dtype}, not {compute}")
    _close(_host(out), _reference(model, X), compute, f"{compute} output")
    history = model.fit(X, Y, loss="softmax_cross_entropy", epochs=3, batch_size=16, seed=0, progress=False)
    if not (np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]):
        raise AssertionError(f"the loss did not fall: {history['loss']}")
    if compute == "float16" and "loss_scale" not in history:
        raise AssertionError("float16 training did not scale the loss")
    kept = {dense_xp._checks.dtype_name(p.dtype) for p in model.parameters()}
    if kept != {"float32"}:
        raise AssertionError(f"the parameters became {kept}, not float32")


CHECKS: dict[str, Callable[[Backend], None]] = {
    "forward": check_forward,
    "backward": check_backward,
    "fit": check_fit,
    "evaluate": check_evaluate,
    "predict": check_predict,
    "save/load": check_save_load,
    "pickle": check_pickle,
} | {dtype: (lambda b, dtype=dtype: check_dtype(b, dtype)) for dtype in DTYPES}
CHECKS |= {f"mixed {c}": (lambda b, c=c: check_mixed(b, c)) for c in ("float16", "bfloat16")}
CHECKS |= LAYER_CHECKS


def _dask() -> list[Backend]:
    try:
        xp = importlib.import_module("dask.array")
    except ImportError:
        return []
    return [Backend("dask", *dense_xp.resolve_device(xp=xp))]


REFUSED = {("dask", "fit"): TypeError}  # documented refusals: fit on a lazy model grows its graph


def run(include: Sequence[str] | None = None) -> tuple[list[str], dict[str, dict[str, str]], list[str]]:
    """``(backend ids, {id: {feature: cell}}, notes)``, running every check."""
    others = None if include is None else [i for i in include if i != "dask"]
    found = (backends(others) if others != [] else []) + (
        _dask() if include is None or "dask" in include else []
    )
    rows: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for b in found:
        b = b.activate() if b.id != "dask" else b
        rows[b.id] = {}
        for feature, check in CHECKS.items():
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    check(b)
                rows[b.id][feature] = "yes"
            except Unsupported:
                rows[b.id][feature] = "-"
            except Exception as exc:
                text = " ".join(f"{type(exc).__name__}: {exc}".split())
                notes.append(f"{b.id}, {feature}: {text[:160]}")
                refused = isinstance(exc, REFUSED.get((b.id, feature), ()))
                rows[b.id][feature] = f"{'refused' if refused else 'no'} [{len(notes)}]"
    return [b.id for b in found], rows, notes


def format_table(ids: list[str], rows: dict[str, dict[str, str]], notes: list[str], *, markdown: bool) -> str:
    head = ["backend", *CHECKS]
    body = [[i, *(rows[i][f] for f in CHECKS)] for i in ids]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join([f"`{r[0]}`", *r[1:]]) + " |" for r in body]
        lines += ["", *(f"{n}. {note}" for n, note in enumerate(notes, start=1))] if notes else []
        return "\n".join(lines)
    widths = [max(len(str(r[c])) for r in [head, *body]) for c in range(len(head))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *body]
    ]
    lines += [f"[{n}] {note}" for n, note in enumerate(notes, start=1)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table, as in the README")
    parser.add_argument("--backend", action="append", help="an id or family (repeatable); default: all")
    args = parser.parse_args(argv)
    ids, rows, notes = run(args.backend)
    print(format_table(ids, rows, notes, markdown=args.markdown))
    return 1 if any(cell.startswith("no") for row in rows.values() for cell in row.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
