"""BetaMixture fit time and accuracy against two references, measured side by side.

Data: a 30/70 mixture of Beta(2, 6) ("noisy", low similarity) and Beta(8, 2) ("clean"),
sampled with a fixed seed, at 1e4, 1e6 and 1e7 values (``--quick``: 1e4 and 1e5).

Methods, all on the same array, one thread each (``threadpoolctl`` / ``torch.set_num_threads``):

- ``ours``: ``noisylabel.BetaMixture().fit(x)`` on a numpy array (default settings: quantile
  init, EM to ``tol=1e-5`` on the mean log-likelihood); ``ours-torch``: the same on a CPU
  float64 tensor (and on CUDA when available);
- ``arazo-10``: a plain reference written here after the public LabelNoiseCorrection
  ``BetaMixture1D`` (Arazo et al., ICML'19): start alphas (1, 2), betas (2, 1), weights
  (0.5, 0.5); exactly 10 iterations of E-step with ``scipy.stats.beta.pdf`` and weighted
  method-of-moments M-step; no convergence test;
- ``sklearn-gmm``: ``sklearn.mixture.GaussianMixture(2, random_state=0)`` (defaults).

Reported per size: best-of-k wall time, the time ratio against ``ours``, and closeness to the
truth: absolute error of the mixing weights and component means (max over the two
components) and the mean L1 distance between the fitted and the true posterior of the
high-mean component. Timings are single runs on a shared machine; read the ratios.

Run: ``python benchmarks/bench_mixture.py`` (writes ``benchmarks/results/bench_mixture.md``)
or ``--quick`` (1e4 and 1e5, prints only, a few seconds).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from noisylabel import BetaMixture

RESULTS = Path(__file__).resolve().parent / "results" / "bench_mixture.md"
TRUE = {"weights": np.array([0.3, 0.7]), "alphas": np.array([2.0, 8.0]), "betas": np.array([6.0, 2.0])}
TRUE_MEANS = TRUE["alphas"] / (TRUE["alphas"] + TRUE["betas"])


def sample(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.random(n) < TRUE["weights"][0]
    x = np.empty(n)
    x[low] = rng.beta(TRUE["alphas"][0], TRUE["betas"][0], int(low.sum()))
    x[~low] = rng.beta(TRUE["alphas"][1], TRUE["betas"][1], int((~low).sum()))
    return x


def true_posterior_high(x: np.ndarray) -> np.ndarray:
    xc = np.clip(x, 1e-4, 1 - 1e-4)
    dens = [w * stats.beta(a, b).pdf(xc) for w, a, b in zip(TRUE["weights"], TRUE["alphas"], TRUE["betas"], strict=True)]
    return dens[1] / (dens[0] + dens[1])


class Arazo10:
    """Reference: Arazo et al.'s BetaMixture1D fit (10 EM iterations, fixed start)."""

    def __init__(self) -> None:
        self.alphas = np.array([1.0, 2.0])
        self.betas = np.array([2.0, 1.0])
        self.weight = np.array([0.5, 0.5])

    def weighted_likelihood(self, x: np.ndarray, k: int) -> np.ndarray:
        return self.weight[k] * stats.beta.pdf(x, self.alphas[k], self.betas[k])

    def fit(self, x: np.ndarray) -> Arazo10:
        x = np.clip(x, 1e-4, 1 - 1e-4)
        for _ in range(10):
            r = np.array([self.weighted_likelihood(x, k) for k in range(2)])
            r[r <= 1e-12] = 1e-12
            r /= r.sum(axis=0)
            for k in range(2):
                m = np.sum(r[k] * x) / np.sum(r[k])
                v = np.sum(r[k] * (x - m) ** 2) / np.sum(r[k])
                self.alphas[k] = m * (m * (1 - m) / v - 1)
                self.betas[k] = self.alphas[k] * (1 - m) / m
            self.weight = r.sum(axis=1) / r.sum()
        return self

    def summary(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        means = self.alphas / (self.alphas + self.betas)
        o = np.argsort(means)
        xc = np.clip(x, 1e-4, 1 - 1e-4)
        dens = [self.weighted_likelihood(xc, k) for k in o]
        return self.weight[o], means[o], dens[1] / (dens[0] + dens[1] + 1e-12)


def fit_ours(x):
    m = BetaMixture().fit(x)
    return m


def summary_ours(m: BetaMixture, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    post = m.predict_proba(x)[:, 1]
    if not isinstance(post, np.ndarray):
        post = post.cpu().numpy()
    return m.weights_, m.means_, post


def fit_gmm(x: np.ndarray) -> GaussianMixture:
    return GaussianMixture(2, random_state=0).fit(x[:, None])


def summary_gmm(g: GaussianMixture, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means = g.means_[:, 0]
    o = np.argsort(means)
    return g.weights_[o], means[o], g.predict_proba(x[:, None])[:, o[1]]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e4 and 1e5 values, print only")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000, 10_000_000]
    repeats = {10_000: 5, 100_000: 3, 1_000_000: 2, 10_000_000: 1}

    try:
        import torch

        torch.set_num_threads(1)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    except ImportError:  # pragma: no cover - torch is a dependency
        torch, devices = None, []

    rows = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in sizes:
            x = sample(n)
            truth = true_posterior_high(x)
            methods: list[tuple[str, Callable[[], object], Callable]] = [
                ("ours", lambda x=x: fit_ours(x), summary_ours),
            ]
            for dev in devices:
                xt = torch.from_numpy(x).to(dev)

                def run(xt=xt, dev=dev):
                    m = fit_ours(xt)
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    return m

                methods.append((f"ours-torch-{dev}", run, lambda m, x, xt=xt: summary_ours(m, xt)))
            methods += [
                ("arazo-10", lambda x=x: Arazo10().fit(x), lambda m, x: m.summary(x)),
                ("sklearn-gmm", lambda x=x: fit_gmm(x), summary_gmm),
            ]
            base = None
            for name, fn, summarise in methods:
                seconds, model = timed(fn, repeats[n])
                weights, means, post = summarise(model, x)
                base = seconds if base is None else base
                extra = ""
                if isinstance(model, BetaMixture):
                    extra = f"{model.n_iter_subsample_}+{model.n_iter_}"
                elif isinstance(model, GaussianMixture):
                    extra = str(model.n_iter_)
                else:
                    extra = "10"
                row = {
                    "n": n,
                    "method": name,
                    "seconds": seconds,
                    "ratio": seconds / base,
                    "iters": extra,
                    "w_err": float(np.abs(weights - TRUE["weights"]).max()),
                    "mean_err": float(np.abs(means - TRUE_MEANS).max()),
                    "post_l1": float(np.abs(post - truth).mean()),
                }
                rows.append(row)
                print(
                    f"n={n:>10,d} {name:18s} {seconds:9.4f} s  x{row['ratio']:6.2f}  iters {extra:>6s}"
                    f"  |dw|={row['w_err']:.4f} |dmean|={row['mean_err']:.4f}"
                    f"  L1(post)={row['post_l1']:.4f}",
                    flush=True,
                )

    if args.quick:
        return
    lines = [
        "# BetaMixture fit: time and accuracy",
        "",
        "Command: `python benchmarks/bench_mixture.py`. Data: 30/70 mixture of Beta(2, 6) and "
        "Beta(8, 2), seed 0. One thread per method; best of 5 / 2 / 1 runs at 1e4 / 1e6 / 1e7.",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}.",
        "",
        "`time / ours`: the method's time divided by `ours` (numpy) at the same size. `iters`: EM "
        "iterations (ours: subsample warm start + full data). Errors against the true mixture: "
        "max abs error of the weights and of the component means; `L1(post)`: mean |fitted - "
        "true| posterior of the high-mean component.",
        "",
        "| N | method | time (s) | time / ours | iters | abs err weights | abs err means | L1(post) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['method']} | {r['seconds']:.4f} | {r['ratio']:.2f} | {r['iters']} | "
            f"{r['w_err']:.4f} | {r['mean_err']:.4f} | {r['post_l1']:.4f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
