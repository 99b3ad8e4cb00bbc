"""Tests for noisylabel.sklearn: the BMMWeightedClassifier meta-estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import has_fit_parameter
from threadpoolctl import threadpool_limits

from noisylabel import BetaMixture, clean_probability, symmetric_noise
from noisylabel.sklearn import BMMWeightedClassifier


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Tiny problems: multi-threaded BLAS only oversubscribes the CI's 2 cores."""
    with threadpool_limits(limits=1):
        yield


def expected_failed_checks(estimator: BMMWeightedClassifier) -> dict[str, str]:
    """check_estimator checks the wrapper cannot pass, with the reason.

    Keep this list in sync with docs/plugins.md ("scikit-learn's check_estimator").
    """
    reason = ("w comes from cross-validation: a repeated row can sit in a training fold and "
              "in the held-out fold at once, so integer weights and repeated rows differ")
    failed = {"check_sample_weight_equivalence_on_dense_data": reason,
              "check_sample_weight_equivalence_on_sparse_data": reason}
    if estimator.estimator is not None and not has_fit_parameter(estimator.estimator,
                                                                 "sample_weight"):
        no_weights = ("the wrapped estimator's fit takes no sample_weight: a user's weights "
                      "cannot be applied, so fit raises ValueError (as CleanLearning does)")
        failed.update(dict.fromkeys(("check_all_zero_sample_weights_error",
                                     "check_sample_weights_shape",
                                     "check_sample_weights_not_overwritten",
                                     "check_classifiers_one_label_sample_weights",
                                     "check_sample_weights_list",
                                     "check_sample_weights_not_an_array",
                                     "check_sample_weights_pandas_series"), no_weights))
    return failed


