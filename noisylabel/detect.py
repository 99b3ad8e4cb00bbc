"""One call from (labels, out-of-sample predicted probabilities) to clean probabilities.

``clean_probability`` computes a per-sample signal (``noisylabel.signals``) and fits a
[`noisylabel.mixture.BetaMixture`][noisylabel.mixture.BetaMixture] to it;
``find_noisy_labels`` thresholds the result.
Inputs follow cleanlab's convention: ``labels`` int (N,), ``pred_probs`` (N, K) with rows
summing to 1, predicted out of sample (cross-validation or a held-out model).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs
from noisylabel.mixture import BetaMixture, MixtureNotSeparatedWarning
from noisylabel.signals import Signal, get_signal

__all__ = ["clean_probability", "find_noisy_labels"]


def clean_probability(
    labels: Any,
    pred_probs: Any,
    signal: str | Signal = "cosine",
    per_class: bool = False,
    monotone: bool = True,
    min_class_samples: int = 50,
    **mixture_kwargs: Any,
) -> Any:
    """Per-sample probability that the given label is correct.

    ``s_i = signal(y_i, p_i)`` (default the cosine similarity ``p_{i,y_i} / ||p_i||_2``), a
    two-component [`BetaMixture`][noisylabel.mixture.BetaMixture] is fitted to ``{s_i}`` and
    ``w_i = p(clean | s_i)`` is the posterior of the component on the signal's clean side.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given (possibly noisy) integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    signal : {"cosine", "loss"} or Signal
        Per-sample signal; its ``clean_side`` orients the mixture.
    per_class : bool
        Class-aware fitting ([a safeguard][safeguards]): fit one mixture per class on the
        samples labelled with it (classes with fewer than ``min_class_samples`` samples, or
        whose fit is not separated, use the global fit instead). False: one mixture over all
        samples.
    monotone : bool
        Make w monotone in the signal (see
        [`BetaMixture.clean_probability`][noisylabel.mixture.BetaMixture.clean_probability]).
    min_class_samples : int
        Minimum class size for its own mixture when ``per_class=True``.
    **mixture_kwargs
        Passed to [`BetaMixture`][noisylabel.mixture.BetaMixture] (``max_iter``, ``tol``, ...).

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N,)
        w in [0, 1]; a tensor in gives a tensor on the same device out.

    Notes
    -----
    Fallback: if the global mixture is not separated (``BetaMixture.separated_`` False,
    e.g. every sample looks alike), every w is 1 (no sample is down-weighted) and a
    [`MixtureNotSeparatedWarning`][noisylabel.mixture.MixtureNotSeparatedWarning] is emitted.

    Examples
    --------
    Confident predictions that agree with 80% of the labels and point elsewhere for the
    20% that were flipped:

    >>> import numpy as np
    >>> from noisylabel import clean_probability
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=500)
    >>> pred_probs = np.full((500, 3), 0.1)
    >>> pred_probs[np.arange(500), labels] = 0.8
    >>> flipped = rng.random(500) < 0.2
    >>> pred_probs[flipped] = np.roll(pred_probs[flipped], 1, axis=1)
    >>> pred_probs = 0.8 * pred_probs + 0.2 * rng.dirichlet(np.ones(3), size=500)
    >>> w = clean_probability(labels, pred_probs)
    >>> print(f"mean w: clean labels {w[~flipped].mean():.2f}, flipped {w[flipped].mean():.2f}")
    mean w: clean labels 1.00, flipped 0.00
    """
    sig = get_signal(signal)
    pred_probs = check_pred_probs(pred_probs, labels)
    if is_tensor(pred_probs):
        import torch

        labels = torch.as_tensor(labels, device=pred_probs.device).long()
    else:
        labels = np.asarray(labels, dtype=np.int64)
    s = sig(labels, pred_probs, validate=False)
    kwargs = {**mixture_kwargs, "clean_side": sig.clean_side, "monotone": monotone}
    w = BetaMixture(**kwargs).fit(s).clean_probability(s)
    if not per_class:
        return w
    fallback: list[int] = []
    n_classes = pred_probs.shape[1]
    for c in range(n_classes):  # a loop over classes, not samples
        mask = labels == c
        n_c = int(mask.sum())
        if n_c == 0:
            continue
        if n_c < min_class_samples:
            fallback.append(c)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MixtureNotSeparatedWarning)
            bmm = BetaMixture(**kwargs).fit(s[mask])
        if bmm.separated_:
            w[mask] = bmm.clean_probability(s[mask])
        else:
            fallback.append(c)
    if fallback:
        warnings.warn(
            f"clean_probability(per_class=True): classes {fallback} have fewer than "
            f"{min_class_samples} samples or an unseparated fit; they use the global fit",
            MixtureNotSeparatedWarning,
            stacklevel=2,
        )
    return w


def find_noisy_labels(
    labels: Any, pred_probs: Any, threshold: float = 0.5, **kwargs: Any
) -> Any:
    """Flag labels that are probably wrong: ``clean_probability(...) < threshold``.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given integer labels.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    threshold : float
        Samples with a clean probability below it are flagged.
    **kwargs
        Passed to [`clean_probability`][noisylabel.detect.clean_probability].

    Returns
    -------
    numpy.ndarray or torch.Tensor of bool, shape (N,)
        True = label probably wrong.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import find_noisy_labels
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=500)
    >>> pred_probs = np.full((500, 3), 0.1)
    >>> pred_probs[np.arange(500), labels] = 0.8
    >>> flipped = rng.random(500) < 0.2
    >>> pred_probs[flipped] = np.roll(pred_probs[flipped], 1, axis=1)
    >>> pred_probs = 0.8 * pred_probs + 0.2 * rng.dirichlet(np.ones(3), size=500)
    >>> issues = find_noisy_labels(labels, pred_probs)
    >>> print(issues.sum(), "flagged,", (issues & flipped).sum(), "of them flipped,",
    ...       flipped.sum(), "flipped in all")
    98 flagged, 98 of them flipped, 98 flipped in all
    """
    return clean_probability(labels, pred_probs, **kwargs) < threshold
