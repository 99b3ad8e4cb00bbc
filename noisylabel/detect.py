"""One call from (labels, out-of-sample predicted probabilities) to clean probabilities.

[`clean_probability`][noisylabel.detect.clean_probability] runs the shared pipeline
([`detect`][noisylabel.pipeline.detect]: a per-sample signal and a
[`BetaMixture`][noisylabel.mixture.BetaMixture] fitted to it);
[`find_noisy_labels`][noisylabel.detect.find_noisy_labels] turns the result into a flagged set
or a ranking. Inputs follow cleanlab's convention: ``labels`` int (N,), ``pred_probs`` (N, K)
with rows summing to 1, predicted out of sample (cross-validation or a held-out model).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs
from noisylabel.confident import confident_joint
from noisylabel.mixture import MixtureNotSeparatedWarning
from noisylabel.pipeline import MIN_CLASS_SAMPLES, Detection, detect, other_class_probs
from noisylabel.signals import Signal

__all__ = ["RANKINGS", "clean_probability", "find_noisy_labels", "flag_labels", "rank_noisy_labels"]

RANKINGS: tuple[str, ...] = ("clean_probability", "self_confidence")
"""Orders accepted by ``find_noisy_labels(return_indices_ranked_by=...)``."""

PAIR_ROW_SHARE = 0.75
"""A given class is a pair row when one other class holds at least this share of its
confident-joint errors (see ``find_noisy_labels``)."""

PAIR_ROW_COVER = 0.5
"""... and those errors number at least this fraction of the class's flags."""


