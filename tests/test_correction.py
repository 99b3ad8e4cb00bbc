from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from noisylabel.correction import correct_labels


@st.composite
def problems(draw):
    c = draw(st.integers(2, 6))
    n = draw(st.integers(1, 30))
    labels = draw(arrays(np.int64, n, elements=st.integers(0, c - 1)))
    p = draw(arrays(np.float64, (n, c), elements=st.floats(0.001, 1.0)))
    d = draw(arrays(np.float64, (c, c), elements=st.floats(0.001, 1.0)))
    w = draw(arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    return labels, p / p.sum(1, keepdims=True), w, d / d.sum(1, keepdims=True)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_convex_combination(problem):
    labels, p, w, d = problem
    q = correct_labels(labels, p, w, d)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-9)
    lo = np.minimum(d[labels], p) - 1e-12
    hi = np.maximum(d[labels], p) + 1e-12
    assert np.all((q >= lo) & (q <= hi))  # between D[y] and p, entrywise
    np.testing.assert_allclose(q, w[:, None] * d[labels] + (1 - w[:, None]) * p)


def test_extremes_and_torch():
    labels = np.array([0, 1])
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    d = np.array([[0.9, 0.1], [0.3, 0.7]])
    q = correct_labels(labels, p, np.array([1.0, 0.0]), d)
    np.testing.assert_allclose(q, [[0.9, 0.1], [0.6, 0.4]])
    qt = correct_labels(torch.from_numpy(labels), torch.from_numpy(p), torch.tensor([1.0, 0.0]), d)
    assert isinstance(qt, torch.Tensor) and qt.dtype == torch.float64
    np.testing.assert_allclose(qt.numpy(), q)


def test_bad_shapes():
    p = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="clean_prob"):
        correct_labels([0], p, [0.5, 0.5], np.eye(2))
    with pytest.raises(ValueError, match="class_distributions"):
        correct_labels([0], p, [0.5], np.eye(3))
    with pytest.raises(ValueError, match=r"clean_prob\[0\] = 1.5"):
        correct_labels([0], p, [1.5], np.eye(2))