@parametrize_with_checks(
    [
        BMMWeightedClassifier(),
        BMMWeightedClassifier(KNeighborsClassifier(n_neighbors=5), cv=3),  # the drop path
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_check_estimator(estimator, check, monkeypatch: pytest.MonkeyPatch) -> None:
    # scikit-learn's array-API input check skips itself unless SCIPY_ARRAY_API is set; with it
    # set, it runs its numpy-namespace variant (the wrapper declares no array-API support).
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


def noisy_problem(seed: int, rate: float = 0.35, n: int = 600):
    """A 3-class synthetic problem with symmetric noise on the training half."""
    X, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=8,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
    noisy = symmetric_noise(y_tr, rate, n_classes=3, seed=seed)
    return X_tr, noisy, noisy != y_tr, X_te, y_te


def test_get_params_set_params_and_clone() -> None:
    est = BMMWeightedClassifier(LogisticRegression(C=0.5), cv=3, signal="loss", random_state=7)
    params = est.get_params()
    assert params["cv"] == 3 and params["signal"] == "loss" and params["estimator__C"] == 0.5
    est.set_params(estimator__C=2.0, threshold=0.3)
    assert est.estimator.C == 2.0 and est.threshold == 0.3
    copy = clone(est)
    assert copy is not est and copy.estimator is not est.estimator
    assert copy.get_params()["estimator__C"] == 2.0
    assert not hasattr(copy, "estimator_")


def test_grid_search_tunes_nested_and_own_parameters() -> None:
    X, y = make_classification(n_samples=120, random_state=0)
    grid = {"estimator__C": [0.01, 1.0], "threshold": [0.4]}
    est = BMMWeightedClassifier(LogisticRegression(), cv=2, random_state=0)
    search = GridSearchCV(est, grid, cv=2).fit(X, y)
    assert set(search.best_params_) == set(grid)
    assert search.best_estimator_.estimator_.C == search.best_params_["estimator__C"]


def test_fitted_attributes_and_string_labels() -> None:
    X_tr, noisy, is_noisy, X_te, _ = noisy_problem(0, rate=0.3)
    names = np.array(["cat", "dog", "owl"])
    clf = BMMWeightedClassifier(random_state=0).fit(X_tr, names[noisy])
    n = X_tr.shape[0]
    assert clf.classes_.tolist() == ["cat", "dog", "owl"]
    assert clf.n_features_in_ == X_tr.shape[1]
    assert clf.pred_probs_.shape == (n, 3)
    np.testing.assert_allclose(clf.pred_probs_.sum(1), 1.0, atol=1e-6)
    w = clf.clean_probability_
    assert w.shape == (n,) and np.all((w >= 0) & (w <= 1))
    assert clf.label_issues_mask_.dtype == bool
    disagrees = clf.pred_probs_.argmax(1) != noisy  # noisy holds the encoded labels 0..2
    np.testing.assert_array_equal(clf.label_issues_mask_, disagrees & (w < 0.5))
    assert clf.label_issues_mask_.sum() > 0
    assert isinstance(clf.mixture_, BetaMixture)
    assert clf.refit_mode_ == "weight"
    assert set(clf.predict(X_te)) <= set(names)
    assert clf.predict_proba(X_te).shape == (X_te.shape[0], 3)
    # w is in the training order: the flipped samples are the low-w ones
    assert w[is_noisy].mean() < w[~is_noisy].mean() - 0.3


def test_pipeline_gets_weights_through_its_last_step() -> None:
    X_tr, noisy, *_ = noisy_problem(1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    clf = BMMWeightedClassifier(pipe, cv=3, random_state=0).fit(X_tr, noisy)
    assert clf.refit_mode_ == "weight"


def test_drop_path_for_estimator_without_sample_weight() -> None:
    X_tr, noisy, is_noisy, X_te, y_te = noisy_problem(2)
    clf = BMMWeightedClassifier(KNeighborsClassifier(n_neighbors=5), random_state=0)
    clf.fit(X_tr, noisy)
    assert clf.refit_mode_ == "drop"
    kept = int((~clf.label_issues_mask_).sum())
    assert 0 < kept < X_tr.shape[0]
    assert clf.estimator_.n_samples_fit_ == kept
    # the dropped set is mostly the flipped labels
    assert is_noisy[clf.label_issues_mask_].mean() > 0.6
    plain = KNeighborsClassifier(n_neighbors=5).fit(X_tr, noisy)
    assert clf.score(X_te, y_te) > plain.score(X_te, y_te)


def test_weighting_drop_forces_drop_even_with_sample_weight() -> None:
    X_tr, noisy, *_ = noisy_problem(3)
    clf = BMMWeightedClassifier(weighting="drop", cv=3, random_state=0).fit(X_tr, noisy)
    assert clf.refit_mode_ == "drop"


# Margins: over 10 disjoint seed triplets (seeds 0..29) of this problem at 35% noise, the mean
# gain of the wrapper was 8.9 to 20.9 points for a fully grown tree (weight path: it memorises
# every flipped label on its own) and 2.8 to 7.3 points for 5-NN (drop path); the asserted
# margins leave about half of the worst triplet as slack. (A linear model is robust to symmetric noise
# on this problem: logistic regression gained only 0.4 to 4.9 points, so it is not used here.)
@pytest.mark.parametrize(
    ("estimator", "margin"),
    [
        (DecisionTreeClassifier(random_state=0), 0.05),
        (KNeighborsClassifier(n_neighbors=5), 0.015),
    ],
    ids=["tree-weight", "knn-drop"],
)
def test_wrapper_beats_plain_estimator_under_noise(estimator, margin) -> None:
    plain, wrapped = [], []
    for seed in range(3):
        X_tr, noisy, _, X_te, y_te = noisy_problem(seed, rate=0.35)
        plain.append(clone(estimator).fit(X_tr, noisy).score(X_te, y_te))
        clf = BMMWeightedClassifier(clone(estimator), random_state=seed).fit(X_tr, noisy)
        wrapped.append(clf.score(X_te, y_te))
    assert np.mean(wrapped) >= np.mean(plain) + margin, (plain, wrapped)


@pytest.mark.parametrize("singleton", [1, 3])
def test_small_classes_lower_the_folds_and_singletons_stay_unjudged(singleton) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.array([0] * 20 + [2] * 17 + [4] * 2 + [singleton])
    X[y == 2] += 3.0
    with pytest.warns(UserWarning) as record:
        clf = BMMWeightedClassifier(cv=5, random_state=0).fit(X, y)
    messages = " ".join(str(r.message) for r in record)
    assert "using 2 folds" in messages and "single member" in messages
    assert clf.clean_probability_[-1] == 1.0  # the single member of its class
    assert np.isnan(clf.pred_probs_[-1]).all()
    assert np.isfinite(clf.pred_probs_[:-1]).all()
    assert clf.predict_proba(X).shape == (40, 4)


def test_nothing_to_cross_validate_fits_the_estimator_as_is() -> None:
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    y = np.array(["a", "b", "c"])
    with pytest.warns(UserWarning, match="nothing can be cross-validated"):
        clf = BMMWeightedClassifier().fit(X, y)
    np.testing.assert_array_equal(clf.clean_probability_, 1.0)
    assert clf.mixture_ is None and not clf.label_issues_mask_.any()
    assert clf.predict(X).shape == (3,)


def test_splitter_cv_is_used_as_given() -> None:
    X_tr, noisy, *_ = noisy_problem(4)
    clf = BMMWeightedClassifier(cv=KFold(3, shuffle=True, random_state=0)).fit(X_tr, noisy)
    assert np.isfinite(clf.pred_probs_).all()


def test_same_random_state_same_result() -> None:
    X_tr, noisy, *_ = noisy_problem(5)
    a = BMMWeightedClassifier(random_state=3).fit(X_tr, noisy).clean_probability_
    b = BMMWeightedClassifier(random_state=3).fit(X_tr, noisy).clean_probability_
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"cv": 1}, "cv must be an int >= 2"),
        ({"cv": "five"}, "cv must be an int >= 2"),
        ({"threshold": 1.5}, r"threshold must be 'auto' or a number in \[0, 1\]"),
        ({"weighting": "reweight"}, "weighting must be one of"),
        ({"signal": "entropy"}, "unknown signal 'entropy'"),
        ({"estimator": LinearSVC()}, "LinearSVC has no predict_proba"),
        (
            {"estimator": KNeighborsClassifier(), "weighting": "weight"},
            "KNeighborsClassifier.fit takes no sample_weight",
        ),
    ],
)
def test_bad_parameters_raise_at_fit(params, match) -> None:
    X, y = make_classification(n_samples=60, random_state=0)
    est = BMMWeightedClassifier(**params)  # no validation in __init__
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_bad_inputs_raise_clear_errors() -> None:
    X, y = make_classification(n_samples=60, random_state=0)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        BMMWeightedClassifier().fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes in y, got 1 class"):
        BMMWeightedClassifier().fit(X, np.zeros(60, dtype=int))
    clf = BMMWeightedClassifier(cv=3, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :5])


