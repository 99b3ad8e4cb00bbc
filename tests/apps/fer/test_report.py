"""Tests of the run outputs: accuracy summary, AUC, confusion matrix, CSV, plots."""

from __future__ import annotations

import csv
import datetime
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from noisylabel.apps.fer.report import (
    TENSORBOARD_MISSING,
    RunReporter,
    confusion_matrix,
    detection_by_class,
    format_accuracy_table,
    format_class_table,
    format_time_estimate,
    noise_detection_auc,
    plot_confusion,
    plot_curves,
    plot_similarity,
    summarize_accuracy,
    write_metrics_csv,
)


def test_summary_final_last5_best() -> None:
    acc = [0.1, 0.5, 0.9, 0.6, 0.7, 0.8, 0.7, 0.6]
    s = summarize_accuracy(acc)
    assert s["final"] == 0.6
    assert s["last5_mean"] == pytest.approx(np.mean(acc[-5:]))
    assert (s["best"], s["best_epoch"], s["epochs"]) == (0.9, 3, 8)
    table = format_accuracy_table(s)
    assert "final epoch" in table and "60.00" in table
    assert "best epoch (3, optimistic)" in table and "90.00" in table
    with pytest.raises(ValueError, match="no test accuracy"):
        summarize_accuracy([])


def test_noise_detection_auc() -> None:
    noisy = np.array([False, False, True, True])
    assert noise_detection_auc(np.array([0.9, 0.8, 0.1, 0.2]), noisy) == 1.0
    assert noise_detection_auc(np.array([0.1, 0.2, 0.9, 0.8]), noisy) == 0.0
    assert noise_detection_auc(np.ones(4), noisy) == 0.5
    assert math.isnan(noise_detection_auc(np.ones(4), np.zeros(4, bool)))


def test_detection_by_class_separates_class_from_label_quality() -> None:
    # class 0: w ranks right above wrong; class 1: every label flagged (w = 0), right or wrong;
    # class 2: no samples
    w = np.array([0.9, 0.8, 0.2, 0.0, 0.0, 0.0])
    noisy = np.array([False, False, True, False, True, True])
    labels = np.array([0, 0, 0, 1, 1, 1])
    c0, c1, c2 = detection_by_class(w, noisy, labels, 3)
    assert c0 == pytest.approx({"n": 3, "wrong": 1 / 3, "flagged": 1 / 3, "w_right": 0.85,
                                "w_wrong": 0.2, "auc": 1.0})
    assert (c1["n"], c1["flagged"], c1["w_right"], c1["auc"]) == (3, 1.0, 0.0, 0.5)
    assert c2["n"] == 0 and math.isnan(c2["wrong"]) and math.isnan(c2["auc"])
    # the pooled AUC looks good although class 1 is flagged whole
    assert noise_detection_auc(w, noisy) > 0.7


def test_confusion_matrix_and_class_table() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    table = format_class_table(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ["a", "b", "c"])
    assert "50.00" in table and "75.00" in table  # class a, overall


