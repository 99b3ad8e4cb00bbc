from __future__ import annotations

import numpy as np
import pytest
import torch

from noisylabel._validation import check_labels, check_pred_probs, check_unit_interval


def test_check_labels_ok_and_types():
    out = check_labels([0, 2, 1], n_classes=3)
    assert out.dtype == np.int64
    assert check_labels(np.array([0.0, 2.0])).dtype == np.int64
    t = check_labels(torch.tensor([0, 1], dtype=torch.int32), n_classes=2)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64


@pytest.mark.parametrize(
    ("labels", "n", "match"),
    [
        ([0, 1, 7], 7, r"labels\[2\] = 7 is out of range"),
        ([0, -1], None, r"labels\[1\] = -1"),
        ([0.5, 1.0], None, "must be integers"),
        ([[0, 1]], None, "1-d"),
        ([], None, "empty"),
    ],
)
def test_check_labels_errors(labels, n, match):
    with pytest.raises(ValueError, match=match):
        check_labels(np.asarray(labels), n_classes=n)


def test_check_labels_tensor_error_names_index():
    with pytest.raises(ValueError, match=r"labels\[1\] = 5"):
        check_labels(torch.tensor([0, 5, 1]), n_classes=3)
    with pytest.raises(ValueError, match="integers"):
        check_labels(torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        ([[0.5, 0.5], [0.7, 0.2]], None, r"row 1 sums to 0.9"),
        ([[0.5, 0.5], [np.nan, 1.0]], None, r"row 1 contains NaN or inf"),
        ([[0.5, 0.5], [np.inf, 1.0]], None, r"row 1 contains NaN or inf"),
        ([[1.5, -0.5]], None, r"row 0 has values outside"),
        ([0.5, 0.5], None, "2-d"),
        ([[1.0]], None, "at least 2 columns"),
        ([[0.5, 0.5]], [0, 1], "length mismatch: labels has 2 entries, pred_probs has 1 rows"),
        ([[0.5, 0.5], [0.5, 0.5]], [0, 2], r"labels\[1\] = 2 is out of range"),
    ],
)
def test_check_pred_probs_errors(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        check_pred_probs(np.asarray(probs, dtype=float), labels)
    with pytest.raises(ValueError, match=match):
        check_pred_probs(torch.tensor(probs, dtype=torch.float64), labels)


def test_check_pred_probs_tolerance():
    p = [[0.5, 0.5004]]
    check_pred_probs(p)  # within atol=1e-3
    with pytest.raises(ValueError):
        check_pred_probs(p, atol=1e-4)


def test_check_unit_interval():
    np.testing.assert_array_equal(check_unit_interval([[0.1], [0.2]]), [0.1, 0.2])
    with pytest.raises(ValueError, match=r"s\[2\] = 1.2 is outside"):
        check_unit_interval([0.0, 1.0, 1.2], "s")
    with pytest.raises(ValueError, match=r"x\[0\] = nan"):
        check_unit_interval(torch.tensor([float("nan")]))
