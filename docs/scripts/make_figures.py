"""Make the concept figures of the docs: the fitted Beta mixture and the mu1/mu2 schedule.

Run from the repository root (writes docs/images/bmm_fit.png and docs/images/schedule.png)::

    python docs/scripts/make_figures.py

The mixture is fitted to real predictions: 5-fold cross-validated logistic regression on
scikit-learn's handwritten digits with 30% symmetric label noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from noisylabel import BetaMixture, cosine_similarity, loss_weights, symmetric_noise

OUT = Path(__file__).resolve().parents[1] / "images"


def bmm_figure(path: Path) -> None:
    X, y_true = load_digits(return_X_y=True)
    labels = symmetric_noise(y_true, rate=0.3, n_classes=10, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    pred_probs = cross_val_predict(model, X, labels, cv=5, method="predict_proba")
    s = cosine_similarity(labels, pred_probs)
    bmm = BetaMixture().fit(s)
    noisy = labels != y_true

    grid = np.linspace(1e-3, 1 - 1e-3, 500)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(0, 1, 41)
    ax.hist([s[~noisy], s[noisy]], bins=bins, stacked=True, density=True, alpha=0.55,
            color=["tab:green", "tab:red"], label=["truly clean labels", "truly wrong labels"])
    for k, colour in zip(range(2), ["tab:red", "tab:green"], strict=True):
        pdf = bmm.weights_[k] * stats.beta.pdf(grid, bmm.alphas_[k], bmm.betas_[k])
        ax.plot(grid, pdf, color=colour, lw=2,
                label=f"component {k}: α={bmm.alphas_[k]:.2f}, β={bmm.betas_[k]:.2f}, "
                      f"π={bmm.weights_[k]:.2f}")
    ax2 = ax.twinx()
    ax2.plot(grid, bmm.clean_probability(grid), color="black", ls="--", label="w = p(clean | S)")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("clean probability w")
    ax.set_ylim(0, 14)
    ax.set_xlabel("cosine similarity S between prediction and label")
    ax.set_ylabel("density")
    ax.set_title("Two-component Beta mixture on digits with 30% label noise", fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def schedule_figure(path: Path, beta: float = 3.0, epochs: int = 20) -> None:
    e = np.linspace(1, epochs, 400)
    mu = np.array([loss_weights(x, beta) for x in e])
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    ax.plot(e, mu[:, 0], label="μ1 (weighted CE, auxiliary branch)")
    ax.plot(e, mu[:, 1], label="μ2 (KL to corrected targets, target branch)")
    ax.axvline(beta, color="grey", ls=":", label=f"e = β = {beta:g}")
    ax.set_xlabel("epoch e")
    ax.set_ylabel("loss weight")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    bmm_figure(OUT / "bmm_fit.png")
    schedule_figure(OUT / "schedule.png")
    print(f"wrote {OUT / 'bmm_fit.png'} and {OUT / 'schedule.png'}")
