"""Label-distribution correction (paper eq. 9; docs/method.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs

__all__ = ["correct_labels"]


def correct_labels(
    labels: Any,
    pred_probs: Any,
    clean_prob: Any,
    class_distributions: Any,
    *,
    validate: bool = True,
) -> Any:
    """Soft targets mixing the label's class distribution and the model's own belief.

    ``q_i = w_i D[y_i] + (1 - w_i) p_i``: a sample that looks clean (w near 1) is
    supervised by its label's class distribution, one that looks noisy by ``p_i``. A
    convex combination of two probability vectors, so every row of q sums to 1 and lies
    between ``D[y_i]`` and ``p_i``.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given labels y.
    pred_probs : array-like or torch.Tensor of shape (N, C)
        p (the auxiliary branch's softmax, detached).
    clean_prob : array-like or torch.Tensor of shape (N,)
        w in [0, 1].
    class_distributions : array-like or torch.Tensor of shape (C, C)
        D, rows sum to 1.
    validate : bool
        Check probabilities and shapes (costs a device sync for tensors).

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N, C)
        q; a tensor ``pred_probs`` gives a tensor on its device.

    Examples
    --------
    Two samples labelled 0: the first looks clean (w = 1) and gets ``D[0]``, the second
    looks noisy (w = 0.25) and keeps mostly its own prediction:

    >>> import numpy as np
    >>> from noisylabel import correct_labels, smoothed_onehot
    >>> D = smoothed_onehot(3, t=0.7)
    >>> pred_probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    >>> q = correct_labels(np.array([0, 0]), pred_probs, np.array([1.0, 0.25]), D)
    >>> print(q.round(3))
    [[0.7   0.15  0.15 ]
     [0.25  0.638 0.113]]
    """
    if validate:
        pred_probs = check_pred_probs(pred_probs, labels)
    if is_tensor(pred_probs):
        import torch

        dev, dt = pred_probs.device, pred_probs.dtype
        labels = torch.as_tensor(labels, device=dev).long()
        w = torch.as_tensor(clean_prob, device=dev).to(dt)
        d = torch.as_tensor(class_distributions, device=dev).to(dt)
    else:
        pred_probs = np.asarray(pred_probs, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        w = np.asarray(clean_prob, dtype=np.float64)
        d = np.asarray(class_distributions, dtype=np.float64)
    n, c = pred_probs.shape
    if tuple(w.shape) != (n,):
        raise ValueError(f"clean_prob must have shape ({n},), got {tuple(w.shape)}")
    if tuple(d.shape) != (c, c):
        raise ValueError(f"class_distributions must have shape ({c}, {c}), got {tuple(d.shape)}")
    if validate:
        bad = (w < 0) | (w > 1) | (w != w)
        if bool(bad.any()):
            i = int(bad.nonzero()[0][0])
            raise ValueError(f"clean_prob[{i}] = {float(w[i])} is outside [0, 1]")
    w = w[:, None]
    return w * d[labels] + (1 - w) * pred_probs
