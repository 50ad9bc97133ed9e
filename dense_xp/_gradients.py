"""Gradient checks against central differences, on any namespace and device (see :mod:`dense_xp.testing`)."""

from __future__ import annotations

import copy
import math
from typing import Any

from . import _backend, _checks
from .layers.base import Layer, training_batch
from .model import Sequential

__all__ = ["check_gradients"]

MAX_ELEMENTWISE = 256  # larger arrays are checked along directions
DIRECTIONS = 3  # along the analytic gradient itself, and random ones
# Per probe dtype: (rtol, difference order, step as a power of eps). A gradient wrong by 1 % fails:
# rtol stays well below 1e-2, and the step keeps the rounding error of a difference far under it.
_POLICY = {"float64": (1e-6, 2, 1 / 3), "float32": (1e-3, 4, 1 / 3)}


def _layers(model: Any) -> list[Layer]:
    if isinstance(model, Layer):
        return [model]
    if isinstance(model, Sequential):
        return list(model.layers)
    msg = f"`model_or_layer` must be a dense_xp layer or a Sequential, got {type(model).__name__} {model!r}"
    raise TypeError(msg)


def _host(x: Any, name: str) -> Any:
    try:
        host = _backend.to_numpy(x).astype("float64")
    except (TypeError, ValueError) as exc:
        msg = f"`{name}` must be an array of real numbers, got {type(x).__name__}: {exc}"
        raise TypeError(msg) from None
    return host.reshape(1, -1) if host.ndim == 1 else host


