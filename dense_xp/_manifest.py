"""The checkpoint manifest: what a dense_xp ``.npz`` must hold, checked before any array is read.

Each check raises :class:`Invalid` with a message that reads after
"cannot load checkpoint NAME: "; :mod:`dense_xp.checkpoint` adds the name.

The shapes a layer's arrays must have come from its class: the reader
(:mod:`dense_xp.checkpoint`) rebuilds the class from the manifest's config
and builds it for its input width in a mode that only *declares* the arrays
(see :func:`layer_specs`), so no array is allocated and no data read before
the file agrees with the model it describes. This module knows the format
alone: it imports no layer and no model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _checks

FORMAT = "dense_xp"
FORMAT_VERSION = 2
SINGLE = ("Layer", "DenseLayer")  # kinds of a one-layer checkpoint (DenseLayer: format 1)
KINDS = (*SINGLE, "Sequential")
CODES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
BITS = {"bfloat16": 16, "float16": 16, "float32": 32, "float64": 64}
ITEMSIZES = {"<f2": 2, "<f4": 4, "<f8": 8}
MAX_BYTES = 2**20  # of manifest JSON; about 4000 layers
PLACEMENT = ("dtype", "param_dtype", "compute_dtype", "device", "xp")
_TOP_KEYS = {"format", "format_version", "kind", "dense_xp_version", "layers", "optimizer"}
_ENTRY_KEYS = {1: {"config", "dtype", "arrays"}, 2: {"class", "config", "input_size", "dtype", "arrays"}}


class Invalid(ValueError):
    """A manifest, or a file, that contradicts the format or itself."""


class Spec(NamedTuple):
    """One layer as its manifest entry describes it, checked against its class."""

    cls: Any  # the layer class
    config: dict[str, Any]
    input_size: int
    arrays: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype code)


def encode(kind: str, entries: list[dict[str, Any]], *, optimizer: dict[str, Any] | None = None) -> bytes:
    """The manifest of ``entries`` (one per layer), and of an optimizer's state, as UTF-8 JSON."""
    from . import __version__

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "dense_xp_version": __version__,
        "layers": entries,
    }
    if optimizer is not None:
        manifest["optimizer"] = optimizer
    return json.dumps(manifest, sort_keys=True, allow_nan=False).encode("utf-8")


def entry(layer: Any) -> dict[str, Any]:
    """The manifest entry of a built ``layer`` (its arrays listed by shape and dtype code)."""
    dtype, compute = _checks.dtype_name(layer.param_dtype), _checks.dtype_name(layer.compute_dtype)
    arrays = {
        name: {"shape": [int(n) for n in shape], "dtype": CODES[dtype]}
        for name, shape in layer.array_shapes().items()
    }
    described = {
        "class": layer.registered_name(),
        "config": layer.get_config(),
        "input_size": layer.input_size,
        "dtype": dtype,
        "arrays": arrays,
    }
    return described if compute == dtype else {**described, "compute_dtype": compute}


def parse(raw: bytes) -> dict[str, Any]:
    """The manifest in ``raw`` once its top level is valid: format, version, kind, a list of layers."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"its manifest is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise Invalid(f"its manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise Invalid(f"its manifest format is {manifest.get('format')!r}, not {FORMAT!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(f"its manifest format_version must be an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        from . import __version__

        writer = manifest.get("dense_xp_version", "?")
        problem = f"it was written by a newer dense_xp ({writer}, format_version {version}); this dense_xp"
        problem += f" {__version__} reads format_version <= {FORMAT_VERSION}: upgrade dense_xp"
        raise Invalid(problem)
    unknown = sorted(set(manifest) - _TOP_KEYS)
    if unknown:
        raise Invalid(f"its manifest has unknown keys {unknown}")
    if manifest.get("kind") not in KINDS:
        raise Invalid(f"its manifest kind must be one of {KINDS}, got {manifest.get('kind')!r}")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise Invalid(f"its manifest 'layers' must be a non-empty list, got {layers!r}")
    if manifest["kind"] in SINGLE and len(layers) != 1:
        raise Invalid(
            f"a {manifest['kind']} checkpoint must describe 1 layer, this one describes {len(layers)}"
        )
    return manifest


def optimizer_entry(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's ``optimizer`` entry for :meth:`Optimizer.state_dict`, and its arrays by member key.

    The entry is the state dict without its arrays, plus ``arrays``: the
    shape and dtype code of each, under ``optimizer.<position>.<name>``.
    """
    described = {k: v for k, v in state_dict.items() if k != "state"}
    arrays, listed = {}, {}
    for i, named in enumerate(state_dict["state"]):
        for name, host in named.items():
            key = f"optimizer.{i}.{name}"
            arrays[key] = host
            listed[key] = {
                "shape": [int(n) for n in host.shape],
                "dtype": CODES[_checks.dtype_name(host.dtype)],
            }
    described["arrays"] = listed
    return described, arrays


