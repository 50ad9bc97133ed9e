"""Checkpoints: a layer or a Sequential in one ``.npz``, written atomically, read without pickle.

Format (``format_version`` 2): one ``.npz`` (a zip of ``.npy`` files, never
pickled) holding each array of each layer little-endian under
``layers.<i>.<name>`` (parameters and state: ``layers.0.W``,
``layers.1.running_mean``...), plus ``manifest``: UTF-8 JSON stored as a 1-D
uint8 array::

    {"format": "dense_xp", "format_version": 2, "kind": "Layer" | "Sequential",
     "dense_xp_version": "0.2.0",
     "layers": [{"class": "DenseLayer", "config": layer.get_config(), "input_size": 4,
                 "dtype": "float32",
                 "arrays": {"W": {"shape": [4, 8], "dtype": "<f4"}, "b": {...}}}]}

``class`` is the name under which the layer's class is registered
(:func:`dense_xp.register_layer`); ``dtype`` is the parameter dtype; a
mixed-precision layer also has ``"compute_dtype": "float16"``. Format 1
files (dense layers only: ``kind`` "DenseLayer" or "Sequential", entries
without ``class`` and ``input_size``) still load.

Loading refuses anything but a regular file before opening it, then checks
the zip directory (member names, uncompressed sizes) and the manifest against
each other before decompressing anything, and each array's ``.npy`` header
(shape, dtype) before reading its data: a hostile file costs no more memory
than the model its manifest describes. Any problem is a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from . import _backend, _checks, _manifest, _npz
from ._manifest import FORMAT_VERSION
from ._save import path_name, save
from .layers.base import DECLARE, Layer, filling, get_layer_class
from .model import Sequential

__all__ = ["FORMAT_VERSION", "CheckpointError", "load", "save"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_SPECIAL = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class CheckpointError(ValueError):
    """A file is not a dense_xp checkpoint, or is damaged, tampered with or too new to read."""


def _error(name: str, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint {name!r}: {problem}")


def _check_regular(name: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        what = next((kind for test, kind in _SPECIAL if test(mode)), "a special file")
        raise _error(name, f"`path` is {what}, not a regular file")


def _open(name: str) -> Any:
    """``name`` opened for binary reading, once it is known to be a regular file (never blocks)."""
    try:
        _check_regular(name, os.stat(name).st_mode)
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file at this path", name) from None
    try:
        _check_regular(name, os.fstat(fd).st_mode)  # the path may have changed since os.stat
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_manifest(npz: _npz.NpzReader) -> dict[str, Any]:
    size = npz.sizes.get("manifest.npy")
    if size is None:
        raise _manifest.Invalid("it has no 'manifest' entry, so it is not a dense_xp checkpoint")
    limit = _manifest.MAX_BYTES
    if size > limit + _npz.NPY_HEADER_MAX:
        raise _manifest.Invalid(
            f"its manifest inflates to {size} bytes, more than the {limit} a checkpoint may hold"
        )

    def accept(shape: tuple[int, ...], dtype: str) -> None:
        if len(shape) != 1 or dtype != "|u1":
            raise _manifest.Invalid("its 'manifest' entry is not a 1-D uint8 array of JSON bytes")

    return _manifest.parse(_backend.array_bytes(_backend.host_array(*npz.read("manifest.npy", accept))))


def _check_members(npz: _npz.NpzReader, expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """The zip directory lists exactly the manifest and the arrays it names, none larger than it says."""
    extra = sorted(set(npz.sizes) - {"manifest.npy"} - {f"{key}.npy" for key in expected})
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise _manifest.Invalid(f"it holds members the manifest does not name: {extra[:5]}{more}")
    for key, (shape, code) in expected.items():
        size = npz.sizes.get(f"{key}.npy")
        if size is None:
            raise _manifest.Invalid(f"array {key!r} is missing")
        nbytes = _manifest.nbytes(shape, code)
        if size > nbytes + _npz.NPY_HEADER_MAX:
            problem = (
                f"member '{key}.npy' inflates to {size} bytes; the manifest's {shape} {code} needs {nbytes}"
            )
            raise _manifest.Invalid(f"{problem} (and a header of at most {_npz.NPY_HEADER_MAX})")


def _read_array(npz: _npz.NpzReader, key: str, shape: tuple[int, ...], code: str, rule: str) -> Any:
    def accept(found: tuple[int, ...], dtype: str) -> None:
        if dtype != code:
            raise _manifest.Invalid(f"array {key!r} has dtype {dtype!r}, the manifest says {code!r}")
        if found != shape:
            raise _manifest.Invalid(f"array {key!r} has shape {found}, not {shape}: {rule}")

    return _backend.host_array(*npz.read(f"{key}.npy", accept))


def _declare(class_name: str, config: dict[str, Any], input_size: int | None) -> Layer:
    """The registered layer class ``class_name`` from ``config``, built for ``input_size`` without arrays."""
    with filling(DECLARE):
        layer = get_layer_class(class_name).from_config(config, device="cpu")
        if input_size is not None:
            layer.build_for(input_size)
    return layer


def _read(name: str, with_optimizer: bool = False) -> tuple[dict[str, Any], list[_manifest.Spec], list[Any]]:
    """The manifest of checkpoint ``name``, its layers' specs and, per layer, its host arrays by name;
    with ``with_optimizer``, the optimizer's arrays by member key after them."""
    with _open(name) as file:
        head = file.read(4)
        if not head:
            raise _error(name, "the file is empty")
        if head not in _ZIP_MAGIC:
            raise _error(name, f"it is not a .npz file (it starts with {head!r}, not a zip signature)")
        try:
            npz = _npz.NpzReader(file)
            manifest = _read_manifest(npz)
            specs = _manifest.layer_specs(manifest, _declare)
            optimizer = _manifest.optimizer_arrays(manifest)
            _check_members(
                npz,
                {f"layers.{i}.{k}": spec for i, s in enumerate(specs) for k, spec in s.arrays.items()}
                | optimizer,
            )
            arrays: list[Any] = []
            for i, spec in enumerate(specs):
                rule = _manifest.rule({k: shape for k, (shape, _) in spec.arrays.items()})
                arrays.append(
                    {k: _read_array(npz, f"layers.{i}.{k}", *a, rule) for k, a in spec.arrays.items()}
                )
            if with_optimizer:
                if "optimizer" not in manifest:
                    raise _manifest.Invalid("it holds no optimizer state (saved without `optimizer=`)")
                rule = "as the manifest's optimizer entry lists it"
                arrays.append({k: _read_array(npz, k, *a, rule) for k, a in optimizer.items()})
        except (_npz.NpzError, _manifest.Invalid) as exc:
            raise _error(name, str(exc)) from None
    return manifest, specs, arrays


