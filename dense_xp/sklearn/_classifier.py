"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier, computed by dense_xp."""

from __future__ import annotations

from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._array_api import get_namespace, get_namespace_and_device
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .. import _backend
from . import _data
from ._base import BaseMLP
from ._losses import argmax_rows
from ._net import placement_of

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, BaseMLP):  # type: ignore[misc]
    """Multi-layer perceptron classifier: scikit-learn's, computed by dense_xp on any array API backend.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`
    with the stochastic solvers: the same parameters, defaults, initialization
    (the same ``random_state`` gives the same initial ``coefs_``), loss,
    updates, stopping rule and attributes. With
    ``sklearn.set_config(array_api_dispatch=True)`` it fits and predicts where
    ``X`` lives (torch, CuPy, array-api-strict...), and returns arrays there.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        The number of units of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        The hidden layers' activation.
    solver : {"adam", "sgd"}, default="adam"
        ``"lbfgs"`` is not offered (ValueError).
    alpha : float, default=1e-4
        L2 strength: ``0.5 * alpha * sum ||W||^2 / sum(sample weights of the batch)``
        is added to each batch loss.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The schedule of ``solver="sgd"``.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default=200
        The number of epochs at most.
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
        Initialization, shuffles and the early-stopping split, all drawn on
        the host: one value gives the same model on every backend.
    tol : float, default=1e-4
    verbose : bool or int, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for a
        binary problem), stop on its accuracy, and keep the best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's constants.
    n_iter_no_change : int or math.inf, default=10
    max_fun : int, default=15000
        Accepted for compatibility; used only by L-BFGS.
    device : str, device object or None, default=None
        Where to compute: ``None`` follows ``X`` under array API dispatch and
        is the CPU (NumPy) otherwise; ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"auto"`` or a device object of an array API library. Checked in
        ``fit``. Outputs come back in ``X``'s namespace and device.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, on the host.
    coefs_ : list of arrays of shape (n_in, n_out)
    intercepts_ : list of arrays of shape (n_out,)
        Where the model computes (``X``'s namespace and device by default).
    loss_, best_loss_ : float
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    t_, n_iter_, n_layers_, n_outputs_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
    out_activation_ : {"softmax", "logistic"}
        ``"logistic"`` for binary (one output unit) and multilabel problems.
    """

    _classifier = True

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        xp_in = get_namespace(X)[0]
        X, y = validate_data(
            self, X, _data.host(y), multi_output=True, dtype=[xp_in.float64, xp_in.float32], reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = set(unique_labels(y).tolist())
            known = set(_data.host(self.classes_).tolist())
            if self.warm_start and classes != known:
                msg = (
                    "warm_start can only be used where `y` has the same classes as in the previous call "
                    f"to fit. Previously got {self.classes_}, `y` has {sorted(classes)}"
                )
                raise ValueError(msg)
            if not self.warm_start and classes - known:
                msg = (
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                    f"'y' has {sorted(classes)}."
                )
                raise ValueError(msg)
        return X, self._label_binarizer.transform(y).astype(bool)  # the host indicator, (n, n_outputs)

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            Every class of all calls: required on the first call only.

        Returns
        -------
        self
        """
        if _check_partial_fit_first_call(self, _data.host(classes)):
            y_host = _data.host(y)
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y_host).startswith("multilabel"):
                self._label_binarizer.fit(y_host)
            else:
                self._label_binarizer.fit(_data.host(classes))
        self._fit(X, y, sample_weight, incremental=True)
        return self

    def predict(self, X: Any) -> Any:
        """The predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : array of shape (n_samples,), or (n_samples, n_classes) for multilabel
            Numeric labels in ``X``'s namespace and device; string labels as a
            host NumPy array.
        """
        p, back = self._forward(X, "predict")
        xp, device = placement_of(p)
        integers = xp.__array_namespace_info__().default_dtypes(device=device)["integral"]
        with _backend.on_device(device):
            if self._label_binarizer.y_type_.startswith("multilabel"):  # the indicator, int64 as sklearn's
                return _data.move(xp.astype(p > 0.5, integers), *back)
            if self.out_activation_ == "softmax":
                index = argmax_rows(p)
            else:
                index = xp.astype(p[:, 0] > 0.5, integers)
            if self.classes_.shape[0] == 1:
                index = xp.zeros_like(index)
            if getattr(self.classes_.dtype, "kind", "i") not in "biuf":  # strings stay on the host
                return self.classes_[_backend.to_numpy(index)]
            classes = _data.move(self.classes_, xp, device)  # host labels, or moved with the model
            return _data.move(xp.take(classes, index, axis=0), *back)

    def predict_proba(self, X: Any) -> Any:
        """Probability of each class, in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples, n_classes)
            In ``X``'s namespace, device and floating dtype.
        """
        p, back = self._proba(X, "predict_proba")
        return _data.move(p, *back)

    def predict_log_proba(self, X: Any) -> Any:
        """The log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples, n_classes)
        """
        p, back = self._proba(X, "predict_log_proba")
        xp, device = placement_of(p)
        with _backend.on_device(device):
            return _data.move(xp.log(p), *back)

    def _proba(self, X: Any, method: str) -> tuple[Any, tuple[Any, Any]]:
        p, back = self._forward(X, method)
        if self.n_outputs_ == 1:  # binary: one logistic unit, two columns
            xp, device = placement_of(p)
            with _backend.on_device(device):
                p = xp.concat([1.0 - p, p], axis=1)
        return p, back

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` against ``y``, computed with ``X``'s device current.

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
        tags.classifier_tags.multi_label = True
        return tags
