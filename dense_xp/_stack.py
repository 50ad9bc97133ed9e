"""What :class:`dense_xp.Sequential` checks and prints of its stack of layers, and its probability links.

The model's methods delegate here: the placement, width and tied-weight
checks of :meth:`~dense_xp.Sequential.check`, the checks of what each layer's
backward returned, the table of :meth:`~dense_xp.Sequential.summary`, and the
link from logits to probabilities of :meth:`~dense_xp.Sequential.predict_proba`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _backend, _checks

__all__ = ["check_grads", "check_layers", "probabilities", "probability_loss", "summary_lines"]

_CLASSIFIERS = ("softmax_cross_entropy", "binary_cross_entropy")


def check_layers(layers: Sequence[Any]) -> None:
    """Refuse layers that do not share ``layers[0]``'s placement, do not chain, or share an array."""
    first = layers[0].placement()
    seen: dict[int, str] = {}
    for i, layer in enumerate(layers):
        if layer.placement() != first:
            xp, device, param, compute = layer.placement()
            msg = (
                f"`layers[{i}]` is on device {device!r} of {_backend.namespace_name(xp)} with "
                f"param_dtype {_checks.dtype_name(param)} and compute_dtype "
                f"{_checks.dtype_name(compute)}, "
                f"but `layers[0]` is on {first[1]!r} of {_backend.namespace_name(first[0])} with "
                f"{_checks.dtype_name(first[2])} and {_checks.dtype_name(first[3])}: a model's layers "
                "share one namespace, device and dtypes; move the whole model with model.to(...)"
            )
            raise ValueError(msg)
        if i and layer.built and layer.input_size != layers[i - 1].output_size:
            msg = f"`layers[{i}]` takes {layer.input_size} inputs but `layers[{i - 1}]` gives "
            raise ValueError(msg + f"{layers[i - 1].output_size}")
        for name, array in layer.arrays().items():
            where = f"layers[{i}].{name}"
            other = seen.setdefault(id(array), where)
            if other != where:
                msg = (
                    f"`{where}` is the same array as `{other}` (tied weights): each parameter of a model "
                    f"is an array of its own, which gets one optimizer step; give `{where}` a copy "
                    "(xp.asarray(a, copy=True))"
                )
                raise ValueError(msg)


def check_grads(i: int, layer: Any, d_input: Any, n: int, wanted: bool) -> None:
    """Refuse a layer's ``d_input`` of the wrong shape, or ``grads`` that do not match its parameters."""
    where = f"layers[{i}]"
    if wanted and (d_input is None or tuple(d_input.shape) != (n, layer.input_size)):
        got = None if d_input is None else tuple(d_input.shape)
        msg = f"`{where}` ({type(layer).__name__}) backward returned d_input of shape {got}, "
        raise ValueError(msg + f"expected ({n}, {layer.input_size})")
    grads, params = layer.grads, layer.parameters()
    if grads.keys() != params.keys():
        msg = f"`{where}.grads` must hold one gradient per parameter {sorted(params)}, got {sorted(grads)}"
        raise ValueError(msg)
    for name, p in params.items():
        g = grads[name]
        if tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
            msg = (
                f"`{where}.grads[{name!r}]` must have the shape {tuple(p.shape)} and dtype "
                f"{_checks.dtype_name(p.dtype)} of `{where}.{name}`, got {tuple(g.shape)} "
                f"{_checks.dtype_name(g.dtype)}"
            )
            raise ValueError(msg)


def summary_lines(model: Any) -> list[str]:
    """The rows of :meth:`~dense_xp.Sequential.summary`: one per layer, then the totals and the device."""
    rows = [("#", "layer", "output", "parameters")]
    total = 0
    for i, layer in enumerate(model.layers):
        count = sum(int(_size(p)) for p in layer.parameters().values())
        total += count
        rows.append((str(i), type(layer).__name__, f"(n, {layer.output_size})", f"{count:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    param, compute = _checks.dtype_name(model.param_dtype), _checks.dtype_name(model.compute_dtype)
    lines += [
        "-" * len(lines[0]),
        f"total parameters: {total:,} ({param}" + (f", computing in {compute})" if compute != param else ")"),
        f"device: {model.device!r} of {_backend.namespace_name(model.xp)}",
    ]
    return lines


def probability_loss(loss: str | None, fitted: str | None) -> str:
    """The classification loss whose link ``predict_proba`` applies: ``loss``, else the fitted one."""
    name = fitted if loss is None else loss
    if name not in _CLASSIFIERS:
        source = "the loss of the last fit" if loss is None else "given"
        if loss is None and fitted is None:
            source = "the model has not been fitted, or was fitted with a loss without a known name"
        msg = (
            '`loss` must be "softmax_cross_entropy" or "binary_cross_entropy" for probabilities, '
            f"got {name!r} ({source})"
        )
        raise ValueError(msg)
    return name


def probabilities(z: Any, name: str, *, xp: Any) -> Any:
    """Logits ``z`` (n, k) as probabilities: sigmoid for binary cross-entropy, else softmax over rows."""
    if name == "binary_cross_entropy":
        e = xp.exp(-xp.abs(z))  # in (0, 1]: no overflow
        return xp.where(z >= 0, 1.0, e) / (1.0 + e)
    p = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return p / xp.sum(p, axis=1, keepdims=True)


def _size(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n