def _tolerance(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        msg = f"`{name}` must be a finite number >= 0 or None, got {type(value).__name__} {value!r}"
        raise (TypeError if isinstance(value, bool) or not isinstance(value, (int, float)) else ValueError)(
            msg
        )
    return float(value)


class _Probe:
    """The loss ``L = sum(model(X) * R)`` of a twin of the model, as a function of one array at a time.

    The twin is a deep copy: the same layer objects' functions (an activation
    is not looked up again by name), arrays of its own, in the device's widest
    float. The layers run in ``training`` mode.
    """

    def __init__(self, model: Any, X: Any, R: Any, training: bool) -> None:
        self.model = copy.deepcopy(model)  # the caller's model, cache and gradients stay as they are
        first = _layers(self.model)[0]
        self.xp, self.device, self.training = first.xp, first.device, training
        names = _checks.device_float_names(xp=self.xp, device=self.device)
        self.dtype = getattr(self.xp, names[-1])  # float64 where the device has it
        self.model.to(self.device, xp=self.xp, dtype=names[-1])  # mixed precision too: one wide dtype
        self.X, self.R, self.Xd = X, self.dev(R), self.dev(X)

    def dev(self, host: Any) -> Any:
        return _backend.from_host(host, xp=self.xp, device=self.device, dtype=self.dtype)

    def forward(self, X: Any) -> Any:
        if not self.training:
            return self.model.forward(X)
        with training_batch(0, range(X.shape[0])):  # one step: a Dropout keeps its mask
            return self.model.forward(X, training=True)

    def loss(self, X: Any = None) -> float:
        y = self.forward(self.Xd if X is None else self.dev(X))
        return float(self.xp.sum(y * self.R))

    def analytic(self) -> dict[str, Any]:
        """``dL/dX`` and ``dL/dparam`` (batch means scaled back to sums) on the host."""
        self.forward(self.Xd)
        n = self.X.shape[0]
        model = self.model
        d_input = model.backprop(self.R) if isinstance(model, Layer) else model.backward(self.R)
        grads = {"d_input": _host(d_input, "d_input")}
        for prefix, layer in self.slots():
            for name in layer.parameters():
                grads[prefix + name] = _host(layer.grads[name], name) * n
        return grads

    def slots(self) -> list[tuple[str, Layer]]:
        if isinstance(self.model, Layer):
            return [("", self.model)]
        return [(f"layers.{i}.", layer) for i, layer in enumerate(self.model.layers)]

    def function_of(self, key: str) -> tuple[Any, Any]:
        """``(host value, L as a function of that array)`` for ``"d_input"`` or a parameter key."""
        if key == "d_input":
            return self.X, self.loss
        for prefix, layer in self.slots():
            name = key[len(prefix) :]
            if key.startswith(prefix) and name in layer.parameters():
                base = _host(getattr(layer, name), name).reshape(tuple(getattr(layer, name).shape))

                def f(value: Any, layer: Layer = layer, name: str = name) -> float:
                    setattr(layer, name, self.dev(value))
                    return self.loss()

                return base, f
        raise KeyError(key)


def _slope(g: Any, h: float, order: int) -> float:
    """``g'(0)`` by central differences of second or fourth order."""
    first = float((g(h) - g(-h)) / (2 * h))
    if order == 2:
        return first
    return (4 * first - float(g(2 * h) - g(-2 * h)) / (4 * h)) / 3


def _compare(base: Any, f: Any, grad: Any, h0: float, order: int, rng: Any) -> tuple[float, float, bool]:
    """``(max |numeric - analytic|, scale, every numeric slope finite)``, elementwise or along directions."""
    diff, finite = 0.0, True
    if base.size <= MAX_ELEMENTWISE:
        for i in range(base.size):

            def g(t: float, i: int = i) -> float:
                moved = base.copy()
                moved.flat[i] += t
                return float(f(moved))

            h = h0 * max(1.0, abs(float(base.flat[i])))
            numeric = _slope(g, h, order)
            finite = finite and math.isfinite(numeric)
            diff = max(diff, abs(numeric - float(grad.flat[i])))
        f(base)
        return diff, float(abs(grad).max()), finite
    h = h0 * max(1.0, float(abs(base).max()))
    norm = math.sqrt(float((grad * grad).sum()))
    for k in range(DIRECTIONS):
        u = grad / norm if k == 0 and norm > 0 else rng.standard_normal(base.shape)
        u = u / math.sqrt(float((u * u).sum()))
        numeric = _slope(lambda t, u=u: f(base + t * u), h, order)
        finite = finite and math.isfinite(numeric)
        diff = max(diff, abs(numeric - float((grad * u).sum())))
    f(base)
    return diff, norm, finite


def check_gradients(
    model_or_layer: Any,
    X: Any,
    d_out: Any = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    training: bool = False,
) -> dict[str, float]:
    """Check ``d_input`` and every parameter gradient against central differences.

    The loss is ``L = sum(model(X) * d_out)``, so ``backward(d_out)`` gives its
    gradients. They are computed on a copy of the model on the same namespace
    and device, in float64 where the device has it (else in float32, with a
    fourth-order difference and a step and tolerances chosen so that a
    gradient wrong by 1 % still fails). Arrays of up to 256 elements are
    checked element by element, larger ones along the analytic gradient's own
    direction and 2 random ones.

    Parameters
    ----------
    model_or_layer : Layer or Sequential
        Left unchanged (parameters, cache and ``grads``). Its own functions
        are checked (a copy that shares them), whatever is registered now.
    X : array_like, shape (n, input_size)
        Host data or an array of any library.
    d_out : array_like, shape (n, output_size), optional
        Standard normal values (seeded by ``seed``) by default.
    rtol, atol : float, optional
        A gradient passes when ``max |numeric - analytic| <= atol + rtol * scale``,
        ``scale`` being its largest magnitude (its norm along directions).
        Default rtol: 1e-6 in float64, 1e-3 in float32; default atol: the
        rounding error of a central difference of ``L`` in that dtype.
        Finite numbers >= 0.
    seed : int, default 0
        Seeds ``d_out`` and the random directions.
    training : bool, default False
        Run the layers in training mode (a BatchNorm's batch statistics; a
        Dropout's mask, which stays the same across the evaluations).

    Returns
    -------
    dict of str to float
        The relative error ``max |numeric - analytic| / scale`` of ``"d_input"``
        and of each parameter (``"W"``, ``"b"``; ``"layers.0.W"``... for a
        Sequential).

    Raises
    ------
    AssertionError
        Some gradient is beyond tolerance, or is NaN or infinite (analytic or
        numeric, as ``torch.autograd.gradcheck`` fails them); the message names
        the worst one.
    TypeError, ValueError
        ``model_or_layer`` is neither a layer nor a Sequential; a shape or a
        tolerance is invalid.
    """
    layers = _layers(model_or_layer)
    rtol, atol = _tolerance(rtol, "rtol"), _tolerance(atol, "atol")
    _checks.check_bool(training, "training")
    with _backend.on_device(layers[0].device):  # CuPy computes on the current device
        rng = _backend.host_rng(_checks.check_seed(seed))
        Xh = _host(X, "X")
        width = layers[0].input_size
        if Xh.ndim != 2 or Xh.shape[0] == 0 or (width is not None and Xh.shape[1] != width):
            msg = f"`X` must have shape (n, {width}) with n >= 1, got {tuple(Xh.shape)}"
            raise ValueError(msg)
        probe = _Probe(model_or_layer, Xh, rng.standard_normal((1, 1)), training)
        with _backend.float_errors_ignored():
            shape = tuple(probe.forward(probe.Xd).shape)
        R = rng.standard_normal(shape) if d_out is None else _host(d_out, "d_out")
        if tuple(R.shape) != shape:
            msg = f"`d_out` must have the output's shape {shape}, got {tuple(R.shape)}"
            raise ValueError(msg)
        probe.R = probe.dev(R)
        with _backend.float_errors_ignored():
            return _check(probe, rtol, atol, rng)


def _check(probe: _Probe, rtol: float | None, atol: float | None, rng: Any) -> dict[str, float]:
    dtype = _checks.dtype_name(probe.dtype)
    default_rtol, order, power = _POLICY["float64" if dtype == "float64" else "float32"]
    eps = float(probe.xp.finfo(probe.dtype).eps)
    h0 = eps**power
    size = float(probe.xp.sum(probe.xp.abs(probe.forward(probe.Xd) * probe.R)))
    rtol = default_rtol if rtol is None else rtol
    atol = 8 * eps * (1.0 + size) / h0 if atol is None else atol
    errors: dict[str, float] = {}
    worst: tuple[str, float, float, float] | None = None
    nonfinite: list[str] = []
    for key, grad in probe.analytic().items():
        base, f = probe.function_of(key)
        if not bool((abs(grad) < math.inf).all()):
            nonfinite.append(f"{key} (analytic)")
            errors[key] = math.nan
            continue
        diff, scale, finite = _compare(base, f, grad, h0, order, rng)
        if not finite:
            nonfinite.append(f"{key} (numeric)")
        errors[key] = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
        excess = diff / (atol + rtol * scale) if atol + rtol * scale > 0 else (math.inf if diff else 0.0)
        if not excess <= 1 and (worst is None or not excess <= worst[1]):
            worst = (key, excess, diff, scale)
    relative = ", ".join(f"{k}={v:.2g}" for k, v in errors.items())
    if nonfinite:
        msg = (
            f"gradient {nonfinite[0].split()[0]!r} is NaN or infinite in {dtype}: non-finite "
            f"{', '.join(nonfinite)}; relative errors: {relative}"
        )
        raise AssertionError(msg)
    if worst is not None:
        key, _, diff, scale = worst
        msg = (
            f"gradient {key!r} does not match central differences in {dtype}: max |numeric - analytic| = "
            f"{diff:.3g} > atol + rtol * scale = {atol:.3g} + {rtol:.3g} * {scale:.3g}; "
            f"relative errors: {relative}"
        )
        raise AssertionError(msg)
    return errors
