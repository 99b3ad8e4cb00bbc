"""Outputs of a training run: metrics CSV, TensorBoard scalars, plots, config and summary.

Everything here is a side effect on the run folder; the trainer calls it from its rank-0 code
path only. Nothing here changes training.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "RunReporter",
    "atomic_torch_save",
    "atomic_write_text",
    "write_json",
    "write_metrics_csv",
    "summarize_accuracy",
    "format_accuracy_table",
    "noise_detection_auc",
    "confusion_matrix",
    "plot_curves",
    "plot_similarity",
    "plot_confusion",
    "format_class_table",
]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, then os.replace: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace: never a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_metrics_csv(path: str | Path, history: Sequence[Mapping[str, Any]]) -> Path:
    """Write one CSV row per epoch (columns: the union of keys, first-seen order), atomically.

    The whole file is rewritten from the history each epoch, so a resumed run's CSV is exactly
    the uninterrupted run's.
    """
    path = Path(path)
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.DictWriter(_Sink(), fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, "".join(lines))
    return path


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def summarize_accuracy(test_acc: Sequence[float], last: int = 5) -> dict[str, float | int]:
    """Final, last-``last`` mean and best test accuracy of a run.

    Returns
    -------
    dict
        ``final`` = acc[-1]; ``last5_mean`` = mean(acc[-last:]) (the paper's ablation protocol);
        ``last5_std``; ``best`` = max(acc) and ``best_epoch`` (1-based). The best epoch is
        selected on the test set, hence optimistic.
    """
    if len(test_acc) == 0:
        raise ValueError("no test accuracy recorded: the run trained no epoch")
    acc = np.asarray(test_acc, dtype=np.float64)
    tail = acc[-last:]
    return {
        "final": float(acc[-1]),
        "last5_mean": float(tail.mean()),
        "last5_std": float(tail.std()),
        "best": float(acc.max()),
        "best_epoch": int(acc.argmax()) + 1,
        "epochs": int(acc.size),
    }


def format_accuracy_table(summary: Mapping[str, Any], branch: str = "target") -> str:
    """Render [`summarize_accuracy`][noisylabel.apps.fer.report.summarize_accuracy]'s dict as a small text table (accuracies in %)."""
    n = min(5, int(summary["epochs"]))
    rows = [
        ("final epoch", f"{100 * summary['final']:.2f}"),
        (f"mean of last {n} epochs", f"{100 * summary['last5_mean']:.2f} +- "
         f"{100 * summary['last5_std']:.2f}"),
        (f"best epoch ({summary['best_epoch']}, optimistic)", f"{100 * summary['best']:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    head = f"test accuracy of the {branch} branch (%)"
    return "\n".join([head] + [f"  {name:<{width}}  {value}" for name, value in rows])


def noise_detection_auc(clean_prob: np.ndarray, is_noisy: np.ndarray) -> float:
    """AUC of ``clean_prob`` as a score separating truly clean (positive) from flipped samples.

    AUC = P(w_clean > w_noisy) + 0.5 P(tie); NaN when one of the two groups is empty.
    """
    from sklearn.metrics import roc_auc_score

    clean_prob = np.asarray(clean_prob, dtype=np.float64)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    if is_noisy.all() or not is_noisy.any():
        return float("nan")
    return float(roc_auc_score(~is_noisy, clean_prob))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def format_class_table(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> str:
    """Per-class accuracy (recall) table with counts, plus overall and mean-class accuracy."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    support = cm.sum(axis=1)
    width = max(12, *(len(c) for c in class_names))
    lines = [f"  {'class':<{width}}  {'n':>6}  {'acc %':>6}"]
    recalls = []
    for c, name in enumerate(class_names):
        if support[c]:
            recalls.append(cm[c, c] / support[c])
            lines.append(f"  {name:<{width}}  {support[c]:>6d}  {100 * recalls[-1]:>6.2f}")
        else:
            lines.append(f"  {name:<{width}}  {0:>6d}  {'-':>6}")
    overall = np.trace(cm) / max(1, cm.sum())
    lines.append(f"  {'overall':<{width}}  {cm.sum():>6d}  {100 * overall:>6.2f}")
    mean_cls = float(np.mean(recalls)) if recalls else float("nan")
    lines.append(f"  {'mean class':<{width}}  {'':>6}  {100 * mean_cls:>6.2f}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Accuracy (train / test) and loss curves per epoch, one PNG with two panels."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_acc", "train (noisy labels)"), ("test_acc", "test")):
        if any(key in r for r in history):
            ax_acc.plot(epochs, [100 * r.get(key, np.nan) for r in history], label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    for key in ("loss", "l1", "lkld", "ce"):
        if any(key in r for r in history):
            ax_loss.plot(epochs, [r.get(key, np.nan) for r in history], label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_similarity(
    similarity: np.ndarray,
    path: str | Path,
    alphas: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    is_noisy: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Histogram of the similarity signal with the two fitted Beta components overlaid.

    With ``is_noisy`` the histogram is split into truly clean and truly flipped samples.
    Component k is drawn as ``weights[k] * Beta(s; alphas[k], betas[k])`` (a density).
    """
    from scipy.stats import beta as beta_dist

    plt = _pyplot()
    s = np.asarray(similarity, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.0, 1.0, 51)
    if is_noisy is not None:
        is_noisy = np.asarray(is_noisy, dtype=bool)
        ax.hist([s[~is_noisy], s[is_noisy]], bins=bins, density=True, stacked=True,
                label=["truly clean", "truly flipped"], alpha=0.6)
    else:
        ax.hist(s, bins=bins, density=True, alpha=0.6, label="samples")
    if alphas is not None and betas is not None and weights is not None:
        grid = np.linspace(1e-3, 1 - 1e-3, 400)
        total = np.zeros_like(grid)
        for k in range(len(alphas)):
            if not (np.isfinite(alphas[k]) and np.isfinite(betas[k])):
                continue
            dens = weights[k] * beta_dist.pdf(grid, alphas[k], betas[k])
            total += dens
            ax.plot(grid, dens, label=f"component {k} (a={alphas[k]:.2f}, b={betas[k]:.2f})")
        ax.plot(grid, total, "k--", label="mixture")
        top = np.nanpercentile(total, 99) if np.isfinite(total).any() else None
        if top is not None and top > 0:
            ax.set_ylim(0, max(ax.get_ylim()[1], 1.1 * top))
    ax.set_xlabel("similarity S")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (true class per row) with counts in the cells."""
    plt = _pyplot()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class RunReporter:
    """All per-run side effects: metrics CSV, TensorBoard scalars, config.json, final plots.

    Parameters
    ----------
    out_dir : Path
        The run folder.
    tensorboard : bool
        Write TensorBoard event files under ``out_dir/tensorboard`` when tensorboard is
        importable (silently skipped otherwise).
    start_epoch : int
        Epochs already done (after a resume): TensorBoard events from later epochs are purged.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, start_epoch: int = 0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._tb = SummaryWriter(
                    str(self.out_dir / "tensorboard"), purge_step=start_epoch + 1
                )

    def save_config(self, config: Mapping[str, Any]) -> Path:
        """Write the resolved configuration as ``config.json``."""
        return write_json(self.out_dir / "config.json", config)

    def log_epoch(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` and send the last row's numbers to TensorBoard."""
        write_metrics_csv(self.out_dir / "metrics.csv", history)
        if self._tb is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(
                    value, bool
                ):
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
