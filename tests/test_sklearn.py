"""dense_xp.sklearn: scikit-learn's own estimator checks, its MLP's numbers, array API dispatch, tools."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6", reason="needs scikit-learn >= 1.6")

from sklearn import config_context, neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_digits,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import dense_xp  # noqa: E402
from dense_xp import _backend  # noqa: E402
from dense_xp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

PACKAGE = Path(dense_xp.__file__).parent / "sklearn"


@pytest.fixture(autouse=True)
def _scipy_array_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn refuses array API dispatch unless SCIPY_ARRAY_API=1 (it reads it at each call)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


# -- scikit-learn's estimator checks ------------------------------------------------------------
def _cupy_combination(check: Any) -> bool:
    keywords = getattr(check, "keywords", {})
    names = [keywords.get("array_namespace")]
    names += [getattr(keywords.get(k), "xp", None) for k in ("X_ns_and_device", "other_ns_and_device")]
    return "cupy" in names


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_checks(estimator: Any, check: Any) -> None:
    """Every check passes: none is marked as an expected failure (scikit-learn marks none for its MLP).

    A CuPy combination needs a CUDA driver: where CuPy is installed without
    one it raises CUDARuntimeError from its first array instead of SkipTest.
    """
    if _cupy_combination(check):
        reason = _backend.cuda_unusable_reason(0)
        if reason is not None:
            pytest.skip(f"CuPy array API check needs a usable CUDA device: {reason}")
    check(estimator)


def test_tags_turn_on_the_array_api_checks() -> None:
    from sklearn.utils.estimator_checks import estimator_checks_generator

    for est in (MLPClassifier(max_iter=5), MLPRegressor(max_iter=5)):
        tags = est.__sklearn_tags__()
        assert tags.array_api_support
        assert not tags.input_tags.sparse
        names = [getattr(c, "func", c).__name__ for _, c in estimator_checks_generator(est, mark=None)]
        assert names.count("check_array_api_input") >= 8
        assert "check_array_api_mixed_inputs" in names
        assert "check_array_api_same_namespace" in names
    assert MLPClassifier().__sklearn_tags__().classifier_tags.multi_label
    assert MLPRegressor().__sklearn_tags__().target_tags.multi_output


# -- scikit-learn's numbers ---------------------------------------------------------------------
def _data(kind: str, n: int = 120) -> tuple[Any, Any]:
    if kind == "multiclass":
        return make_classification(n, 8, n_informative=5, n_classes=3, random_state=0)
    if kind == "binary":
        return make_classification(n, 8, random_state=1)
    if kind == "multilabel":
        return make_multilabel_classification(n, 8, n_classes=3, random_state=0)
    X, y = make_regression(n, 8, n_targets=2, random_state=0)
    y = y / 100
    if kind == "regression":
        return X, y
    if kind == "poisson":
        return X, np.abs(y[:, 0])
    return X, y[:, 0]  # "regression1"


CASES = {
    "adam": ("multiclass", {}, False),
    "sgd-invscaling": (
        "multiclass", {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.1}, False
    ),
    "sgd-adaptive": (
        "multiclass",
        {"solver": "sgd", "learning_rate": "adaptive", "tol": 1e-2, "n_iter_no_change": 2,
         "learning_rate_init": 0.1},
        False,
    ),
    "sgd-momentum-adaptive": (
        "multiclass",
        {"solver": "sgd", "nesterovs_momentum": False, "learning_rate": "adaptive", "tol": 1e-2,
         "n_iter_no_change": 2, "learning_rate_init": 0.1},
        False,
    ),
    "sgd-no-momentum": ("multiclass", {"solver": "sgd", "momentum": 0.0}, False),
    "early-stopping": ("multiclass", {"early_stopping": True, "validation_fraction": 0.2}, False),
    "logistic-weighted": ("multiclass", {"activation": "logistic", "batch_size": 16}, True),
    "binary-tanh-alpha": ("binary", {"activation": "tanh", "batch_size": 32, "alpha": 0.1}, False),
    "binary-early-weighted": ("binary", {"early_stopping": True, "validation_fraction": 0.2}, True),
    "multilabel-identity": (
        "multilabel", {"activation": "identity", "batch_size": 32, "hidden_layer_sizes": (7, 5)}, False
    ),
    "no-shuffle": ("multiclass", {"shuffle": False, "batch_size": 50}, False),
    "regression": ("regression", {}, False),
    "regression-weighted": ("regression", {"batch_size": 32}, True),
    "regression-early": ("regression1", {"early_stopping": True}, False),
    "poisson": ("poisson", {"loss": "poisson"}, False),
    "linear-sgd": ("regression", {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.01,
                                  "hidden_layer_sizes": ()}, False),
}  # fmt: skip


def _pair(kind: str) -> tuple[type, type]:
    if kind in ("multiclass", "binary", "multilabel"):
        return MLPClassifier, neural_network.MLPClassifier
    return MLPRegressor, neural_network.MLPRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_training_is_scikit_learns(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Same init, batches, losses, updates and stopping as sklearn's MLP: equal to rounding (float64)."""
    kind, params, weighted = CASES[case]
    X, y = _data(kind)
    sample_weight = np.random.RandomState(0).rand(len(X)) * 2 if weighted else None
    ours_cls, theirs_cls = _pair(kind)
    params = {"random_state": 0, "max_iter": 40, "verbose": True, **params}
    ours = ours_cls(**params).fit(X, y, sample_weight=sample_weight)
    ours_log = capsys.readouterr().out
    theirs = theirs_cls(**params).fit(X, y, sample_weight=sample_weight)
    theirs_log = capsys.readouterr().out
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_
    assert ours.n_outputs_ == theirs.n_outputs_
    assert all(isinstance(v, float) for v in ours.loss_curve_)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12, atol=1e-14)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-12)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, abs=1e-12)
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-12)
        assert ours.validation_scores_ is None
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X)) if ours_cls is MLPClassifier else (
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-10, atol=1e-12)
    )
    if ours_cls is MLPClassifier:
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    # the verbose log: iterations, validation scores and each learning-rate change (8 decimals)
    assert ours_log.splitlines() == theirs_log.splitlines()
    if "adaptive" in case:
        assert "Setting learning rate to" in ours_log


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_initial_weights_are_scikit_learns(activation: str) -> None:
    """Glorot uniform with sklearn's factor (2 for logistic), drawn in sklearn's order from random_state.

    A step of 1e-300 leaves every float64 weight as it was: both models keep their initial weights.
    """
    X, y = _data("multiclass")
    params = {"hidden_layer_sizes": (6, 4), "activation": activation, "solver": "sgd",
              "learning_rate_init": 1e-300, "random_state": 3}  # fmt: skip
    ours = MLPClassifier(**params).partial_fit(X, y, classes=[0, 1, 2])
    theirs = neural_network.MLPClassifier(**params).partial_fit(X, y, classes=[0, 1, 2])
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
    rng = np.random.RandomState(3)
    bound = np.sqrt((2.0 if activation == "logistic" else 6.0) / (8 + 6))
    np.testing.assert_array_equal(ours.coefs_[0], rng.uniform(-bound, bound, (8, 6)))
    np.testing.assert_array_equal(ours.intercepts_[0], rng.uniform(-bound, bound, 6))
    assert ours.intercepts_[0].ndim == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_gives_float32_and_sklearns_numbers() -> None:
    X, y = _data("multiclass")
    X = X.astype(np.float32)
    ours = MLPClassifier(random_state=0, max_iter=20).fit(X, y)
    theirs = neural_network.MLPClassifier(random_state=0, max_iter=20).fit(X, y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert ours.predict_proba(X).dtype == np.float32
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)
    Xr, yr = _data("regression1")
    reg = MLPRegressor(random_state=0, max_iter=20).fit(Xr.astype(np.float32), yr)
    assert reg.predict(Xr.astype(np.float32)).dtype == np.float32
    assert reg.predict(Xr).dtype == np.float32  # float32 parameters
    ints = MLPRegressor(random_state=0, max_iter=2).fit(np.arange(40).reshape(20, 2), np.arange(20))
    assert ints.coefs_[0].dtype == np.float64


