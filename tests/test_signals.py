from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from noisylabel.mixture import BetaMixture
from noisylabel.signals import (
    SIGNALS,
    Signal,
    bounded_loss,
    calibrated_cosine,
    class_thresholds,
    cosine_similarity,
    get_signal,
    normalized_loss,
    spread_ties,
)


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


@pytest.mark.parametrize("fn", [cosine_similarity, normalized_loss, calibrated_cosine,
                                class_thresholds])
def test_numpy_and_torch_agree(fn):
    labels, p = _probs()
    out = fn(torch.from_numpy(labels), torch.from_numpy(p))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), fn(labels, p), rtol=1e-12)


def test_registry():
    assert get_signal("cosine").clean_side == "high"
    assert get_signal("loss").clean_side == "low"
    assert get_signal("calibrated").clean_side == "high"
    assert set(SIGNALS) == {"cosine", "loss", "calibrated"}
    custom = Signal("neg", lambda y, p, **kw: 1 - cosine_similarity(y, p), "low")
    assert get_signal(custom) is custom
    labels, p = _probs()
    np.testing.assert_allclose(custom(labels, p), 1 - cosine_similarity(labels, p))
    with pytest.raises(ValueError, match="unknown signal 'margin'"):
        get_signal("margin")


def test_signals_validate():
    with pytest.raises(ValueError, match="row 1 sums to"):
        cosine_similarity([0, 1], [[0.5, 0.5], [0.9, 0.3]])


def test_bounded_loss_is_one_minus_the_label_probability():
    p = np.array([[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]])
    labels = np.array([0, 0, 0])
    ce = -np.log(p[np.arange(3), labels])
    np.testing.assert_allclose(bounded_loss(labels, p), 1 - np.exp(-ce))
    t = bounded_loss(torch.tensor(labels), torch.tensor(p))
    np.testing.assert_allclose(t.numpy(), [0.2, 2 / 3, 0.9])
    assert get_signal("loss").fn is bounded_loss and SIGNALS["loss"].clean_side == "low"


def test_loss_signal_separates_where_min_max_normalisation_does_not():
    """Digits, 40% symmetric noise: a few huge losses squeeze the min-max normalised rest."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from noisylabel import symmetric_noise

    X, y = load_digits(return_X_y=True)
    labels = symmetric_noise(y, 0.4, n_classes=10, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    p = cross_val_predict(model, X, labels, cv=5, method="predict_proba")
    for fn, separated in ((normalized_loss, False), (bounded_loss, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bmm = BetaMixture(clean_side="low").fit(fn(labels, p))
        assert bmm.separated_ is separated, fn.__name__
    w = bmm.clean_probability(bounded_loss(labels, p))
    assert roc_auc_score(labels != y, 1 - w) > 0.95


def test_class_thresholds_are_mean_self_confidence():
    labels, p = _probs(n=200, k=4)
    t = class_thresholds(labels, p)
    for c in range(4):
        assert t[c] == pytest.approx(p[labels == c, c].mean())
    # a class nobody is labelled with gets the mean of the others
    t = class_thresholds(np.where(labels == 3, 0, labels), p)
    assert t[3] == pytest.approx(t[:3].mean())


def _unsure_class(n=600, seed=0):
    """Three classes, 30% of labels flipped; the model is sure of classes 0 and 1 (0.9 on the
    true class) and confuses class 2 with class 0 (0.25 on class 2, 0.65 on class 0), so the
    right labels of class 2 score as low as wrong ones on the raw cosine."""
    rng = np.random.default_rng(seed)
    true = rng.choice(3, n, p=[0.4, 0.4, 0.2])
    flip = rng.random(n) < 0.3
    labels = np.where(flip, (true + rng.integers(1, 3, n)) % 3, true)
    conf = (0.9 + rng.normal(0, 0.03, n)).clip(0.5, 0.98)
    p = np.zeros((n, 3)) + ((1 - conf) / 2)[:, None]
    p[np.arange(n), true] = conf
    c2 = (0.25 + rng.normal(0, 0.04, n)).clip(0.05, 0.5)
    p[true == 2] = np.stack([0.9 - c2, np.full(n, 0.1), c2], 1)[true == 2]
    return labels, p, flip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_keeps_an_unsure_class(seed):
    from noisylabel.detect import clean_probability

    labels, p, flip = _unsure_class(seed=seed)
    unsure = labels == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = clean_probability(labels, p, signal="cosine")
        cal = clean_probability(labels, p, signal="calibrated")
    # raw cosine: class 2 is flagged whole, right labels and wrong ones alike
    assert (raw[unsure & ~flip] < 0.5).all()
    # calibrated: its right labels are kept, its wrong ones and the others' still flagged
    assert (cal[unsure & ~flip] >= 0.5).mean() > 0.9
    assert (cal[flip] < 0.5).mean() > 0.95
    assert (cal[~unsure & ~flip] >= 0.5).mean() > 0.95


def test_spread_ties_leaves_distinct_values_alone():
    values = np.random.default_rng(0).random(200)
    np.testing.assert_array_equal(spread_ties(values, np.zeros(200)), values)


def test_spread_ties_fills_the_half_gaps_in_order_and_keeps_the_groups_apart():
    rng = np.random.default_rng(1)
    atoms = np.array([0.0, 0.2, 0.4, 1.0])
    values = atoms[rng.integers(0, 4, 400)]
    order = rng.random(400)
    out = spread_ties(values, order)
    edges = [0.0, 0.1, 0.3, 0.7, 1.0]  # half-gaps; the ends mirror the inner one, clipped
    for g, atom in enumerate(atoms):
        members = values == atom
        assert edges[g] <= out[members].min() and out[members].max() <= edges[g + 1]
        # within a group, a lower order gives a lower value
        ranked = out[members][np.argsort(order[members])]
        assert np.all(np.diff(ranked) > 0)
        assert np.isclose(out[members].mean(), (edges[g] + edges[g + 1]) / 2)


def test_spread_ties_keeps_a_group_it_cannot_split_as_one_atom():
    # a fully grown tree's one-hot probabilities: every tie-breaker equal within a group
    out = spread_ties(np.array([0.0, 0.0, 1.0, 1.0, 1.0]), np.zeros(5))
    np.testing.assert_allclose(out, [0.25, 0.25, 0.75, 0.75, 0.75])


@pytest.mark.parametrize(("values", "order", "match"), [
    ([0.1, 0.2], [0.0], r"order must have the shape of values \(2,\), got \(1,\)"),
    ([[0.1, 0.2]], [[0.0, 1.0]], r"values must be 1-d \(N,\), got shape \(1, 2\)"),
    ([0.1, float("nan"), 0.3], [0.0, 0.0, 0.0], r"values\[1\] = nan is not finite"),
    ([0.1, 1.5], [0.0, 0.0], r"values\[1\] = 1.5 is outside \[0, 1\]"),
])
def test_spread_ties_names_bad_input(values, order, match):
    with pytest.raises(ValueError, match=match):
        spread_ties(np.array(values), np.array(order))
