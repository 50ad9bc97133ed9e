"""What the classifier and the regressor share: parameters, ``fit``, the forward pass, tags."""

from __future__ import annotations

import math
from typing import Any

from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._array_api import check_same_namespace, get_namespace_and_device, move_to
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import _backend
from . import _data, _losses, _net
from ._loop import Data, Record, Settings, fit_stochastic, snapshot
from ._optim import Solver
from ._params import check_params

__all__ = ["BaseMLP"]


class BaseMLP(BaseEstimator):  # type: ignore[misc]
    """Multi-layer perceptron trained by scikit-learn's stochastic solvers on dense_xp.

    Not for direct use: see :class:`MLPClassifier` and :class:`MLPRegressor`.
    """

    _classifier = False
    _follows_input: bool  # set by fit: whether the model computes where its input lives (device=None)

    def __init__(
        self,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device

    # -- what the subclasses define ----------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        """``(X, Y)``: ``X`` validated, ``Y`` ``(n, n_outputs)`` on the host or in ``X``'s namespace."""
        raise NotImplementedError

    def _out_activation(self) -> str:
        raise NotImplementedError

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BaseMLP:
        """Fit the model to ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            With array API dispatch on, an array of any array API library;
            the model is fitted where it lives (or on ``device``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> BaseMLP:
        params = self.get_params()
        hidden = check_params(params)
        if incremental and self.early_stopping:
            msg = "partial_fit does not support early_stopping=True"
            raise ValueError(msg)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        xp_in, _, device_in = get_namespace_and_device(X)
        if first_pass:
            xp, device = _data.resolve(self.device, xp_in, device_in)
        else:  # training goes on where the model is
            if self._follows_input:
                method = "partial_fit" if incremental else "fit"
                check_same_namespace(X, self, attribute="_fitted_array", method=method)
            xp, device = _net.placement_of(self.coefs_[0])
        with _backend.on_device(device_in):  # scikit-learn's checks compute where X lives
            sample_weight = move_to(sample_weight, xp=xp_in, device=device_in)
            X, Y = self._validate_input(X, y, incremental, reset=first_pass)
            if not first_pass and Y.shape[1] != self.n_outputs_:
                msg = f"`y` must have {self.n_outputs_} output(s), as in the previous fit, got {Y.shape[1]}"
                raise ValueError(msg)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        rng = check_random_state(self.random_state)
        with _backend.on_device(device):
            X = _data.move(X, xp, device)
            if first_pass:
                self._initialize(rng, [X.shape[1], *hidden, Y.shape[1]], (xp, device, X.dtype))
            net = self._network()
            data = self._split(X, _data.move(Y, xp, device), sample_weight, (rng, Y), net.dtype)
            solver = getattr(self, "_solver", None)
            if not incremental or solver is None or not solver.fits(net.parameters()):
                solver = Solver(params)
            record = self._record()
            settings = Settings.of(params, self.out_activation_, n=data.X.shape[0], incremental=incremental)
            fit_stochastic(record, settings, net, solver, data, rng)
            self._store(record, net)
            finite = all(bool(xp.all(xp.isfinite(p))) for p in net.parameters())
        self._solver, self._follows_input = solver, self.device is None
        if not finite:
            msg = (
                "Solver produced non-finite parameter weights. The input data may contain large values "
                "and need to be preprocessed."
            )
            raise ValueError(msg)
        return self

    def _initialize(self, rng: Any, layer_units: list[int], where: tuple[Any, Any, Any]) -> None:
        """scikit-learn's ``_initialize``: the output, Glorot-uniform weights, an empty record."""
        xp, device, dtype = where
        self.n_iter_, self.t_ = 0, 0
        self.n_outputs_ = layer_units[-1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self.coefs_, self.intercepts_ = [], []
        for coef, intercept in _net.initial_params(rng, layer_units, self.activation):
            self.coefs_.append(_net.to_device(coef, xp=xp, device=device, dtype=dtype))
            self.intercepts_.append(_net.to_device(intercept, xp=xp, device=device, dtype=dtype))
        self._net = _net.build(self.coefs_, self.intercepts_, self.activation)
        self._best = snapshot(self._net)
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -math.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = math.inf, None, None

    def _split(self, X: Any, Y: Any, weight: Any, host: tuple[Any, Any], dtype: Any) -> Data:
        """The training data in ``dtype``, less a validation fraction with early stopping.

        The split is drawn on the host as scikit-learn draws it (stratified
        for a binary classifier, whose ``Y`` is the host indicator).
        """
        rng, Y_host = host
        xp, device = _net.placement_of(X)
        X, Y = xp.astype(X, dtype, copy=False), xp.astype(Y, dtype, copy=False)
        weight = None if weight is None else xp.astype(_data.move(weight, xp, device), dtype, copy=False)
        if not self.early_stopping:
            return Data(X, Y, weight)
        stratify = Y_host if self._classifier and self.n_outputs_ == 1 else None
        train, val = train_test_split(
            list(range(X.shape[0])), random_state=rng, test_size=self.validation_fraction, stratify=stratify
        )
        if len(val) < 2:
            msg = (
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
            raise ValueError(msg)
        indexing = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
        parts = []
        for rows in (train, val):
            index = _backend.from_host(rows, xp=xp, device=device, dtype=indexing)
            parts.append([None if a is None else xp.take(a, index, axis=0) for a in (X, Y, weight)])
        return Data(*parts[0], *parts[1])

    def _record(self) -> Record:
        return Record(
            n_iter=self.n_iter_,
            t=self.t_,
            loss=getattr(self, "loss_", None),
            loss_curve=self.loss_curve_,
            best_loss=self.best_loss_,
            validation_scores=self.validation_scores_,
            best_validation_score=self.best_validation_score_,
            no_improvement_count=self._no_improvement_count,
            best=self._best,
        )

    def _store(self, record: Record, net: Any) -> None:
        self.n_iter_, self.t_, self.loss_ = record.n_iter, record.t, record.loss
        self.loss_curve_, self.best_loss_ = record.loss_curve, record.best_loss
        self.validation_scores_ = record.validation_scores
        self.best_validation_score_ = record.best_validation_score
        self._no_improvement_count, self._best = record.no_improvement_count, record.best
        pairs = [_net.layer_params(layer) for layer in _net.dense_layers(net)]
        self.coefs_, self.intercepts_ = [W for W, _ in pairs], [b for _, b in pairs]

    # -- the network and its outputs -----------------------------------------------------------
    def _network(self) -> Any:
        """The network holding ``coefs_`` and ``intercepts_`` (built again after a move or unpickling)."""
        net: Any = self.__dict__.get("_net")
        if _net.matches(net, self.coefs_, self.activation):
            for layer, W, b in zip(_net.dense_layers(net), self.coefs_, self.intercepts_, strict=True):
                _net.set_layer_params(layer, W, b)
            return net
        self._net = _net.build(self.coefs_, self.intercepts_, self.activation)
        return self._net

    @property
    def _fitted_array(self) -> Any:
        """An array of the fit's namespace and device, for ``check_same_namespace``."""
        return self.coefs_[0]

    def _forward(self, X: Any, method: str) -> tuple[Any, tuple[Any, Any]]:
        """``(outputs on the compute device, (namespace, device) of the validated X))``."""
        check_is_fitted(self)
        xp_in, _, device_in = get_namespace_and_device(X)
        with _backend.on_device(device_in):
            if self._follows_input:
                check_same_namespace(X, self, attribute="_fitted_array", method=method)
            X = validate_data(self, X, reset=False, dtype=[xp_in.float64, xp_in.float32])
        back = _net.placement_of(X)
        net = self._network()
        with _backend.on_device(net.device):
            z = net.forward(_data.move(X, net.xp, net.device))
            return _losses.output(z, self.out_activation_), back

    # -- scikit-learn's protocol ---------------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False  # sparse X raises TypeError, as scikit-learn's dense-only estimators
        return tags

    def __sklearn_array_api_convert__(self, converter: Any) -> BaseMLP:
        """A copy with the parameters converted (``sklearn.utils._array_api.move_estimator_to``).

        The labels stay on the host; the network is built again where the
        parameters went, and ``partial_fit`` starts a new solver there.
        """
        new: BaseMLP = clone(self)
        for key, value in vars(self).items():
            if key in ("coefs_", "intercepts_"):
                value = [converter(a) for a in value]
            elif key == "_best":
                value = tuple([converter(a) for a in part] for part in value)
            if key != "_net":
                setattr(new, key, value)
        return new

    def __getstate__(self) -> dict[str, Any]:
        """The state without the network, which is built again from ``coefs_`` when needed."""
        state = dict(super().__getstate__())
        state.pop("_net", None)
        return state
