"""Plug Beta-mixture sample weighting into any scikit-learn classifier.

[`BMMWeightedClassifier`][noisylabel.sklearn.BMMWeightedClassifier] is a meta-estimator: it
estimates, for every training sample, the probability that its label is clean from
*out-of-sample* predicted probabilities (cross-validation), then refits the wrapped classifier
on all the data with those probabilities as sample weights (or, for a classifier whose ``fit``
takes no ``sample_weight``, without the samples flagged noisy).
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from noisylabel._validation import check_pred_probs
from noisylabel.detect import check_threshold, flag_labels
from noisylabel.mixture import MixtureNotSeparatedWarning
from noisylabel.pipeline import detect
from noisylabel.signals import get_signal

__all__ = ["BMMWeightedClassifier"]

_WEIGHTING = ("auto", "weight", "drop")


def _sample_weight_key(estimator: Any) -> str | None:
    """The ``fit`` keyword that carries sample weights to ``estimator``, or None.

    ``"sample_weight"`` when ``estimator.fit`` takes it; for a ``sklearn.pipeline.Pipeline``
    whose last step takes it, ``"<step name>__sample_weight"`` (scikit-learn's routing of fit
    parameters to pipeline steps).
    """
    if has_fit_parameter(estimator, "sample_weight"):
        return "sample_weight"
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last not in (None, "passthrough") and _sample_weight_key(last) == "sample_weight":
            return f"{name}__sample_weight"
    return None


class BMMWeightedClassifier(ClassifierMixin, BaseEstimator):
    """Classifier that down-weights samples whose label a Beta mixture calls probably wrong.

    ``fit(X, y)`` runs four steps:

    1. out-of-sample predicted probabilities ``P`` (``pred_probs_``) from
       ``cross_val_predict(clone(estimator), X, y, cv=StratifiedKFold(cv, shuffle=True,
       random_state=random_state), method="predict_proba")``, or the ``pred_probs`` passed to
       ``fit`` (no cross-validation then);
    2. one run of the detection pipeline ([`detect`][noisylabel.pipeline.detect]): a
       per-sample signal ``S_i = s(y_i, P_i)`` (``signal="cosine"``:
       ``S_i = P_{i,y_i} / ||P_i||_2``; ``signal="loss"``: ``1 - P_{i,y_i}``) and a
       two-component [`BetaMixture`][noisylabel.mixture.BetaMixture] fitted to ``S`` by EM;
       the clean probability is the posterior of the clean component,
       ``w_i = pi Beta(S_i; a_c, b_c) / (pi Beta(S_i; a_c, b_c) + (1 - pi) Beta(S_i; a_n, b_n))``
       with ``pi`` the clean prior of the sample's (given label, runner-up class) pair
       (``pair_prior=True``) or the global clean weight (``pair_prior=False``)
       (``clean_probability_``, 1 everywhere when the mixture is not separated);
    3. the flags of [`find_noisy_labels`][noisylabel.detect.find_noisy_labels] with
       ``threshold`` (``label_issues_mask_``, and the table ``label_issues_``);
    4. a clone of ``estimator`` refitted on all samples with ``sample_weight=w`` (times the
       user's ``sample_weight`` passed to ``fit``, if any) when its ``fit`` accepts
       ``sample_weight`` (for a ``Pipeline``: when its last step does), else on the
       unflagged samples (``refit_mode_`` says which).

    Parameters
    ----------
    estimator : classifier, default=None
        Any scikit-learn classifier with ``predict_proba``. ``None`` means
        ``make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=1000))``
        (scaled so that lbfgs converges on raw features such as digits' pixels; sparse input
        stays sparse).
    cv : int or cross-validation splitter, default=5
        Folds for the out-of-sample probabilities. An int gives a shuffled
        ``StratifiedKFold`` seeded by ``random_state``; it is lowered (with a warning) to the
        size of the smallest class that has at least two members. Samples of a class with a
        single member cannot be held out: they get ``w = 1`` (unjudged). A splitter is used as
        given.
    signal : {"cosine", "loss", "calibrated"}, default="cosine"
        Per-sample signal the mixture is fitted to (see
        [`get_signal`][noisylabel.signals.get_signal]).
    threshold : "auto" or float in [0, 1], default="auto"
        The flagging rule of [`find_noisy_labels`][noisylabel.detect.find_noisy_labels]:
        "auto" flags the samples whose cross-validated prediction disagrees with the label
        and whose clean probability is below 0.5; a number t flags ``w < t``.
    weighting : {"auto", "weight", "drop"}, default="auto"
        How the refit uses the clean probabilities. ``"weight"``: ``sample_weight=w`` (an error
        if the estimator's ``fit`` does not take ``sample_weight``); ``"drop"``: refit on the
        unflagged samples; ``"auto"``: ``"weight"`` when possible, else ``"drop"``.
    per_class : bool, default=False
        Fit one mixture per class instead of one over all samples
        (see [`clean_probability`][noisylabel.detect.clean_probability]).
    pair_prior : bool, default=True
        Let the prior that a label is right depend on the pair (given label, runner-up class),
        so that class-to-class confusions are found (see
        [`detect`][noisylabel.pipeline.detect]); False: one global prior, as before.
    spread_ties : bool, default=True
        Spread tied signal values before the mixture is fitted, for estimators whose
        probabilities take few values (k-NN; see
        [`spread_ties`][noisylabel.signals.spread_ties]); False: fit the raw signal.
    mixture_params : dict, default=None
        Extra keyword arguments for [`BetaMixture`][noisylabel.mixture.BetaMixture] (for example
        ``{"monotone": False}`` or ``{"max_iter": 200}``).
    n_jobs : int, default=None
        Parallel jobs for the cross-validation (``cross_val_predict``).
    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffling when ``cv`` is an int.

    Attributes
    ----------
    estimator_ : classifier
        The clone of ``estimator`` refitted on all data; ``predict``, ``predict_proba`` and
        ``score`` delegate to it. It is fitted on the encoded labels ``0..n_classes-1``.
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    pred_probs_ : ndarray of shape (n_samples, n_classes)
        The out-of-sample predicted probabilities, columns in ``classes_`` order.
    clean_probability_ : ndarray of shape (n_samples,)
        Per-sample probability that the given label is right, in the training order.
    label_issues_mask_ : ndarray of shape (n_samples,), dtype=bool
        ``True`` where the label is probably wrong (the ``threshold`` rule).
    label_issues_ : pandas.DataFrame or dict of ndarray
        One row per training sample: ``index``, ``given_label``, ``predicted_label`` (argmax
        of ``pred_probs_``), ``clean_probability``, ``flagged``; a DataFrame when pandas is
        installed, else a dict of equal-length arrays. Sort by ``clean_probability`` for a
        review queue.
    mixture_ : BetaMixture or None
        The global mixture fitted to the signal of the cross-validated samples (with
        ``per_class=True`` it is the fit that classes without their own mixture fall back
        to); ``None`` when fewer than two classes could be cross-validated.
    refit_mode_ : {"weight", "drop"}
        How the final refit used the clean probabilities.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen in ``fit`` (only when ``X`` has string column names).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from noisylabel import BMMWeightedClassifier, symmetric_noise
    >>> X, y = make_classification(n_samples=400, n_informative=5, n_classes=3,
    ...                            class_sep=2.0, random_state=0)
    >>> noisy_y = symmetric_noise(y, rate=0.3, n_classes=3, seed=0)  # 120 labels flipped
    >>> clf = BMMWeightedClassifier(cv=5, random_state=0).fit(X, noisy_y)
    >>> clf.clean_probability_.shape, clf.refit_mode_
    ((400,), 'weight')
    >>> flagged, wrong = clf.label_issues_mask_, noisy_y != y
    >>> print(flagged.sum(), "flagged,", (flagged & wrong).sum(), "of them truly wrong")
    127 flagged, 106 of them truly wrong
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        cv: Any = 5,
        signal: str = "cosine",
        threshold: float | str = "auto",
        weighting: str = "auto",
        per_class: bool = False,
        pair_prior: bool = True,
        spread_ties: bool = True,
        mixture_params: dict[str, Any] | None = None,
        n_jobs: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.cv = cv
        self.signal = signal
        self.threshold = threshold
        self.weighting = weighting
        self.per_class = per_class
        self.pair_prior = pair_prior
        self.spread_ties = spread_ties
        self.mixture_params = mixture_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _base_estimator(self) -> Any:
        if self.estimator is None:
            # scaled: on raw digits pixels lbfgs warns of non-convergence in every fold
            return make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=1000))
        return self.estimator

    def _allow_nan(self) -> bool:
        return get_tags(self._base_estimator()).input_tags.allow_nan

    def __sklearn_tags__(self):  # noqa: D105 - scikit-learn's estimator-tags protocol
        tags = super().__sklearn_tags__()
        inner = get_tags(self._base_estimator())
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        tags.classifier_tags.multi_label = False
        return tags

    def _check_params(self) -> None:
        if isinstance(self.cv, Integral):
            if isinstance(self.cv, bool) or self.cv < 2:
                raise ValueError(f"cv must be an int >= 2 or a CV splitter, got cv={self.cv!r}")
        elif not (hasattr(self.cv, "split") and hasattr(self.cv, "get_n_splits")):
            raise ValueError(f"cv must be an int >= 2 or a CV splitter, got cv={self.cv!r}")
        check_threshold(self.threshold)
        if self.weighting not in _WEIGHTING:
            raise ValueError(f"weighting must be one of {_WEIGHTING}, got {self.weighting!r}")
        get_signal(self.signal)  # raises ValueError naming the known signals
        base = self._base_estimator()
        if not hasattr(base, "predict_proba"):
            raise ValueError(
                f"estimator {type(base).__name__} has no predict_proba; BMMWeightedClassifier "
                "needs predicted probabilities (for an SVC, set probability=True)"
            )
        if self.weighting == "weight" and _sample_weight_key(base) is None:
            raise ValueError(
                f"weighting='weight' but {type(base).__name__}.fit takes no sample_weight; "
                "use weighting='drop' or 'auto'"
            )

    def _splitter(self, y_enc: np.ndarray) -> Any:
        if not isinstance(self.cv, Integral):
            return self.cv
        smallest = int(np.unique(y_enc, return_counts=True)[1].min())
        n_splits = min(int(self.cv), smallest)
        if n_splits < int(self.cv):
            warnings.warn(
                f"the smallest class has {smallest} samples, fewer than cv={self.cv}; "
                f"using {n_splits} folds",
                UserWarning,
                stacklevel=3,
            )
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)

    def _out_of_sample_probs(
        self, X: Any, y_enc: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None
    ):
        """Cross-validated probabilities; rows of unjudgeable samples stay NaN."""
        n = y_enc.shape[0]
        pred_probs = np.full((n, n_classes), np.nan)
        counts = np.bincount(y_enc, minlength=n_classes)
        if isinstance(self.cv, Integral):
            judged = counts[y_enc] >= 2  # a single-member class cannot be held out
        else:
            judged = np.ones(n, dtype=bool)
        present = np.unique(y_enc[judged])
        if present.size < 2:
            warnings.warn(
                "fewer than 2 classes have 2 or more samples: nothing can be cross-validated; "
                "every sample gets clean probability 1 and the estimator is fitted as is",
                UserWarning,
                stacklevel=3,
            )
            return pred_probs, np.zeros(n, dtype=bool)
        if not judged.all():
            warnings.warn(
                f"{int((~judged).sum())} samples belong to classes with a single member; they "
                "cannot be cross-validated and get clean probability 1",
                UserWarning,
                stacklevel=3,
            )
        idx = np.flatnonzero(judged)
        X_judged = X if judged.all() else X[idx]
        y_judged = y_enc[idx]
        params = {}
        if sample_weight is not None:  # sliced to each training fold by cross_val_predict
            params[_sample_weight_key(self._base_estimator())] = sample_weight[idx]
        probs = cross_val_predict(
            clone(self._base_estimator()),
            X_judged,
            y_judged,
            cv=self._splitter(y_judged),
            method="predict_proba",
            n_jobs=self.n_jobs,
            params=params or None,
        )
        # cross_val_predict orders columns by the sorted labels present in y_judged
        rows = np.zeros((idx.size, n_classes))
        rows[:, present] = probs
        pred_probs[idx] = rows
        return pred_probs, judged

    # ---------------------------------------------------------------- public API
    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, pred_probs: Any = None
    ) -> BMMWeightedClassifier:
        """Estimate clean probabilities (by cross-validation unless given), then refit.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Noisy class labels (any hashable labels; at least two classes).
        sample_weight : array-like of shape (n_samples,), optional
            The user's own non-negative weights ``u_i`` (class balancing, importance, ...).
            They are passed to every cross-validation fit and combine with the clean
            probabilities in the refit: ``sample_weight = u_i w_i`` (``weighting="weight"``),
            or ``u_i`` on the unflagged samples (``"drop"``). They do not enter the mixture:
            ``w_i`` is the probability that the label is right whatever its weight. The
            estimator's ``fit`` (for a ``Pipeline``, its last step's) must take
            ``sample_weight``; otherwise a ``ValueError`` is raised, as cleanlab's
            ``CleanLearning`` does.
        pred_probs : array-like of shape (n_samples, n_classes), optional
            Out-of-sample predicted probabilities, columns in sorted-label order (as
            ``classes_``), for example ``pred_probs_`` of an earlier fit: the cross-validation
            is skipped (as cleanlab's ``CleanLearning.fit(..., pred_probs=...)``).

        Returns
        -------
        self : BMMWeightedClassifier
            The fitted estimator.
        """
        self._check_params()
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc"), ensure_all_finite=not self._allow_nan()
        )
        check_classification_targets(y)
        if sample_weight is not None:
            if _sample_weight_key(self._base_estimator()) is None:
                raise ValueError(
                    f"sample_weight was given but {type(self._base_estimator()).__name__}.fit "
                    "takes no sample_weight"
                )
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        n_classes = self.classes_.shape[0]
        if n_classes < 2:
            raise ValueError(
                f"BMMWeightedClassifier needs at least 2 classes in y, got 1 class "
                f"({self.classes_[0]!r})"
            )
        if pred_probs is None:
            pred_probs, judged = self._out_of_sample_probs(X, y_enc, n_classes, sample_weight)
        else:
            shape = np.shape(pred_probs)
            if len(shape) != 2 or shape[1] != n_classes:
                raise ValueError(f"pred_probs has shape {shape}: need (n_samples, {n_classes}), "
                                 f"one column per class of y")
            pred_probs = np.asarray(check_pred_probs(pred_probs, y_enc), dtype=np.float64)
            judged = np.ones(y_enc.shape[0], dtype=bool)
        self.pred_probs_ = pred_probs
        self._detect(y_enc, pred_probs, judged)
        return self._refit(X, y_enc, sample_weight)

    def _detect(self, y_enc: np.ndarray, pred_probs: np.ndarray, judged: np.ndarray) -> None:
        """One pipeline run on the judged samples: ``clean_probability_``, flags, table."""
        w = np.ones(y_enc.shape[0])
        flagged = np.zeros(y_enc.shape[0], dtype=bool)
        self.mixture_ = None
        if judged.any():
            params = dict(self.mixture_params or {})
            monotone = params.pop("monotone", True)
            det = detect(y_enc[judged], pred_probs[judged], signal=self.signal,
                         per_class=self.per_class, monotone=monotone, mixture_kwargs=params,
                         validate=False, pair_prior=self.pair_prior,
                         spread_ties=self.spread_ties)
            if not det.separated:
                warnings.warn(
                    "the Beta mixture is not separated: every cross-validated sample gets clean "
                    "probability 1 (see BetaMixture.separated_)",
                    MixtureNotSeparatedWarning,
                    stacklevel=3,
                )
            self.mixture_ = det.mixture
            w[judged] = det.clean_probability
            flagged[judged] = flag_labels(det, y_enc[judged], pred_probs[judged], self.threshold)
        self.clean_probability_ = w
        self.label_issues_mask_ = flagged
        self.label_issues_ = _issue_table(self.classes_, y_enc, pred_probs, w, flagged)

    def _refit(
        self, X: Any, y_enc: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> BMMWeightedClassifier:
        """Refit a clone with ``sample_weight=u*w`` or without the flagged samples (weights u)."""
        w = self.clean_probability_
        base = self._base_estimator()
        self.estimator_ = clone(base)
        key = _sample_weight_key(base)
        if key is not None and self.weighting != "drop":
            self.refit_mode_ = "weight"
            self.estimator_.fit(X, y_enc, **{key: w if sample_weight is None else sample_weight * w})
            return self
        self.refit_mode_ = "drop"
        keep = ~self.label_issues_mask_
        if np.unique(y_enc[keep]).size < 2:
            warnings.warn(
                f"dropping the {int((~keep).sum())} flagged samples would leave fewer than 2 "
                "classes; refitting on all samples",
                UserWarning,
                stacklevel=2,
            )
            keep = np.ones_like(keep)
        rows = np.flatnonzero(keep)
        kwargs = {} if sample_weight is None else {key: sample_weight[rows]}
        self.estimator_.fit(X[rows], y_enc[keep], **kwargs)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from the refitted estimator, columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            A class the refit never saw (all its samples dropped) gets probability 0.
        """
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc"),
            ensure_all_finite=not self._allow_nan(),
        )
        inner = self.estimator_.predict_proba(X)
        proba = np.zeros((inner.shape[0], self.classes_.shape[0]), dtype=np.float64)
        proba[:, self.estimator_.classes_] = inner
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (from ``classes_``) of the refitted estimator.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc"),
            ensure_all_finite=not self._allow_nan(),
        )
        return self.classes_[np.asarray(self.estimator_.predict(X), dtype=np.intp)]


def _issue_table(
    classes: np.ndarray, y_enc: np.ndarray, pred_probs: np.ndarray, w: np.ndarray,
    flagged: np.ndarray,
) -> Any:
    """Per-sample table: index, given and predicted label, clean probability, flagged.

    A pandas DataFrame when pandas is installed, else a dict of arrays. The predicted label is
    ``classes[argmax_k p_ik]``; samples that could not be cross-validated (NaN rows) get their
    given label.
    """
    judged = ~np.isnan(pred_probs).any(axis=1)
    predicted = y_enc.copy()
    predicted[judged] = pred_probs[judged].argmax(axis=1)
    table = {
        "index": np.arange(y_enc.shape[0]),
        "given_label": classes[y_enc],
        "predicted_label": classes[predicted],
        "clean_probability": w,
        "flagged": flagged,
    }
    try:
        import pandas as pd
    except ImportError:
        return table
    return pd.DataFrame(table)
