"""Class-distribution mining with a threshold (paper eq. 7-8; docs/method.md).

For each class c, ``m_c = mean_{i: y_i = c} p_i`` (the mean predicted distribution of the
samples labelled c). The miner accepts ``D[c] = m_c`` when the row passes its rule and
otherwise keeps the last accepted row; before any row of class c was accepted, ``D[c]`` is
the smoothed one-hot (``t`` on the diagonal, ``(1-t)/(C-1)`` elsewhere). Every row of D
sums to 1 (Ada-DF's fallback row sums to 1.1; that defect is not copied).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs

__all__ = ["ClassDistributionMiner", "class_mean_distributions", "smoothed_onehot"]


def class_mean_distributions(labels: Any, pred_probs: Any, n_classes: int) -> Any:
    """Mean predicted distribution of the samples of each class.

    ``M[c] = (1 / |{i: y_i = c}|) sum_{i: y_i = c} p_i``.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Integer labels in ``0 .. n_classes-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Predicted probabilities.
    n_classes : int
        Number of classes C (rows of the result).

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (C, K)
        Row c is the mean of ``p_i`` over the samples labelled c; NaN for a class with no
        sample. A tensor in gives a tensor on the same device out.
    """
    if is_tensor(pred_probs):
        import torch

        labels = torch.as_tensor(labels, device=pred_probs.device).long()
        sums = torch.zeros(n_classes, pred_probs.shape[1], dtype=pred_probs.dtype, device=pred_probs.device)
        sums.index_add_(0, labels, pred_probs)
        counts = torch.bincount(labels, minlength=n_classes)[:n_classes].to(pred_probs.dtype)
        return sums / counts[:, None]  # 0/0 -> NaN for empty classes
    p = np.asarray(pred_probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)[:n_classes].astype(np.float64)
    sums = np.stack(
        [np.bincount(y, weights=p[:, k], minlength=n_classes)[:n_classes] for k in range(p.shape[1])],
        axis=1,
    )  # a loop over classes, not samples
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def smoothed_onehot(n_classes: int, t: float) -> np.ndarray:
    """Smoothed one-hot rows: ``t`` on the diagonal, ``(1 - t) / (C - 1)`` elsewhere.

    Parameters
    ----------
    n_classes : int
        C >= 2.
    t : float
        Diagonal value in [0, 1].

    Returns
    -------
    numpy.ndarray of shape (C, C)
        Every row sums to 1.

    Examples
    --------
    >>> from noisylabel import smoothed_onehot
    >>> print(smoothed_onehot(3, t=0.7).round(2))
    [[0.7  0.15 0.15]
     [0.15 0.7  0.15]
     [0.15 0.15 0.7 ]]
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    out = np.full((n_classes, n_classes), (1.0 - t) / (n_classes - 1))
    np.fill_diagonal(out, t)
    return out


