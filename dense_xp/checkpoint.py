"""Checkpoints: a DenseLayer or a Sequential in one ``.npz``, written atomically, read without pickle.

Format (``format_version`` 1): one ``.npz`` (a zip of ``.npy`` files, never
pickled) holding each parameter little-endian under ``layers.<i>.W`` and
``layers.<i>.b``, plus ``manifest``: UTF-8 JSON stored as a 1-D uint8 array::

    {"format": "dense_xp", "format_version": 1, "kind": "DenseLayer" | "Sequential",
     "dense_xp_version": "0.1.0",
     "layers": [{"config": layer.get_config(), "dtype": "float32",
                 "arrays": {"W": {"shape": [4, 8], "dtype": "<f4"}, "b": {...}}}]}

``dtype`` is the parameter dtype; a mixed-precision layer also has
``"compute_dtype": "float16"`` (a layer without it computes in ``dtype``).

Loading refuses anything but a regular file before opening it, then checks
the zip directory (member names, uncompressed sizes) and the manifest against
each other before decompressing anything, and each array's ``.npy`` header
(shape, dtype) before reading its data: a hostile file costs no more memory
than the model its manifest describes. Any problem is a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import TYPE_CHECKING, Any

from . import _backend, _checks, _manifest, _npz
from ._manifest import FORMAT_VERSION
from .activations import ACTIVATIONS
from .layer import DenseLayer

if TYPE_CHECKING:
    from .sequential import Sequential

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


def _path(path: Any) -> str:
    try:
        name = os.fspath(path)
    except TypeError:
        name = None
    if not isinstance(name, str) or not name:
        msg = f"`path` must be a non-empty str or os.PathLike, got {type(path).__name__} {path!r}"
        raise TypeError(msg)
    return name


def _save_path(path: Any) -> str:
    """``path`` as a str, refused unless its name ends in ``.npz`` (nothing is appended silently)."""
    name = _path(path)
    root, suffix = os.path.splitext(name)
    if suffix != ".npz":
        msg = (
            f"`path` must name a .npz file, since a checkpoint is a .npz archive, got {name!r}; "
            f"save to {root + '.npz'!r} instead"
        )
        raise ValueError(msg)
    return name


def _layers_of(obj: Any) -> tuple[str, list[DenseLayer]]:
    if isinstance(obj, DenseLayer):
        return "DenseLayer", [obj]
    from .sequential import Sequential

    if isinstance(obj, Sequential):
        return "Sequential", list(obj.layers)
    msg = f"`obj` must be a DenseLayer or a Sequential, got {type(obj).__name__} {obj!r}"
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


def save(obj: DenseLayer | Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` (a DenseLayer or a Sequential) to the checkpoint file ``path``.

    Parameters
    ----------
    obj : DenseLayer or Sequential
        Its configs, dtypes (parameter and compute) and parameters are saved;
        gradients, optimizer state and the device are not.
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
        ``obj`` is neither a DenseLayer nor a Sequential, or ``path`` is not a path.
    ValueError
        The name of ``path`` does not end in ``.npz`` (the message suggests
        the ``.npz`` name); nothing is written.
    FileNotFoundError
        The directory of ``path`` does not exist.
    """
    kind, layers = _layers_of(obj)
    name = _save_path(path)
    arrays: dict[str, Any] = {}
    entries = []
    for i, layer in enumerate(layers):
        dtype = _checks.dtype_name(layer.dtype)
        listed = {}
        for param, value in layer.parameters().items():
            host = _backend.to_numpy(value)
            arrays[f"layers.{i}.{param}"] = host
            listed[param] = {"shape": [int(n) for n in host.shape], "dtype": _manifest.CODES[dtype]}
        entries.append({"config": layer.get_config(), "dtype": dtype, "arrays": listed})
        compute = _checks.dtype_name(layer.compute_dtype)
        if compute != dtype:
            entries[-1]["compute_dtype"] = compute
    raw = _manifest.encode(kind, entries)
    if len(raw) > _manifest.MAX_BYTES:
        msg = f"`obj` has {len(layers)} layers: its manifest would take {len(raw)} bytes, more than the"
        msg += f" {_manifest.MAX_BYTES} a checkpoint may hold"
        raise ValueError(msg)
    arrays["manifest"] = _backend.bytes_array(raw)
    _write_atomic(name, arrays)


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


