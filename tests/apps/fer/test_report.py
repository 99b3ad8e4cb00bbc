"""Tests of the run outputs: accuracy summary, AUC, confusion matrix, CSV, plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from noisylabel.apps.fer.report import (
    RunReporter,
    confusion_matrix,
    format_accuracy_table,
    format_class_table,
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