def test_stopping_rule_and_convergence_warning() -> None:
    X, y = _data("multiclass")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\) reached"):
        MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MLPClassifier(max_iter=500, tol=1e-1, n_iter_no_change=2, random_state=0).fit(X, y)
    assert 3 <= model.n_iter_ < 500
    assert model.n_iter_ == len(model.loss_curve_)
    assert model.best_loss_ == min(model.loss_curve_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_and_warm_start_are_scikit_learns() -> None:
    X, y = _data("multiclass")
    weight = np.random.RandomState(1).rand(len(X))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    models = [cls(random_state=0, batch_size=16) for cls in (MLPClassifier, neural_network.MLPClassifier)]
    for model in models:
        for start in (0, 40, 80):
            rows = slice(start, start + 40)
            model.partial_fit(X[rows], y[rows], sample_weight=weight[rows], classes=[0, 1, 2])
    assert models[0].t_ == models[1].t_ == 120
    np.testing.assert_allclose(models[0].loss_curve_, models[1].loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(models[0].coefs_[1], models[1].coefs_[1], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))
    warm = [
        cls(random_state=0, max_iter=5, warm_start=True)
        for cls in (MLPRegressor, neural_network.MLPRegressor)
    ]
    Xr, yr = _data("regression1")
    for model in warm:
        model.fit(Xr, yr)
        model.fit(Xr, yr)
    assert len(warm[0].loss_curve_) == 10
    np.testing.assert_allclose(warm[0].loss_curve_, warm[1].loss_curve_, rtol=1e-12)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        MLPClassifier(warm_start=True, max_iter=2).fit(X, y).fit(X[y < 2], y[y < 2])
    with pytest.raises(ValueError, match="2 output"):
        MLPRegressor(warm_start=True, max_iter=2).fit(*_data("regression")).fit(Xr, yr)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_labels_and_binary_output() -> None:
    X, y = _data("binary")
    labels = np.array(["no", "yes"])[y]
    model = MLPClassifier(random_state=0, max_iter=30).fit(X, labels)
    assert model.out_activation_ == "logistic"
    assert model.n_outputs_ == 1
    assert list(model.classes_) == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"}
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))
    assert model.score(X, labels) > 0.8


