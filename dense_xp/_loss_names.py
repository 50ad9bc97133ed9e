"""The names users of Keras, PyTorch and scikit-learn type for a loss, and the one dense_xp has for each."""

from __future__ import annotations

__all__ = ["suggest"]

# The names users of Keras, PyTorch and scikit-learn type, and the loss dense_xp has for each
# (from logits: dense_xp's losses take the model's raw outputs).
_ALIASES = {
    "sparse_categorical_crossentropy": "softmax_cross_entropy",
    "categorical_crossentropy": "softmax_cross_entropy",
    "crossentropy": "softmax_cross_entropy",
    "cross_entropy": "softmax_cross_entropy",
    "crossentropyloss": "softmax_cross_entropy",
    "log_loss": "softmax_cross_entropy",
    "nll": "softmax_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "bce": "binary_cross_entropy",
    "bcewithlogitsloss": "binary_cross_entropy",
    "mean_squared_error": "mse",
    "mseloss": "mse",
    "squared_error": "mse",
    "l2": "mse",
}


def suggest(name: str, known: list[str]) -> str | None:
    """The loss dense_xp has for another library's name of it, or the closest name."""
    import difflib

    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, [*known, *_ALIASES], n=1, cutoff=0.6)
    return (_ALIASES.get(close[0], close[0])) if close else None
