from __future__ import annotations

import numpy as np
import pytest
import torch

from noisylabel.detect import clean_probability, find_noisy_labels, rank_noisy_labels
from noisylabel.mixture import MixtureNotSeparatedWarning
from noisylabel.signals import cosine_similarity


def noisy_problem(n=3000, k=5, rate=0.3, seed=0):
    """Predictions that follow the true class; 30% of the given labels flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    flip = rng.random(n) < rate
    labels = np.where(flip, (true + rng.integers(1, k, n)) % k, true)
    return labels, p, flip


@pytest.mark.parametrize("signal", ["cosine", "loss"])
@pytest.mark.parametrize("per_class", [False, True])
def test_detects_flipped_labels(signal, per_class):
    labels, p, flip = noisy_problem()
    w = clean_probability(labels, p, signal=signal, per_class=per_class)
    assert w.shape == labels.shape and np.all((w >= 0) & (w <= 1))
    assert w[~flip].mean() > 0.8
    assert w[flip].mean() < 0.2
    mask = find_noisy_labels(labels, p, signal=signal)
    assert mask.dtype == bool
    assert (mask == flip).mean() > 0.9


def test_torch_in_torch_out():
    labels, p, _ = noisy_problem()
    w_np = clean_probability(labels, p)
    w_t = clean_probability(torch.from_numpy(labels), torch.from_numpy(p))
    assert isinstance(w_t, torch.Tensor)
    np.testing.assert_allclose(w_t.numpy(), w_np, atol=1e-8)
    w_t = clean_probability(torch.from_numpy(labels), torch.from_numpy(p), per_class=True)
    np.testing.assert_allclose(w_t.numpy(), clean_probability(labels, p, per_class=True), atol=1e-8)


def test_unseparated_fallback_is_ones():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3) * 50, 500)  # every prediction about uniform
    labels = rng.integers(0, 3, 500)
    with pytest.warns(MixtureNotSeparatedWarning):
        w = clean_probability(labels, p)
    np.testing.assert_array_equal(w, 1.0)


def test_per_class_small_class_uses_global_fit():
    labels, p, _ = noisy_problem()
    labels = labels.copy()
    labels[:10] = 4
    labels[labels == 4] = 3
    labels[:10] = 4  # class 4 has 10 samples
    with pytest.warns(MixtureNotSeparatedWarning, match=r"classes \[4\]"):
        w = clean_probability(labels, p, per_class=True)
    np.testing.assert_allclose(w[:10], clean_probability(labels, p)[:10])


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"labels\[1\] = 9"):
        clean_probability([0, 9], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="length mismatch"):
        clean_probability([0], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="row 0"):
        clean_probability([0, 1], [[2.0, 1.0], [0.5, 0.5]])


def test_auto_flags_only_where_the_model_disagrees_and_w_is_low():
    labels, p, flip = noisy_problem()
    w = clean_probability(labels, p)
    auto = find_noisy_labels(labels, p)
    np.testing.assert_array_equal(auto, (p.argmax(1) != labels) & (w < 0.5))
    fixed = find_noisy_labels(labels, p, threshold=0.5)
    np.testing.assert_array_equal(fixed, w < 0.5)
    # the model's agreement removes false positives of w < 0.5 and hardly any true ones
    precision = lambda m: flip[m].mean()  # noqa: E731
    assert precision(auto) >= precision(fixed)
    assert flip[auto].sum() >= 0.97 * flip[fixed].sum()


def test_auto_without_a_separated_mixture_flags_every_disagreement():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3) * 50, 500)
    labels = rng.integers(0, 3, 500)
    with pytest.warns(MixtureNotSeparatedWarning):
        flagged = find_noisy_labels(labels, p)
    np.testing.assert_array_equal(flagged, p.argmax(1) != labels)


def test_ranked_indices_are_the_flagged_ones_worst_first():
    labels, p, _ = noisy_problem()
    mask = find_noisy_labels(labels, p)
    ranked = find_noisy_labels(labels, p, return_indices_ranked_by="clean_probability")
    assert sorted(ranked.tolist()) == np.flatnonzero(mask).tolist()
    w, s = clean_probability(labels, p), cosine_similarity(labels, p)
    key = list(zip(w[ranked], s[ranked], strict=True))
    assert key == sorted(key)  # w ascending, ties by the signal (low cosine = worse)
    by_conf = find_noisy_labels(labels, p, return_indices_ranked_by="self_confidence")
    p_y = p[by_conf, labels[by_conf]]
    assert np.all(np.diff(p_y) >= 0) and set(by_conf) == set(ranked)
    order = rank_noisy_labels(labels, p)
    assert sorted(order.tolist()) == list(range(labels.size))
    np.testing.assert_array_equal(order[np.isin(order, ranked)], ranked)


def test_ranked_indices_follow_a_tensor_input():
    labels, p, _ = noisy_problem(n=600)
    ranked = find_noisy_labels(torch.from_numpy(labels), torch.from_numpy(p),
                               return_indices_ranked_by="clean_probability")
    assert isinstance(ranked, torch.Tensor)
    np.testing.assert_array_equal(
        ranked.numpy(),
        find_noisy_labels(labels, p, return_indices_ranked_by="clean_probability"),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threshold": "half"}, ValueError, "threshold must be 'auto' or a number.*'half'"),
        ({"threshold": 1.5}, ValueError, r"got 1\.5"),
        ({"threshold": None}, TypeError, "got None"),
        ({"return_indices_ranked_by": "loss"}, ValueError, "return_indices_ranked_by.*'loss'"),
    ],
)
def test_bad_flagging_arguments_name_the_value(kwargs, error, match):
    labels, p, _ = noisy_problem(n=200)
    with pytest.raises(error, match=match):
        find_noisy_labels(labels, p, **kwargs)


def test_one_mixture_fit_per_call(monkeypatch):
    from noisylabel.mixture import BetaMixture

    calls = []
    original = BetaMixture.fit
    monkeypatch.setattr(BetaMixture, "fit", lambda self, x: calls.append(1) or original(self, x))
    labels, p, _ = noisy_problem()
    find_noisy_labels(labels, p, return_indices_ranked_by="clean_probability")
    assert len(calls) == 1
    calls.clear()
    clean_probability(labels, p, per_class=True)
    assert len(calls) == 1 + 5  # the global fit and one per class, nothing twice


def pair_problem(n=3000, k=5, rate=0.25, hard=0.1, seed=0):
    """Class-to-class noise ``c -> c+1`` on 25% of the labels, and 10% hard clean samples.

    Predictions follow the true class; a hard clean sample also has a strong random other
    class, so on the signal alone it looks like a flipped label.
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    flip = rng.random(n) < rate
    labels = np.where(flip, (true + 1) % k, true)
    hard_rows = np.flatnonzero(~flip & (rng.random(n) < hard))
    logits[hard_rows, (true[hard_rows] + rng.integers(1, k, hard_rows.size)) % k] += 4.0
    p = np.exp(logits)
    return labels, p / p.sum(1, keepdims=True), flip


