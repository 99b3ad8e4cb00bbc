from __future__ import annotations

import numpy as np
import pytest
import torch

from noisylabel.signals import SIGNALS, Signal, cosine_similarity, get_signal, normalized_loss


def _probs(n=50, k=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), size=n)
    return rng.integers(0, k, n), p


def test_cosine_formula_and_range():
    labels, p = _probs()
    s = cosine_similarity(labels, p)
    expected = p[np.arange(len(labels)), labels] / np.linalg.norm(p, axis=1)
    np.testing.assert_allclose(s, expected)
    assert np.all((s > 0) & (s <= 1))
    # uniform prediction -> 1/sqrt(C); one-hot on the label -> 1; one-hot elsewhere -> 0
    u = np.full((1, 7), 1 / 7)
    assert cosine_similarity([3], u)[0] == pytest.approx(1 / np.sqrt(7))
    assert cosine_similarity([2, 2], np.eye(7)[[2, 5]]).tolist() == [1.0, 0.0]


def test_normalized_loss_is_minmax_ce():
    labels, p = _probs()
    ce = -np.log(p[np.arange(len(labels)), labels])
    np.testing.assert_allclose(normalized_loss(labels, p), (ce - ce.min()) / (ce.max() - ce.min()))
    same = np.full((3, 2), 0.5)
    np.testing.assert_array_equal(normalized_loss([0, 1, 0], same), 0.0)


@pytest.mark.parametrize("fn", [cosine_similarity, normalized_loss])
def test_numpy_and_torch_agree(fn):
    labels, p = _probs()
    out = fn(torch.from_numpy(labels), torch.from_numpy(p))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), fn(labels, p), rtol=1e-12)


def test_registry():
    assert get_signal("cosine").clean_side == "high"
    assert get_signal("loss").clean_side == "low"
    assert set(SIGNALS) == {"cosine", "loss"}
    custom = Signal("neg", lambda y, p, **kw: 1 - cosine_similarity(y, p), "low")
    assert get_signal(custom) is custom
    labels, p = _probs()
    np.testing.assert_allclose(custom(labels, p), 1 - cosine_similarity(labels, p))
    with pytest.raises(ValueError, match="unknown signal 'margin'"):
        get_signal("margin")


def test_signals_validate():
    with pytest.raises(ValueError, match="row 1 sums to"):
        cosine_similarity([0, 1], [[0.5, 0.5], [0.9, 0.3]])
