"""Checkpoints: a DenseLayer or a Sequential in one ``.npz``, written atomically, read without pickle.

Format (``format_version`` 1): one ``.npz`` (a zip of ``.npy`` files, never
pickled) holding each parameter little-endian under ``layers.<i>.W`` and
``layers.<i>.b``, plus ``manifest``: UTF-8 JSON stored as a 1-D uint8 array::

    {"format": "dense_xp", "format_version": 1, "kind": "DenseLayer" | "Sequential",
     "dense_xp_version": "0.1.0",
     "layers": [{"config": layer.get_config(), "dtype": "float32",
                 "arrays": {"W": {"shape": [4, 8], "dtype": "<f4"}, "b": {...}}}]}

Loading checks the manifest against the arrays and the configs before it
builds anything; any problem is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

from . import _backend, _checks
from .activations import ACTIVATIONS
from .layer import DenseLayer

if TYPE_CHECKING:
    from .sequential import Sequential

__all__ = ["FORMAT_VERSION", "CheckpointError", "load", "save"]

FORMAT = "dense_xp"
FORMAT_VERSION = 1
KINDS = ("DenseLayer", "Sequential")
_CODES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
_TOP_KEYS = {"format", "format_version", "kind", "dense_xp_version", "layers"}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_READ_ERRORS = (OSError, EOFError, KeyError, NotImplementedError, RuntimeError, zipfile.BadZipFile)
_READ_ERRORS += (zlib.error,)


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
        Its configs, dtype and parameters are saved; gradients, optimizer
        state and the device are not.
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` suffix is added). The write is
        atomic: a new file in the same directory is filled, flushed to disk,
        then renamed onto ``path``, so on any error a previous file at
        ``path`` is left untouched and no partial file remains.

    Raises
    ------
    TypeError
        ``obj`` is neither a DenseLayer nor a Sequential, or ``path`` is not a path.
    FileNotFoundError
        The directory of ``path`` does not exist.
    """
    kind, layers = _layers_of(obj)
    name = _path(path)
    arrays: dict[str, Any] = {}
    entries = []
    for i, layer in enumerate(layers):
        dtype = _checks.dtype_name(layer.dtype)
        listed = {}
        for param, value in layer.parameters().items():
            host = _backend.to_numpy(value)
            arrays[f"layers.{i}.{param}"] = host
            listed[param] = {"shape": [int(n) for n in host.shape], "dtype": _CODES[dtype]}
        entries.append({"config": layer.get_config(), "dtype": dtype, "arrays": listed})
    from . import __version__

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "dense_xp_version": __version__,
        "layers": entries,
    }
    arrays["manifest"] = _backend.bytes_array(
        json.dumps(manifest, sort_keys=True, allow_nan=False).encode("utf-8")
    )
    _write_atomic(name, arrays)


