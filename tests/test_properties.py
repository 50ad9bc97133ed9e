"""Property-based checks with Hypothesis: random shapes, values and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dense_xp import DenseLayer
from tests.helpers import assert_unchanged, snapshot
from tests.test_layer import SeedLayer

finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@st.composite
def problems(draw):
    n, d_in, d_out = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    X = draw(hnp.arrays(np.float64, (n, d_in), elements=finite))
    g = draw(hnp.arrays(np.float64, (n, d_out), elements=finite))
    return X, g, d_out, draw(st.sampled_from([None, "relu", "sigmoid"])), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None)
@given(problems(), st.floats(0.0, 1.0))
def test_any_shape_and_values_match_the_reference(problem, lr):
    X, g, d_out, activation, seed = problem
    layer = DenseLayer(X.shape[1], d_out, activation, seed=seed)
    ref = SeedLayer(X.shape[1], d_out, activation, seed)
    np.testing.assert_array_equal(layer.W, ref.W)
    y, y_ref = layer.forward(X), ref.forward(X)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(y_ref).max()))
    d, d_ref = layer.backward(g, lr=lr), ref.backward(g, lr=lr)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(d_ref).max()))
    np.testing.assert_allclose(layer.W, ref.W, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(ref.W).max()))
    np.testing.assert_allclose(layer.b, ref.b, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(ref.b).max()))


@settings(max_examples=60, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    dtype=st.sampled_from([np.float64, np.int32, np.bool_, np.complex128]),
)
def test_bad_inputs_are_rejected_without_side_effects(shape, dtype):
    layer = DenseLayer(3, 2, "relu", seed=0)
    layer.forward(np.ones((2, 3)))
    X = np.ones(shape, dtype=dtype)
    good = np.dtype(dtype).kind in "if" and len(shape) in (1, 2) and shape[-1] == 3 and shape[0] > 0
    before = snapshot(layer)
    if good:
        assert layer.forward(X).shape == (1 if len(shape) == 1 else shape[0], 2)
        return
    with pytest.raises((TypeError, ValueError), match=r"`X`"):
        layer.forward(X)
    assert_unchanged(layer, before)