def optimizer_arrays(manifest: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The (shape, dtype code) of each optimizer array the file must hold (none without an optimizer)."""
    entry = manifest.get("optimizer")
    if entry is None:
        return {}
    listed = entry.get("arrays") if isinstance(entry, dict) else None
    if not isinstance(listed, dict):
        raise Invalid("its manifest 'optimizer' must be an object with 'arrays'")
    arrays = {}
    for key, spec in listed.items():
        parts = key.split(".") if isinstance(key, str) else []
        shape = spec.get("shape") if isinstance(spec, dict) else None
        ok_shape = isinstance(shape, list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        )
        if (
            len(parts) != 3
            or parts[0] != "optimizer"
            or not parts[1].isdigit()
            or not parts[2].isidentifier()
        ):
            raise Invalid(f"its manifest names an optimizer array {key!r}, not 'optimizer.<position>.<name>'")
        if (
            not ok_shape
            or not isinstance(spec, dict)
            or spec.get("dtype") not in ITEMSIZES
            or set(spec) != {"shape", "dtype"}
        ):
            raise Invalid(
                f"manifest entry of optimizer array {key!r} must be an object with a shape and a dtype"
            )
        arrays[key] = (tuple(shape or ()), spec["dtype"])
    return arrays


def optimizer_state(manifest: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    """The state dict :meth:`Optimizer.load_state_dict` takes, from the manifest's entry and its arrays."""
    described = {k: v for k, v in manifest["optimizer"].items() if k != "arrays"}
    positions = len(described.get("params") or [])
    state: list[dict[str, Any]] = [{} for _ in range(positions)]
    for key, host in arrays.items():
        _, position, name = key.split(".")
        if int(position) >= positions:
            raise Invalid(f"optimizer array {key!r} is for position {position}, of {positions} parameters")
        state[int(position)][name] = host
    return {**described, "state": state}


def compute_dtype(entry: dict[str, Any]) -> str:
    """The compute dtype of a manifest layer: its ``dtype`` where none is written."""
    name: str = entry.get("compute_dtype", entry["dtype"])
    return name


def _entry_fields(i: int, entry: Any, version: int) -> tuple[str, dict[str, Any], Any, str]:
    """``(class, config, input width or None, dtype)`` of entry ``i``, its keys and types checked."""
    keys = _ENTRY_KEYS[min(version, 2)]
    if not isinstance(entry, dict) or set(entry) - {"compute_dtype"} != keys:
        msg = f"manifest layer {i} must be an object with keys {sorted(keys)}"
        raise Invalid(f"{msg} (and 'compute_dtype' where it differs from 'dtype')")
    config, dtype = entry["config"], entry["dtype"]
    if not isinstance(config, dict):
        raise Invalid(f"layer {i} config must be an object, got {config!r}")
    placed = sorted(set(config) & set(PLACEMENT))
    if placed:
        raise Invalid(f"layer {i} has an invalid config: it names {placed}, which the manifest gives apart")
    if dtype not in CODES:
        raise Invalid(f"layer {i} dtype must be a float dtype {tuple(CODES)}, got {dtype!r}")
    compute = entry.get("compute_dtype", dtype)
    if (
        not isinstance(compute, str)
        or compute not in BITS
        or (compute != dtype and BITS[compute] >= BITS[dtype])
    ):
        problem = f"layer {i} compute_dtype must be its dtype or a narrower one of {tuple(BITS)}"
        raise Invalid(f"{problem}, got {compute!r}")
    if version == 1:
        return "DenseLayer", config, config.get("input_size"), dtype
    if not isinstance(entry["class"], str):
        raise Invalid(f"layer {i} class must be a string, got {entry['class']!r}")
    width = entry["input_size"]
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise Invalid(f"layer {i} input_size must be an integer >= 1, got {width!r}")
    return entry["class"], config, width, dtype


Declare = Callable[[str, dict[str, Any], Any], Any]
"""``declare(class name, config, input width or None) -> layer``: the layer built in declare-only mode."""


def layer_specs(manifest: dict[str, Any], declare: Declare) -> list[Spec]:
    """Per layer, its class, config, input width and the (shape, dtype code) of each array it must hold.

    ``declare`` rebuilds each layer without arrays (a ValueError or
    TypeError it raises is an invalid config), so that its class says which
    arrays of which shapes the file must hold.
    """
    version, specs, previous = manifest["format_version"], [], None
    first = manifest["layers"][0]
    for i, item in enumerate(manifest["layers"]):
        name, config, width, dtype = _entry_fields(i, item, version)
        try:  # a layer whose config fixes its width (DenseLayer) is built by the config alone
            layer = declare(name, config, None)
            if layer.input_size is None and version > 1:
                layer = declare(name, config, width)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"layer {i} has an invalid config: {exc}") from None
        if layer.input_size is None:
            raise Invalid(f"layer {i} has an invalid config: it names no input width")
        cls, width = type(layer), layer.input_size
        if previous is not None and width != previous:
            raise Invalid(f"layer {i} takes {width} inputs but layer {i - 1} gives {previous}")
        if version > 1 and width != item["input_size"]:
            raise Invalid(f"layer {i} config takes {width} inputs but its entry says {item['input_size']}")
        if i and item["dtype"] != first["dtype"]:
            raise Invalid(f"layer {i} is {item['dtype']} but layer 0 is {first['dtype']}")
        if i and compute_dtype(item) != compute_dtype(first):
            problem = f"layer {i} computes in {compute_dtype(item)} but layer 0 in {compute_dtype(first)}"
            raise Invalid(problem)
        specs.append(Spec(cls, config, width, _arrays(i, item, layer.array_shapes(), CODES[dtype])))
        previous = layer.output_size
    return specs


