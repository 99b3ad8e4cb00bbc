"""Labels from annotator votes: majority, plurality, soft targets and agreement.

Every function takes a vote-count matrix ``counts`` of shape (N, K): ``counts[i, k]`` is the
number of annotators who gave sample ``i`` class ``k`` (FER+ gives 10 votes per image). A
sample that gets no label under a rule (no majority, a tie, no votes at all) gets the label
``NO_LABEL`` (-1), so a caller keeps the samples with ``labels >= 0``.

The rules, in words (see ``docs/guides/votes.md`` for worked examples):

- ``majority`` (FER+'s rule, Barsoum et al. 2016): first drop every class that got exactly one
  vote (a single annotator's outlier); then the class holding *more than half* of the remaining
  votes wins, else ``NO_LABEL``.
- ``plurality``: the class with the most votes; a tie between two or more classes, or a row
  without votes, gives ``NO_LABEL`` (no class is preferred by its index).

>>> import numpy as np
>>> from noisylabel.annotators import majority_vote, plurality_vote, vote_agreement
>>> counts = np.array([[6, 3, 1], [4, 4, 2], [5, 1, 4], [0, 0, 0]])
>>> majority_vote(counts)
array([ 0, -1,  0, -1])
>>> plurality_vote(counts)
array([ 0, -1,  0, -1])
>>> vote_agreement(counts, majority_vote(counts)).round(2)
array([0.6, 0. , 0.5, 0. ])
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NO_LABEL", "VOTE_RULES", "check_vote_counts", "majority_vote", "plurality_vote",
           "soft_vote_targets", "vote_agreement", "vote_labels"]

NO_LABEL: int = -1
"""Label of a sample that a rule leaves without a class (no majority, a tie, no votes)."""

VOTE_RULES: tuple[str, ...] = ("majority", "plurality", "soft")
"""Names accepted by ``vote_labels``."""


def check_vote_counts(counts: Any) -> np.ndarray:
    """Validate a vote-count matrix and return it as float64 (N, K).

    Parameters
    ----------
    counts : array-like of shape (N, K)
        Non-negative, finite vote counts (integers or integer-valued floats).

    Returns
    -------
    numpy.ndarray of float64, shape (N, K)

    Raises
    ------
    TypeError
        Non-numeric input (strings, objects, complex numbers).
    ValueError
        Not two-dimensional, no columns, a negative, non-finite or fractional count; the message
        names the first bad row and value.
    """
    arr = np.asarray(counts)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"counts must hold integer vote counts, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"counts must have shape (N, K) with K >= 1, got {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"counts[{i}, {k}] = {float(arr[i, k])!r}: vote counts must be "
                         "non-negative integers")
    return arr


def majority_vote(counts: Any, drop_single: bool = True) -> np.ndarray:
    """FER+'s majority rule: ``argmax_k c'_ik`` if ``max_k c'_ik > 0.5 * sum_k c'_ik``, else -1,
    where ``c'_ik = 0`` if ``c_ik == 1`` (with ``drop_single``) and ``c_ik`` otherwise.

    Parameters
    ----------
    counts : array-like of shape (N, K)
        Vote counts.
    drop_single : bool
        Drop classes that got exactly one vote before counting (FER+'s outlier removal).

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        The majority class, or ``NO_LABEL`` where no class holds more than half of the
        (remaining) votes, including rows left without votes.
    """
    c = check_vote_counts(counts)
    if drop_single:
        c = np.where(c == 1, 0.0, c)
    top = c.argmax(axis=1)
    wins = c.max(axis=1) > 0.5 * c.sum(axis=1)  # False on all-zero rows (0 > 0)
    return np.where(wins, top, NO_LABEL).astype(np.int64)


def plurality_vote(counts: Any) -> np.ndarray:
    """The class with the most votes, ``argmax_k c_ik``; -1 on ties and rows without votes.

    Parameters
    ----------
    counts : array-like of shape (N, K)

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    c = check_vote_counts(counts)
    top = c.max(axis=1, keepdims=True)
    unique = ((c == top).sum(axis=1) == 1) & (top[:, 0] > 0)
    return np.where(unique, c.argmax(axis=1), NO_LABEL).astype(np.int64)


def soft_vote_targets(counts: Any, drop_single: bool = False) -> np.ndarray:
    """The vote distribution ``c_ik / sum_k c_ik`` as a soft target per sample.

    Parameters
    ----------
    counts : array-like of shape (N, K)
    drop_single : bool
        Drop single votes first (as ``majority_vote`` does).

    Returns
    -------
    numpy.ndarray of float64, shape (N, K)
        Rows sum to 1; a row without votes is all zeros (it has no target: leave it out).
    """
    c = check_vote_counts(counts)
    if drop_single:
        c = np.where(c == 1, 0.0, c)
    total = c.sum(axis=1, keepdims=True)
    return np.divide(c, total, out=np.zeros_like(c), where=total > 0)


def vote_agreement(counts: Any, labels: Any) -> np.ndarray:
    """Share of all votes on the chosen class: ``c_{i, y_i} / sum_k c_ik`` (0 where
    ``y_i = -1`` or the row has no votes). 1 means every annotator agreed.

    Parameters
    ----------
    counts : array-like of shape (N, K)
    labels : array-like of int, shape (N,)
        Chosen classes in ``0 .. K-1``, or ``NO_LABEL``.

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
    """
    c = check_vote_counts(counts)
    y = np.asarray(labels)
    if y.shape != (c.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({c.shape[0]},), got "
                         f"{y.dtype} {y.shape}")
    if ((y < NO_LABEL) | (y >= c.shape[1])).any():
        i = int(np.flatnonzero((y < NO_LABEL) | (y >= c.shape[1]))[0])
        raise ValueError(f"labels[{i}] = {y[i]}: must be in [0, {c.shape[1]}) or {NO_LABEL}")
    total = c.sum(axis=1)
    chosen = c[np.arange(len(y)), np.maximum(y, 0)]
    ok = (y >= 0) & (total > 0)
    return np.divide(chosen, total, out=np.zeros_like(total), where=ok)


def vote_labels(counts: Any, rule: str = "majority") -> np.ndarray:
    """Hard labels under a named rule: ``majority`` (``majority_vote``), ``plurality``
    (``plurality_vote``) or ``soft`` (the plurality class of the distribution that
    ``soft_vote_targets`` returns, for callers that need a hard label beside it).

    Parameters
    ----------
    counts : array-like of shape (N, K)
    rule : {"majority", "plurality", "soft"}

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        Labels, ``NO_LABEL`` where the rule gives none.
    """
    if rule == "majority":
        return majority_vote(counts)
    if rule in ("plurality", "soft"):
        return plurality_vote(counts)
    raise ValueError(f"rule={rule!r}: choose one of {VOTE_RULES}")
