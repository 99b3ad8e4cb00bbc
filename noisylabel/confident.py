"""Confident learning's count of label errors, class pair by class pair.

[`confident_joint`][noisylabel.confident.confident_joint] counts, for each given class,
the samples that the model confidently puts in each class (Northcutt et al., 2021); the
auto rule of [`find_noisy_labels`][noisylabel.detect.find_noisy_labels] uses it to size its
flags in the rows where the noise goes to one class (`docs/method.md`, "Class-to-class
noise").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noisylabel._validation import check_pred_probs
from noisylabel.signals import class_thresholds

__all__ = ["confident_joint"]


def confident_joint(labels: Any, pred_probs: Any) -> np.ndarray:
    """Given class against confidently predicted class, each row rescaled to its class size.

    With the per-class thresholds ``t_j = mean_{i: y_i = j} p_{i,j}``
    ([`class_thresholds`][noisylabel.signals.class_thresholds]), sample i is confidently of
    class ``c_i = argmax_{j: p_{i,j} >= t_j} p_{i,j}`` (not counted when no class passes its
    threshold); ``C~[a, b] = #{i: y_i = a, c_i = b}`` and
    ``C[a, b] = C~[a, b] n_a / sum_b C~[a, b]`` with ``n_a`` the number of samples labelled
    a. Off the diagonal, ``C[a, b]`` estimates how many labels a are really b.

    Parameters
    ----------
    labels : array-like of shape (N,)
        Given integer labels in ``0 .. K-1``.
    pred_probs : array-like of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.

    Returns
    -------
    numpy.ndarray of float64, shape (K, K)

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel.confident import confident_joint
    >>> pred_probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    >>> confident_joint(np.array([0, 0, 0, 1]), pred_probs)
    array([[2., 1.],
           [0., 1.]])
    """
    probs = np.asarray(check_pred_probs(pred_probs, labels), dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    above = probs >= class_thresholds(y, probs, validate=False)
    counted = above.any(axis=1)
    confident = np.where(above, probs, -1.0).argmax(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (y[counted], confident[counted]), 1.0)
    sizes = np.bincount(y, minlength=k)
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1.0) * sizes[:, None]