def _arrays(
    i: int, item: dict[str, Any], shapes: dict[str, tuple[int, ...]], code: str
) -> dict[str, tuple[tuple[int, ...], str]]:
    """The arrays entry ``i`` lists, each checked against the shapes its class declares."""
    listed = item["arrays"]
    if not isinstance(listed, dict) or set(listed) != set(shapes):
        got = sorted(listed) if isinstance(listed, dict) else listed
        raise Invalid(f"layer {i} manifest lists arrays {got!r}, its config needs {sorted(shapes)}")
    arrays = {}
    for name, shape in shapes.items():
        key, spec = f"layers.{i}.{name}", listed[name]
        if not isinstance(spec, dict) or set(spec) != {"shape", "dtype"}:
            raise Invalid(f"manifest entry of array {key!r} must be an object with 'dtype' and 'shape'")
        if spec["dtype"] != code:
            raise Invalid(
                f"manifest dtype {spec['dtype']!r} of {key!r} does not match layer dtype "
                f"{item['dtype']} ({code!r})"
            )
        if spec["shape"] != list(shape):
            raise Invalid(
                f"manifest shape {spec['shape']!r} of {key!r} contradicts the config: {rule(shapes)}"
            )
        arrays[name] = (shape, code)
    return arrays


def rule(shapes: dict[str, tuple[int, ...]]) -> str:
    """The shapes a layer's config declares, for messages."""
    return "it declares " + ", ".join(f"{name} {shape}" for name, shape in shapes.items())


def nbytes(shape: tuple[int, ...], code: str) -> int:
    """The bytes of an array of ``shape`` and dtype ``code``."""
    return math.prod(shape) * ITEMSIZES[code]
