"""Noisy-label detection on digits, side by side with cleanlab: flags, noise matrix, refit.

For every seed, the 1797 digits are split 70/30 (stratified); the 1257 training labels get
symmetric, pair (``c -> c+1 mod 10``) or instance-dependent noise (flip probability
proportional to ``1 - p_{i,y_i}`` of a logistic regression cross-validated on the clean
labels, new class drawn from its other probabilities) at 20% and 40%. Each estimator's 5-fold
out-of-sample ``pred_probs`` on the noisy training labels are shared by both libraries:

- noisylabel: ``find_noisy_labels(labels, pred_probs)`` (default rule) for the flagged set,
  ``rank_noisy_labels`` order for the AUC,
  ``estimate_noise_matrix`` for the noise matrix and rate, ``BMMWeightedClassifier(est)
  .fit(X, y, pred_probs=...)`` for the refit;
- cleanlab: ``filter.find_label_issues`` for the flagged set, ``1 - rank.get_label_quality_scores``
  for the AUC, ``count.estimate_py_and_noise_matrices_from_probabilities`` for the noise matrix
  and rate (``1 - sum_j py_j T_jj``), ``CleanLearning(est).fit(X, y, pred_probs=...)`` for the
  refit;
- plain: the estimator fitted on the noisy labels.

Reported per (noise, rate, estimator), mean ± std over seeds, in %: AUC, precision, recall and F1
of the flagged set; estimated and true noise rate; mean absolute error of the noise matrix
``T[i, j] = P(given j | true i)`` against the realised one; test accuracy of the refits. A
second table compares signals for the Beta mixture on the logistic-regression probabilities
under symmetric noise (AUC of ``1 - w`` itself, so an unseparated fit, w = 1, scores 50).

Run: ``python benchmarks/bench_detection.py`` (5 seeds, writes
``benchmarks/results/bench_detection.md``) or ``--quick`` (1 seed, logistic regression and
k-NN only, prints only, seconds). ``--rules`` prints instead the F1 of candidate flagging rules
(how the default of ``find_noisy_labels`` was chosen), mean over seeds, per estimator;
``--rules --dataset blobs`` the same on synthetic Gaussian classes the rules were not chosen on.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from noisylabel import (
    BetaMixture,
    BMMWeightedClassifier,
    empirical_noise_matrix,
    estimate_noise_matrix,
    find_noisy_labels,
    instance_noise,
    normalized_loss,
    pair_noise,
    rank_noisy_labels,
    symmetric_noise,
)
from noisylabel.detect import _vetoed_disagreement, flag_labels
from noisylabel.pipeline import detect
from noisylabel.signals import bounded_loss, cosine_similarity

RESULTS = Path(__file__).resolve().parent / "results" / "bench_detection.md"
K = 10
ESTIMATORS = {
    "LR": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "RF": lambda seed: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
    "HGB": lambda seed: HistGradientBoostingClassifier(max_iter=20, random_state=seed),
    "KNN": lambda seed: KNeighborsClassifier(n_neighbors=5),
}
NOISE = ("symmetric", "pair", "instance")


def load_data(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``digits`` (the benchmark's data) or ``blobs``: a held-out check of the same size, 10
    Gaussian classes in 20 dimensions (12 informative) on which the four estimators are weaker
    (their out-of-sample accuracy is 60-85% on clean labels instead of 93-98%)."""
    if dataset == "digits":
        return load_digits(return_X_y=True)
    return make_classification(n_samples=1797, n_features=20, n_informative=12, n_redundant=4,
                               n_classes=K, n_clusters_per_class=1, class_sep=1.5,
                               random_state=100 + seed)


