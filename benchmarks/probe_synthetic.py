"""Linear probe of the synthetic faces: is expression learnable, and does identity dominate?

Renders the default synthetic data set (``SyntheticFaceConfig()``: 2400 train / 600 test,
300 identities) at 32 px in memory, then reports on the flattened pixels (3072 values per image):

* the share of pixel variance explained by identity and by expression, ``SS_between / SS_total``
  summed over pixels (eta squared), and its chance-corrected form
  ``omega^2 = (SS_between - (G - 1) MS_within) / (SS_total + MS_within)`` (with G groups the
  raw share is inflated by about ``(G - 1) / (N - 1)`` even for meaningless groups: 300
  identities over 2400 images give +12.5 points);
* held-out accuracy of a logistic regression (on 256 PCA components of standardised pixels)
  for expression (7 classes) and for identity (the identity pool, test images of identities seen
  in training), against chance;
* expression accuracy again after subtracting each identity's mean training image (an oracle
  version of what average expression anchoring approximates with a batch mean).

Usage::

    python benchmarks/probe_synthetic.py            # default data set, writes results/*.md
    python benchmarks/probe_synthetic.py --quick    # 700/300 images, 60 identities, print only
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, render_split

RESULTS = Path(__file__).parent / "results" / "probe_synthetic.md"


def variance_explained(x: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(eta^2, omega^2) of ``groups`` for the pixel matrix ``x`` (N, D), summed over pixels.

    eta^2 = SS_between / SS_total; omega^2 = (SS_between - (G - 1) MS_within) /
    (SS_total + MS_within) with MS_within = SS_within / (N - G).
    """
    n = x.shape[0]
    mean = x.mean(0)
    ss_total = float(((x - mean) ** 2).sum())
    ss_between = 0.0
    uniq = np.unique(groups)
    for g in uniq:
        xg = x[groups == g]
        ss_between += xg.shape[0] * float(((xg.mean(0) - mean) ** 2).sum())
    k = uniq.size
    ms_within = (ss_total - ss_between) / (n - k)
    return ss_between / ss_total, (ss_between - (k - 1) * ms_within) / (ss_total + ms_within)


def probe_accuracy(x_tr, y_tr, x_te, y_te, n_components: int, seed: int) -> float:
    """Held-out accuracy of standardise -> PCA -> multinomial logistic regression."""
    scaler = StandardScaler().fit(x_tr)
    pca = PCA(n_components=min(n_components, x_tr.shape[0] - 1), random_state=seed)
    z_tr = pca.fit_transform(scaler.transform(x_tr))
    z_te = pca.transform(scaler.transform(x_te))
    clf = LogisticRegression(C=0.05, max_iter=2000)
    clf.fit(z_tr, y_tr)
    return float((clf.predict(z_te) == y_te).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data set, print only")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    base = SyntheticFaceConfig(seed=a.seed)
    if a.quick:
        base = replace(base, n_train=700, n_test=300, n_identities=60)
    # rendered directly at the probe size (supersampled), not decoded from JPEG
    cfg = replace(base, image_size=a.size, supersample=max(2, 100 // a.size + 1))
    t0 = time.perf_counter()
    img_tr, meta_tr = render_split(cfg, "train")
    img_te, meta_te = render_split(cfg, "test")
    render_s = time.perf_counter() - t0
    x_tr = img_tr.reshape(len(img_tr), -1).astype(np.float64)
    x_te = img_te.reshape(len(img_te), -1).astype(np.float64)
    y_tr, y_te = meta_tr["labels"], meta_te["labels"]
    id_tr, id_te = meta_tr["identities"], meta_te["identities"]

    x_all = np.concatenate([x_tr, x_te])
    eta_id, omega_id = variance_explained(x_all, np.concatenate([id_tr, id_te]))
    eta_ex, omega_ex = variance_explained(x_all, np.concatenate([y_tr, y_te]))

    t0 = time.perf_counter()
    acc_ex = probe_accuracy(x_tr, y_tr, x_te, y_te, 256, a.seed)
    seen = np.isin(id_te, id_tr)
    acc_id = probe_accuracy(x_tr, id_tr, x_te[seen], id_te[seen], 256, a.seed)
    # oracle identity normalisation: subtract each identity's mean training image
    means = {i: x_tr[id_tr == i].mean(0) for i in np.unique(id_tr)}
    x_tr_c = x_tr - np.stack([means[i] for i in id_tr])
    x_te_c = x_te[seen] - np.stack([means[i] for i in id_te[seen]])
    acc_ex_c = probe_accuracy(x_tr_c, y_tr, x_te_c, y_te[seen], 256, a.seed)
    probe_s = time.perf_counter() - t0

    n_id = len(np.unique(id_tr))
    rows = [
        ("identity", f"{100 * eta_id:.1f}", f"{100 * omega_id:.1f}",
         f"{100 * acc_id:.1f}", f"{100 / n_id:.1f} ({n_id} ids)"),
        ("expression", f"{100 * eta_ex:.1f}", f"{100 * omega_ex:.1f}",
         f"{100 * acc_ex:.1f}", f"{100 / 7:.1f} (7 classes)"),
        ("expression, identity mean removed", "", "", f"{100 * acc_ex_c:.1f}", ""),
    ]
    header = ("factor", "variance share eta^2 (%)", "chance-corrected omega^2 (%)",
              "probe accuracy, held out (%)", "chance (%)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    cmd = "python benchmarks/probe_synthetic.py" + (" --quick" if a.quick else "")
    summary = (
        f"Data: `SyntheticFaceConfig` hash {base.hash()} ({cfg.n_train} train / {cfg.n_test} "
        f"test images, {cfg.n_identities} identities), rendered at {a.size} px; "
        f"{x_tr.shape[1]} pixel values per image. Rendering {render_s:.1f} s, probes "
        f"{probe_s:.1f} s (2 shared cores).\n"
        f"Probe: standardised pixels -> PCA (256) -> logistic regression (C=0.05); identity "
        f"accuracy on the {int(seen.sum())} test images whose identity occurs in training."
    )
    print(table)
    print()
    print(summary)
    if not a.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(f"# Linear probe of the synthetic faces\n\nCommand: `{cmd}`\n\n"
                           f"{summary}\n\n{table}\n")
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