def load(
    path: str | os.PathLike[str],
    device: Any = None,
    *,
    xp: Any = None,
    dtype: Any = None,
    param_dtype: Any = None,
    compute_dtype: Any = None,
    optimizer: Any = None,
) -> Layer | Sequential:
    """Rebuild the layer or Sequential saved at ``path`` on ``device`` (of ``xp``).

    Parameters
    ----------
    path : str or os.PathLike
        A regular file written by :func:`save`, whatever its name: its
        contents decide (a checkpoint renamed without ``.npz`` still loads).
        A directory, FIFO, socket or device is refused before it is opened.
    device : str or device object, optional
        Where the parameters go; ``None`` takes :func:`dense_xp.get_default_device`
        (or ``xp``'s default device when ``xp`` is given).
    xp : namespace, optional
        Any array API namespace.
    dtype, param_dtype, compute_dtype : str or dtype object, optional
        Other dtypes than the saved ones, as for :meth:`DenseLayer.to`.
    optimizer : Optimizer, optional
        An optimizer of the saved class, given the saved state (its arrays on
        the loaded parameters' device), step and epoch counts,
        hyperparameters, schedule position and loss scale
        (:meth:`Optimizer.load_state_dict`): training resumes exactly.

    Returns
    -------
    Layer or Sequential
        The kind that was saved, with the saved classes, configs and dtypes
        (unless asked for others).

    Raises
    ------
    FileNotFoundError
        There is no file at ``path``.
    ValueError
        ``device`` lacks a saved dtype (the message names those it has:
        nothing is converted silently), or a dtype keyword is invalid.
    CheckpointError
        ``path`` is not a regular file, or the file is not an ``.npz``, is
        truncated, holds pickled objects or members its manifest does not
        name, has a missing, invalid, oversized or newer manifest, or arrays
        whose size, header or data do not match it. No array is read before
        its size in the zip directory and its header match the manifest.
    """
    xp, device = _backend.resolve_device(device, xp=xp)
    name = path_name(path)
    manifest, specs, arrays = _read(name, with_optimizer=optimizer is not None)
    optimizer_arrays = arrays.pop() if optimizer is not None else None
    entries = manifest["layers"]
    keep = (entries[0]["dtype"], _manifest.compute_dtype(entries[0]))
    param, compute = _checks.dtype_policy(
        dtype, param_dtype, compute_dtype, xp=xp, device=device, keep=keep, owner="the checkpoint"
    )
    placement = {"param_dtype": param, "compute_dtype": compute, "device": device, "xp": xp}
    layers = []
    for i, (spec, values) in enumerate(zip(specs, arrays, strict=True)):
        try:
            with filling(values):
                layer = spec.cls.from_config(spec.config, **placement)
                layer.build_for(spec.input_size)
        except (TypeError, ValueError) as exc:
            raise _error(name, f"layer {i} has an invalid config: {exc}") from None
        layers.append(layer)
    loaded: Layer | Sequential = layers[0] if manifest["kind"] in _manifest.SINGLE else Sequential(layers)
    if optimizer is not None:
        try:
            state = _manifest.optimizer_state(manifest, optimizer_arrays or {})
            optimizer.load_state_dict(
                state,
                loaded.parameters() if isinstance(loaded, Sequential) else list(loaded.parameters().values()),
            )
        except (_manifest.Invalid, TypeError, ValueError) as exc:
            raise _error(name, f"its optimizer state does not load: {exc}") from None
    return loaded
