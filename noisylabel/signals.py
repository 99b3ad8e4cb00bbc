"""Per-sample signals that separate clean from noisy labels (paper eq. 3).

A signal maps ``(labels, pred_probs)`` to one value in [0, 1] per sample; its
``clean_side`` says whether clean samples sit at the high end (cosine similarity) or the
low end (loss). [`noisylabel.mixture.BetaMixture`][noisylabel.mixture.BetaMixture] is fitted
on these values.
numpy in gives numpy out; a tensor in gives a tensor on the same device out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs, check_unit_interval

_TINY = 1e-12


def _checked(labels: Any, pred_probs: Any, validate: bool) -> Any:
    """``pred_probs`` checked against ``labels`` (or only made an array when not validating)."""
    if validate:
        return check_pred_probs(pred_probs, labels)
    return pred_probs if is_tensor(pred_probs) else np.asarray(pred_probs, dtype=np.float64)


def _label_prob(labels: Any, pred_probs: Any) -> Any:
    """p_{i, y_i} for every sample."""
    if is_tensor(pred_probs):
        import torch

        labels = torch.as_tensor(labels, device=pred_probs.device).long()
        return pred_probs.gather(1, labels[:, None])[:, 0]
    labels = np.asarray(labels, dtype=np.int64)
    return np.take_along_axis(pred_probs, labels[:, None], axis=1)[:, 0]


def cosine_similarity(labels: Any, pred_probs: Any, *, validate: bool = True) -> Any:
    """Cosine similarity between each prediction and the one-hot of its label.

    ``S_i = cos(p_i, onehot(y_i)) = p_{i,y_i} / ||p_i||_2``, in (0, 1]; a uniform
    prediction over C classes gives ``1 / sqrt(C)``. Clean samples have high S.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities (rows sum to 1).
    validate : bool
        Check the inputs with ``noisylabel._validation.check_pred_probs``.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N,)
        S_i, same array type (and device) as ``pred_probs``.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import cosine_similarity
    >>> pred_probs = np.array([[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]])
    >>> print(cosine_similarity(np.array([0, 0, 0]), pred_probs).round(3))
    [0.985 0.577 0.123]

    The uniform row gives ``1 / sqrt(3) = 0.577``.
    """
    pred_probs = _checked(labels, pred_probs, validate)
    p_y = _label_prob(labels, pred_probs)
    if is_tensor(pred_probs):
        norm = pred_probs.norm(dim=1)
    else:
        norm = np.sqrt(np.einsum("ij,ij->i", pred_probs, pred_probs))
    if is_tensor(norm):
        return p_y / norm.clip(min=_TINY)
    return p_y / np.maximum(norm, _TINY)


def normalized_loss(labels: Any, pred_probs: Any, *, validate: bool = True) -> Any:
    """Per-sample cross-entropy, min-max normalised into [0, 1].

    ``l_i = -log max(p_{i,y_i}, 1e-12)``, ``L_i = (l_i - min_j l_j) / (max_j l_j - min_j l_j)``
    (all zeros when every loss is equal). Clean samples have low L. The normalisation
    uses the batch passed in, so compute it over the whole training set at once.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities (rows sum to 1).
    validate : bool
        Check the inputs with ``noisylabel._validation.check_pred_probs``.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N,)
        L_i in [0, 1], same array type (and device) as ``pred_probs``.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import normalized_loss
    >>> pred_probs = np.array([[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]])
    >>> print(normalized_loss(np.array([0, 0, 0]), pred_probs).round(3))
    [0.    0.421 1.   ]
    """
    pred_probs = _checked(labels, pred_probs, validate)
    p_y = _label_prob(labels, pred_probs)
    loss = -p_y.clip(min=_TINY).log() if is_tensor(p_y) else -np.log(np.maximum(p_y, _TINY))
    lo, hi = loss.min(), loss.max()
    span = hi - lo
    if float(span) <= 0:
        return loss * 0
    return (loss - lo) / span


def bounded_loss(labels: Any, pred_probs: Any, *, validate: bool = True) -> Any:
    """Per-sample cross-entropy mapped into [0, 1) by ``1 - exp(-l)``.

    ``l_i = -log p_{i,y_i}``, ``L_i = 1 - exp(-l_i) = 1 - p_{i,y_i}``. Clean samples have low
    L. Unlike [`normalized_loss`][noisylabel.signals.normalized_loss] it does not depend on
    the other samples passed, and it does not let a few huge losses squeeze the rest toward
    0: at 40% symmetric noise on digits the Beta mixture separates on it in 5 of 5 seeds
    (AUC 96.5-97.2), where on the min-max normalised loss it falls back to w = 1 in 5 of 5
    (`benchmarks/README.md`, "Noisy-label detection"). This is the ``"loss"`` signal.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities (rows sum to 1).
    validate : bool
        Check the inputs with ``check_pred_probs``.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N,)
        L_i in [0, 1], same array type (and device) as ``pred_probs``.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import bounded_loss
    >>> pred_probs = np.array([[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]])
    >>> print(bounded_loss(np.array([0, 0, 0]), pred_probs).round(3))
    [0.2   0.667 0.9  ]
    """
    pred_probs = _checked(labels, pred_probs, validate)
    return 1.0 - _label_prob(labels, pred_probs)


def class_thresholds(labels: Any, pred_probs: Any, *, validate: bool = True) -> Any:
    """Each class's average self-confidence: ``t_j = mean_{i: y_i = j} p_{i,j}``.

    The per-class thresholds of confident learning (Northcutt et al., 2021). A class the model
    is still unsure of has a low ``t_j`` whether its labels are right or wrong. A class without
    labelled samples gets the mean threshold of the others.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities (rows sum to 1).
    validate : bool
        Check the inputs with ``check_pred_probs``.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (K,)
        ``t_j`` in (0, 1], same array type (and device) as ``pred_probs``.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel.signals import class_thresholds
    >>> pred_probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]])
    >>> print(class_thresholds(np.array([0, 0, 1]), pred_probs).round(3))
    [0.8 0.6]
    """
    pred_probs = _checked(labels, pred_probs, validate)
    k = pred_probs.shape[1]
    if is_tensor(pred_probs):
        import torch

        y = torch.as_tensor(labels, device=pred_probs.device).long()
        sums = torch.zeros(k, dtype=pred_probs.dtype, device=pred_probs.device)
        sums.index_add_(0, y, _label_prob(y, pred_probs))
        counts = torch.bincount(y, minlength=k).to(pred_probs.dtype)
    else:
        y = np.asarray(labels, dtype=np.int64)
        sums = np.bincount(y, weights=_label_prob(y, pred_probs), minlength=k)
        counts = np.bincount(y, minlength=k).astype(np.float64)
    present = counts > 0
    t = sums / counts.clip(min=1)
    t[~present] = t[present].mean()
    return t.clip(min=_TINY)


def calibrated_cosine(labels: Any, pred_probs: Any, *, validate: bool = True) -> Any:
    """Cosine similarity to the label after dividing each class's probability by its threshold.

    ``p~_{i,j} = (p_{i,j} / t_j) / sum_k (p_{i,k} / t_k)`` with ``t_j`` the class's average
    self-confidence ([`class_thresholds`][noisylabel.signals.class_thresholds]), then
    ``S_i = cos(p~_i, onehot(y_i))``. On the raw cosine a class the model predicts with low
    confidence sits low as a whole, right labels and wrong ones alike, and a mixture fitted to
    all samples flags the class whole; dividing by ``t_j`` puts every class's clean labels on a
    common scale (docs/method.md, "When w flags whole classes"). Computed over the whole
    training set at once (the thresholds depend on every sample).

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities (rows sum to 1).
    validate : bool
        Check the inputs with ``check_pred_probs``.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N,)
        S_i in (0, 1], same array type (and device) as ``pred_probs``.

    Examples
    --------
    A class predicted at 0.4 on its own labels scores like a confident one:

    >>> import numpy as np
    >>> from noisylabel.signals import calibrated_cosine, cosine_similarity
    >>> y = np.array([0, 0, 1, 1])
    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> print(cosine_similarity(y, p).round(2), calibrated_cosine(y, p).round(2))
    [0.99 0.99 0.55 0.55] [0.97 0.97 0.83 0.83]
    """
    pred_probs = _checked(labels, pred_probs, validate)
    scaled = pred_probs / class_thresholds(labels, pred_probs, validate=False)[None, :]
    return cosine_similarity(labels, scaled / scaled.sum(1, keepdims=True)
                             if not is_tensor(scaled) else scaled / scaled.sum(1, keepdim=True),
                             validate=False)


def spread_ties(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Spread each group of tied values evenly over the half-gaps to its neighbouring values.

    A classifier whose probabilities take few values (k-NN: multiples of ``1/k``; a small
    forest) gives a signal made of a few atoms, and a Beta mixture fitted to atoms puts one
    component on the largest one (``p_{i,y_i} = 0``) and calls everything else clean. With the
    distinct values ``v_1 < ... < v_G`` and ``h_g^- = (v_g - v_{g-1}) / 2``,
    ``h_g^+ = (v_{g+1} - v_g) / 2`` (at either end the inner half-gap mirrored, clipped to
    [0, 1]), the ``n_g`` members of group g, ranked ``r = 1 .. n_g`` by ``order`` ascending
    (members with equal ``order`` share their mean rank), get
    ``v_g - h_g^- + (h_g^- + h_g^+) (r - 1/2) / n_g``. A group that ``order`` cannot split
    stays one atom, moved to the middle of its interval (a fully grown tree's one-hot
    probabilities give two atoms, at 1/4 and 3/4); values that are not tied are returned
    unchanged, so a continuous signal is left as it is; the order of the groups is kept.

    Parameters
    ----------
    values : numpy.ndarray of shape (N,)
        Signal values in [0, 1].
    order : numpy.ndarray of shape (N,)
        Tie-breaker: within a group, a lower ``order`` gets a lower value.

    Returns
    -------
    numpy.ndarray of float64, shape (N,)

    Raises
    ------
    ValueError
        If the shapes differ, or a value is NaN or outside [0, 1] (its index named).

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel.signals import spread_ties
    >>> spread_ties(np.array([0.0, 0.0, 0.5, 1.0]), np.array([2.0, 1.0, 0.0, 0.0]))
    array([0.1875, 0.0625, 0.5   , 1.    ])
    """
    values, order = check_unit_interval(values, "values"), np.asarray(order)
    if order.shape != values.shape:
        raise ValueError(f"spread_ties: order must have the shape of values {values.shape}, "
                         f"got {order.shape}")
    distinct, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    out = values.copy()
    if counts.max(initial=1) == 1 or distinct.size == 1:
        return out
    mid = (distinct[:-1] + distinct[1:]) / 2
    lo = np.r_[max(0.0, 2 * distinct[0] - mid[0]), mid]
    hi = np.r_[mid, min(1.0, 2 * distinct[-1] - mid[-1])]
    for g in np.flatnonzero(counts > 1):
        members = np.flatnonzero(group == g)
        rank = rankdata(order[members])  # 1 .. n, ties averaged
        out[members] = lo[g] + (hi[g] - lo[g]) * (rank - 0.5) / members.size
    return out


