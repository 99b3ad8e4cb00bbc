"""The detection pipeline shared by every entry point: signal -> mixture -> fallback -> w.

[`clean_probability`][noisylabel.detect.clean_probability],
[`find_noisy_labels`][noisylabel.detect.find_noisy_labels],
[`estimate_noise_matrix`][noisylabel.noise_matrix.estimate_noise_matrix],
[`NoiseModel.fit`][noisylabel.noise_model.NoiseModel.fit] and
[`BMMWeightedClassifier`][noisylabel.sklearn.BMMWeightedClassifier] all call
[`detect`][noisylabel.pipeline.detect] once and read what they need from the
[`Detection`][noisylabel.pipeline.Detection] it returns; nothing fits a mixture twice.
numpy in gives numpy out; a tensor in gives tensors on the same device out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noisylabel._backend import is_tensor
from noisylabel._validation import check_pred_probs
from noisylabel.mixture import BetaMixture, MixtureNotSeparatedWarning
from noisylabel.signals import Signal, get_signal, spread_ties

__all__ = ["Detection", "detect"]

MIN_CLASS_SAMPLES = 50
"""Default minimum class size for a class's own mixture (``per_class=True``)."""

PAIR_PRIOR_STRENGTH = 1.0
"""Pseudo-samples that pull each (given label, runner-up class) prior toward the global one."""


@dataclass
class Detection:
    """What one run of the pipeline produced.

    Attributes
    ----------
    clean_probability : numpy.ndarray or torch.Tensor of shape (N,)
        ``w_i = p(clean | s_i)``; with ``fallback=True`` it is 1 for the samples whose
        mixture is not separated.
    signal : numpy.ndarray or torch.Tensor of shape (N,)
        The per-sample signal ``s_i`` the mixture was fitted to.
    mixture : BetaMixture
        The global mixture (fitted to every sample).
    per_class_fallback : list of int
        With ``per_class``: the classes (present in ``labels``) that use the global fit because
        they have fewer than ``min_class_samples`` samples or an unseparated fit of their own.
    class_mixtures : dict of int to BetaMixture
        With ``per_class``: the separated per-class mixtures that set w of their class.
    pair_prior : numpy.ndarray of shape (K, K) or None
        With ``pair_prior`` and a separated global fit: ``pair_prior[j, a]``, the estimated
        probability that a label ``j`` is right among the samples labelled ``j`` whose
        runner-up class is ``a`` (the global clean weight where no sample falls; the diagonal
        is unused). None otherwise.
    """

    clean_probability: Any
    signal: Any
    mixture: BetaMixture
    per_class_fallback: list[int] = field(default_factory=list)
    class_mixtures: dict[int, BetaMixture] = field(default_factory=dict)
    pair_prior: np.ndarray | None = None

    @property
    def separated(self) -> bool:
        """Whether the global mixture passed its separation check."""
        return bool(self.mixture.separated_)


def _as_labels(labels: Any, pred_probs: Any) -> Any:
    if is_tensor(pred_probs):
        import torch

        return torch.as_tensor(labels, device=pred_probs.device).long()
    return np.asarray(labels, dtype=np.int64)


def detect(
    labels: Any,
    pred_probs: Any,
    signal: str | Signal = "cosine",
    per_class: bool = False,
    monotone: bool = True,
    min_class_samples: int = MIN_CLASS_SAMPLES,
    fallback: bool = True,
    mixture_kwargs: dict[str, Any] | None = None,
    validate: bool = True,
    pair_prior: bool = False,
    spread_ties: bool = False,
) -> Detection:
    """Signal, one global Beta mixture, optional per-class mixtures, clean probabilities.

    ``s_i = signal(y_i, p_i)``; with ``spread_ties``, groups of equal ``s`` are spread over the
    half-gaps to their neighbouring values ([`spread_ties`][noisylabel.signals.spread_ties]),
    within a group toward the noisy side the larger ``max_{k != y_i} p_ik``; a two-component
    [`BetaMixture`][noisylabel.mixture.BetaMixture] is fitted to all ``s`` and
    ``w_i = p(clean | s_i)`` is its clean-component posterior. With ``pair_prior`` (and a
    separated global fit), the global mixing weight is replaced by a prior per pair
    (given label ``y_i``, runner-up class ``a_i = argmax_{k != y_i} p_ik``), the confident
    joint's idea (Northcutt et al., 2021) applied to w: with ``lr_i`` the clean-versus-noisy
    log density ratio of the global fit
    ([`log_likelihood_ratio`][noisylabel.mixture.BetaMixture.log_likelihood_ratio]) held
    fixed, EM alternates ``w_i = sigmoid(logit(pi_{y_i a_i}) + lr_i)`` and
    ``pi_{ja} = (sum_{i in (j, a)} w_i + m pi) / (n_{ja} + m)`` (``pi`` the global clean
    weight, ``m = PAIR_PRIOR_STRENGTH = 1`` pseudo-sample) until the priors move by less than
    1e-6. Under class-to-class noise the flipped samples of a class share a runner-up (their
    true class), so their pair gets a low prior, while the hard but clean samples of the
    other pairs keep a high one; under symmetric noise every pair's prior stays near ``pi``
    (`docs/method.md`, "Class-to-class noise"). With ``per_class``, each class
    with at least ``min_class_samples`` samples gets its own mixture on its samples, and its
    posterior replaces w there when that fit is separated. With ``fallback``, an unseparated
    global fit gives ``w = 1`` to every sample no class mixture covers (see `docs/method.md`,
    "The per-epoch noise model and its safeguards"); without it the raw posterior is kept (the
    caller gates it, as
    [`NoiseModel`][noisylabel.noise_model.NoiseModel] does). No warning is emitted here: the
    caller reads [`Detection`][noisylabel.pipeline.Detection] and warns in its own words.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Given integer labels in ``0 .. K-1``.
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Out-of-sample predicted probabilities; rows sum to 1.
    signal : {"cosine", "loss", "calibrated"} or Signal
        Per-sample signal; its ``clean_side`` orients the mixture.
    per_class : bool
        Fit one mixture per class as well.
    monotone : bool
        Make w monotone in the signal (see
        [`BetaMixture.clean_probability`][noisylabel.mixture.BetaMixture.clean_probability]).
    min_class_samples : int
        Minimum class size for its own mixture.
    fallback : bool
        w = 1 where the deciding mixture is not separated.
    mixture_kwargs : dict, optional
        Extra [`BetaMixture`][noisylabel.mixture.BetaMixture] arguments.
    validate : bool
        Check ``labels`` and ``pred_probs`` first.
    pair_prior : bool
        Use the per-(given label, runner-up class) prior above (default False here, today's
        [`NoiseModel`][noisylabel.noise_model.NoiseModel] behaviour; the user-facing functions
        default to True).
    spread_ties : bool
        Spread tied signal values before the fit (default False here, as ``pair_prior``; the
        user-facing functions default to True): a classifier whose probabilities take few
        values (k-NN) otherwise gives a signal of a few atoms, and the mixture puts its noisy
        component on the one at 0 alone (`docs/method.md`, "Classifiers with few distinct
        probabilities").

    Returns
    -------
    Detection
    """
    sig = get_signal(signal)
    if validate:
        pred_probs = check_pred_probs(pred_probs, labels)
    labels = _as_labels(labels, pred_probs)
    s = sig(labels, pred_probs, validate=False)
    if spread_ties:
        s = _spread(s, labels, pred_probs, sig.clean_side)
    kwargs = {**(mixture_kwargs or {}), "clean_side": sig.clean_side, "monotone": monotone}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixtureNotSeparatedWarning)
        bmm = BetaMixture(**kwargs).fit(s)
        w = bmm.clean_probability(s) if fallback else bmm.posterior(s)
        result = Detection(clean_probability=w, signal=s, mixture=bmm)
        if pair_prior and bmm.separated_:
            _apply_pair_prior(result, labels, pred_probs)
        if per_class:
            _fit_classes(result, labels, pred_probs.shape[1], kwargs, min_class_samples)
    return result