@pytest.mark.parametrize("seed", [0, 1])
def test_pair_prior_finds_the_confused_pairs_and_spares_hard_clean_samples(seed):
    from noisylabel.pipeline import detect

    labels, p, flip = pair_problem(seed=seed)
    det = detect(labels, p, pair_prior=True)
    k = p.shape[1]
    flipped_pairs = np.zeros((k, k), dtype=bool)
    flipped_pairs[(np.arange(k) + 1) % k, np.arange(k)] = True  # given c+1, runner-up c
    off_diagonal = ~np.eye(k, dtype=bool)
    assert det.pair_prior.shape == (k, k)
    assert det.pair_prior[flipped_pairs].max() < 0.55
    assert det.pair_prior[off_diagonal & ~flipped_pairs].min() > 0.8
    on = find_noisy_labels(labels, p)  # pair_prior=True is the default
    off = find_noisy_labels(labels, p, pair_prior=False)
    assert (on & ~flip).sum() < (off & ~flip).sum()  # fewer hard clean samples flagged
    assert (on & flip).sum() >= (off & flip).sum() - 5  # about the same flips found
    f1 = [2 * (m & flip).sum() / (m.sum() + flip.sum()) for m in (on, off)]
    assert f1[0] > f1[1]


def test_pair_prior_stays_near_the_global_weight_under_symmetric_noise():
    from noisylabel.pipeline import detect

    labels, p, flip = noisy_problem()
    det = detect(labels, p, pair_prior=True)
    pi = det.mixture.weights_[det.mixture.clean_component_]
    off_diagonal = ~np.eye(p.shape[1], dtype=bool)
    assert np.abs(det.pair_prior[off_diagonal] - pi).max() < 0.15
    on, off = find_noisy_labels(labels, p), find_noisy_labels(labels, p, pair_prior=False)
    assert (on != off).mean() < 0.01


