"""Writing checkpoints (see :mod:`dense_xp.checkpoint` for the format): atomic, never pickled.

Below the layers and the model, whose ``save`` methods call :func:`save`: it
sees them through the layer contract alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from typing import Any

from . import _backend, _manifest

__all__ = ["npz_path", "path_name", "save"]


def path_name(path: Any) -> str:
    try:
        name = os.fspath(path)
    except TypeError:
        name = None
    if not isinstance(name, str) or not name:
        msg = f"`path` must be a non-empty str or os.PathLike, got {type(path).__name__} {path!r}"
        raise TypeError(msg)
    return name


def npz_path(path: Any) -> str:
    """``path`` as a str, refused unless its name ends in ``.npz`` (nothing is appended silently)."""
    name = path_name(path)
    root, suffix = os.path.splitext(name)
    if suffix != ".npz":
        msg = (
            f"`path` must name a .npz file, since a checkpoint is a .npz archive, got {name!r}; "
            f"save to {root + '.npz'!r} instead"
        )
        raise ValueError(msg)
    return name


def _layers_of(obj: Any) -> tuple[str, list[Any]]:
    """``("Layer", [obj])`` or ``("Sequential", its layers)``, told apart by the contract (no import)."""
    if callable(getattr(obj, "registered_name", None)):
        return "Layer", [obj]
    if callable(getattr(obj, "check", None)) and isinstance(getattr(obj, "layers", None), tuple):
        obj.check()
        return "Sequential", list(obj.layers)
    msg = f"`obj` must be a dense_xp layer or a Sequential, got {type(obj).__name__} {obj!r}"
    raise TypeError(msg)


def _write_atomic(name: str, arrays: dict[str, Any]) -> None:
    """Write to a new file next to ``name``, fsync it, then rename it onto ``name``."""
    directory, base = os.path.split(os.path.abspath(name))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "the checkpoint's directory does not exist", directory)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    file = open(tmp, "xb")  # exclusive creation with the usual umask permissions  # noqa: SIM115
    try:
        with file:
            _backend.write_npz(file, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def save(obj: Any, path: str | os.PathLike[str], *, optimizer: Any = None) -> None:
    """Write ``obj`` (a layer or a Sequential) to the checkpoint file ``path``.

    Parameters
    ----------
    obj : Layer or Sequential
        Its layers' classes, configs, input widths, dtypes (parameter and
        compute) and arrays (parameters and state) are saved; gradients,
        optimizer state and the device are not. Every layer must be built
        and of a registered class.
    optimizer : Optimizer, optional
        Also saved: its state arrays, step and epoch counts, hyperparameters,
        schedule position and loss scale (:meth:`Optimizer.state_dict`), so
        that ``load(path, optimizer=...)`` resumes training where it stopped.
    path : str or os.PathLike
        The file to write, whose name ends in ``.npz``: a name that does not
        is refused, as Keras refuses a ``.keras`` path of another extension
        (NumPy's ``savez`` would append ``.npz``). The write is atomic: a new
        file in the same directory is filled, flushed to disk, then renamed
        onto ``path``, so on any error a previous file at ``path`` is left
        untouched and no partial file remains.

    Raises
    ------
    TypeError
        ``obj`` is neither a layer nor a Sequential, a layer's class is not
        registered, or ``path`` is not a path.
    ValueError
        The name of ``path`` does not end in ``.npz`` (the message suggests
        the ``.npz`` name), a layer is not built, or the model's layers
        disagree (see :meth:`Sequential.check`); nothing is written.
    FileNotFoundError
        The directory of ``path`` does not exist.
    """
    kind, layers = _layers_of(obj)
    name = npz_path(path)
    arrays: dict[str, Any] = {}
    entries = []
    for i, layer in enumerate(layers):
        if not layer.built:
            where = f"`layers[{i}]`" if kind == "Sequential" else "`obj`"
            msg = f"{where} is not built (its input width is unknown): call it on data once before saving"
            raise ValueError(msg)
        entries.append(_manifest.entry(layer))
        for key, value in layer.arrays().items():
            arrays[f"layers.{i}.{key}"] = _backend.to_numpy(value)
    described = None
    if optimizer is not None:
        described, state = _manifest.optimizer_entry(optimizer.state_dict())
        arrays |= state
    raw = _manifest.encode(kind, entries, optimizer=described)
    if len(raw) > _manifest.MAX_BYTES:
        msg = f"`obj` has {len(layers)} layers: its manifest would take {len(raw)} bytes, more than the"
        msg += f" {_manifest.MAX_BYTES} a checkpoint may hold"
        raise ValueError(msg)
    arrays["manifest"] = _backend.bytes_array(raw)
    _write_atomic(name, arrays)
