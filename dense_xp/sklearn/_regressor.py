"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor, computed by dense_xp."""

from __future__ import annotations

from typing import Any

from sklearn.base import RegressorMixin
from sklearn.utils._array_api import get_namespace_and_device, move_to
from sklearn.utils.validation import column_or_1d, validate_data

from .. import _backend
from ._base import BaseMLP
from ._data import move

__all__ = ["MLPRegressor"]


class MLPRegressor(RegressorMixin, BaseMLP):  # type: ignore[misc]
    """Multi-layer perceptron regressor: scikit-learn's, computed by dense_xp on any array API backend.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`
    with the stochastic solvers. ``y`` follows ``X`` (it is moved to ``X``'s
    namespace and device); the parameters are those of
    :class:`dense_xp.sklearn.MLPClassifier`, with ``loss`` first.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Half the squared error (identity output) or half the Poisson
        deviance (exponential output).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, \
warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, \
beta_1, beta_2, epsilon, n_iter_no_change, max_fun, device
        As :class:`MLPClassifier`; early stopping scores the held-out
        fraction by R^2.

    Attributes
    ----------
    coefs_ : list of arrays of shape (n_in, n_out)
    intercepts_ : list of arrays of shape (n_out,)
    loss_, best_loss_ : float
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    t_, n_iter_, n_layers_, n_outputs_, n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
    out_activation_ : {"identity", "exp"}
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: Any = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: Any = 10,
        max_fun: int = 15000,
        device: Any = None,
    ) -> None:
        self.loss = loss
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            device=device,
        )

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        xp_in, _, device_in = get_namespace_and_device(X)
        X, y = validate_data(
            self,
            X,
            move_to(y, xp=xp_in, device=device_in),
            multi_output=True,
            y_numeric=True,
            dtype=[xp_in.float64, xp_in.float32],
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, (y if y.ndim == 2 else xp_in.reshape(y, (-1, 1)))

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        self._fit(X, y, sample_weight, incremental=True)
        return self

    def predict(self, X: Any) -> Any:
        """The predicted values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples,) or (n_samples, n_outputs)
            In ``X``'s namespace, device and floating dtype.
        """
        p, back = self._forward(X, "predict")
        if p.shape[1] == 1:
            p = p[:, 0]
        return move(p, *back)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of :meth:`predict` against ``y``, computed with ``X``'s device current.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
        """
        with _backend.on_device(get_namespace_and_device(X)[2]):
            return float(super().score(X, y, sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