def test_pair_prior_is_none_when_off_or_unseparated_and_follows_tensors():
    from noisylabel.pipeline import detect

    labels, p, _ = pair_problem()
    assert detect(labels, p).pair_prior is None  # the pipeline's own default is off
    rng = np.random.default_rng(0)
    flat = rng.dirichlet(np.ones(3) * 50, 500)
    det = detect(rng.integers(0, 3, 500), flat, pair_prior=True)
    assert det.pair_prior is None
    np.testing.assert_array_equal(det.clean_probability, 1.0)
    w_t = clean_probability(torch.from_numpy(labels), torch.from_numpy(p))
    assert isinstance(w_t, torch.Tensor)
    np.testing.assert_allclose(w_t.numpy(), clean_probability(labels, p), atol=1e-8)
    order = rank_noisy_labels(labels, p)
    np.testing.assert_array_equal(order, rank_noisy_labels(labels, p, pair_prior=True))
    assert not np.array_equal(order, rank_noisy_labels(labels, p, pair_prior=False))


def vote_problem(n=3000, k=5, rate=0.25, votes=5, confusion=0.2, seed=0):
    """k-NN-like probabilities: each sample's are the shares of ``votes`` given labels of random
    samples of its true class (of a random class with probability ``confusion``), so they take
    only the values ``0, 1/votes, ..., 1``; ``c -> c+1`` noise on 25% of the labels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    flip = rng.random(n) < rate
    labels = np.where(flip, (true + 1) % k, true)
    source = np.where(rng.random((n, votes)) < confusion, rng.integers(0, k, (n, votes)),
                      true[:, None])
    members = [np.flatnonzero(true == c) for c in range(k)]
    picked = np.array([[labels[rng.choice(members[c])] for c in row] for row in source])
    p = np.stack([(picked == c).mean(axis=1) for c in range(k)], axis=1)
    return labels, p, flip


def _f1(flagged, flip):
    return 2 * (flagged & flip).sum() / (flagged.sum() + flip.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_spread_ties_finds_the_flips_among_few_valued_probabilities(seed):
    from noisylabel.pipeline import detect

    labels, p, flip = vote_problem(seed=seed)
    assert np.unique(p).size == 6
    raw = find_noisy_labels(labels, p, spread_ties=False)
    spread = find_noisy_labels(labels, p)  # spread_ties=True is the default
    # on the raw atoms the noisy component sits on p_{i,y_i} = 0 alone: most flips are missed
    assert raw.sum() < 0.5 * flip.sum()
    assert _f1(spread, flip) > 0.8 and _f1(spread, flip) > _f1(raw, flip) + 0.3
    # the pipeline's own default (NoiseModel's path) leaves the signal as it is
    np.testing.assert_array_equal(detect(labels, p).signal, cosine_similarity(labels, p))


def test_spread_ties_changes_nothing_on_continuous_probabilities():
    labels, p, _ = noisy_problem()
    np.testing.assert_array_equal(clean_probability(labels, p),
                                  clean_probability(labels, p, spread_ties=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_caps_the_flags_of_pair_rows_by_the_confident_joint(seed):
    labels, p, flip = pair_problem(seed=seed)
    uncapped = (p.argmax(axis=1) != labels) & (clean_probability(labels, p) < 0.5)
    capped = find_noisy_labels(labels, p)
    assert not (capped & ~uncapped).any()  # the cap only removes flags
    assert (capped & ~flip).sum() < (uncapped & ~flip).sum()  # hard clean samples spared
    assert (capped & flip).sum() >= (uncapped & flip).sum() - 3
    assert _f1(capped, flip) > _f1(uncapped, flip)


def test_auto_cap_leaves_symmetric_noise_alone():
    labels, p, _ = noisy_problem()
    uncapped = (p.argmax(axis=1) != labels) & (clean_probability(labels, p) < 0.5)
    np.testing.assert_array_equal(find_noisy_labels(labels, p), uncapped)
