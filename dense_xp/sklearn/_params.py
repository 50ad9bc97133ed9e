"""The estimators' hyperparameters: checked in ``fit`` (never in ``__init__``), as scikit-learn does."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["ACTIVATIONS", "check_params", "hidden_sizes"]

# scikit-learn's names of the hidden activations -> dense_xp's
ACTIVATIONS: dict[str, str | None] = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("adam", "sgd")
SCHEDULES = ("constant", "invscaling", "adaptive")
REGRESSION_LOSSES = ("squared_error", "poisson")


def _fail(name: str, rule: str, value: Any, *, kind: type[Exception] = ValueError) -> Exception:
    return kind(f"`{name}` must be {rule}, got {type(value).__name__} {value!r}")


def _real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[..., None]:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    rule = f"a real number in {left}{lo}, {hi}{right}"

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _fail(name, rule, value, kind=TypeError)
        number = float(value)
        above = number > lo if lo_open else number >= lo
        below = number < hi if hi_open else number <= hi
        if not (above and below):  # NaN fails both
            raise _fail(name, rule, value)

    return check


def _integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, "an integer >= 1", value, kind=TypeError)
    if value < 1:
        raise _fail(name, "an integer >= 1", value)


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value, kind=TypeError)


def _options(*options: str) -> Callable[..., None]:
    rule = "one of " + ", ".join(map(repr, options))

    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or value not in options:
            raise _fail(name, rule, value)

    return check


def _solver(name: str, value: Any) -> None:
    if value == "lbfgs":
        msg = (
            "`solver='lbfgs'` is not offered by dense_xp.sklearn: L-BFGS runs on the host through "
            "scipy.optimize; use solver='adam' or 'sgd', or sklearn.neural_network for L-BFGS"
        )
        raise ValueError(msg)
    _options(*SOLVERS)(name, value)


def _batch_size(name: str, value: Any) -> None:
    if value != "auto":
        try:
            _integer(name, value)
        except (TypeError, ValueError):
            raise _fail(name, "'auto' or an integer >= 1", value) from None


def _n_iter_no_change(name: str, value: Any) -> None:
    if not (isinstance(value, numbers.Real) and value == math.inf):
        try:
            _integer(name, value)
        except (TypeError, ValueError):
            raise _fail(name, "an integer >= 1 or math.inf", value) from None


def _verbose(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Integral):
        raise _fail(name, "a bool or an integer", value, kind=TypeError)


_CHECKS: dict[str, Callable[..., None]] = {
    "activation": _options(*ACTIVATIONS),
    "solver": _solver,
    "alpha": _real(0.0, math.inf),
    "batch_size": _batch_size,
    "learning_rate": _options(*SCHEDULES),
    "learning_rate_init": _real(0.0, math.inf, lo_open=True, hi_open=True),
    "power_t": _real(0.0, math.inf),
    "max_iter": _integer,
    "shuffle": _flag,
    "tol": _real(0.0, math.inf),
    "verbose": _verbose,
    "warm_start": _flag,
    "momentum": _real(0.0, 1.0),
    "nesterovs_momentum": _flag,
    "early_stopping": _flag,
    "validation_fraction": _real(0.0, 1.0, hi_open=True),
    "beta_1": _real(0.0, 1.0, hi_open=True),
    "beta_2": _real(0.0, 1.0, hi_open=True),
    "epsilon": _real(0.0, math.inf, lo_open=True, hi_open=True),
    "n_iter_no_change": _n_iter_no_change,
    "max_fun": _integer,
    "loss": _options(*REGRESSION_LOSSES),
}


def hidden_sizes(value: Any) -> list[int]:
    """``hidden_layer_sizes`` as a list of ints >= 1 (an int is one hidden layer, ``()`` none)."""
    rule = "an integer >= 1 or a sequence of them"
    sizes = [value] if isinstance(value, numbers.Integral) else value
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise _fail("hidden_layer_sizes", rule, value, kind=TypeError)
    sizes = list(sizes)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise _fail("hidden_layer_sizes", rule, value)
    return [int(size) for size in sizes]


def check_params(params: dict[str, Any]) -> list[int]:
    """Check every hyperparameter of ``params`` (from ``get_params``); return the hidden layer sizes.

    Raises
    ------
    TypeError, ValueError
        Naming the first bad parameter and the value received.
    """
    for name, check in _CHECKS.items():
        if name in params:
            check(name, params[name])
    return hidden_sizes(params["hidden_layer_sizes"])
