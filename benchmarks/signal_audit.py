"""Which signal ranks a finished run's wrong labels best? An offline audit of FER runs.

For each ``checkpoint.pt`` of a finished ``noisylabel-fer train`` run (injected noise, or real
noise with ``--clean-labels``), takes the noise model's last statistics pass (the auxiliary
branch's predictions for the un-augmented training images, ``NoiseModel.predictions``) and the
labels the run trained on, and fits ``clean_probability`` to them with each signal (one global
mixture, as ``NoiseModel``). Prints, per signal: the AUC of ``1 - w`` against the truly wrong
labels, the mean w of right / wrong labels, and the number of classes whose every label has
``w < 0.5``. The same predictions for every signal, so the signals are compared, not the runs.

Example (the FER+ runs of ``benchmarks/ferplus.py``, real noise)::

    python benchmarks/signal_audit.py WORK/cpu/runs/faces/fer2013/noise0.00/full/seed*/run/checkpoint.pt \\
        --clean-labels WORK/cpu/labels-ferplus.csv
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

SIGNALS = ("cosine", "calibrated")


def audit(checkpoint: Path, clean_labels: Path | None) -> list[str]:
    """One line per signal for one run (see the module docstring)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from noisylabel import clean_probability
    from noisylabel.apps.fer.ferplus import read_train_labels
    from noisylabel.apps.fer.train import TrainConfig, load_data

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    split = load_data(TrainConfig.from_dict(ckpt["config"]))["train"]
    given = torch.as_tensor(ckpt["noisy_labels"]).numpy()
    if clean_labels is None:
        truth = split.labels.numpy()
    else:
        table = read_train_labels(clean_labels)
        truth = np.array([table[name][0] for name in split.names])
    wrong = given != truth
    probs = ckpt["noise_model"]["last_probs"].double().numpy()
    probs /= probs.sum(axis=1, keepdims=True)
    lines = [f"{checkpoint}: {wrong.mean():.1%} wrong, last stats pass right on "
             f"{(probs.argmax(axis=1) == truth).mean():.1%} of the true labels"]
    for signal in SIGNALS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = np.asarray(clean_probability(given, probs, signal=signal, pair_prior=False))
        whole = sum(bool((w[given == c] < 0.5).all()) for c in np.unique(given))
        lines.append(f"  {signal:10s} AUC {roc_auc_score(wrong, 1 - w):.3f}  w right / wrong "
                     f"{w[~wrong].mean():.2f} / {w[wrong].mean():.2f}  classes flagged whole "
                     f"{whole}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+", help="checkpoint.pt of finished runs")
    p.add_argument("--clean-labels", type=Path, help="image,label CSV of the true labels "
                   "(real noise); default: the data set's labels (injected noise)")
    args = p.parse_args(argv)
    for checkpoint in args.checkpoints:
        print("\n".join(audit(checkpoint, args.clean_labels)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