def test_clean_probability_rejects_bad_labels_and_probabilities() -> None:
    labels = np.array([0, 1, 2, 1])
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"labels\[2\] = 3 is out of range"):
        clean_probability(np.array([0, 1, 3, 1]), probs)
    with pytest.raises(ValueError, match="length mismatch"):
        clean_probability(labels[:3], probs)
    bad = probs.copy()
    bad[2] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="row 2 sums to 1.5"):
        clean_probability(labels, bad)


def test_precomputed_pred_probs_skip_the_cross_validation_and_give_the_same_result() -> None:
    X_tr, noisy, is_noisy, _, _ = noisy_problem(0, rate=0.3)
    first = BMMWeightedClassifier(random_state=0).fit(X_tr, noisy)

    class NoCV(StratifiedKFold):
        def split(self, *args, **kwargs):
            raise AssertionError("cross-validation ran although pred_probs were given")

    again = BMMWeightedClassifier(cv=NoCV(3), random_state=0).fit(
        X_tr, noisy, pred_probs=first.pred_probs_
    )
    np.testing.assert_array_equal(again.clean_probability_, first.clean_probability_)
    np.testing.assert_array_equal(again.label_issues_mask_, first.label_issues_mask_)
    with pytest.raises(ValueError, match=r"pred_probs has shape \(\d+, 2\): need \(n_samples, 3\)"):
        BMMWeightedClassifier().fit(X_tr, noisy, pred_probs=first.pred_probs_[:, :2])


def test_label_issues_table_names_given_and_predicted_labels() -> None:
    pd = pytest.importorskip("pandas")
    X_tr, noisy, is_noisy, _, _ = noisy_problem(0, rate=0.3)
    names = np.array(["cat", "dog", "owl"])
    clf = BMMWeightedClassifier(random_state=0).fit(X_tr, names[noisy])
    table = clf.label_issues_
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == [
        "index", "given_label", "predicted_label", "clean_probability", "flagged"
    ]
    assert (table["given_label"].to_numpy() == names[noisy]).all()
    assert (table["predicted_label"].to_numpy() == names[clf.pred_probs_.argmax(1)]).all()
    np.testing.assert_array_equal(table["flagged"], clf.label_issues_mask_)
    flagged = table[table["flagged"]]
    assert (flagged["given_label"] != flagged["predicted_label"]).all()
    assert is_noisy[flagged["index"]].mean() > 0.8