def noisy_split(kind: str, rate: float, seed: int, dataset: str = "digits"):
    """(X_train, clean y_train, noisy y_train, X_test, y_test) for one seed."""
    X, y = load_data(dataset, seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    if kind == "symmetric":
        noisy = symmetric_noise(y_tr, rate, n_classes=K, seed=seed)
    elif kind == "pair":
        noisy = pair_noise(y_tr, rate, n_classes=K, seed=seed)
    else:
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        clean_p = cross_val_predict(ESTIMATORS["LR"](seed), X_tr, y_tr, cv=folds,
                                    method="predict_proba")
        noisy = instance_noise(y_tr, rate, clean_p, seed=seed)
    return X_tr, y_tr, noisy, X_te, y_te


def rank_score(order: np.ndarray) -> np.ndarray:
    """A score that is higher the earlier a sample comes in ``order``."""
    score = np.empty(order.size)
    score[order] = np.arange(order.size, 0, -1)
    return score


def ours(labels, pred_probs) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    flagged = find_noisy_labels(labels, pred_probs)
    order = rank_noisy_labels(labels, pred_probs)
    nm = estimate_noise_matrix(labels, pred_probs)
    return rank_score(order), flagged, nm.matrix, nm.rate


def cleanlab_detect(labels, pred_probs) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels, pred_probs, n_jobs=1)
    py, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs)
    rate = 1.0 - float(py @ np.diag(noise_matrix))
    # cleanlab's noise_matrix[i, j] = P(label i | true j): transpose to P(given j | true i)
    return 1.0 - get_label_quality_scores(labels, pred_probs), flagged, noise_matrix.T, rate


def detection_row(method, labels, pred_probs, truth, true_T) -> dict[str, float]:
    score, flagged, T, est_rate = method(labels, pred_probs)
    return {
        "AUC": 100 * roc_auc_score(truth, score),
        "precision": 100 * precision_score(truth, flagged, zero_division=0.0),
        "recall": 100 * recall_score(truth, flagged),
        "F1": 100 * f1_score(truth, flagged),
        "est. rate": 100 * est_rate,
        "true rate": 100 * truth.mean(),
        "T error": 100 * float(np.abs(T - true_T).mean()),
    }


def refit_scores(name, seed, X_tr, noisy, pred_probs, X_te, y_te) -> dict[str, float]:
    from cleanlab.classification import CleanLearning

    est = ESTIMATORS[name](seed)
    plain = clone(est).fit(X_tr, noisy).score(X_te, y_te)
    wrapped = BMMWeightedClassifier(clone(est)).fit(X_tr, noisy, pred_probs=pred_probs)
    cl = CleanLearning(clone(est), seed=seed).fit(X_tr, noisy, pred_probs=pred_probs)
    return {"refit ours": 100 * wrapped.score(X_te, y_te),
            "refit cleanlab": 100 * cl.score(X_te, y_te), "plain": 100 * plain}


def signal_rows(labels, pred_probs, truth) -> dict[str, float]:
    """AUC of 1 - w for the Beta mixture on each signal, and of DivideMix's GMM on the loss."""
    out = {}
    for name, fn, side in (("BMM cosine", cosine_similarity, "high"),
                           ("BMM loss 1 - exp(-CE) (default)", bounded_loss, "low"),
                           ("BMM min-max loss (before)", normalized_loss, "low")):
        s = fn(labels, pred_probs)
        out[name] = 100 * roc_auc_score(truth, 1 - BetaMixture(clean_side=side).fit(s)
                                        .clean_probability(s))
    loss = normalized_loss(labels, pred_probs).reshape(-1, 1)
    gmm = GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0).fit(loss)
    clean = gmm.predict_proba(loss)[:, int(np.argmin(gmm.means_.ravel()))]
    out["GMM min-max loss (DivideMix)"] = 100 * roc_auc_score(truth, 1 - clean)
    return out


