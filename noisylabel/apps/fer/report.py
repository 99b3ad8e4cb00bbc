"""Reports of a training run: metrics CSV, TensorBoard scalars, train.log, plots, config,
accuracy summaries and tables.

Everything here is a side effect on the run folder; the trainer calls it from its rank-0 code
path only. Nothing here changes training. Where the files go and how they are written
(atomically) is [`run_folder`][noisylabel.apps.fer.run_folder]'s.
"""

from __future__ import annotations

import csv
import datetime
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from noisylabel.apps.fer import run_folder
from noisylabel.apps.fer.run_folder import atomic_write_text, write_json

__all__ = [
    "RunReporter",
    "TENSORBOARD_MISSING",
    "format_duration",
    "format_time_estimate",
    "write_metrics_csv",
    "summarize_accuracy",
    "format_accuracy_table",
    "noise_detection_auc",
    "detection_by_class",
    "confusion_matrix",
    "plot_curves",
    "plot_similarity",
    "plot_confusion",
    "format_class_table",
]


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


def detection_by_class(clean_prob: np.ndarray, is_noisy: np.ndarray, labels: np.ndarray,
                       n_classes: int) -> list[dict[str, float]]:
    """How ``clean_prob`` (w) treats each given class: where a detector that looks good overall
    only tells classes apart (every label of a hard class flagged, right or wrong).

    Parameters
    ----------
    clean_prob : ndarray of shape (N,)
        Clean probability w of each sample.
    is_noisy : ndarray of shape (N,)
        True where the given label is wrong.
    labels : ndarray of shape (N,)
        The given labels, in ``0 .. n_classes - 1``.
    n_classes : int

    Returns
    -------
    list of dict
        One dict per class c over the samples labelled c: ``n``, ``wrong`` (share with a wrong
        label), ``flagged`` (share with w < 0.5), ``w_right`` / ``w_wrong`` (mean w of the right
        / wrong labels, NaN when none) and ``auc``
        ([`noise_detection_auc`][noisylabel.apps.fer.report.noise_detection_auc] within the class).
    """
    w = np.asarray(clean_prob, dtype=np.float64)
    noisy = np.asarray(is_noisy, dtype=bool)
    labels = np.asarray(labels)
    out = []
    for c in range(n_classes):
        m = labels == c
        right, wrong = w[m & ~noisy], w[m & noisy]
        out.append({
            "n": int(m.sum()),
            "wrong": float(noisy[m].mean()) if m.any() else float("nan"),
            "flagged": float((w[m] < 0.5).mean()) if m.any() else float("nan"),
            "w_right": float(right.mean()) if right.size else float("nan"),
            "w_wrong": float(wrong.mean()) if wrong.size else float("nan"),
            "auc": noise_detection_auc(w[m], noisy[m]),
        })
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class (scikit-learn's
    ``confusion_matrix`` over the labels ``0..n_classes-1``)."""
    from sklearn import metrics

    return metrics.confusion_matrix(np.asarray(y_true, dtype=np.int64),
                                    np.asarray(y_pred, dtype=np.int64),
                                    labels=np.arange(n_classes))


def format_class_table(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> str:
    """Per-class accuracy (recall) table with counts, plus overall and mean-class accuracy.

    The numbers are scikit-learn's ``classification_report``: per-class recall and support,
    accuracy, and the macro-average recall over the classes present in ``y_true``.
    """
    from sklearn.metrics import classification_report

    report = classification_report(
        np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64),
        labels=np.arange(len(class_names)), output_dict=True, zero_division=np.nan)
    width = max(12, *(len(c) for c in class_names))
    lines = [f"  {'class':<{width}}  {'n':>6}  {'acc %':>6}"]
    for c, name in enumerate(class_names):
        row = report[str(c)]
        acc = "-" if math.isnan(row["recall"]) else f"{100 * row['recall']:.2f}"
        lines.append(f"  {name:<{width}}  {int(row['support']):>6d}  {acc:>6}")
    total = int(report["macro avg"]["support"])
    lines.append(f"  {'overall':<{width}}  {total:>6d}  {100 * report['accuracy']:>6.2f}")
    lines.append(f"  {'mean class':<{width}}  {'':>6}  {100 * report['macro avg']['recall']:>6.2f}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "",
                warmup: int | None = None) -> Path:
    """Accuracy (train / test / validation) and loss curves per epoch, one PNG with two panels.

    Parameters
    ----------
    history : sequence of mapping
        One row per epoch (``epoch``, ``train_acc``, ``test_acc``, ``val_acc``, loss terms).
    path : str or Path
        The PNG to write.
    title : str
        Figure title (default "training curves").
    warmup : int or None
        The noise model's warm-up K, for runs with a noise model: a dotted line marks epoch
        K + 1, the last epoch trained with w = 1 (drawn when the run got that far).

    Returns
    -------
    Path
        ``path``.
    """
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_acc", "train (noisy labels)"), ("test_acc", "test"),
                       ("val_acc", "validation")):
        if any(key in r for r in history):
            ax_acc.plot(epochs, [100 * r.get(key, np.nan) for r in history], label=label)
    for key in ("loss", "l1", "lkld", "ce"):
        if any(key in r for r in history):
            ax_loss.plot(epochs, [r.get(key, np.nan) for r in history], label=key)
    for ax, ylabel in ((ax_acc, "accuracy (%)"), (ax_loss, "loss")):
        if warmup is not None and epochs and warmup + 1 <= max(epochs):
            ax.axvline(warmup + 1, color="grey", ls=":",
                       label=f"warm-up ends (w = 1 up to epoch {warmup + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_similarity(
    similarity: np.ndarray,
    path: str | Path,
    alphas: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    is_noisy: np.ndarray | None = None,
    title: str = "",
    clean_component: int = 1,
) -> Path:
    """Histogram of the similarity signal with the two fitted Beta components overlaid.

    Colours as in the method page's figure: green for truly clean samples and the clean
    component, red for truly flipped samples and the noisy one. With ``is_noisy`` the
    histogram is split into the two groups. Component k is drawn as
    ``weights[k] * Beta(s; alphas[k], betas[k])`` (a density). When one bin towers over the
    rest (the spike of samples at S = 1: more than twice the next-tallest bin), the y axis is
    cut at 1.25 times the next-tallest bin so that both components show, and the cut bin's
    height is written above it.

    Parameters
    ----------
    similarity : ndarray
        The per-sample signal, in [0, 1].
    path : str or Path
        The PNG to write.
    alphas, betas, weights : sequence of float or None
        The fitted mixture's parameters (none drawn when any is None).
    is_noisy : ndarray of bool or None
        Which samples truly have a flipped label.
    title : str
        Figure title.
    clean_component : int
        Index of the clean component (1 for a signal whose clean side is high, as the cosine).

    Returns
    -------
    Path
        ``path``.
    """
    plt = _pyplot()
    s = np.asarray(similarity, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.0, 1.0, 51)
    if is_noisy is not None:
        is_noisy = np.asarray(is_noisy, dtype=bool)
        heights = ax.hist([s[~is_noisy], s[is_noisy]], bins=bins, density=True, stacked=True,
                          color=["tab:green", "tab:red"], alpha=0.55,
                          label=["truly clean", "truly flipped"])[0][-1]
    else:
        heights = ax.hist(s, bins=bins, density=True, alpha=0.55, color="tab:grey",
                          label="samples")[0]
    if alphas is not None and betas is not None and weights is not None:
        _draw_mixture(ax, alphas, betas, weights, clean_component)
    _clip_spike(ax, np.asarray(heights, dtype=np.float64), bins)
    ax.set_xlabel("similarity S")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _draw_mixture(ax: Any, alphas: Sequence[float], betas: Sequence[float],
                  weights: Sequence[float], clean_component: int) -> None:
    from scipy.stats import beta as beta_dist

    grid = np.linspace(1e-3, 1 - 1e-3, 400)
    total = np.zeros_like(grid)
    for k in range(len(alphas)):
        if not (np.isfinite(alphas[k]) and np.isfinite(betas[k])):
            continue
        dens = weights[k] * beta_dist.pdf(grid, alphas[k], betas[k])
        total += dens
        kind = "clean" if k == clean_component else "noisy"
        ax.plot(grid, dens, lw=2, color="tab:green" if kind == "clean" else "tab:red",
                label=f"{kind} component (a={alphas[k]:.2f}, b={betas[k]:.2f})")
    ax.plot(grid, total, "k--", label="mixture")


def _clip_spike(ax: Any, heights: np.ndarray, bins: np.ndarray) -> None:
    """Cut the y axis above a lone towering bin (see `plot_similarity`), else fit the bins."""
    order = np.argsort(heights)
    tallest, second = heights[order[-1]], heights[order[-2]]
    if second > 0 and tallest > 2 * second:
        top = 1.25 * second
        x = 0.5 * (bins[order[-1]] + bins[order[-1] + 1])
        ax.annotate(f"cut: {tallest:.1f}", (x, top), xytext=(x, 0.93 * top), ha="right",
                    va="top", fontsize=8, arrowprops={"arrowstyle": "->"})
    else:
        top = 1.1 * tallest
    if top > 0:
        ax.set_ylim(0, top)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row) with counts in the cells.

    The colour is the fraction of each true class predicted as the column's class (the
    colour bar says so); the cells show the counts.
    """
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
    ax.set_title(title or "confusion matrix (counts in the cells)")
    fig.colorbar(im, ax=ax, label="fraction of the true class (row-normalised)")
    fig.tight_layout()
    return _save(fig, path)