def test_csv_is_rewritten_from_history(tmp_path: Path) -> None:
    history = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5, "noise_auc": float("nan")}]
    path = write_metrics_csv(tmp_path / "m.csv", history)
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["noise_auc"] == "" and rows[1]["noise_auc"] == ""
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_plots_and_reporter(tmp_path: Path) -> None:
    history = [{"epoch": e, "loss": 1 / e, "l1": 1 / e, "lkld": 0.1, "train_acc": 0.1 * e,
                "test_acc": 0.1 * e} for e in (1, 2, 3)]
    rng = np.random.default_rng(0)
    s = np.clip(np.concatenate([rng.beta(8, 2, 70), rng.beta(2, 5, 30)]), 1e-3, 1 - 1e-3)
    paths = [
        plot_curves(history, tmp_path / "curves.png"),
        plot_similarity(s, tmp_path / "sim.png", alphas=[2, 8], betas=[5, 2], weights=[0.3, 0.7],
                        is_noisy=np.arange(100) >= 70),
        plot_confusion(np.eye(7, dtype=int) * 3, [str(i) for i in range(7)], tmp_path / "cm.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reporter = RunReporter(tmp_path / "run", tensorboard=True)
    reporter.save_config({"lr": 1e-3})
    reporter.log_epoch(history)
    reporter.close()
    assert (tmp_path / "run" / "config.json").read_text().strip().startswith("{")
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_reporter_without_tensorboard_says_so_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    reporter = RunReporter(tmp_path, tensorboard=True, echo=False)
    for epoch in (1, 2):
        reporter.log_epoch([{"epoch": e, "loss": 1.0} for e in range(1, epoch + 1)])
    reporter.close()
    assert reporter.tensorboard is False and not (tmp_path / "tensorboard").exists()
    assert capsys.readouterr().err == TENSORBOARD_MISSING + "\n"  # printed despite echo=False
    assert TENSORBOARD_MISSING in (tmp_path / "train.log").read_text()
    assert RunReporter(tmp_path, tensorboard=False).tensorboard is False
    assert capsys.readouterr().err == ""  # not asked for: nothing to say


def test_train_log_is_appended_and_echo_is_optional(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    first = RunReporter(tmp_path, tensorboard=False)
    first.log("first line\nsecond line")
    first.close()
    resumed = RunReporter(tmp_path, tensorboard=False, echo=False)
    resumed.log("after resume")
    resumed.log("shown anyway", echo=True)
    resumed.close()
    assert capsys.readouterr().out == "first line\nsecond line\nshown anyway\n"
    log = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split("  ", 1)[1] for line in log] == ["first line", "second line",
                                                         "after resume", "shown anyway"]


def test_time_estimate() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0)
    text = format_time_estimate(1, 12.0, 14, 20.0, now=now)
    assert text == ("epoch 1 took 12 s; 14 epochs left: about 2.8 min more, 3.1 min in all "
                    "(done around 12:02)")
    assert "1 epoch left: about 2.0 h more" in format_time_estimate(3, 7200.0, 1, 0.0, now=now)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the plot functions make, kept open instead of saved."""
    from noisylabel.apps.fer import report

    made: list = []
    monkeypatch.setattr(report, "_save", lambda fig, path: made.append(fig) or Path(path))
    yield made
    import matplotlib.pyplot as plt

    for fig in made:
        plt.close(fig)


def test_curves_have_a_title_and_mark_the_warmup_end(figures: list) -> None:
    history = [{"epoch": e, "loss": 1 / e, "train_acc": 0.1 * e, "test_acc": 0.1 * e,
                "val_acc": 0.05 * e} for e in range(1, 8)]
    plot_curves(history, "curves.png", title="full, run x", warmup=3)
    plot_curves(history, "curves.png")  # no noise model: no line, the default title
    marked, plain = figures
    assert marked._suptitle.get_text() == "full, run x"
    assert plain._suptitle.get_text() == "training curves"
    for ax in marked.axes:
        (line,) = [ln for ln in ax.lines if ln.get_label().startswith("warm-up ends")]
        assert list(line.get_xdata()) == [4, 4]  # w = 1 up to epoch warmup + 1
    labels = [ln.get_label() for ln in marked.axes[0].lines]
    assert "validation" in labels
    assert not any(ln.get_label().startswith("warm-up") for ax in plain.axes for ln in ax.lines)


def test_similarity_cuts_the_spike_and_uses_the_docs_colours(figures: list) -> None:
    from matplotlib.colors import to_rgb

    rng = np.random.default_rng(0)
    s = np.concatenate([np.full(600, 0.999), rng.beta(8, 2, 200), rng.beta(2, 5, 100)])
    noisy = np.arange(s.size) >= 800
    plot_similarity(s, "sim.png", alphas=[2, 8], betas=[5, 2], weights=[0.2, 0.8],
                    is_noisy=noisy)
    (ax,) = figures[0].axes
    heights = np.histogram(s, bins=np.linspace(0, 1, 51), density=True)[0]
    spike, rest = heights.max(), np.sort(heights)[-2]
    assert ax.get_ylim()[1] == pytest.approx(1.25 * rest) and spike > ax.get_ylim()[1]
    assert any(t.get_text() == f"cut: {spike:.1f}" for t in ax.texts)
    colours = {ln.get_label().split(" (")[0]: to_rgb(ln.get_color()) for ln in ax.lines}
    assert colours["clean component"] == to_rgb("tab:green")
    assert colours["noisy component"] == to_rgb("tab:red")
    bars = {p.get_label(): to_rgb(p.get_facecolor()[:3]) for p in ax.patches if p.get_label()
            and not p.get_label().startswith("_")}
    assert bars == {"truly clean": to_rgb("tab:green"), "truly flipped": to_rgb("tab:red")}


def test_confusion_colour_bar_is_labelled(figures: list) -> None:
    plot_confusion(np.eye(3, dtype=int), ["a", "b", "c"], "cm.png")
    ax, bar = figures[0].axes
    assert bar.get_ylabel() == "fraction of the true class (row-normalised)"
    assert ax.get_title().startswith("confusion matrix")