def _read(name: str) -> dict[str, Any]:
    try:
        file = open(name, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file at this path", name) from None
    with file:
        head = file.read(4)
        if not head:
            raise _error(name, "the file is empty")
        if head not in _ZIP_MAGIC:
            raise _error(name, f"it is not a .npz file (it starts with {head!r}, not a zip signature)")
        file.seek(0)
        try:
            return _backend.read_npz(file)
        except ValueError as exc:
            if "pickle" in str(exc):
                problem = "it holds a pickled object array; checkpoints never load Python objects (pickle)"
                raise _error(name, problem) from None
            raise _error(name, f"it is damaged ({exc})") from None
        except _READ_ERRORS as exc:
            raise _error(name, f"it is truncated or damaged ({type(exc).__name__}: {exc})") from None


def _is_array(a: Any) -> bool:
    return hasattr(a, "dtype") and hasattr(a, "shape") and hasattr(a, "ndim")


def _manifest(name: str, entries: dict[str, Any]) -> dict[str, Any]:
    raw = entries.get("manifest")
    if raw is None:
        raise _error(name, "it has no 'manifest' entry, so it is not a dense_xp checkpoint")
    if not _is_array(raw) or raw.ndim != 1 or _checks.dtype_name(raw.dtype) != "uint8":
        raise _error(name, "its 'manifest' entry is not a 1-D uint8 array of JSON bytes")
    try:
        manifest = json.loads(_backend.array_bytes(raw).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _error(name, f"its manifest is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise _error(name, f"its manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise _error(name, f"its manifest format is {manifest.get('format')!r}, not {FORMAT!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _error(name, f"its manifest format_version must be an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        from . import __version__

        writer = manifest.get("dense_xp_version", "?")
        problem = f"it was written by a newer dense_xp ({writer}, format_version {version}); this dense_xp"
        problem += f" {__version__} reads format_version <= {FORMAT_VERSION}: upgrade dense_xp"
        raise _error(name, problem)
    unknown = sorted(set(manifest) - _TOP_KEYS)
    if unknown:
        raise _error(name, f"its manifest has unknown keys {unknown}")
    if manifest.get("kind") not in KINDS:
        raise _error(name, f"its manifest kind must be one of {KINDS}, got {manifest.get('kind')!r}")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _error(name, f"its manifest 'layers' must be a non-empty list, got {layers!r}")
    if manifest["kind"] == "DenseLayer" and len(layers) != 1:
        raise _error(name, f"a DenseLayer checkpoint must describe 1 layer, this one describes {len(layers)}")
    return manifest


def _config_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """The parameter shapes a config asks for (DenseLayer's own argument checks)."""
    missing = [key for key in ("input_size", "output_size") if key not in config]
    if missing:
        msg = f"{missing} missing"
        raise ValueError(msg)
    n_in = _checks.check_int(config["input_size"], "input_size")
    n_out = _checks.check_int(config["output_size"], "output_size")
    use_bias = config.get("use_bias", True)
    if not isinstance(use_bias, bool):
        msg = f"`use_bias` must be True or False, got {use_bias!r}"
        raise TypeError(msg)
    return {"W": (n_in, n_out), "b": (1, n_out)} if use_bias else {"W": (n_in, n_out)}


def _layer_arrays(name: str, i: int, entry: Any, entries: dict[str, Any]) -> dict[str, Any]:
    """Check layer ``i`` of the manifest against its config and its arrays; its arrays by name."""
    if not isinstance(entry, dict) or set(entry) != {"config", "dtype", "arrays"}:
        raise _error(name, f"manifest layer {i} must be an object with keys 'arrays', 'config', 'dtype'")
    config, dtype, listed = entry["config"], entry["dtype"], entry["arrays"]
    if not isinstance(config, dict):
        raise _error(name, f"layer {i} config must be an object, got {config!r}")
    if dtype not in _CODES:
        raise _error(name, f"layer {i} dtype must be a float dtype {tuple(_CODES)}, got {dtype!r}")
    try:
        shapes = _config_shapes(config)
    except (TypeError, ValueError) as exc:
        raise _error(name, f"layer {i} has an invalid config: {exc}") from None
    if not isinstance(listed, dict) or set(listed) != set(shapes):
        got = sorted(listed) if isinstance(listed, dict) else listed
        raise _error(name, f"layer {i} manifest lists arrays {got!r}, its config needs {sorted(shapes)}")
    arrays = {}
    for param, shape in shapes.items():
        key, spec, code = f"layers.{i}.{param}", listed[param], _CODES[dtype]
        rule = f"W must be (input_size, output_size) = {shapes['W']} and b (1, output_size)"
        if not isinstance(spec, dict) or set(spec) != {"shape", "dtype"}:
            raise _error(name, f"manifest entry of array {key!r} must be an object with 'dtype' and 'shape'")
        if spec["dtype"] != code:
            problem = f"manifest dtype {spec['dtype']!r} of {key!r} does not match layer dtype {dtype}"
            raise _error(name, f"{problem} ({code!r})")
        if spec["shape"] != list(shape):
            raise _error(name, f"manifest shape {spec['shape']!r} of {key!r} contradicts the config: {rule}")
        arr = entries.get(key)
        if arr is None:
            raise _error(name, f"array {key!r} is missing")
        if not _is_array(arr):
            raise _error(name, f"entry {key!r} is not an array")
        if arr.dtype.str != code:
            raise _error(name, f"array {key!r} has dtype {arr.dtype.str!r}, the manifest says {code!r}")
        if tuple(arr.shape) != shape:
            raise _error(name, f"array {key!r} has shape {tuple(arr.shape)}, not {shape}: {rule}")
        arrays[param] = arr
    return arrays


def load(path: str | os.PathLike[str], device: Any = None, *, xp: Any = None) -> DenseLayer | Sequential:
    """Rebuild the DenseLayer or Sequential saved at ``path`` on ``device`` (of ``xp``).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    device : str or device object, optional
        Where the parameters go; ``None`` takes :func:`dense_xp.get_default_device`
        (or ``xp``'s default device when ``xp`` is given).
    xp : namespace, optional
        Any array API namespace.

    Returns
    -------
    DenseLayer or Sequential
        The kind that was saved, with the saved configs and dtype; ``W`` has
        shape (input_size, output_size) and ``b`` (1, output_size).

    Raises
    ------
    FileNotFoundError
        There is no file at ``path``.
    CheckpointError
        The file is not an ``.npz``, is truncated, holds pickled objects, has a
        missing, invalid or newer manifest, or arrays that do not match it.
    """
    xp, device = _backend.resolve_device(device, xp=xp)
    name = _path(path)
    entries = _read(name)
    manifest = _manifest(name, entries)
    specs = manifest["layers"]
    arrays = [_layer_arrays(name, i, entry, entries) for i, entry in enumerate(specs)]
    expected = {"manifest"} | {f"layers.{i}.{p}" for i, found in enumerate(arrays) for p in found}
    extra = sorted(set(entries) - expected)
    if extra:
        raise _error(name, f"it holds unexpected arrays {extra}")
    for i in range(1, len(specs)):
        n_in, n_prev = specs[i]["config"]["input_size"], specs[i - 1]["config"]["output_size"]
        if n_in != n_prev:
            raise _error(name, f"layer {i} takes {n_in} inputs but layer {i - 1} gives {n_prev}")
        if specs[i]["dtype"] != specs[0]["dtype"]:
            raise _error(name, f"layer {i} is {specs[i]['dtype']} but layer 0 is {specs[0]['dtype']}")
    layers = []
    for i, (spec, params) in enumerate(zip(specs, arrays, strict=True)):
        dtype = _checks.resolve_dtype(spec["dtype"], xp=xp, device=device)
        activation = spec["config"].get("activation")
        if isinstance(activation, str) and activation not in ACTIVATIONS:
            problem = (
                f"layer {i} uses activation {activation!r}, which is not registered in this process; call"
            )
            problem += f" dense_xp.register_activation({activation!r}, forward, backward) before loading"
            raise _error(name, problem)
        try:
            layer = DenseLayer(**spec["config"], dtype=spec["dtype"], device=device, xp=xp)
        except (TypeError, ValueError) as exc:
            raise _error(name, f"layer {i} has an invalid config: {exc}") from None
        for param, host in params.items():
            setattr(layer, param, _backend.from_host(host, xp=xp, device=device, dtype=dtype, copy=True))
        layers.append(layer)
    if manifest["kind"] == "DenseLayer":
        return layers[0]
    from .sequential import Sequential

    return Sequential(layers)