def run(seeds: int, estimators: list[str], rates: list[float]):
    main: dict[tuple, list[dict[str, float]]] = {}
    signals: dict[tuple, list[float]] = {}
    for kind in NOISE:
        for rate in rates:
            for seed in range(seeds):
                X_tr, y_tr, noisy, X_te, y_te = noisy_split(kind, rate, seed)
                truth = noisy != y_tr
                true_T = empirical_noise_matrix(y_tr, noisy, K).matrix
                folds = StratifiedKFold(5, shuffle=True, random_state=seed)
                for name in estimators:
                    pp = cross_val_predict(ESTIMATORS[name](seed), X_tr, noisy, cv=folds,
                                           method="predict_proba")
                    refit = refit_scores(name, seed, X_tr, noisy, pp, X_te, y_te)
                    for lib, method in (("noisylabel", ours), ("cleanlab", cleanlab_detect)):
                        row = detection_row(method, noisy, pp, truth, true_T)
                        row["refit"] = refit["refit ours" if lib == "noisylabel" else
                                             "refit cleanlab"]
                        row["plain"] = refit["plain"]
                        main.setdefault((kind, rate, name, lib), []).append(row)
                    if kind == "symmetric" and name == "LR":
                        for sig, auc in signal_rows(noisy, pp, truth).items():
                            signals.setdefault((rate, sig), []).append(auc)
    return main, signals


COLS = ("AUC", "precision", "recall", "F1", "est. rate", "true rate", "T error", "refit", "plain")


