"""The checkpoint manifest: what a dense_xp ``.npz`` must hold, checked before any array is read.

Each check raises :class:`Invalid` with a message that reads after
"cannot load checkpoint NAME: "; :mod:`dense_xp.checkpoint` adds the name.
"""

from __future__ import annotations

import json
from typing import Any

from . import _checks

FORMAT = "dense_xp"
FORMAT_VERSION = 1
KINDS = ("DenseLayer", "Sequential")
CODES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
BITS = {"bfloat16": 16, "float16": 16, "float32": 32, "float64": 64}
ITEMSIZES = {"<f2": 2, "<f4": 4, "<f8": 8}
MAX_BYTES = 2**20  # of manifest JSON; about 4000 layers
_TOP_KEYS = {"format", "format_version", "kind", "dense_xp_version", "layers"}


class Invalid(ValueError):
    """A manifest, or a file, that contradicts the format or itself."""


def encode(kind: str, entries: list[dict[str, Any]]) -> bytes:
    """The manifest of ``entries`` (one per layer) as UTF-8 JSON."""
    from . import __version__

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "dense_xp_version": __version__,
        "layers": entries,
    }
    return json.dumps(manifest, sort_keys=True, allow_nan=False).encode("utf-8")


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
    if manifest["kind"] == "DenseLayer" and len(layers) != 1:
        raise Invalid(f"a DenseLayer checkpoint must describe 1 layer, this one describes {len(layers)}")
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


def _layer_arrays(i: int, entry: Any) -> dict[str, tuple[tuple[int, int], str]]:
    """The (shape, dtype code) of each array of manifest layer ``i``, checked against its config."""
    if not isinstance(entry, dict) or set(entry) - {"compute_dtype"} != {"config", "dtype", "arrays"}:
        msg = f"manifest layer {i} must be an object with keys 'arrays', 'config', 'dtype'"
        raise Invalid(f"{msg} (and 'compute_dtype' where it differs from 'dtype')")
    config, dtype, listed = entry["config"], entry["dtype"], entry["arrays"]
    if not isinstance(config, dict):
        raise Invalid(f"layer {i} config must be an object, got {config!r}")
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
    try:
        shapes = _config_shapes(config)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"layer {i} has an invalid config: {exc}") from None
    if not isinstance(listed, dict) or set(listed) != set(shapes):
        got = sorted(listed) if isinstance(listed, dict) else listed
        raise Invalid(f"layer {i} manifest lists arrays {got!r}, its config needs {sorted(shapes)}")
    arrays = {}
    for param, shape in shapes.items():
        key, spec, code = f"layers.{i}.{param}", listed[param], CODES[dtype]
        if not isinstance(spec, dict) or set(spec) != {"shape", "dtype"}:
            raise Invalid(f"manifest entry of array {key!r} must be an object with 'dtype' and 'shape'")
        if spec["dtype"] != code:
            raise Invalid(
                f"manifest dtype {spec['dtype']!r} of {key!r} does not match layer dtype {dtype} ({code!r})"
            )
        if spec["shape"] != list(shape):
            raise Invalid(
                f"manifest shape {spec['shape']!r} of {key!r} contradicts the config: {rule(shapes)}"
            )
        arrays[param] = (shape, code)
    return arrays


def compute_dtype(entry: dict[str, Any]) -> str:
    """The compute dtype of a manifest layer: its ``dtype`` where none is written."""
    name: str = entry.get("compute_dtype", entry["dtype"])
    return name


def rule(shapes: dict[str, tuple[int, int]]) -> str:
    """How the parameter shapes of one layer follow from its config."""
    return f"W must be (input_size, output_size) = {shapes['W']} and b (1, output_size)"


def layer_arrays(manifest: dict[str, Any]) -> list[dict[str, tuple[tuple[int, int], str]]]:
    """Per layer, the (shape, dtype code) of each array the file must hold; the layers must chain."""
    specs = manifest["layers"]
    arrays = [_layer_arrays(i, entry) for i, entry in enumerate(specs)]
    for i in range(1, len(specs)):
        n_in, n_prev = specs[i]["config"]["input_size"], specs[i - 1]["config"]["output_size"]
        if n_in != n_prev:
            raise Invalid(f"layer {i} takes {n_in} inputs but layer {i - 1} gives {n_prev}")
        if specs[i]["dtype"] != specs[0]["dtype"]:
            raise Invalid(f"layer {i} is {specs[i]['dtype']} but layer 0 is {specs[0]['dtype']}")
        if compute_dtype(specs[i]) != compute_dtype(specs[0]):
            problem = (
                f"layer {i} computes in {compute_dtype(specs[i])} but layer 0 in {compute_dtype(specs[0])}"
            )
            raise Invalid(problem)
    return arrays