def test_bad_parameters_are_refused_in_fit() -> None:
    X, y = _data("multiclass", 30)
    for params, error, match in [
        ({"solver": "lbfgs"}, ValueError, "`solver='lbfgs'` is not offered"),
        ({"solver": "newton"}, ValueError, "`solver` must be one of 'adam', 'sgd'"),
        ({"activation": "gelu"}, ValueError, "`activation` must be one of"),
        ({"alpha": -1.0}, ValueError, r"`alpha` must be a real number in \[0.0, inf\], got float -1.0"),
        ({"learning_rate_init": 0}, ValueError, "`learning_rate_init`"),
        ({"hidden_layer_sizes": (10, 0)}, ValueError, "`hidden_layer_sizes`"),
        ({"hidden_layer_sizes": "10"}, TypeError, "`hidden_layer_sizes`"),
        ({"max_iter": 2.5}, TypeError, "`max_iter` must be an integer >= 1"),
        ({"shuffle": 1}, TypeError, "`shuffle` must be True or False"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be 'auto' or an integer"),
        ({"beta_2": 1.0}, ValueError, "`beta_2`"),
        ({"device": 3}, ValueError, "`device` must be None, 'cpu'"),
    ]:
        model = MLPClassifier(**params)  # stored as given
        assert model.get_params()[next(iter(params))] == next(iter(params.values()))
        with pytest.raises(error, match=match):
            model.fit(X, y)
        assert not hasattr(model, "coefs_")
    with pytest.raises(ValueError, match="`loss` must be one of 'squared_error', 'poisson'"):
        MLPRegressor(loss="huber").fit(X, y.astype(float))


# -- devices and array API dispatch -------------------------------------------------------------
def test_device_is_checked_in_fit_and_clone_safe() -> None:
    model = MLPClassifier(device="cuda", max_iter=2)
    copy = clone(model)
    assert copy.get_params()["device"] == "cuda"
    assert pickle.loads(pickle.dumps(copy)).device == "cuda"
    X, y = _data("multiclass", 30)
    if _backend.cuda_unusable_reason(0) is None:
        pytest.skip("CUDA works here: fit would succeed")
    with pytest.raises(dense_xp.DeviceUnavailableError):
        model.fit(X, y)
    assert not hasattr(model, "coefs_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_device_object_computes_there_and_returns_numpy() -> None:
    strict = pytest.importorskip("array_api_strict")
    X, y = _data("multiclass")
    model = MLPClassifier(device=strict.Device("device1"), random_state=0, max_iter=10).fit(X, y)
    assert isinstance(model.coefs_[0], type(strict.asarray(0)))
    assert model.coefs_[0].device == strict.Device("device1")
    proba = model.predict_proba(X)
    assert isinstance(proba, np.ndarray)
    reference = MLPClassifier(random_state=0, max_iter=10).fit(X, y)
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-12)
    assert isinstance(model.predict(X), np.ndarray)
    assert isinstance(model.score(X, y), float)
    with config_context(array_api_dispatch=True):  # an explicit device takes inputs from anywhere
        np.testing.assert_allclose(model.predict_proba(X), proba)


def _max_float(xp: Any, device: Any) -> str:
    return "float64" if "float64" in xp.__array_namespace_info__().dtypes(device=device) else "float32"


def _namespace(a: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(a)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dispatch_fits_and_predicts_where_x_lives(backend: tuple[Any, Any]) -> None:
    """Fitted arrays and outputs in X's namespace, device and dtype; the numbers of a NumPy fit."""
    import array_api_compat

    xp, device = backend
    dtype = _max_float(xp, device)
    X, y = _data("multiclass")
    X = X.astype(dtype)
    y = y.astype(_backend.to_numpy(xp.asarray(0, device=device)).dtype)  # the device's integers
    Xr, yr = _data("regression")
    Xr = Xr.astype(dtype)
    on = {name: _backend.from_host(a, xp=xp, device=device) for name, a in
          {"X": X, "y": y, "Xr": Xr, "yr": yr.astype(dtype)}.items()}  # fmt: skip
    with _backend.on_device(device), config_context(array_api_dispatch=True):
        clf = MLPClassifier(random_state=0, max_iter=15).fit(on["X"], on["y"])
        reg = MLPRegressor(random_state=0, max_iter=15).fit(on["Xr"], on["yr"])
        outputs = {
            "proba": clf.predict_proba(on["X"]),
            "log_proba": clf.predict_log_proba(on["X"]),
            "labels": clf.predict(on["X"]),
            "values": reg.predict(on["Xr"]),
        }
        if dtype == "float64":  # scikit-learn's accuracy_score averages in float64
            assert isinstance(clf.score(on["X"], on["y"]), float)
        if dtype == "float64" and not array_api_compat.is_jax_namespace(xp):  # r2_score assigns in place
            assert isinstance(reg.score(on["Xr"], on["yr"]), float)
    for array in [*clf.coefs_, *clf.intercepts_, *reg.coefs_, *outputs.values()]:
        assert _namespace(array) is _namespace(on["X"])
        assert array_api_compat.device(array) == device
    assert outputs["proba"].dtype == on["X"].dtype
    assert outputs["labels"].dtype == on["y"].dtype
    ref_clf = MLPClassifier(random_state=0, max_iter=15).fit(X, y)
    ref_reg = MLPRegressor(random_state=0, max_iter=15).fit(Xr, yr)
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(clf.loss_curve_, ref_clf.loss_curve_, rtol=tol)
    np.testing.assert_allclose(dense_xp.to_numpy(outputs["proba"]), ref_clf.predict_proba(X), atol=tol)
    np.testing.assert_allclose(dense_xp.to_numpy(outputs["values"]), ref_reg.predict(Xr), atol=10 * tol)
    np.testing.assert_array_equal(dense_xp.to_numpy(outputs["labels"]), ref_clf.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predicting_with_another_namespace_than_fit_is_refused() -> None:
    strict = pytest.importorskip("array_api_strict")
    X, y = _data("multiclass", 40)
    with config_context(array_api_dispatch=True):
        model = MLPClassifier(max_iter=3).fit(strict.asarray(X), strict.asarray(y))
        with pytest.raises(ValueError, match="must use the same namespace"):
            model.predict(X)
        model.predict(strict.asarray(X))  # its own namespace works
        with pytest.raises(ValueError, match="must use the same namespace"):
            model.partial_fit(X, y)
        model.partial_fit(strict.asarray(X), strict.asarray(y))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_model_moved_by_scikit_learn_predicts_where_it_moved() -> None:
    from sklearn.utils._array_api import move_estimator_to

    strict = pytest.importorskip("array_api_strict")
    X, y = _data("multiclass", 60)
    dev = strict.Device("device1")
    with config_context(array_api_dispatch=True):
        model = MLPClassifier(max_iter=5, random_state=0).fit(strict.asarray(X), strict.asarray(y))
        moved = move_estimator_to(model, strict, dev)
        labels = moved.predict(strict.asarray(X, device=dev))
        assert labels.device == dev
        assert moved.coefs_[0].device == dev
        np.testing.assert_array_equal(
            np.asarray(labels.to_device(strict.Device("CPU_DEVICE"))), model.predict(strict.asarray(X))
        )
        moved.partial_fit(strict.asarray(X, device=dev), strict.asarray(y, device=dev))  # a new solver there
        assert moved.coefs_[0].device == dev


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_no_float_array_of_the_network_leaves_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under dispatch only labels come to the host (as integers); the rest stays, scalars aside."""
    strict = pytest.importorskip("array_api_strict")
    moved: list[Any] = []
    to_numpy = _backend.to_numpy

    def spy(a: Any) -> Any:
        if not isinstance(a, np.ndarray):  # host data going to the device passes here too
            moved.append(a)
        return to_numpy(a)

    monkeypatch.setattr(_backend, "to_numpy", spy)
    X, y = _data("multiclass")
    dev = strict.Device("device1")
    Xs, ys = strict.asarray(X, device=dev), strict.asarray(y, device=dev)
    with config_context(array_api_dispatch=True):
        MLPClassifier(max_iter=5, early_stopping=True).fit(Xs, ys).predict_proba(Xs)
        MLPRegressor(max_iter=5).fit(Xs, strict.asarray(X[:, 0], device=dev)).predict(Xs)
    assert moved, "the labels come to the host"
    assert all(not strict.isdtype(a.dtype, "real floating") for a in moved), [a.dtype for a in moved]


# -- scikit-learn's tools -----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_clone_pickle_and_params() -> None:
    X, y = _data("multiclass")
    model = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=10).fit(X, y)
    unfitted = clone(model)
    assert not hasattr(unfitted, "coefs_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        unfitted.predict(X)
    assert unfitted.set_params(alpha=0.5).get_params()["alpha"] == 0.5
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    restored.partial_fit(X, y)  # the solver's state came along
    assert restored.t_ == model.t_ + len(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_grid_search_and_cross_validation() -> None:
    X, y = _data("multiclass", 150)
    model = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=30, learning_rate_init=0.01)
    pipe = make_pipeline(StandardScaler(), model)
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.6
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0]}, cv=2).fit(X, y)
    assert search.best_params_["mlpclassifier__alpha"] in (1e-4, 1.0)
    assert search.predict(X).shape == (150,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_under_dispatch() -> None:
    """The search CVs support dispatch: folds, fits and scores on array-api-strict arrays."""
    strict = pytest.importorskip("array_api_strict")
    X, y = _data("regression1", 90)
    with config_context(array_api_dispatch=True):
        search = GridSearchCV(MLPRegressor(max_iter=10, random_state=0), {"alpha": [1e-4, 1e-2]}, cv=2)
        search.fit(strict.asarray(X), strict.asarray(y))
        assert _namespace(search.predict(strict.asarray(X))) is strict


# -- quality: scikit-learn's MLP with the same parameters --------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_digits_accuracy_at_least_sklearns() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y
    )
    ours, theirs = [], []
    for seed in range(3):
        params = {"hidden_layer_sizes": (64,), "max_iter": 30, "random_state": seed}
        ours.append(MLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test))
        theirs.append(neural_network.MLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test))
    assert np.mean(ours) >= np.mean(theirs) - 1e-9
    assert np.mean(ours) > 0.93


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regression_r2_at_least_sklearns() -> None:
    X, y = make_regression(600, 20, n_informative=10, noise=5.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y / y.std(), random_state=0)
    ours, theirs = [], []
    for seed in range(3):
        params = {
            "hidden_layer_sizes": (64,),
            "max_iter": 60,
            "random_state": seed,
            "learning_rate_init": 0.01,
        }
        ours.append(MLPRegressor(**params).fit(X_train, y_train).score(X_test, y_test))
        theirs.append(neural_network.MLPRegressor(**params).fit(X_train, y_train).score(X_test, y_test))
    assert np.mean(ours) >= np.mean(theirs) - 1e-9
    assert np.mean(ours) > 0.9


# -- the package --------------------------------------------------------------------------------
def test_dense_xp_does_not_import_sklearn_and_the_hint_names_the_extra() -> None:
    code = "import sys, dense_xp; assert 'sklearn' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys; sys.modules['sklearn'] = None\nimport dense_xp.sklearn"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'pip install "dense-xp[sklearn]"' in result.stderr


def test_modules_do_not_import_numpy_and_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) < 300, path.name
        imported = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"numpy", "cupy", "torch"}, (path.name, sorted(imported))
