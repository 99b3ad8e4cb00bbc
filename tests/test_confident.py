from __future__ import annotations

import numpy as np
import pytest

from noisylabel.confident import confident_joint


def test_counts_confident_classes_and_rescales_rows_to_the_class_sizes():
    labels = np.array([0, 0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9]])
    # t = (0.575, 0.8): sample 3 passes neither threshold and is not counted; sample 4 neither
    joint = confident_joint(labels, probs)
    np.testing.assert_allclose(joint, [[4 * 2 / 3, 4 / 3], [0.0, 2.0]])


def test_matches_a_loop_over_samples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    t = np.array([probs[labels == j, j].mean() for j in range(4)])
    raw = np.zeros((4, 4))
    for y, p in zip(labels, probs, strict=True):
        passing = np.flatnonzero(p >= t)
        if passing.size:
            raw[y, passing[p[passing].argmax()]] += 1
    expected = raw / raw.sum(1, keepdims=True) * np.bincount(labels)[:, None]
    np.testing.assert_allclose(confident_joint(labels, probs), expected)
    np.testing.assert_allclose(confident_joint(labels, probs).sum(1), np.bincount(labels))


def test_rejects_bad_probabilities_by_name():
    with pytest.raises(ValueError, match="pred_probs"):
        confident_joint(np.array([0, 1]), np.array([[0.5, 0.6], [0.5, 0.5]]))
