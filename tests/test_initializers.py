"""Initializers: host draws from the layer's seed, the same on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dense_xp import DenseLayer
from dense_xp.initializers import INITIALIZERS
from tests.helpers import host, wide

FAN_IN, FAN_OUT = 200, 300
STD = {
    "seed": 0.01,
    "glorot_uniform": math.sqrt(2.0 / (FAN_IN + FAN_OUT)),  # limit sqrt(6/(i+o)), std limit/sqrt(3)
    "glorot_normal": math.sqrt(2.0 / (FAN_IN + FAN_OUT)),
    "he_normal": math.sqrt(2.0 / FAN_IN),
    "he_uniform": math.sqrt(2.0 / FAN_IN),
    "lecun_normal": math.sqrt(1.0 / FAN_IN),
    "zeros": 0.0,
}


@pytest.mark.parametrize("init", sorted(INITIALIZERS))
def test_scale_and_reproducibility(backend, init):
    xp, device = backend
    dtype = wide(xp, device)
    a = host(DenseLayer(FAN_IN, FAN_OUT, init=init, seed=3, dtype=dtype, device=device, xp=xp).W)
    b = host(DenseLayer(FAN_IN, FAN_OUT, init=init, seed=3, dtype=dtype).W)  # NumPy on the CPU
    np.testing.assert_array_equal(a, b)
    assert a.shape == (FAN_IN, FAN_OUT)
    assert abs(a.mean()) <= 4 * STD[init] / math.sqrt(a.size) + 1e-15
    np.testing.assert_allclose(a.std(), STD[init], rtol=0.02)
    if init.endswith("uniform"):
        limit = STD[init] * math.sqrt(3.0)
        assert np.abs(a).max() <= (float(np.float32(limit)) if dtype == "float32" else limit)
        assert np.abs(a).max() > 0.99 * limit
    other_seed = host(DenseLayer(FAN_IN, FAN_OUT, init=init, seed=4, dtype=dtype).W)
    assert (init == "zeros") == np.array_equal(a, other_seed)


def test_seed_initializer_is_the_reference_draw():
    expected = np.random.RandomState(5).randn(7, 3) * 0.01
    np.testing.assert_array_equal(host(DenseLayer(7, 3, seed=5).W), expected)
    np.testing.assert_array_equal(host(DenseLayer(7, 3, seed=5, init="seed").W), expected)


def test_unseeded_layers_differ_and_leave_global_state_alone():
    state = np.random.get_state()[1].copy()
    a, b = DenseLayer(8, 8).W, DenseLayer(8, 8).W
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
