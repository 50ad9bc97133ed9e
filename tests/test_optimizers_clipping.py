"""Gradient clipping: torch's formulas, computed on the device with no host read, gradients untouched."""

from __future__ import annotations

import numpy as np
import pytest

from dense_xp.optimizers import SGD, Adam, AdamW, RMSprop
from tests.helpers import host, wide

MAKERS = [
    lambda: SGD(lr=0.1, momentum=0.9, clip_norm=1.0),
    lambda: Adam(lr=0.01, clip_norm=0.5),
    lambda: AdamW(lr=0.01, clip_value=0.2),
    lambda: RMSprop(lr=0.01, centered=True, clip_norm=2.0),
]
IDS = ["sgd-norm", "adam-norm", "adamw-value", "rmsprop-norm"]


def _grads(xp, device, dtype=None, scale=3.0):
    rng = np.random.default_rng(7)
    dtype = getattr(xp, dtype or wide(xp, device))
    host_grads = [scale * rng.normal(size=(4, 3)), scale * rng.normal(size=(1, 3))]
    return [xp.asarray(g, dtype=dtype, device=device) for g in host_grads]


@pytest.mark.parametrize("clip_norm", [0.5, 4.0, 1e3])
def test_sgd_step_is_the_torch_clipped_gradient(backend, clip_norm):
    """Plain SGD with lr=1 moves the parameters by exactly the clipped gradient: compare with torch."""
    torch = pytest.importorskip("torch")
    xp, device = backend
    grads = _grads(xp, device)
    zeros = [xp.asarray(np.zeros(tuple(g.shape)), dtype=g.dtype, device=device) for g in grads]
    moved = SGD(lr=1.0, clip_norm=clip_norm).step(zeros, grads)
    tensors = [torch.zeros(tuple(g.shape), dtype=torch.float64, requires_grad=True) for g in grads]
    for tensor, g in zip(tensors, grads, strict=True):
        tensor.grad = torch.tensor(host(g))
    total = torch.nn.utils.clip_grad_norm_(tensors, clip_norm)  # clips .grad in place
    tolerance = 1e-12 if wide(xp, device) == "float64" else 1e-6
    for got, tensor in zip(moved, tensors, strict=True):
        np.testing.assert_allclose(-host(got), tensor.grad.numpy(), rtol=tolerance, atol=tolerance)
    norm = np.sqrt(sum(float(np.sum(host(g) ** 2)) for g in moved))
    assert norm == pytest.approx(min(float(total), clip_norm), rel=1e-5)


def test_clip_value_clamps_each_element(backend):
    xp, device = backend
    grads = _grads(xp, device)
    zeros = [xp.asarray(np.zeros(tuple(g.shape)), dtype=g.dtype, device=device) for g in grads]
    moved = SGD(lr=1.0, clip_value=0.75).step(zeros, grads)
    for got, g in zip(moved, grads, strict=True):
        np.testing.assert_array_equal(-host(got), np.clip(host(g), -0.75, 0.75))
    assert max(np.abs(host(g)).max() for g in grads) > 0.75  # the clamp was reached


def test_float16_gradients_clip_without_overflow(backend):
    """300**2 overflows float16: the norm is computed in the float32 the update uses."""
    xp, device = backend
    if getattr(xp, "float16", None) is None:
        pytest.skip("this namespace has no float16")
    grads = _grads(xp, device, "float16", scale=300.0)
    params = [xp.asarray(np.zeros(tuple(g.shape)), dtype=xp.float16, device=device) for g in grads]
    moved = SGD(lr=1.0, clip_norm=1.0).step(params, grads)
    assert all(np.isfinite(host(p)).all() for p in moved)
    norm = np.sqrt(sum(float(np.sum(host(p) ** 2)) for p in moved))
    assert norm == pytest.approx(1.0, rel=1e-2)  # float16 rounding of the result


def test_norm_over_positions_of_different_dtypes():
    grads = [np.full((2, 2), 3.0), np.full(3, 4.0, dtype=np.float32)]
    params = [np.zeros((2, 2)), np.zeros(3, dtype=np.float32)]
    moved = SGD(lr=1.0, clip_norm=1.0).step(params, grads)
    total = np.sqrt(4 * 9.0 + 3 * 16.0)
    np.testing.assert_allclose(-moved[0], 3.0 / (total + 1e-6), rtol=1e-12)
    np.testing.assert_allclose(-moved[1], 4.0 / (total + 1e-6), rtol=1e-6)
    assert moved[1].dtype == np.float32


def _refuse_host_reads(monkeypatch, cls):
    def read(self, *args, **kwargs):
        msg = "a device value was read on the host during step"
        raise AssertionError(msg)

    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy"):
        if hasattr(cls, name):
            monkeypatch.setattr(cls, name, read)


@pytest.mark.parametrize("make", MAKERS, ids=IDS)
def test_clipping_reads_nothing_back_from_the_device(backend, make, monkeypatch):
    """No float() or bool() of a device value per step: torch and the CuPy simulation refuse one here,
    and under jax.jit a host read of a traced value raises."""
    xp, device = backend
    name = xp.__name__
    grads = _grads(xp, device)
    params = [xp.asarray(np.ones(tuple(g.shape)), dtype=g.dtype, device=device) for g in grads]
    eager = make()
    eager.step([xp.asarray(p, copy=True, device=device) for p in params], grads)  # the state's first step
    if "jax" in name:
        jax = pytest.importorskip("jax")
        traced = make()
        out = jax.jit(traced.step)(params, grads)  # a ConcretizationTypeError on any host read
        expected = make().step(params, grads)
        for a, b in zip(out, expected, strict=True):
            np.testing.assert_allclose(host(a), host(b), rtol=1e-6)
        return
    if "torch" in name:
        torch = pytest.importorskip("torch")
        _refuse_host_reads(monkeypatch, torch.Tensor)
    elif name == "cupylike":
        from tests import cupylike

        _refuse_host_reads(monkeypatch, cupylike.Array)
    else:
        pytest.skip(f"{name} arrays live on the host: there is no device read to catch")
    for _ in range(3):
        params = eager.step(params, grads)
    monkeypatch.undo()
    assert all(np.isfinite(host(p)).all() for p in params)