def _check_members(npz: _npz.NpzReader, expected: dict[str, tuple[tuple[int, int], str]]) -> None:
    """The zip directory lists exactly the manifest and the arrays it names, none larger than it says."""
    extra = sorted(set(npz.sizes) - {"manifest.npy"} - {f"{key}.npy" for key in expected})
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise _manifest.Invalid(f"it holds members the manifest does not name: {extra[:5]}{more}")
    for key, (shape, code) in expected.items():
        size = npz.sizes.get(f"{key}.npy")
        if size is None:
            raise _manifest.Invalid(f"array {key!r} is missing")
        nbytes = shape[0] * shape[1] * _manifest.ITEMSIZES[code]
        if size > nbytes + _npz.NPY_HEADER_MAX:
            problem = (
                f"member '{key}.npy' inflates to {size} bytes; the manifest's {shape} {code} needs {nbytes}"
            )
            raise _manifest.Invalid(f"{problem} (and a header of at most {_npz.NPY_HEADER_MAX})")


def _read_array(npz: _npz.NpzReader, key: str, shape: tuple[int, int], code: str, rule: str) -> Any:
    def accept(found: tuple[int, ...], dtype: str) -> None:
        if dtype != code:
            raise _manifest.Invalid(f"array {key!r} has dtype {dtype!r}, the manifest says {code!r}")
        if found != shape:
            raise _manifest.Invalid(f"array {key!r} has shape {found}, not {shape}: {rule}")

    return _backend.host_array(*npz.read(f"{key}.npy", accept))


def _read(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest of checkpoint ``name`` and, per layer, its host arrays by parameter name."""
    with _open(name) as file:
        head = file.read(4)
        if not head:
            raise _error(name, "the file is empty")
        if head not in _ZIP_MAGIC:
            raise _error(name, f"it is not a .npz file (it starts with {head!r}, not a zip signature)")
        try:
            npz = _npz.NpzReader(file)
            manifest = _read_manifest(npz)
            layers = _manifest.layer_arrays(manifest)
            _check_members(
                npz, {f"layers.{i}.{p}": spec for i, arr in enumerate(layers) for p, spec in arr.items()}
            )
            arrays = []
            for i, listed in enumerate(layers):
                rule = _manifest.rule({p: shape for p, (shape, _) in listed.items()})
                arrays.append(
                    {p: _read_array(npz, f"layers.{i}.{p}", *spec, rule) for p, spec in listed.items()}
                )
        except (_npz.NpzError, _manifest.Invalid) as exc:
            raise _error(name, str(exc)) from None
    return manifest, arrays


def load(
    path: str | os.PathLike[str],
    device: Any = None,
    *,
    xp: Any = None,
    dtype: Any = None,
    param_dtype: Any = None,
    compute_dtype: Any = None,
) -> DenseLayer | Sequential:
    """Rebuild the DenseLayer or Sequential saved at ``path`` on ``device`` (of ``xp``).

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

    Returns
    -------
    DenseLayer or Sequential
        The kind that was saved, with the saved configs and dtypes (unless
        asked for others); ``W`` has shape (input_size, output_size) and ``b``
        (1, output_size).

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
    name = _path(path)
    manifest, arrays = _read(name)
    specs = manifest["layers"]
    keep = (specs[0]["dtype"], _manifest.compute_dtype(specs[0]))
    dtypes = _checks.dtype_policy(
        dtype, param_dtype, compute_dtype, xp=xp, device=device, keep=keep, owner="the checkpoint"
    )
    layers = []
    for i, (spec, params) in enumerate(zip(specs, arrays, strict=True)):
        activation = spec["config"].get("activation")
        if isinstance(activation, str) and activation not in ACTIVATIONS:
            problem = (
                f"layer {i} uses activation {activation!r}, which is not registered in this process; call"
            )
            problem += f" dense_xp.register_activation({activation!r}, forward, backward) before loading"
            raise _error(name, problem)
        try:
            layer = DenseLayer(
                **spec["config"], param_dtype=dtypes[0], compute_dtype=dtypes[1], device=device, xp=xp
            )
        except (TypeError, ValueError) as exc:
            raise _error(name, f"layer {i} has an invalid config: {exc}") from None
        for param, host in params.items():
            setattr(layer, param, _backend.from_host(host, xp=xp, device=device, dtype=dtypes[0], copy=True))
        layers.append(layer)
    if manifest["kind"] == "DenseLayer":
        return layers[0]
    from .sequential import Sequential

    return Sequential(layers)
