"""Gradient checks against central differences, on any namespace and device (see :mod:`dense_xp.testing`)."""

from __future__ import annotations

import copy
import math
from typing import Any

from . import _backend, _checks
from .layer import DenseLayer

__all__ = ["check_gradients"]

MAX_ELEMENTWISE = 256  # larger arrays are checked along random directions
DIRECTIONS = 3
_DEFAULT_RTOL = {"float64": 1e-6, "float32": 2e-2, "float16": 2e-1}


def _layers(model: Any) -> list[DenseLayer]:
    if isinstance(model, DenseLayer):
        return [model]
    from .sequential import Sequential

    if isinstance(model, Sequential):
        return list(model.layers)
    msg = f"`model_or_layer` must be a DenseLayer or a Sequential, got {type(model).__name__} {model!r}"
    raise TypeError(msg)


def _host(x: Any, name: str) -> Any:
    try:
        host = _backend.to_numpy(x).astype("float64")
    except (TypeError, ValueError) as exc:
        msg = f"`{name}` must be an array of real numbers, got {type(x).__name__}: {exc}"
        raise TypeError(msg) from None
    return host.reshape(1, -1) if host.ndim == 1 else host


class _Probe:
    """The loss ``L = sum(model(X) * R)`` of a twin of the model, as a function of one array at a time."""

    def __init__(self, model: Any, X: Any, R: Any) -> None:
        self.model = copy.deepcopy(model)  # the caller's model, cache and gradients stay as they are
        first = _layers(self.model)[0]
        self.xp, self.device = first.xp, first.device
        names = _checks.device_float_names(xp=self.xp, device=self.device)
        self.dtype = getattr(self.xp, names[-1])  # float64 where the device has it
        self.model.to(self.device, xp=self.xp, dtype=names[-1])  # mixed precision too: one wide dtype
        self.X, self.R, self.Xd = X, self._dev(R), self._dev(X)

    def _dev(self, host: Any) -> Any:
        return _backend.from_host(host, xp=self.xp, device=self.device, dtype=self.dtype)

    def loss(self, X: Any = None) -> float:
        y = self.model.forward(self.Xd if X is None else self._dev(X))
        return float(self.xp.sum(y * self.R))

    def analytic(self) -> dict[str, Any]:
        """``dL/dX`` and ``dL/dparam`` (batch means scaled back to sums) on the host."""
        self.model.forward(self.Xd)
        n = self.X.shape[0]
        grads = {"d_input": _host(self.model.backward(self.R, lr=None), "d_input")}
        for prefix, layer in self.slots():
            for name in layer.parameters():
                grads[prefix + name] = _host(layer.grads[name], name) * n
        return grads

    def slots(self) -> list[tuple[str, DenseLayer]]:
        layers = _layers(self.model)
        if isinstance(self.model, DenseLayer):
            return [("", layers[0])]
        return [(f"layers.{i}.", layer) for i, layer in enumerate(layers)]

    def function_of(self, key: str) -> tuple[Any, Any]:
        """``(host value, L as a function of that array)`` for ``"d_input"`` or a parameter key."""
        if key == "d_input":
            return self.X, self.loss
        for prefix, layer in self.slots():
            if key.startswith(prefix) and key[len(prefix) :] in layer.parameters():
                name = key[len(prefix) :]
                base = _host(getattr(layer, name), name).reshape(getattr(layer, name).shape)

                def f(value: Any, layer: DenseLayer = layer, name: str = name) -> float:
                    setattr(layer, name, self._dev(value))
                    return self.loss()

                return base, f
        raise KeyError(key)


def _slope(g: Any, h: float, fourth_order: bool) -> float:
    """``g'(0)`` by central differences: second order, or fourth order (for float32 and below)."""
    first = float((g(h) - g(-h)) / (2 * h))
    if not fourth_order:
        return first
    return (4 * first - float(g(2 * h) - g(-2 * h)) / (4 * h)) / 3


