from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from noisylabel.distribution import (
    ClassDistributionMiner,
    class_mean_distributions,
    smoothed_onehot,
)


def test_class_means_and_empty_rows():
    labels = np.array([0, 0, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    m = class_mean_distributions(labels, p, 3)
    np.testing.assert_allclose(m[0], [0.7, 0.2, 0.1])
    assert np.all(np.isnan(m[1]))
    np.testing.assert_allclose(m[2], p[2])
    mt = class_mean_distributions(torch.from_numpy(labels), torch.from_numpy(p), 3)
    assert isinstance(mt, torch.Tensor)
    np.testing.assert_allclose(mt.numpy(), m, equal_nan=True)


def test_smoothed_onehot():
    d = smoothed_onehot(7, 0.7)
    np.testing.assert_allclose(d.sum(1), 1.0)  # not 1.1 (Ada-DF's defect)
    assert d[0, 0] == 0.7 and d[0, 1] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        smoothed_onehot(1, 0.7)


def test_absolute_rule_keeps_last_accepted_row():
    miner = ClassDistributionMiner(3, t=0.7)
    p1 = np.array([[0.8, 0.1, 0.1], [0.1, 0.5, 0.4], [0.05, 0.05, 0.9]])
    miner.update([0, 1, 2], p1)
    assert miner.accepted_.tolist() == [True, False, True]
    np.testing.assert_allclose(miner.distributions_[0], p1[0])
    np.testing.assert_allclose(miner.distributions_[1], smoothed_onehot(3, 0.7)[1])
    p2 = np.array([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9]])
    miner.update([0, 1, 2], p2)
    assert miner.accepted_.tolist() == [False, True, True]
    np.testing.assert_allclose(miner.distributions_[0], p1[0])  # kept
    np.testing.assert_allclose(miner.distributions_[1], p2[1])
    assert miner.n_accepted_.tolist() == [1, 1, 2]


def test_relative_rule():
    miner = ClassDistributionMiner(3, t=0.7, rule="relative", margin=0.1)
    p = np.array([[0.5, 0.3, 0.2], [0.45, 0.4, 0.15], [0.3, 0.3, 0.4]])
    miner.update([0, 1, 2], p)
    # row 0: 0.5 - 0.3 >= 0.1; row 1: 0.40 is not the largest; row 2: 0.4 - 0.3 >= 0.1
    assert miner.accepted_.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="rule"):
        ClassDistributionMiner(3, rule="best")


def test_state_dict_round_trip_and_torch_input():
    miner = ClassDistributionMiner(3)
    rng = np.random.default_rng(0)
    p = rng.dirichlet([5, 1, 1], 100)
    miner.update(torch.zeros(100, dtype=torch.long), torch.from_numpy(p))
    other = ClassDistributionMiner(3)
    other.load_state_dict(miner.state_dict())
    np.testing.assert_array_equal(other.distributions_, miner.distributions_)
    np.testing.assert_array_equal(other.n_accepted_, miner.n_accepted_)
    assert other.n_updates_ == 1
    with pytest.raises(ValueError, match="shape"):
        ClassDistributionMiner(4).load_state_dict(miner.state_dict())


@st.composite
def epochs(draw):
    c = draw(st.integers(2, 6))
    n = draw(st.integers(1, 40))
    labels = draw(arrays(np.int64, n, elements=st.integers(0, c - 1)))
    raw = draw(arrays(np.float64, (n, c), elements=st.floats(0.01, 1.0)))
    return c, labels, raw / raw.sum(1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(epochs(), min_size=1, max_size=3),
    t=st.floats(0.0, 1.0),
    rule=st.sampled_from(["absolute", "relative"]),
)
def test_miner_properties(data, t, rule):
    c = data[0][0]
    miner = ClassDistributionMiner(c, t=t, rule=rule)
    for c_i, labels, p in data:
        if c_i != c:
            continue
        before = miner.distributions_.copy()
        miner.update(labels, p)
        d = miner.distributions_
        np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-12)  # every row sums to 1
        assert np.all(d >= 0)
        means = class_mean_distributions(labels, p, c)
        for k in range(c):
            if miner.accepted_[k]:
                if rule == "absolute":
                    assert means[k, k] >= t  # threshold respected
                np.testing.assert_allclose(d[k], means[k], atol=1e-9)
            else:
                np.testing.assert_array_equal(d[k], before[k])
                if rule == "absolute" and np.isfinite(means[k, k]):
                    assert means[k, k] < t
