"""Noise matrices: which classes get confused, and how often.

``T[i, j] = P(given label j | true label i)``, rows sum to 1; ``1 - T[i, i]`` is the noise rate
of true class i. [`estimate_noise_matrix`][noisylabel.noise_matrix.estimate_noise_matrix]
estimates it from (labels, out-of-sample pred_probs) alone;
[`empirical_noise_matrix`][noisylabel.noise_matrix.empirical_noise_matrix] counts it when the
true labels are known (for instance after [`pair_noise`][noisylabel.noise.pair_noise]), so the
two can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_labels, check_pred_probs
from noisylabel.detect import find_noisy_labels

__all__ = ["NoiseMatrix", "empirical_noise_matrix", "estimate_noise_matrix"]


@dataclass
class NoiseMatrix:
    """A noise matrix with the counts it came from.

    Attributes
    ----------
    joint : numpy.ndarray of float64, shape (K, K)
        ``joint[i, j]``: (expected) number of samples of true class i given label j.
    matrix : numpy.ndarray of float64, shape (K, K)
        ``T[i, j] = joint[i, j] / sum_j joint[i, j]`` (a row without samples is the identity's).
    class_rates : numpy.ndarray of float64, shape (K,)
        ``1 - T[i, i]``: the fraction of true class i whose label is wrong.
    rate : float
        ``1 - trace(joint) / sum(joint)``: the fraction of all labels that are wrong.
    """

    joint: np.ndarray
    matrix: np.ndarray
    class_rates: np.ndarray
    rate: float

    @classmethod
    def from_joint(cls, joint: np.ndarray) -> NoiseMatrix:
        """Normalise a (true, given) count matrix into a [`NoiseMatrix`][noisylabel.noise_matrix.NoiseMatrix]."""
        rows = joint.sum(axis=1, keepdims=True)
        eye = np.eye(joint.shape[0])
        matrix = np.where(rows > 0, joint / np.where(rows > 0, rows, 1.0), eye)
        total = float(joint.sum())
        rate = 1.0 - float(np.trace(joint)) / total if total > 0 else 0.0
        return cls(joint=joint, matrix=matrix, class_rates=1.0 - np.diag(matrix), rate=rate)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


def empirical_noise_matrix(true_labels: Any, labels: Any, n_classes: int) -> NoiseMatrix:
    """The realised noise matrix: ``joint[i, j] = #{n : true_n = i, given_n = j}``.

    Parameters
    ----------
    true_labels : array-like of int, shape (N,)
        The correct labels in ``0 .. n_classes-1``.
    labels : array-like of int, shape (N,)
        The given (noisy) labels.
    n_classes : int
        Number of classes K.

    Returns
    -------
    NoiseMatrix

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import empirical_noise_matrix, pair_noise
    >>> y = np.repeat(np.arange(3), 100)
    >>> nm = empirical_noise_matrix(y, pair_noise(y, 0.2, n_classes=3, seed=0), n_classes=3)
    >>> print(nm.matrix.round(2), nm.class_rates.round(2), round(nm.rate, 2))
    [[0.81 0.19 0.  ]
     [0.   0.78 0.22]
     [0.19 0.   0.81]] [0.19 0.22 0.19] 0.2
    """
    true = _numpy(check_labels(true_labels, n_classes)).astype(np.int64)
    given = _numpy(check_labels(labels, n_classes)).astype(np.int64)
    if true.shape != given.shape:
        raise ValueError(f"true_labels has shape {true.shape}, labels has shape {given.shape}")
    joint = np.zeros((n_classes, n_classes))
    np.add.at(joint, (true, given), 1.0)
    return NoiseMatrix.from_joint(joint)


def estimate_noise_matrix(
    labels: Any, pred_probs: Any, threshold: float | str = "auto", **kwargs: Any
) -> NoiseMatrix:
    """Estimate ``T[i, j] = P(given j | true i)`` from labels and out-of-sample probabilities.

    With ``f_n`` the flag of [`find_noisy_labels`][noisylabel.detect.find_noisy_labels]
    (1 = label probably wrong) and ``q_n`` the prediction with the given class removed,
    ``q_ni = p_ni / sum_{k != y_n} p_nk`` for ``i != y_n`` (uniform over the other classes
    when that sum is 0), a sample with given label ``j`` adds ``1 - f_n`` to ``joint[j, j]``
    and ``f_n q_ni`` to ``joint[i, j]``: an unflagged label counts as right, a flagged one is
    spread over the classes the model prefers instead. The spread biases the largest confusions
    low (to about three quarters of their size under pair noise on digits, see the label-issues
    guide); `benchmarks/README.md`, "Noisy-label detection", compares the error of T with
    cleanlab's.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    threshold : "auto" or float
        Passed to [`find_noisy_labels`][noisylabel.detect.find_noisy_labels].
    **kwargs
        Passed to [`find_noisy_labels`][noisylabel.detect.find_noisy_labels] (``signal``,
        ``per_class``, mixture arguments).

    Returns
    -------
    NoiseMatrix
        ``matrix``, ``class_rates`` (per true class) and the overall ``rate``.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import estimate_noise_matrix
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=600)
    >>> pred_probs = np.full((600, 3), 0.1)
    >>> pred_probs[np.arange(600), labels] = 0.8
    >>> flipped = rng.random(600) < 0.2
    >>> pred_probs[flipped] = np.roll(pred_probs[flipped], 1, axis=1)
    >>> nm = estimate_noise_matrix(labels, pred_probs)
    >>> print(round(nm.rate, 3), round(float(flipped.mean()), 3))
    0.195 0.195
    """
    pred_probs = _numpy(check_pred_probs(pred_probs, labels)).astype(np.float64)
    labels = _numpy(labels).astype(np.int64)
    flagged = _numpy(find_noisy_labels(labels, pred_probs, threshold=threshold, **kwargs))
    n, k = pred_probs.shape
    rows = np.arange(n)
    other = pred_probs.copy()
    other[rows, labels] = 0.0
    total = other.sum(axis=1, keepdims=True)
    uniform = np.full((n, k), 1.0 / (k - 1))
    uniform[rows, labels] = 0.0
    other = np.where(total > 0, other / np.where(total > 0, total, 1.0), uniform)
    f = flagged.astype(np.float64)
    joint = np.zeros((k, k))
    np.add.at(joint.T, labels, f[:, None] * other)  # joint[:, y_n] += f_n q_n
    np.add.at(joint, (labels, labels), 1.0 - f)
    return NoiseMatrix.from_joint(joint)