def format_duration(seconds: float) -> str:
    """``seconds`` in the unit a person reads best: ``"42 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_time_estimate(epoch: int, epoch_seconds: float, epochs_left: int,
                         elapsed: float, now: datetime.datetime | None = None) -> str:
    """The run's time estimate once an epoch is done: the epochs left at this epoch's time.

    Parameters
    ----------
    epoch : int
        The epoch just done.
    epoch_seconds : float
        Its wall time (training, noise model, evaluation, checkpoint).
    epochs_left : int
        Epochs still to train.
    elapsed : float
        Seconds the run has taken so far (data loading included).
    now : datetime.datetime or None
        The present time (None: the clock); the estimate names the time of day it ends.

    Returns
    -------
    str
        e.g. ``"epoch 1 took 12 s; 14 epochs left: about 2.8 min more, 3.0 min in all (done
        around 18:59)"``.
    """
    left = epochs_left * epoch_seconds
    end = (now or datetime.datetime.now()) + datetime.timedelta(seconds=left)
    return (f"epoch {epoch} took {format_duration(epoch_seconds)}; {epochs_left} epoch"
            f"{'s' if epochs_left != 1 else ''} left: about {format_duration(left)} more, "
            f"{format_duration(elapsed + left)} in all (done around {end:%H:%M})")


TENSORBOARD_MISSING = ("TensorBoard not installed (pip install tensorboard); metrics are in "
                       "metrics.csv")
"""What a run says, once, when TensorBoard was asked for but cannot be imported."""


def _summary_writer_class() -> type | None:
    """``torch.utils.tensorboard.SummaryWriter``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class RunReporter:
    """All per-run side effects: metrics CSV, TensorBoard scalars, train.log, config.json.

    Parameters
    ----------
    out_dir : Path
        The run folder.
    tensorboard : bool
        Write TensorBoard event files under ``out_dir/tensorboard``. When tensorboard cannot be
        imported the reporter says so once ([`TENSORBOARD_MISSING`][noisylabel.apps.fer.report.TENSORBOARD_MISSING],
        on standard error and in ``train.log``) and ``self.tensorboard`` is False.
    start_epoch : int
        Epochs already done (after a resume): TensorBoard events from later epochs are purged.
    echo : bool
        Print the lines given to [`log`][noisylabel.apps.fer.report.RunReporter.log] (False:
        ``train.log`` only, unless a line asks to be printed).

    Attributes
    ----------
    tensorboard : bool
        Whether TensorBoard event files are written (what ``config.json`` records).
    log_path : Path
        ``out_dir/train.log``: every line the run printed, time-stamped; a resumed run appends.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, start_epoch: int = 0,
                 echo: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.log_path = self.out_dir / run_folder.LOG
        self._log = self.log_path.open("a", encoding="utf-8")
        self._tb = None
        writer = _summary_writer_class() if tensorboard else None
        if writer is not None:
            self._tb = writer(str(self.out_dir / run_folder.TENSORBOARD), purge_step=start_epoch + 1)
        elif tensorboard:
            self.log(TENSORBOARD_MISSING, echo=True, stream=sys.stderr)
        self.tensorboard = self._tb is not None

    def log(self, message: str, echo: bool | None = None, stream: Any = None) -> None:
        """Append ``message`` to ``train.log`` (each line time-stamped) and print it.

        Parameters
        ----------
        message : str
            One or more lines.
        echo : bool or None
            Print it too; None = the reporter's ``echo``.
        stream : file or None
            Where to print (None: standard output).
        """
        stamp = f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"
        if not self._log.closed:
            self._log.writelines(f"{stamp}  {line}\n" for line in message.splitlines())
            self._log.flush()
        if self.echo if echo is None else echo:
            print(message, file=stream or sys.stdout, flush=True)

    def save_config(self, config: Mapping[str, Any]) -> Path:
        """Write the resolved configuration as ``config.json``."""
        return write_json(self.out_dir / run_folder.CONFIG, config)

    def log_epoch(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` and send the last row's numbers to TensorBoard."""
        write_metrics_csv(self.out_dir / run_folder.METRICS, history)
        if self._tb is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(
                    value, bool
                ):
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def close(self) -> None:
        """Close the TensorBoard writer and ``train.log``."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._log.close()
