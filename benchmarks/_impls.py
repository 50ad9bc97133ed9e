"""The implementations that the benchmark times, each built for one case on one device.

A builder takes ``(n, d_in, d_out, dtype, activation)`` and a device string and
returns ``(step, sync, peak)``: one training step (forward + backward + SGD,
lr=0.01) on data already on the device, the device synchronisation, and the
peak-memory probe for that library (``None`` where none is taken). It raises
:class:`Skip` when the implementation cannot run there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

import dense_xp

from ._timing import cupy_peak_bytes, numpy_peak_bytes, torch_cuda_peak_bytes

__all__ = ["BUILDERS", "IMPLS", "LR", "Case", "NaiveLayer", "Skip"]

LR = 0.01
IMPLS = ("dense_xp", "floor", "naive", "torch")


class Skip(Exception):
    """An implementation that cannot run in this configuration (the message says why)."""


class NaiveLayer:
    """The textbook layer of the reference, formulas unchanged; ``W`` and ``b`` start in ``dtype``.

    ``relu_deriv`` returns float64 (``astype(float)``), so with float32 data the
    backward pass silently runs in float64, as the reference does.
    """

    def __init__(self, input_size: int, output_size: int, activation: str | None, dtype: Any) -> None:
        self.W = (np.random.RandomState(0).randn(input_size, output_size) * 0.01).astype(dtype)
        self.b = np.zeros((1, output_size), dtype=dtype)
        self.activation = activation
        self.input = self.z = None

    def relu(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(0, x)

    def relu_deriv(self, x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(float)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip(x, -500, 500)))

    def sigmoid_deriv(self, x: np.ndarray) -> np.ndarray:
        s = self.sigmoid(x)
        return s * (1 - s)

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.input = X
        self.z = X @ self.W + self.b
        if self.activation == "relu":
            return self.relu(self.z)
        if self.activation == "sigmoid":
            return self.sigmoid(self.z)
        return self.z

    def backward(self, d_out: np.ndarray, lr: float = LR) -> np.ndarray:
        if self.activation == "relu":
            d_out = d_out * self.relu_deriv(self.z)
        elif self.activation == "sigmoid":
            d_out = d_out * self.sigmoid_deriv(self.z)
        dW = self.input.T @ d_out / self.input.shape[0]
        db = np.mean(d_out, axis=0, keepdims=True)
        d_input = d_out @ self.W.T
        self.W -= lr * dW
        self.b -= lr * db
        return d_input


# --------------------------------------------------------------------------
# One builder per implementation: (step, sync, peak) for one case
# --------------------------------------------------------------------------
Case = tuple[int, int, int, str, str | None]  # n, d_in, d_out, dtype, activation
Built = tuple[Callable[[], Any], Callable[[], None], Callable[[Callable[[], Any]], int] | None]


def _data(n: int, d_in: int, d_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((n, d_in)),
        0.01 * rng.standard_normal((d_in, d_out)),
        rng.standard_normal((n, d_out)),
    )


def _xp_tools(device: str) -> tuple[Callable[[], None], Callable[[Callable[[], Any]], int]]:
    if device == "cpu":
        return lambda: None, numpy_peak_bytes
    cupy = importlib.import_module("cupy")
    return cupy.cuda.get_current_stream().synchronize, cupy_peak_bytes


def build_dense_xp(case: Case, device: str) -> Built:
    n, d_in, d_out, dtype, act = case
    X, _, G = _data(n, d_in, d_out)
    layer = dense_xp.DenseLayer(d_in, d_out, act, seed=0, dtype=dtype, device=device)
    Xd, Gd = (layer.xp.asarray(a, dtype=layer.dtype, device=layer.device) for a in (X, G))

    def step() -> Any:
        layer.forward(Xd)
        return layer.backward(Gd, lr=LR)

    return (step, *_xp_tools(device))


def build_floor(case: Case, device: str) -> Built:
    n, d_in, d_out, dtype, _ = case
    xp, dev = dense_xp.resolve_device(device)
    Xd, Wd, Gd = (xp.asarray(a, dtype=getattr(xp, dtype), device=dev) for a in _data(n, d_in, d_out))
    return (lambda: (Xd @ Wd, Xd.T @ Gd, Gd @ Wd.T), *_xp_tools(device))


def build_naive(case: Case, device: str) -> Built:
    if device != "cpu":
        raise Skip("the textbook NumPy layer runs on the CPU only")
    n, d_in, d_out, dtype, act = case
    X, _, G = _data(n, d_in, d_out)
    layer = NaiveLayer(d_in, d_out, act, dtype)
    X, G = X.astype(dtype), G.astype(dtype)
    return lambda: (layer.forward(X), layer.backward(G, lr=LR))[1], lambda: None, numpy_peak_bytes


def build_torch(case: Case, device: str) -> Built:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise Skip("torch is not installed") from None
    if device != "cpu" and not torch.cuda.is_available():
        raise Skip(f"this torch ({torch.__version__}) has no CUDA device")
    n, d_in, d_out, dtype, act = case
    tdev, tdt = torch.device(device), getattr(torch, dtype)
    torch.manual_seed(0)
    lin = torch.nn.Linear(d_in, d_out, device=tdev, dtype=tdt)
    fn = {"relu": torch.relu, "sigmoid": torch.sigmoid}.get(act or "", lambda z: z)
    opt = torch.optim.SGD(lin.parameters(), lr=LR)
    X, _, G = _data(n, d_in, d_out)
    Xt = torch.from_numpy(X).to(tdev, tdt).requires_grad_(True)  # d_input is computed, as in dense_xp
    Gt = torch.from_numpy(G).to(tdev, tdt)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        Xt.grad = None
        fn(lin(Xt)).backward(Gt)
        opt.step()
        return Xt.grad

    if device == "cpu":
        return step, lambda: None, None  # torch's CPU allocator is not traced
    return step, torch.cuda.synchronize, torch_cuda_peak_bytes


BUILDERS = {"dense_xp": build_dense_xp, "floor": build_floor, "naive": build_naive, "torch": build_torch}