def _compare(base: Any, f: Any, grad: Any, h0: float, fourth_order: bool, rng: Any) -> tuple[float, float]:
    """``(max |numeric - analytic|, scale)`` by central differences, elementwise or along directions."""
    diff = 0.0
    if base.size <= MAX_ELEMENTWISE:
        for i in range(base.size):

            def g(t: float, i: int = i) -> float:
                moved = base.copy()
                moved.flat[i] += t
                return float(f(moved))

            h = h0 * max(1.0, abs(float(base.flat[i])))
            diff = max(diff, abs(_slope(g, h, fourth_order) - float(grad.flat[i])))
        f(base)
        return diff, float(abs(grad).max())
    h = h0 * max(1.0, float(abs(base).max()))
    for _ in range(DIRECTIONS):
        u = rng.standard_normal(base.shape)
        u /= math.sqrt(float((u * u).sum()))
        numeric = _slope(lambda t, u=u: f(base + t * u), h, fourth_order)
        diff = max(diff, abs(numeric - float((grad * u).sum())))
    f(base)
    return diff, math.sqrt(float((grad * grad).sum()))


def check_gradients(
    model_or_layer: Any,
    X: Any,
    d_out: Any = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Check ``d_input`` and every parameter gradient against central differences.

    The loss is ``L = sum(model(X) * d_out)``, so ``backward(d_out)`` gives its
    gradients. They are computed on a copy of the model on the same namespace
    and device, in float64 where the device has it (else in its widest float,
    with a fourth-order difference and tolerances scaled to it). Arrays of up to 256 elements are checked
    element by element, larger ones along 3 random directions.

    Parameters
    ----------
    model_or_layer : DenseLayer or Sequential
        Left unchanged (parameters, cache and ``grads``).
    X : array_like, shape (n, input_size)
        Host data or an array of any library.
    d_out : array_like, shape (n, output_size), optional
        Standard normal values (seeded by ``seed``) by default.
    rtol, atol : float, optional
        A gradient passes when ``max |numeric - analytic| <= atol + rtol * scale``,
        ``scale`` being its largest magnitude (its norm along directions).
        Default rtol: 1e-6 in float64, 2e-2 in float32; default atol: the
        rounding error of a central difference of ``L`` in that dtype.
    seed : int, default 0
        Seeds ``d_out`` and the random directions.

    Returns
    -------
    dict of str to float
        The relative error ``max |numeric - analytic| / scale`` of ``"d_input"``
        and of each parameter (``"W"``, ``"b"``; ``"layers.0.W"``... for a
        Sequential).

    Raises
    ------
    AssertionError
        Some gradient is beyond tolerance; the message names the worst one.
    TypeError
        ``model_or_layer`` is neither a DenseLayer nor a Sequential.
    """
    layers = _layers(model_or_layer)
    with _backend.on_device(layers[0].device):  # CuPy computes on the current device
        rng = _backend.host_rng(_checks.check_seed(seed))
        Xh = _host(X, "X")
        if Xh.ndim != 2 or Xh.shape[1] != layers[0].input_size or Xh.shape[0] == 0:
            msg = f"`X` must have shape (n, {layers[0].input_size}) with n >= 1, got {tuple(Xh.shape)}"
            raise ValueError(msg)
        shape = (Xh.shape[0], layers[-1].output_size)
        R = rng.standard_normal(shape) if d_out is None else _host(d_out, "d_out")
        if tuple(R.shape) != shape:
            msg = f"`d_out` must have the output's shape {shape}, got {tuple(R.shape)}"
            raise ValueError(msg)
        probe = _Probe(model_or_layer, Xh, R)
        dtype = _checks.dtype_name(probe.dtype)
        eps = float(probe.xp.finfo(probe.dtype).eps)
        h0 = eps ** (1 / 3)
        size = float(probe.xp.sum(probe.xp.abs(probe.model.forward(probe.Xd) * probe.R)))
        rtol = _DEFAULT_RTOL[dtype] if rtol is None else float(rtol)
        atol = 8 * eps * (1.0 + size) / h0 if atol is None else float(atol)
        errors, worst = {}, None
        for key, grad in probe.analytic().items():
            base, f = probe.function_of(key)
            diff, scale = _compare(base, f, grad, h0, dtype != "float64", rng)
            errors[key] = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
            excess = diff / (atol + rtol * scale)
            if excess > 1 and (worst is None or excess > worst[1]):
                worst = (key, excess, diff, scale)
        if worst is not None:
            key, _, diff, scale = worst
            msg = (
                f"gradient {key!r} does not match central differences in {dtype}: max |numeric - analytic| = "
                f"{diff:.3g} > atol + rtol * scale = {atol:.3g} + {rtol:.3g} * {scale:.3g}; "
                f"relative errors: {', '.join(f'{k}={v:.2g}' for k, v in errors.items())}"
            )
            raise AssertionError(msg)
        return errors
