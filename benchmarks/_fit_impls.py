"""What ``bench_fit`` times: one epoch of training batches, per implementation, on the same data.

A builder takes a :data:`Case` and returns ``(epoch, batches)``: ``epoch()``
trains ``batches`` mini-batches of ``n`` rows once each (one layer
``relu(X @ W + b)``, mean squared error, SGD with ``lr=0.01`` or Adam with
``lr=1e-3``), with every result on the host or synchronised before it returns.
Every implementation starts from the same weights (those of
``DenseLayer(d_in, d_out, "relu", seed=0)``) and ``epoch()`` returns the host
``(W, b)`` after it, so that they can be checked to do the same work. It
raises :class:`Skip` where the implementation cannot run here.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import dense_xp

__all__ = ["BLOCKS", "BUILDERS", "Case", "Skip", "batches_for"]

Case = tuple[int, int, int, str]  # n (batch rows), d_in, d_out, optimizer ("sgd" or "adam")
Built = tuple[Callable[[], Any], int]
LR = {"sgd": 0.01, "adam": 1e-3}
BETAS, EPS = (0.9, 0.999), 1e-8


class Skip(Exception):
    """An implementation that cannot run in this configuration (the message says why)."""


def batches_for(n: int, d_in: int, d_out: int) -> int:
    """Batches per timed epoch: about 40 MFLOP of GEMMs, at least 4 and at most 400 batches."""
    return max(4, min(400, math.ceil(40e6 / (6 * n * d_in * d_out))))


def _data(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    n, d_in, d_out, _ = case
    batches = batches_for(n, d_in, d_out)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n * batches, d_in), dtype=np.float32)
    y = rng.standard_normal((n * batches, d_out), dtype=np.float32)
    return X, y, batches


def _init(d_in: int, d_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The starting ``(W, b)`` of every implementation, float32 on the host."""
    layer = dense_xp.DenseLayer(d_in, d_out, "relu", seed=0, dtype="float32")
    return np.array(layer.W), np.array(layer.b).reshape(d_out)


def build_dense_xp(case: Case, device: Any = "cpu", *, compile: bool | None = None) -> Built:
    """``Sequential.fit`` for one epoch: the checks once per call, then the batches."""
    n, d_in, d_out, opt = case
    X, y, batches = _data(case)
    xp, dev = dense_xp.resolve_device(device) if isinstance(device, str) else device
    layer = dense_xp.DenseLayer(d_in, d_out, "relu", seed=0, dtype="float32", device=dev, xp=xp)
    model = dense_xp.Sequential([layer])
    optimizer = dense_xp.SGD(LR[opt]) if opt == "sgd" else dense_xp.Adam(LR[opt])
    if not isinstance(device, str):  # data already on the device, as a user of that library has it
        X, y = xp.asarray(X, device=dev), xp.asarray(y, device=dev)

    def epoch() -> Any:
        model.fit(
            X,
            y,
            loss="mse",
            optimizer=optimizer,
            epochs=1,
            batch_size=n,
            shuffle=False,
            verbose=0,
            compile=compile,
        )
        return tuple(
            dense_xp.to_numpy(p).reshape(s)
            for p, s in zip(model.parameters(), ((d_in, d_out), d_out), strict=True)
        )

    return epoch, batches


def build_dense_xp_jax(case: Case, *, compile: bool | None = None) -> Built:
    """``fit`` on JAX's CPU device (float32), data on the device; eager with ``compile=False``."""
    try:
        jax = importlib.import_module("jax")
    except ImportError:
        raise Skip("jax is not installed") from None
    jnp = importlib.import_module("jax.numpy")
    return build_dense_xp(case, dense_xp.resolve_device(jax.devices("cpu")[0], xp=jnp), compile=compile)


