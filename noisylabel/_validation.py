"""Input validation shared by every module that takes labels, predicted probabilities or
values in [0, 1]. Each check raises a ``ValueError`` whose message names the offending
index and value. numpy arrays and torch tensors are both accepted; a tensor is checked
with torch ops on its own device (only the pass/fail scalars come back to the host).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noisylabel._backend import is_tensor


def _first_true(mask: Any) -> int:
    """Index of the first True entry of a 1-d boolean numpy array or tensor."""
    if is_tensor(mask):
        return int(mask.nonzero()[0, 0].item())
    return int(np.flatnonzero(mask)[0])


def _scalar(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def check_labels(labels: Any, n_classes: int | None = None) -> Any:
    """Validate integer class labels.

    Parameters
    ----------
    labels : array-like or torch.Tensor of shape (N,)
        Class indices in ``0 .. n_classes - 1``.
    n_classes : int, optional
        Number of classes; when given, every label must be below it.

    Returns
    -------
    numpy.ndarray of int64 or torch.Tensor of int64
        The labels (a tensor stays a tensor on its device).

    Raises
    ------
    ValueError
        If the labels are not 1-d, empty, not integer-valued, negative or >= ``n_classes``
        (the message names the first bad index and its value).
    """
    if is_tensor(labels):
        import torch

        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got a tensor of dtype {labels.dtype}")
        labels = labels.long()
    else:
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"labels must be integers, got an array of dtype {arr.dtype}")
        labels = arr.astype(np.int64, copy=False)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d (N,), got shape {tuple(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError("labels is empty")
    bad = labels < 0
    if n_classes is not None:
        bad = bad | (labels >= n_classes)
    if bool(_scalar(bad.any())):
        i = _first_true(bad)
        limit = f" (n_classes={n_classes})" if n_classes is not None else ""
        raise ValueError(
            f"labels[{i}] = {int(_scalar(labels[i]))} is out of range: labels must lie in "
            f"0 .. n_classes-1{limit}"
        )
    return labels


def check_pred_probs(pred_probs: Any, labels: Any = None, atol: float = 1e-3) -> Any:
    """Validate an (N, K) matrix of predicted class probabilities.

    Parameters
    ----------
    pred_probs : array-like or torch.Tensor of shape (N, K)
        Rows are probability vectors: finite, in [0, 1], ``|sum_k p_ik - 1| <= atol``.
    labels : array-like or torch.Tensor of shape (N,), optional
        When given, checked with ``check_labels`` against ``K`` and for equal length.
    atol : float
        Tolerance on the row sums.

    Returns
    -------
    numpy.ndarray of float64 or torch.Tensor
        The probabilities (a tensor keeps its dtype and device; numpy becomes float64).

    Raises
    ------
    ValueError
        Wrong shape, NaN/inf (first bad row named), values outside [0, 1], a row whose sum
        is not 1 (first bad row and its sum named), or a length mismatch with ``labels``.
    """
    if is_tensor(pred_probs):
        import torch

        if not pred_probs.dtype.is_floating_point:
            pred_probs = pred_probs.to(torch.get_default_dtype())
        xp_all = torch.all
    else:
        pred_probs = np.asarray(pred_probs, dtype=np.float64)
        xp_all = np.all
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be 2-d (N, K), got shape {tuple(pred_probs.shape)}")
    n, k = pred_probs.shape
    if n == 0:
        raise ValueError("pred_probs is empty (N = 0)")
    if k < 2:
        raise ValueError(f"pred_probs must have at least 2 columns (classes), got {k}")
    finite = xp_all(_isfinite(pred_probs), 1)
    if not bool(_scalar(finite.all())):
        i = _first_true(~finite)
        raise ValueError(f"pred_probs row {i} contains NaN or inf: {_row_repr(pred_probs[i])}")
    in_range = xp_all((pred_probs >= 0) & (pred_probs <= 1), 1)
    if not bool(_scalar(in_range.all())):
        i = _first_true(~in_range)
        raise ValueError(f"pred_probs row {i} has values outside [0, 1]: {_row_repr(pred_probs[i])}")
    sums = pred_probs.sum(1)
    off = abs(sums - 1) > atol
    if bool(_scalar(off.any())):
        i = _first_true(off)
        raise ValueError(
            f"pred_probs row {i} sums to {float(_scalar(sums[i])):.6g}, not 1 (atol={atol}); "
            "pass probabilities (e.g. softmax of logits), not logits"
        )
    if labels is not None:
        n_labels = labels.shape[0] if hasattr(labels, "shape") else len(labels)
        if n_labels != n:
            raise ValueError(
                f"length mismatch: labels has {n_labels} entries, pred_probs has {n} rows"
            )
        check_labels(labels, n_classes=k)
    return pred_probs


def check_unit_interval(x: Any, name: str = "x") -> Any:
    """Validate a non-empty 1-d array of finite values in [0, 1].

    Parameters
    ----------
    x : array-like or torch.Tensor of shape (N,) (or (N, 1))
        Values to check.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of float64 or torch.Tensor
        ``x`` as a 1-d array (a tensor stays a tensor on its device).

    Raises
    ------
    TypeError
        Values that are not real numbers (strings, booleans, complex numbers, objects).
    ValueError
        Empty input, wrong shape, NaN/inf, or a value outside [0, 1] (first bad index and
        value named).
    """
    if is_tensor(x):
        if x.dtype.is_complex or str(x.dtype) == "torch.bool":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if not x.dtype.is_floating_point:
            import torch

            x = x.to(torch.get_default_dtype())
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        x = arr.astype(np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-d (N,), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    finite = _isfinite(x)
    if not bool(_scalar(finite.all())):
        i = _first_true(~finite)
        raise ValueError(f"{name}[{i}] = {float(_scalar(x[i]))} is not finite")
    outside = (x < 0) | (x > 1)
    if bool(_scalar(outside.any())):
        i = _first_true(outside)
        raise ValueError(f"{name}[{i}] = {float(_scalar(x[i])):.6g} is outside [0, 1]")
    return x


def _isfinite(x: Any) -> Any:
    if is_tensor(x):
        import torch

        return torch.isfinite(x)
    return np.isfinite(x)


def _row_repr(row: Any) -> str:
    if is_tensor(row):
        row = row.detach().cpu().numpy()
    return np.array2string(np.asarray(row), precision=4, threshold=12)