class ClassDistributionMiner:
    """Keep one label distribution per class, updated from each epoch's predictions.

    After ``update(labels, pred_probs)``, with ``m_c`` the class-mean prediction
    ([`class_mean_distributions`][noisylabel.distribution.class_mean_distributions]), row c
    is accepted when

    * ``rule="absolute"`` (paper): ``m_c[c] >= t``;
    * ``rule="relative"`` ([a safeguard][safeguards]):
      ``m_c[c] - max_{j != c} m_c[j] >= margin`` (the diagonal is the row's largest entry by
      ``margin``).

    An accepted row replaces ``D[c]`` (renormalised to sum exactly to 1); a rejected row or
    a class without samples keeps the last accepted ``D[c]``, initially the smoothed
    one-hot [`smoothed_onehot`][noisylabel.distribution.smoothed_onehot] ``(C, t)``.

    Parameters
    ----------
    n_classes : int
        Number of classes C.
    t : float
        Threshold of the absolute rule, and the diagonal of the initial smoothed one-hot.
    rule : {"absolute", "relative"}
        Acceptance rule.
    margin : float
        Margin of the relative rule.

    Attributes
    ----------
    distributions_ : numpy.ndarray of shape (C, C)
        Current D, rows sum to 1.
    accepted_ : numpy.ndarray of bool, shape (C,)
        Which rows the last update accepted (for logging).
    n_accepted_ : numpy.ndarray of int64, shape (C,)
        How many updates accepted each row.
    n_updates_ : int
        Number of updates so far.

    Examples
    --------
    Class 2's mean prediction puts only 0.4 on class 2 (below ``t = 0.7``), so its row keeps
    the smoothed one-hot:

    >>> import numpy as np
    >>> from noisylabel import ClassDistributionMiner
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> pred_probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1],
    ...                        [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.4, 0.2, 0.4]])
    >>> miner = ClassDistributionMiner(n_classes=3, t=0.7).update(labels, pred_probs)
    >>> print(miner.accepted_)
    [ True  True False]
    >>> print(miner.distributions_.round(3))
    [[0.85  0.075 0.075]
     [0.15  0.75  0.1  ]
     [0.15  0.15  0.7  ]]
    """

    def __init__(
        self,
        n_classes: int,
        t: float = 0.7,
        rule: Literal["absolute", "relative"] = "absolute",
        margin: float = 0.0,
    ) -> None:
        if rule not in ("absolute", "relative"):
            raise ValueError(f"rule must be 'absolute' or 'relative', got {rule!r}")
        self.n_classes = n_classes
        self.t = t
        self.rule = rule
        self.margin = margin
        self.distributions_ = smoothed_onehot(n_classes, t)
        self.accepted_ = np.zeros(n_classes, dtype=bool)
        self.n_accepted_ = np.zeros(n_classes, dtype=np.int64)
        self.n_updates_ = 0

    def accept(self, means: np.ndarray) -> np.ndarray:
        """Apply the acceptance rule to class-mean rows ``means`` (C, C); NaN rows fail."""
        diag = np.diagonal(means)
        if self.rule == "absolute":
            ok = diag >= self.t
        else:
            off = np.where(np.eye(self.n_classes, dtype=bool), -np.inf, means)
            ok = diag - off.max(axis=1) >= self.margin
        return ok & np.all(np.isfinite(means), axis=1)

    def update(self, labels: Any, pred_probs: Any, *, validate: bool = True) -> ClassDistributionMiner:
        """Mine the class distributions from one pass of predictions.

        Parameters
        ----------
        labels : array-like or torch.Tensor of shape (N,)
            Given labels.
        pred_probs : array-like or torch.Tensor of shape (N, C)
            Predicted probabilities (e.g. the auxiliary branch's softmax).
        validate : bool
            Check the inputs first.

        Returns
        -------
        ClassDistributionMiner
            self.
        """
        if validate:
            pred_probs = check_pred_probs(pred_probs, labels)
        if pred_probs.shape[1] != self.n_classes:
            raise ValueError(
                f"pred_probs has {pred_probs.shape[1]} columns, the miner has {self.n_classes} classes"
            )
        means = class_mean_distributions(labels, pred_probs, self.n_classes)
        if is_tensor(means):
            means = means.detach().cpu().double().numpy()  # (C, C): a few numbers
        ok = self.accept(means)
        rows = means[ok]
        self.distributions_[ok] = rows / rows.sum(axis=1, keepdims=True)
        self.accepted_ = ok
        self.n_accepted_ += ok
        self.n_updates_ += 1
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain state (numpy arrays and numbers) for checkpoints."""
        return {
            "distributions": self.distributions_.copy(),
            "accepted": self.accepted_.copy(),
            "n_accepted": self.n_accepted_.copy(),
            "n_updates": self.n_updates_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state written by ``state_dict`` (numpy arrays or tensors)."""
        d = np.asarray(_host(state["distributions"]), dtype=np.float64)
        if d.shape != (self.n_classes, self.n_classes):
            raise ValueError(
                f"state distributions have shape {d.shape}, expected "
                f"({self.n_classes}, {self.n_classes})"
            )
        self.distributions_ = d.copy()
        self.accepted_ = np.asarray(_host(state["accepted"]), dtype=bool).copy()
        self.n_accepted_ = np.asarray(_host(state["n_accepted"]), dtype=np.int64).copy()
        self.n_updates_ = int(state["n_updates"])


def _host(x: Any) -> Any:
    return x.detach().cpu().numpy() if is_tensor(x) else x