def build_dense_xp_torch(case: Case, *, compile: bool | None = None) -> Built:
    """``fit`` on torch's CPU (float32), data on the device; ``compile=True`` is ``torch.compile``'s step."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise Skip("torch is not installed") from None
    xp = importlib.import_module("array_api_compat.torch")
    return build_dense_xp(case, (xp, torch.device("cpu")), compile=compile)


def build_floor(case: Case) -> Built:
    """The three GEMMs of a layer step (``X @ W``, ``X.T @ G``, ``G @ W.T``) per batch, nothing else."""
    n, d_in, d_out, _ = case
    X, y, batches = _data(case)
    W, b = _init(d_in, d_out)
    parts = [(X[i * n : (i + 1) * n], y[i * n : (i + 1) * n]) for i in range(batches)]
    out = (
        np.empty((n, d_out), np.float32),
        np.empty((d_in, d_out), np.float32),
        np.empty((n, d_in), np.float32),
    )

    def epoch() -> Any:
        for Xb, G in parts:
            np.matmul(Xb, W, out=out[0])
            np.matmul(Xb.T, G, out=out[1])
            np.matmul(G, W.T, out=out[2])
        return W, b

    return epoch, batches


def build_hand(case: Case) -> Built:
    """A hand-optimized NumPy training step: buffers allocated once, every update in place."""
    n, d_in, d_out, opt = case
    X, y, batches = _data(case)
    W, b = _init(d_in, d_out)
    z, g = np.empty((n, d_out), np.float32), np.empty((n, d_out), np.float32)
    mask = np.empty((n, d_out), bool)
    dW, db = np.empty_like(W), np.empty_like(b)
    state = [np.zeros_like(a) for a in (W, W, b, b)]  # Adam's m and v of W and b
    tW, tb = np.empty_like(W), np.empty_like(b)
    parts = [(X[i * n : (i + 1) * n], y[i * n : (i + 1) * n]) for i in range(batches)]
    lr, scale, t = LR[opt], 2.0 / (n * d_out), [0]

    def sgd() -> None:
        np.multiply(dW, lr, out=dW)
        np.subtract(W, dW, out=W)
        np.multiply(db, lr, out=db)
        np.subtract(b, db, out=b)

    def adam() -> None:
        t[0] += 1
        (b1, b2), k = BETAS, t[0]
        step, root = lr / (1 - b1**k), math.sqrt(1 - b2**k)
        for p, grad, m, v, tmp in ((W, dW, state[0], state[1], tW), (b, db, state[2], state[3], tb)):
            m *= b1
            np.multiply(grad, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(grad, grad, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= root
            tmp += EPS
            np.divide(m, tmp, out=tmp)
            tmp *= step
            p -= tmp

    update = sgd if opt == "sgd" else adam

    def epoch() -> Any:
        total = 0.0
        for Xb, yb in parts:
            np.matmul(Xb, W, out=z)
            np.add(z, b, out=z)
            np.maximum(z, 0, out=z)
            np.subtract(z, yb, out=g)
            total += float(np.vdot(g, g))
            np.greater(z, 0, out=mask)
            np.multiply(g, mask, out=g)
            np.multiply(g, scale, out=g)
            np.matmul(Xb.T, g, out=dW)
            np.sum(g, axis=0, out=db)
            update()
        return W.copy(), b.copy()

    return epoch, batches


def build_torch(case: Case, *, compiled: bool = False) -> Built:
    """torch eager (or ``torch.compile`` of the step): ``nn.Linear``, relu, ``MSELoss``, ``torch.optim``."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise Skip("torch is not installed") from None
    n, d_in, d_out, opt = case
    X, y, batches = _data(case)
    lin = torch.nn.Linear(d_in, d_out)
    W0, b0 = _init(d_in, d_out)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W0.T))
        lin.bias.copy_(torch.from_numpy(b0))
    optimizer = (torch.optim.SGD if opt == "sgd" else torch.optim.Adam)(lin.parameters(), lr=LR[opt])
    loss_fn = torch.nn.MSELoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    parts = [(Xt[i * n : (i + 1) * n], yt[i * n : (i + 1) * n]) for i in range(batches)]

    def step(Xb: Any, yb: Any) -> Any:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(torch.relu(lin(Xb)), yb)
        loss.backward()
        optimizer.step()

    if compiled:
        try:
            step = torch.compile(step)
            step(*parts[0])
        except Exception as exc:  # no C++ toolchain, or an inductor failure on this machine
            raise Skip(f"torch.compile failed here: {type(exc).__name__}: {exc}"[:200]) from None

    def epoch() -> Any:
        for Xb, yb in parts:
            step(Xb, yb)
        return lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()

    return epoch, batches


