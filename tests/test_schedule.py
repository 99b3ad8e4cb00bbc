from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noisylabel.schedule import loss_weights


def test_paper_values():
    assert loss_weights(1) == (1.0, pytest.approx(math.exp(-((1 - 1 / 3) ** 2))))
    assert loss_weights(3) == (1.0, 1.0)
    assert loss_weights(6) == (pytest.approx(math.exp(-0.25)), 1.0)


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(1.01, 20.0))
def test_continuity_at_beta(beta):
    below = loss_weights(beta * (1 - 1e-9), beta)
    above = loss_weights(beta * (1 + 1e-9), beta)
    for a, b in zip(below, above, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert loss_weights(beta, beta) == (1.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(1.0, 10.0), e=st.floats(1.0, 1e4))
def test_ranges_and_monotonicity(beta, e):
    mu1, mu2 = loss_weights(e, beta)
    assert math.exp(-1) <= mu1 <= 1.0
    assert math.exp(-1) <= mu2 <= 1.0  # mu2(1) = exp(-(1 - 1/beta)^2) >= exp(-1)
    mu1b, mu2b = loss_weights(e + 1, beta)
    assert mu1b <= mu1 + 1e-15 and mu2b >= mu2 - 1e-15


def test_limits():
    mu1, mu2 = loss_weights(1e9, 3.0)
    assert mu1 == pytest.approx(math.exp(-1), rel=1e-6)
    assert mu2 == 1.0


def test_invalid():
    with pytest.raises(ValueError, match="counted from 1"):
        loss_weights(0)
    with pytest.raises(ValueError, match="beta"):
        loss_weights(1, beta=0)