def clean_probability(
    labels: Any,
    pred_probs: Any,
    signal: str | Signal = "cosine",
    per_class: bool = False,
    monotone: bool = True,
    min_class_samples: int = MIN_CLASS_SAMPLES,
    pair_prior: bool = True,
    spread_ties: bool = True,
    **mixture_kwargs: Any,
) -> Any:
    """Per-sample probability that the given label is correct.

    ``s_i = signal(y_i, p_i)`` (default the cosine similarity ``p_{i,y_i} / ||p_i||_2``), a
    two-component [`BetaMixture`][noisylabel.mixture.BetaMixture] is fitted to ``{s_i}`` and
    ``w_i = p(clean | s_i)`` is the posterior of the component on the signal's clean side,
    with (default ``pair_prior=True``) the mixture's clean weight replaced by a prior per pair
    (given label, runner-up class ``argmax_{k != y_i} p_ik``) estimated by EM:
    ``w_i = sigmoid(logit(pi_{y_i a_i}) + lr(s_i))`` (see [`detect`][noisylabel.pipeline.detect]).

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given (possibly noisy) integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    signal : {"cosine", "loss", "calibrated"} or Signal
        Per-sample signal; its ``clean_side`` orients the mixture.
    per_class : bool
        Fit one mixture per class on the samples labelled with it (classes with fewer than
        ``min_class_samples`` samples, or whose fit is not separated, use the global fit
        instead; `docs/method.md`, "The per-epoch noise model and its safeguards"). False: one
        mixture over all samples.
    monotone : bool
        Make w monotone in the signal (see
        [`BetaMixture.clean_probability`][noisylabel.mixture.BetaMixture.clean_probability]).
    min_class_samples : int
        Minimum class size for its own mixture when ``per_class=True``.
    pair_prior : bool
        True (default): the prior that a label is right depends on the pair (given label,
        runner-up class), so that class-to-class confusions are found (`docs/method.md`,
        "Class-to-class noise"). False: one global prior (the behaviour before 0.2; what
        [`NoiseModel`][noisylabel.noise_model.NoiseModel] uses).
    spread_ties : bool
        True (default): tied signal values are spread over the gaps to their neighbours
        before the fit ([`spread_ties`][noisylabel.signals.spread_ties]), so that a classifier
        with few distinct probabilities (k-NN) gets a usable mixture (`docs/method.md`,
        "Classifiers with few distinct probabilities"). A continuous signal is unchanged.
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
    det = detect(labels, pred_probs, signal=signal, per_class=per_class, monotone=monotone,
                 min_class_samples=min_class_samples, mixture_kwargs=mixture_kwargs,
                 pair_prior=pair_prior, spread_ties=spread_ties)
    _warn_unseparated(det, min_class_samples)
    return det.clean_probability


def _warn_unseparated(det: Detection, min_class_samples: int) -> None:
    """The warnings of an unseparated global fit and of per-class fallbacks, if any."""
    if not det.separated:
        m = det.mixture
        warnings.warn(
            f"clean_probability: the mixture is not separated (means {m.means_.round(3).tolist()}"
            f", weights {m.weights_.round(3).tolist()}, log-likelihood gain {m.ll_gain_:.4f}): "
            "the data look unimodal; samples without a separated class fit get w = 1",
            MixtureNotSeparatedWarning,
            stacklevel=3,
        )
    if det.per_class_fallback:
        warnings.warn(
            f"clean_probability(per_class=True): classes {det.per_class_fallback} have fewer than "
            f"{min_class_samples} samples or an unseparated fit; they use the global fit",
            MixtureNotSeparatedWarning,
            stacklevel=3,
        )


def find_noisy_labels(
    labels: Any,
    pred_probs: Any,
    threshold: float | str = "auto",
    return_indices_ranked_by: str | None = None,
    signal: str | Signal = "cosine",
    per_class: bool = False,
    min_class_samples: int = MIN_CLASS_SAMPLES,
    pair_prior: bool = True,
    spread_ties: bool = True,
    **mixture_kwargs: Any,
) -> Any:
    """Flag labels that are probably wrong, as a mask or as indices ranked worst first.

    With ``w`` from [`clean_probability`][noisylabel.detect.clean_probability] and
    ``yhat_i = argmax_k p_ik``:

    - ``threshold="auto"`` (default): flag ``i`` when ``yhat_i != y_i`` and ``w_i < 0.5``; the
      mixture vetoes the samples it calls clean among those the model disagrees with. Where
      the mixture is not separated (w would be 1 for all), the veto is skipped: every
      ``yhat_i != y_i`` is flagged. Then, in a *pair row* (a given class whose errors, by the
      [`confident_joint`][noisylabel.confident.confident_joint] ``C``, go to one class
      for at least ``PAIR_ROW_SHARE`` and number at least ``PAIR_ROW_COVER`` of the class's
      flags), the flags predicted as any other class ``b`` are cut to the ``round(C[a, b])``
      of lowest w: under class-to-class noise those are mostly clean but hard samples.
    - ``threshold=t`` (a number): flag ``w_i < t``, whatever the model predicts.

    The auto rule was chosen on digits with four estimators and symmetric, pair and
    instance-dependent noise (`benchmarks/README.md`, "Noisy-label detection"): ``w < 0.5``
    alone flags 1.1-1.5 times too many labels at 20% noise (clean but hard samples), and
    flagging the ``round(sum(1 - w))`` lowest w, overall or per class, flags as many; the
    model's disagreement removes most of those without losing recall. The pair-row cap was
    added in 0.2 for class-to-class noise, and checked on a data set no rule was chosen on
    (`benchmarks/README.md`, "Noisy-label detection").

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given integer labels.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    threshold : "auto" or float in [0, 1]
        The flagging rule (above).
    return_indices_ranked_by : {None, "clean_probability", "self_confidence"}
        None: return the boolean mask. Otherwise return the indices of the flagged samples,
        most likely wrong first: by ``w`` ascending, ties (``w`` saturates at 0) broken by the
        signal toward its noisy side, then by ``max_{k != y_i} p_ik`` descending
        ("clean_probability"), or by ``p_{i,y_i}`` ascending
        ("self_confidence", cleanlab's default order).
    signal, per_class, min_class_samples, pair_prior, spread_ties, **mixture_kwargs
        As in [`clean_probability`][noisylabel.detect.clean_probability].

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Bool mask of shape (N,) (True = label probably wrong), or int64 indices of the flagged
        samples when ``return_indices_ranked_by`` is set.

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
    >>> find_noisy_labels(labels, pred_probs, return_indices_ranked_by="clean_probability")[:5]
    array([295,  83, 382, 359, 488])
    """
    _check_flag_args(threshold, return_indices_ranked_by)
    pred_probs = check_pred_probs(pred_probs, labels)
    det = detect(labels, pred_probs, signal=signal, per_class=per_class,
                 min_class_samples=min_class_samples, mixture_kwargs=mixture_kwargs,
                 validate=False, pair_prior=pair_prior, spread_ties=spread_ties)
    _warn_unseparated(det, min_class_samples)
    flagged = flag_labels(det, labels, pred_probs, threshold)
    if return_indices_ranked_by is None:
        return _like(flagged, pred_probs)
    order = _order(det, labels, pred_probs, return_indices_ranked_by)
    return _like(order[flagged[order]], pred_probs)


def rank_noisy_labels(
    labels: Any, pred_probs: Any, ranked_by: str = "clean_probability", **kwargs: Any
) -> Any:
    """Every index, the label most likely wrong first (for review queues and ROC curves).

    The order of ``find_noisy_labels(..., return_indices_ranked_by=ranked_by)`` over all
    samples, flagged or not: ``w`` ascending with ties broken by the signal toward its noisy
    side, then by the largest probability of another class ("clean_probability"), or ``p_{i,y_i}`` ascending ("self_confidence").

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given integer labels.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    ranked_by : {"clean_probability", "self_confidence"}
        The order.
    **kwargs
        Passed to [`clean_probability`][noisylabel.detect.clean_probability].

    Returns
    -------
    numpy.ndarray or torch.Tensor of int64, shape (N,)
        A permutation of ``0 .. N-1``.
    """
    _check_flag_args(0.5, ranked_by)
    pred_probs = check_pred_probs(pred_probs, labels)
    det = detect(labels, pred_probs, **_detect_kwargs(kwargs), validate=False)
    _warn_unseparated(det, kwargs.get("min_class_samples", MIN_CLASS_SAMPLES))
    return _like(_order(det, labels, pred_probs, ranked_by), pred_probs)


def _detect_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Split ``clean_probability``-style keyword arguments into ``detect``'s."""
    named = ("signal", "per_class", "monotone", "min_class_samples", "pair_prior", "spread_ties")
    out = {k: kwargs[k] for k in named if k in kwargs}
    out.setdefault("pair_prior", True)
    out.setdefault("spread_ties", True)
    out["mixture_kwargs"] = {k: v for k, v in kwargs.items() if k not in named}
    return out


def _order(det: Detection, labels: Any, pred_probs: Any, ranked_by: str) -> np.ndarray:
    """All indices, most likely wrong first (see ``rank_noisy_labels``)."""
    labels_np = _numpy(labels).astype(np.int64)
    probs = _numpy(pred_probs)
    if ranked_by == "clean_probability":
        w, s = _numpy(det.clean_probability), _numpy(det.signal)
        toward_noisy = s if det.mixture.clean_side == "high" else -s
        runner_up = other_class_probs(labels_np, probs).max(axis=1)
        # ties of w (it saturates at 0) by the signal, ties of both by the best other class
        return np.lexsort((-runner_up, toward_noisy, w))
    p_y = probs[np.arange(labels_np.size), labels_np]
    return np.argsort(p_y, kind="stable")


def flag_labels(det: Detection, labels: Any, pred_probs: Any, threshold: float | str) -> np.ndarray:
    """Flags from a finished [`Detection`][noisylabel.pipeline.Detection], as a numpy bool array.

    The rule of [`find_noisy_labels`][noisylabel.detect.find_noisy_labels], without a refit.
    ``"auto"``: ``argmax_k p_ik != y_i`` and (``w_i < 0.5`` or no separated mixture decided
    ``w_i``); a number t: ``w_i < t``.
    """
    w = _numpy(det.clean_probability)
    if threshold != "auto":
        return w < float(threshold)
    labels_np, probs = _numpy(labels).astype(np.int64), _numpy(pred_probs)
    return _cap_pair_rows(_vetoed_disagreement(det, labels_np, probs), w, labels_np, probs)


def _vetoed_disagreement(det: Detection, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The auto rule before the pair-row cap: ``argmax p_i != y_i`` and ``w_i < 0.5``, the
    veto skipped for samples whose w comes from no separated mixture."""
    w = _numpy(det.clean_probability)
    return (probs.argmax(axis=1) != labels) & ((w < 0.5) | ~_covered(det, labels))


def _cap_pair_rows(flagged: np.ndarray, w: np.ndarray, labels: np.ndarray,
                   probs: np.ndarray) -> np.ndarray:
    """In each pair row ``a`` (see ``find_noisy_labels``) keep, for every predicted class ``b``
    other than the row's main error class, at most ``round(C[a, b])`` flags, lowest w first."""
    errors = confident_joint(labels, probs)
    np.fill_diagonal(errors, 0.0)
    predicted, out = probs.argmax(axis=1), flagged.copy()
    for a, row in enumerate(errors):
        main, errors_a = row.argmax(), row.sum()
        if (row[main] < PAIR_ROW_SHARE * errors_a
                or errors_a < PAIR_ROW_COVER * flagged[labels == a].sum()):
            continue
        for b in np.flatnonzero(np.arange(row.size) != main):
            cell = np.flatnonzero(flagged & (labels == a) & (predicted == b))
            out[cell] = False
            out[cell[np.argsort(w[cell], kind="stable")][: int(round(row[b]))]] = True
    return out


def check_threshold(threshold: Any) -> None:
    """Raise unless ``threshold`` is "auto" or a number in [0, 1]."""
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold must be 'auto' or a number in [0, 1], got {threshold!r}")
    elif isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise TypeError(f"threshold must be 'auto' or a number in [0, 1], got {threshold!r}")
    elif not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be 'auto' or a number in [0, 1], got {threshold!r}")


def _check_flag_args(threshold: Any, ranked_by: Any) -> None:
    check_threshold(threshold)
    if ranked_by is not None and ranked_by not in RANKINGS:
        raise ValueError(
            f"return_indices_ranked_by must be None or one of {RANKINGS}, got {ranked_by!r}"
        )


def _covered(det: Detection, labels: np.ndarray) -> np.ndarray:
    """Samples whose w comes from a separated mixture (global or their class's)."""
    if det.separated:
        return np.ones(labels.shape, dtype=bool)
    return np.isin(labels, list(det.class_mixtures))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


def _like(x: np.ndarray, ref: Any) -> Any:
    """``x`` as a tensor on ``ref``'s device when ``ref`` is a tensor."""
    if is_tensor(ref):
        import torch

        return torch.as_tensor(x, device=ref.device)
    return x
