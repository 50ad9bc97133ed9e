"""scikit-learn estimators computed by dense_xp: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for :mod:`sklearn.neural_network`'s estimators with the
stochastic solvers (``"adam"``, ``"sgd"``), that pass scikit-learn's estimator
checks and support its array API dispatch: with
``sklearn.set_config(array_api_dispatch=True)`` they fit and predict where
``X`` lives (NumPy, CuPy, torch, array-api-strict). ``device="cuda"``
computes on the GPU from NumPy data and returns NumPy.

Needs scikit-learn: ``pip install "dense-xp[sklearn]"``.
"""

from __future__ import annotations

try:
    import sklearn as _sklearn
except ImportError as exc:  # exercised by a test that hides scikit-learn
    msg = (
        "dense_xp.sklearn needs scikit-learn (>= 1.6), which is not installed: "
        'pip install "dense-xp[sklearn]"'
    )
    raise ImportError(msg) from exc
if tuple(int(part) for part in _sklearn.__version__.split(".")[:2] if part.isdigit()) < (1, 6):
    msg = (
        f"dense_xp.sklearn needs scikit-learn >= 1.6 (its estimator tags), found {_sklearn.__version__}: "
        'pip install "dense-xp[sklearn]"'
    )
    raise ImportError(msg)

from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