def test_default_estimator_fits_digits_without_convergence_warnings() -> None:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_digits(return_X_y=True)
    noisy = symmetric_noise(y, 0.3, n_classes=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = BMMWeightedClassifier(cv=3, random_state=0).fit(X[:900], noisy[:900])
    assert clf.score(X[900:], y[900:]) > 0.85


class WeightSpy(LogisticRegression):
    """LogisticRegression that records the sample weights of every fit (class attribute)."""

    seen: list = []

    def fit(self, X, y, sample_weight=None):
        WeightSpy.seen.append(None if sample_weight is None else np.asarray(sample_weight))
        return super().fit(X, y, sample_weight=sample_weight)


def test_user_sample_weight_reaches_the_folds_and_multiplies_w_in_the_refit() -> None:
    X_tr, noisy, *_ = noisy_problem(3)
    u = np.random.default_rng(0).uniform(0.5, 2.0, noisy.size)
    u[:10] = 0.0
    WeightSpy.seen = []
    clf = BMMWeightedClassifier(WeightSpy(max_iter=300), cv=3, random_state=0)
    clf.fit(X_tr, noisy, sample_weight=u)
    *folds, refit = WeightSpy.seen
    assert len(folds) == 3 and all(f is not None for f in folds)
    assert sum(f.size for f in folds) == 2 * noisy.size  # each sample trains 2 of 3 folds
    np.testing.assert_allclose(refit, u * clf.clean_probability_)
    # the user's weights change the refit (unit weights give another model)
    unit = BMMWeightedClassifier(WeightSpy(max_iter=300), cv=3, random_state=0).fit(X_tr, noisy)
    assert not np.allclose(unit.estimator_.coef_, clf.estimator_.coef_)


def test_user_sample_weight_on_the_drop_path_keeps_the_unflagged_weights() -> None:
    X_tr, noisy, *_ = noisy_problem(4)
    u = np.linspace(0.5, 1.5, noisy.size)
    WeightSpy.seen = []
    clf = BMMWeightedClassifier(WeightSpy(max_iter=300), cv=3, weighting="drop", random_state=0)
    clf.fit(X_tr, noisy, sample_weight=u)
    assert clf.refit_mode_ == "drop"
    np.testing.assert_allclose(WeightSpy.seen[-1], u[~clf.label_issues_mask_])


def test_user_sample_weight_needs_an_estimator_that_takes_it() -> None:
    X_tr, noisy, *_ = noisy_problem(5)
    clf = BMMWeightedClassifier(KNeighborsClassifier(), cv=3)
    with pytest.raises(ValueError, match="takes no sample_weight"):
        clf.fit(X_tr, noisy, sample_weight=np.ones(noisy.size))
    with pytest.raises(ValueError, match="Negative values"):
        BMMWeightedClassifier(cv=3).fit(X_tr, noisy, sample_weight=-np.ones(noisy.size))


def test_pair_prior_is_a_parameter_and_off_gives_the_global_prior() -> None:
    X_tr, noisy, *_ = noisy_problem(6)
    assert BMMWeightedClassifier().get_params()["pair_prior"] is True
    on = BMMWeightedClassifier(cv=3, random_state=0).fit(X_tr, noisy)
    off = BMMWeightedClassifier(cv=3, pair_prior=False, random_state=0).fit(X_tr, noisy)
    np.testing.assert_allclose(off.clean_probability_,
                               clean_probability(noisy, off.pred_probs_, pair_prior=False))
    np.testing.assert_allclose(on.clean_probability_, clean_probability(noisy, on.pred_probs_))
    assert not np.allclose(on.clean_probability_, off.clean_probability_)


def test_spread_ties_is_a_parameter_passed_to_the_detection() -> None:
    X_tr, noisy, *_ = noisy_problem(6)
    assert BMMWeightedClassifier().get_params()["spread_ties"] is True
    knn = KNeighborsClassifier(n_neighbors=5)
    off = BMMWeightedClassifier(knn, cv=3, spread_ties=False, random_state=0).fit(X_tr, noisy)
    on = BMMWeightedClassifier(knn, cv=3, random_state=0).fit(X_tr, noisy)
    np.testing.assert_allclose(off.clean_probability_,
                               clean_probability(noisy, off.pred_probs_, spread_ties=False))
    np.testing.assert_allclose(on.clean_probability_, clean_probability(noisy, on.pred_probs_))
    assert not np.allclose(on.clean_probability_, off.clean_probability_)
