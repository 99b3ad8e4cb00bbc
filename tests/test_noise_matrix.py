"""Tests for noisylabel.noise_matrix and the pair / instance-dependent noise generators."""

from __future__ import annotations

import numpy as np
import pytest

from noisylabel import (
    empirical_noise_matrix,
    estimate_noise_matrix,
    instance_noise,
    pair_noise,
    symmetric_noise,
)
from noisylabel.noise import symmetric_matrix


def _labels(n=3000, k=5, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


def _confident_probs(true, k, seed=0, strength=3.0):
    """Predictions that follow the true class (as a good model's would)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (true.size, k))
    logits[np.arange(true.size), true] += strength
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def test_pair_noise_flips_exactly_to_the_mapped_class() -> None:
    y = _labels()
    noisy = pair_noise(y, 0.3, n_classes=5, seed=1)
    flipped = noisy != y
    assert flipped.sum() == round(0.3 * y.size)
    np.testing.assert_array_equal(noisy[flipped], (y[flipped] + 1) % 5)
    nm = empirical_noise_matrix(y, noisy, 5)
    assert nm.rate == pytest.approx(0.3)
    off = nm.matrix[np.arange(5), (np.arange(5) + 1) % 5]
    np.testing.assert_allclose(off, 0.3, atol=0.05)
    np.testing.assert_allclose(nm.matrix.sum(1), 1.0)


def test_pair_noise_with_a_dict_leaves_unmapped_classes_alone() -> None:
    y = _labels()
    noisy = pair_noise(y, 0.1, n_classes=5, class_map={0: 3, 1: 4}, seed=0)
    changed = noisy != y
    assert set(y[changed]) <= {0, 1}
    assert set(noisy[changed & (y == 0)]) == {3}
    np.testing.assert_array_equal(noisy, pair_noise(y, 0.1, 5, class_map={0: 3, 1: 4}, seed=0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rate": 1.5}, ValueError, r"rate=1\.5"),
        ({"rate": "0.2"}, TypeError, "rate must be a number"),
        ({"rate": 0.2, "class_map": [1, 2, 0]}, ValueError, r"class_map: expected shape \(5,\)"),
        ({"rate": 0.2, "class_map": {0: 7}}, ValueError, r"class_map\[0\] = 7"),
        ({"rate": 0.9, "class_map": {0: 1}}, ValueError, "asks for"),
    ],
)
def test_pair_noise_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        pair_noise(_labels(), n_classes=5, **kwargs)


def test_instance_noise_flips_confusing_samples_to_their_confusing_class() -> None:
    y = _labels(4000)
    p = _confident_probs(y, 5, strength=2.0)
    noisy = instance_noise(y, 0.25, p, seed=0)
    flipped = noisy != y
    assert flipped.sum() == 1000
    confusion = 1 - p[np.arange(y.size), y]
    # flipped samples are the ones the model found confusing ...
    assert confusion[flipped].mean() > confusion[~flipped].mean() + 0.1
    # ... and go to a class the model gave more than the average other-class probability
    p_new = p[flipped, noisy[flipped]]
    mean_other = (1 - p[flipped, y[flipped]]) / 4
    assert (p_new > mean_other).mean() > 0.6
    np.testing.assert_array_equal(noisy, instance_noise(y, 0.25, p, seed=0))


def test_instance_noise_checks_its_probabilities() -> None:
    with pytest.raises(ValueError, match="row 0"):
        instance_noise([0, 1], 0.5, np.array([[0.9, 0.9], [0.5, 0.5]]))


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_estimate_recovers_a_known_matrix(kind) -> None:
    true = _labels(6000)
    noisy = (symmetric_noise(true, 0.2, 5, seed=0) if kind == "symmetric"
             else pair_noise(true, 0.2, 5, seed=0))
    p = _confident_probs(true, 5)  # follows the true class: the model disagrees with flips
    est = estimate_noise_matrix(noisy, p)
    real = empirical_noise_matrix(true, noisy, 5)
    # flagged labels are spread over the model's other classes, so the true confusion gets
    # most but not all of their mass (here 0.15 of the real 0.20 for pair noise)
    assert np.abs(est.matrix - real.matrix).mean() < 0.03
    assert np.abs(np.diag(est.matrix) - np.diag(real.matrix)).max() < 0.03
    assert est.rate == pytest.approx(real.rate, abs=0.02)
    if kind == "pair":
        pairs = (np.arange(5), (np.arange(5) + 1) % 5)
        np.testing.assert_allclose(est.matrix[pairs], real.matrix[pairs], atol=0.07)
        assert (est.matrix[pairs] > 0.1).all()
    np.testing.assert_allclose(est.class_rates, 1 - np.diag(est.matrix))
    if kind == "symmetric":
        assert np.abs(real.matrix - symmetric_matrix(5, 0.2)).mean() < 0.01


def test_estimate_on_clean_labels_is_near_identity() -> None:
    true = _labels(3000)
    p = _confident_probs(true, 5)
    est = estimate_noise_matrix(true, p)
    # what is left is the model's own errors (about 5% here), flagged as no mixture separates
    assert est.rate <= (p.argmax(1) != true).mean() + 1e-12
    assert est.rate < 0.06
    assert np.abs(est.matrix - np.eye(5)).max() < 0.07


def test_empirical_matrix_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        empirical_noise_matrix([0, 1, 2], [0, 1], 3)
    with pytest.raises(ValueError, match=r"labels\[1\] = 5"):
        empirical_noise_matrix([0, 1], [0, 5], 3)