def build_jax(case: Case) -> Built:
    """A hand-written ``jax.jit`` training step (``jax.grad`` of the parameters only), data on the device."""
    try:
        jax = importlib.import_module("jax")
    except ImportError:
        raise Skip("jax is not installed") from None
    jnp = importlib.import_module("jax.numpy")
    n, d_in, d_out, opt = case
    X, y, batches = _data(case)
    params = tuple(jnp.asarray(a) for a in _init(d_in, d_out))
    lr, (b1, b2) = LR[opt], BETAS

    def loss(p: Any, Xb: Any, yb: Any) -> Any:
        return jnp.mean((jax.nn.relu(Xb @ p[0] + p[1]) - yb) ** 2)

    @jax.jit
    def sgd(p: Any, state: Any, Xb: Any, yb: Any) -> Any:
        value, grads = jax.value_and_grad(loss)(p, Xb, yb)
        return tuple(a - lr * g for a, g in zip(p, grads, strict=True)), state, value

    @jax.jit
    def adam(p: Any, state: Any, Xb: Any, yb: Any) -> Any:
        value, grads = jax.value_and_grad(loss)(p, Xb, yb)
        m, v, t = state
        t = t + 1
        m = tuple(b1 * a + (1 - b1) * g for a, g in zip(m, grads, strict=True))
        v = tuple(b2 * a + (1 - b2) * g * g for a, g in zip(v, grads, strict=True))
        step, root = lr / (1 - b1**t), jnp.sqrt(1 - b2**t)
        new = tuple(a - step * mm / (jnp.sqrt(vv) / root + EPS) for a, mm, vv in zip(p, m, v, strict=True))
        return new, (m, v, t), value

    Xd, yd = jnp.asarray(X), jnp.asarray(y)
    parts = [(Xd[i * n : (i + 1) * n], yd[i * n : (i + 1) * n]) for i in range(batches)]
    zeros = tuple(jnp.zeros_like(a) for a in params)
    box: list[Any] = [params, (zeros, zeros, jnp.zeros((), jnp.float32)) if opt == "adam" else ()]
    step = sgd if opt == "sgd" else adam

    def epoch() -> Any:
        p, state, total = box[0], box[1], 0.0
        for Xb, yb in parts:
            p, state, value = step(p, state, Xb, yb)
            total = total + value
        box[0], box[1] = p, state
        float(total)  # waits for the last step
        return tuple(np.asarray(a) for a in p)

    return epoch, batches


def build_sklearn(case: Case) -> Built:
    """scikit-learn's ``MLPRegressor`` with no hidden layer, one epoch of ``fit`` (``max_iter=1``)."""
    try:
        neural = importlib.import_module("sklearn.neural_network")
        exceptions = importlib.import_module("sklearn.exceptions")
    except ImportError:
        raise Skip("scikit-learn is not installed") from None
    import warnings

    n, _, _, opt = case
    X, y, batches = _data(case)
    extra = {"momentum": 0.0} if opt == "sgd" else {}
    model = neural.MLPRegressor(
        hidden_layer_sizes=(),
        solver=opt,
        batch_size=n,
        max_iter=1,
        shuffle=False,
        learning_rate_init=LR[opt],
        alpha=0.0,
        random_state=0,
        **extra,
    )

    def epoch() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
            model.fit(X, y)
        return model.coefs_[0], model.intercepts_[0]

    return epoch, batches


BUILDERS: dict[str, Callable[[Case], Built]] = {
    "floor": build_floor,
    "hand": build_hand,
    "dense_xp": build_dense_xp,
    "sklearn": build_sklearn,
    "torch": build_torch,
    "torch.compile": lambda case: build_torch(case, compiled=True),
    "dense_xp-torch": build_dense_xp_torch,
    "dense_xp-torch.compile": lambda case: build_dense_xp_torch(case, compile=True),
    "jax.jit": build_jax,
    "dense_xp-jax": build_dense_xp_jax,
    "dense_xp-jax-eager": lambda case: build_dense_xp_jax(case, compile=False),
}
# Timed together, alternating: the implementations that share NumPy's BLAS; torch and JAX each alone.
BLOCKS = (
    ("floor", "hand", "dense_xp", "sklearn"),
    ("torch", "torch.compile", "dense_xp-torch", "dense_xp-torch.compile"),
    ("jax.jit", "dense_xp-jax", "dense_xp-jax-eager"),
)
