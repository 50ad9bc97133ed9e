"""Per-row weights of ``fit``: ``sample_weight`` checked, ``class_weight`` turned into row weights.

Keras's semantics: a row's loss is multiplied by its weight and the batch's
loss is the mean over its rows (the "sum_over_batch_size" reduction); a
``class_weight`` ``{class: weight}`` gives each row the weight of its class
(the argmax of a one-hot row, the rounded target of one output), 1 for a
class it does not name. Both at once are refused, as Keras refuses them. The
weights are computed where the labels are (no label leaves its device).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import array_api_compat

from .. import _backend

__all__ = ["check_class_weight", "class_weights"]


def check_class_weight(class_weight: Any, sample_weight: Any) -> dict[int, float] | None:
    """``class_weight`` as ``{int class: float weight}``, each finite and >= 0 (``None`` stays ``None``)."""
    if class_weight is None:
        return None
    if sample_weight is not None:
        msg = "`class_weight` and `sample_weight` cannot both be given (as in Keras): fold one into the other"
        raise ValueError(msg)
    if not isinstance(class_weight, dict):
        msg = f"`class_weight` must be a dict {{class index: weight}}, got {type(class_weight).__name__}"
        raise TypeError(msg)
    table = {}
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0:
            msg = f"`class_weight` keys must be class indices >= 0, got {key!r}"
            raise TypeError(msg) if not isinstance(key, numbers.Integral) else ValueError(msg)
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (0 <= float(value) < math.inf)
        ):
            msg = f"`class_weight[{key!r}]` must be a finite number >= 0, got {value!r}"
            raise ValueError(msg)
        table[int(key)] = float(value)
    return table


def class_weights(y: Any, table: dict[int, float], n_outputs: int) -> Any:
    """The weight of each row of the targets ``y`` (an array of any library), on ``y``'s device."""
    xp, device = array_api_compat.array_namespace(y), array_api_compat.device(y)
    size = max(2, n_outputs, max(table, default=0) + 1)
    index = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    weights = _backend.from_host([table.get(c, 1.0) for c in range(size)], xp=xp, device=device)
    if y.ndim == 2 and y.shape[1] > 1:
        labels = xp.argmax(y, axis=1)
    else:
        labels = xp.reshape(y, (-1,))
        if xp.isdtype(labels.dtype, "real floating"):
            labels = xp.round(labels)
    labels = xp.astype(xp.clip(labels, 0, size - 1), index)
    return xp.take(weights, labels)