def other_class_probs(labels: Any, pred_probs: Any) -> np.ndarray:
    """``pred_probs`` as float64 numpy with each sample's given class set to ``-inf``: its
    ``max`` / ``argmax`` over axis 1 is the runner-up ``max_{k != y_i} p_ik`` / its class."""
    other = _to_numpy(pred_probs).astype(np.float64)  # a copy: astype copies by default
    other[np.arange(other.shape[0]), _to_numpy(labels).astype(np.int64)] = -np.inf
    return other


def _spread(s: Any, labels: Any, pred_probs: Any, clean_side: str) -> Any:
    """``s`` with its ties spread, the more probable another class the nearer the noisy side."""
    runner_up = other_class_probs(labels, pred_probs).max(axis=1)
    spread = spread_ties(_to_numpy(s), -runner_up if clean_side == "high" else runner_up)
    if is_tensor(s):
        import torch

        return torch.as_tensor(spread, dtype=s.dtype, device=s.device)
    return spread


def _apply_pair_prior(result: Detection, labels: Any, pred_probs: Any,
                      strength: float = PAIR_PRIOR_STRENGTH, max_iter: int = 500) -> None:
    """Swap the global mixing weight for one per (given label, runner-up class); see ``detect``."""
    bmm = result.mixture
    lr = _to_numpy(bmm.log_likelihood_ratio(result.signal)).astype(np.float64)
    y = _to_numpy(labels).astype(np.int64)
    k = pred_probs.shape[1]
    group = y * k + other_class_probs(y, pred_probs).argmax(axis=1)
    sizes = np.bincount(group, minlength=k * k)
    pi = float(bmm.weights_[bmm.clean_component_])
    prior = np.full(k * k, pi)
    for _ in range(max_iter):  # a loop over EM steps, each vectorised over samples
        w = _sigmoid(np.log(prior[group]) - np.log1p(-prior[group]) + lr)
        new = (np.bincount(group, weights=w, minlength=k * k) + strength * pi) / (sizes + strength)
        new = np.clip(new, 1e-9, 1 - 1e-9)
        moved = float(np.abs(new - prior).max())
        prior = new
        if moved < 1e-6:
            break
    w = _sigmoid(np.log(prior[group]) - np.log1p(-prior[group]) + lr)
    result.pair_prior = prior.reshape(k, k)
    if is_tensor(result.clean_probability):
        import torch

        ref = result.clean_probability
        result.clean_probability = torch.as_tensor(w, dtype=ref.dtype, device=ref.device)
    else:
        result.clean_probability = w


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


def _fit_classes(
    result: Detection, labels: Any, n_classes: int, kwargs: dict[str, Any], min_samples: int
) -> None:
    """Per-class mixtures: a separated fit on a large enough class replaces w there."""
    s, w = result.signal, result.clean_probability
    for c in range(n_classes):  # a loop over classes, not samples
        mask = labels == c
        n_c = int(mask.sum())
        if n_c == 0:
            continue
        fit_c = BetaMixture(**kwargs).fit(s[mask]) if n_c >= min_samples else None
        if fit_c is not None and fit_c.separated_:
            w[mask] = fit_c.posterior(s[mask])
            result.class_mixtures[c] = fit_c
        else:
            result.per_class_fallback.append(c)