@dataclass(frozen=True)
class Signal:
    """A named per-sample signal and the side of [0, 1] where clean samples lie.

    Attributes
    ----------
    name : str
        Registry key.
    fn : callable
        ``fn(labels, pred_probs) -> values in [0, 1]`` of shape (N,).
    clean_side : {"high", "low"}
        "high": clean samples have high values (cosine); "low": low values (loss).

    The registry [`SIGNALS`][noisylabel.signals.SIGNALS] maps "cosine" to
    [`cosine_similarity`][noisylabel.signals.cosine_similarity], "loss" to
    [`bounded_loss`][noisylabel.signals.bounded_loss] and "calibrated" to
    [`calibrated_cosine`][noisylabel.signals.calibrated_cosine].
    """

    name: str
    fn: Callable[..., Any]
    clean_side: Literal["high", "low"]

    def __call__(self, labels: Any, pred_probs: Any, **kwargs: Any) -> Any:
        return self.fn(labels, pred_probs, **kwargs)


SIGNALS: dict[str, Signal] = {
    "cosine": Signal("cosine", cosine_similarity, "high"),
    "loss": Signal("loss", bounded_loss, "low"),
    "calibrated": Signal("calibrated", calibrated_cosine, "high"),
}


def get_signal(name: str | Signal) -> Signal:
    """Look up a signal in ``SIGNALS`` (a ``Signal`` is returned unchanged).

    Parameters
    ----------
    name : str or Signal
        "cosine", "loss" or "calibrated" (or a custom [`Signal`][noisylabel.signals.Signal]).

    Returns
    -------
    Signal

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    """
    if isinstance(name, Signal):
        return name
    try:
        return SIGNALS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown signal {name!r}; choose one of {sorted(SIGNALS)} or pass a Signal"
        ) from None