def count_flags(w: np.ndarray, order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Within each group, flag the ``round(sum(1 - w))`` samples that come first in ``order``."""
    flagged = np.zeros(w.size, dtype=bool)
    for g in np.unique(groups):
        members = order[groups[order] == g]
        flagged[members[: int(round(float((1 - w[groups == g]).sum())))]] = True
    return flagged


def rule_rows(labels, pred_probs, truth) -> dict[str, tuple[float, float]]:
    """F1 and flagged / truly wrong of candidate flagging rules (``--rules``)."""
    from cleanlab.filter import find_label_issues

    disagrees = pred_probs.argmax(axis=1) != labels
    dets = {spread: detect(labels, pred_probs, pair_prior=True, spread_ties=spread)
            for spread in (False, True)}  # True: what find_noisy_labels fits
    # the auto rule without its pair-row cap: disagreement vetoed by w >= 0.5
    veto = {spread: _vetoed_disagreement(d, labels, pred_probs) for spread, d in dets.items()}
    w = dets[True].clean_probability
    order = rank_noisy_labels(labels, pred_probs)
    rules = {
        "w < 0.5": w < 0.5,
        "round(sum(1 - w)) lowest w": count_flags(w, order, np.zeros_like(labels)),
        "round(sum(1 - w)) lowest w per class": count_flags(w, order, labels),
        "model disagrees": disagrees,
        "disagrees and w < 0.5, ties not spread (the previous default)": veto[False],
        "the same, ties spread": veto[True],
        "auto: the same, capped in pair rows (default)": flag_labels(dets[True], labels,
                                                                     pred_probs, "auto"),
        "cleanlab find_label_issues": find_label_issues(labels, pred_probs, n_jobs=1),
    }
    return {k: (100 * f1_score(truth, m), m.sum() / truth.sum()) for k, m in rules.items()}


def run_rules(seeds: int, estimators: list[str], rates: list[float], dataset: str) -> str:
    """F1 (flagged / truly wrong) of each rule, mean over seeds: one column per estimator."""
    rows: dict[tuple, dict[str, list[tuple[float, float]]]] = {}
    for kind in NOISE:
        for rate in rates:
            for seed in range(seeds):
                X_tr, y_tr, noisy, _, _ = noisy_split(kind, rate, seed, dataset)
                folds = StratifiedKFold(5, shuffle=True, random_state=seed)
                for name in estimators:
                    pp = cross_val_predict(ESTIMATORS[name](seed), X_tr, noisy, cv=folds,
                                           method="predict_proba")
                    for rule, v in rule_rows(noisy, pp, noisy != y_tr).items():
                        rows.setdefault((kind, rate, rule), {}).setdefault(name, []).append(v)
    lines = ["| noise | rule | " + " | ".join(estimators) + " |", "|---|---|" + "---|" *
             len(estimators)]
    for (kind, rate, rule), by_est in rows.items():
        cells = [f"{np.mean(by_est[e], axis=0)[0]:.1f} ({np.mean(by_est[e], axis=0)[1]:.2f})"
                 for e in estimators]
        lines.append(f"| {kind} {rate:.0%} | {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(main) -> str:
    lines = ["| noise | estimator | library | " + " | ".join(COLS) + " |",
             "|---|---|---|" + "---|" * len(COLS)]
    for (kind, rate, name, lib), runs in main.items():
        cells = [f"{np.mean([r[c] for r in runs]):.1f} ± {np.std([r[c] for r in runs]):.1f}"
                 for c in COLS]
        lines.append(f"| {kind} {rate:.0%} | {name} | {lib} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(main) -> str:
    """Mean over estimators of F1 and refit accuracy per noise, both libraries."""
    lines = ["| noise | F1 noisylabel | F1 cleanlab | refit noisylabel | refit cleanlab | plain |",
             "|---|---|---|---|---|---|"]
    keys = sorted({(k, r) for k, r, _, _ in main}, key=lambda kr: (NOISE.index(kr[0]), kr[1]))
    for kind, rate in keys:
        def mean(lib, col, kind=kind, rate=rate):
            return np.mean([r[col] for (k, ra, _, li), runs in main.items()
                            if (k, ra, li) == (kind, rate, lib) for r in runs])
        lines.append(f"| {kind} {rate:.0%} | {mean('noisylabel', 'F1'):.1f} | "
                     f"{mean('cleanlab', 'F1'):.1f} | {mean('noisylabel', 'refit'):.1f} | "
                     f"{mean('cleanlab', 'refit'):.1f} | {mean('noisylabel', 'plain'):.1f} |")
    return "\n".join(lines)


def signal_table(signals) -> str:
    lines = ["| noise | method | AUC (%) mean ± std | per seed |", "|---|---|---|---|"]
    for (rate, name), aucs in signals.items():
        per_seed = " ".join(f"{a:.1f}" for a in aucs)
        lines.append(f"| symmetric {rate:.0%} | {name} | {np.mean(aucs):.1f} ± "
                     f"{np.std(aucs):.1f} | {per_seed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, LR and KNN only, print only (seconds)")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS),
                        choices=list(ESTIMATORS))
    parser.add_argument("--rules", action="store_true",
                        help="compare flagging rules instead (mean over seeds and estimators)")
    parser.add_argument("--dataset", choices=("digits", "blobs"), default="digits",
                        help="blobs: a held-out check on data the rules were not chosen on "
                        "(--rules only)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"markdown output (default {RESULTS.name} in results/ unless --quick)")
    args = parser.parse_args(argv)
    n_seeds = 1 if args.quick else args.seeds
    if n_seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.dataset != "digits" and not args.rules:
        parser.error("--dataset blobs goes with --rules (the main table is on digits)")
    estimators = ["LR", "KNN"] if args.quick else args.estimators
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    start = time.perf_counter()
    if args.rules:
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(run_rules(n_seeds, estimators, args.rates, args.dataset))
        print(f"({n_seeds} seed(s), {', '.join(estimators)}, {time.perf_counter() - start:.1f} s)")
        return
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, signals = run(n_seeds, estimators, args.rates)
    elapsed = time.perf_counter() - start
    text = (table(results) + "\n\nMean over the estimators:\n\n" + summary(results)
            + "\n\nSignals for the Beta mixture (LR probabilities, symmetric noise):\n\n"
            + signal_table(signals))
    print(text)
    print(f"({n_seeds} seed(s), {elapsed:.1f} s)")
    if out is not None:
        cmd = "python benchmarks/bench_detection.py" + ("" if n_seeds == 5 else f" --seeds {n_seeds}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            "# Noisy-label detection on digits: noisylabel and cleanlab\n\n"
            f"Command: `{cmd}` ({elapsed:.0f} s, one thread). {n_seeds} seeds; 70/30 split of "
            "the 1797 digits, noise on the 1257 training labels, 5-fold out-of-sample "
            "probabilities shared by both libraries; refit = test accuracy (30%) of the "
            "wrapper / CleanLearning, plain = the estimator on the noisy labels. HGB uses "
            "max_iter=20 to keep the run short. Mean ± std over seeds, in %.\n\n"
            f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
            f"numpy {np.__version__}, {platform.machine()}.\n\n" + text + "\n",
            encoding="utf-8",
        )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
