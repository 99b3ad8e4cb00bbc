"""Label-noise injection (symmetric, pair, class-conditional, instance-dependent) and EAC files.

Everything is seeded (``seed`` is an int, a ``numpy.random.Generator`` or None) and returns
numpy ``int64`` arrays; torch tensors are accepted as input without importing torch here.

EAC noise files (``noise01.txt``, ``noise02.txt``, ``noise03.txt`` of
``zyh-uaiaaaa/Erasing-Attention-Consistency``) have RAF-DB's label-file format, training images
only::

    train_00001.jpg 5

with 1-based labels. [`read_noise_file`][noisylabel.noise.read_noise_file] returns 0-based
labels aligned with a given list of names; [`write_noise_file`][noisylabel.noise.write_noise_file]
writes the same format, so the two round-trip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from noisylabel._backend import is_tensor

__all__ = [
    "symmetric_noise",
    "symmetric_matrix",
    "transition_noise",
    "pair_noise",
    "instance_noise",
    "read_noise_file",
    "write_noise_file",
]


def _as_labels(labels: Any, n_classes: int | None) -> np.ndarray:
    if is_tensor(labels):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels: expected a 1-d array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"labels: expected integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n_classes is not None and arr.size:
        bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"labels[{i}] = {arr[i]} outside 0..{n_classes - 1}")
    return arr


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """``seed`` as a Generator; a seed must be None, a Generator or a non-negative integer."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"seed={seed!r}: must be None, a non-negative integer or a "
                         "numpy Generator")
    return np.random.default_rng(seed)


def _check_rate_and_classes(rate: Any, n_classes: Any, noise: str) -> None:
    """``rate`` a real number in [0, 1] and ``n_classes`` an integer >= 2, named when not."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 2:
        raise ValueError(f"n_classes={n_classes!r}: {noise} noise needs an integer >= 2")
    _check_rate(rate)


def _check_rate(rate: Any, name: str = "rate") -> None:
    """A real number in [0, 1] (NaN fails the range test), named when not."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1], got {rate!r}")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"{name}={rate}: must be in [0, 1]")


def symmetric_noise(
    labels: Any,
    rate: float,
    n_classes: int,
    mode: str = "exact",
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Symmetric label noise: a flipped label goes to a uniformly random *other* class.

    ``mode="exact"`` flips exactly ``k = floor(rate * N + 1/2)`` samples chosen uniformly without
    replacement; ``mode="bernoulli"`` flips each sample independently with probability ``rate``
    (the count is Binomial(N, rate)). A flipped label becomes ``(y + r) mod C`` with ``r``
    uniform on ``1..C-1``, so it is never the original and uniform over the others; the
    transition matrix is ``T = (1 - rate) I + rate / (C - 1) (1 - I)``.

    Parameters
    ----------
    labels : array-like or tensor of int, shape (N,)
        Clean labels in ``0..n_classes-1``.
    rate : float
        Noise rate in [0, 1].
    n_classes : int
        Number of classes C (>= 2).
    mode : "exact" or "bernoulli"
    seed : int, numpy Generator or None

    Returns
    -------
    np.ndarray of int64, shape (N,)
        Noisy labels (a new array; the input is not modified).

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import symmetric_noise
    >>> y = np.arange(10) % 5
    >>> noisy = symmetric_noise(y, rate=0.3, n_classes=5, seed=0)
    >>> print(y, noisy, (noisy != y).sum())
    [0 1 2 3 4 0 1 2 3 4] [0 1 2 3 4 1 2 2 3 0] 3
    """
    _check_rate_and_classes(rate, n_classes, "symmetric")
    if mode not in ("exact", "bernoulli"):
        raise ValueError(f"mode={mode!r}: must be 'exact' or 'bernoulli'")
    y = _as_labels(labels, n_classes)
    rng = _rng(seed)
    n = y.size
    if mode == "exact":
        k = int(np.floor(rate * n + 0.5))
        flip = np.zeros(n, dtype=bool)
        flip[rng.choice(n, size=k, replace=False)] = True
    else:
        flip = rng.random(n) < rate
    noisy = y.copy()
    shift = rng.integers(1, n_classes, size=int(flip.sum()))
    noisy[flip] = (y[flip] + shift) % n_classes
    return noisy


def symmetric_matrix(n_classes: int, rate: float) -> np.ndarray:
    """Transition matrix of symmetric noise: ``T = (1 - rate) I + rate / (C - 1) (1 - I)``.

    Returns
    -------
    np.ndarray float64 (C, C), rows sum to 1.
    """
    _check_rate_and_classes(rate, n_classes, "symmetric")
    off = rate / (n_classes - 1)
    return np.full((n_classes, n_classes), off) + np.eye(n_classes) * (1.0 - rate - off)


def _check_transition(T: Any, atol: float) -> np.ndarray:
    if is_tensor(T):
        T = T.detach().cpu().numpy()
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 1:
        raise ValueError(f"T: expected a square (C, C) matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        r, c = np.argwhere(~np.isfinite(T))[0]
        raise ValueError(f"T[{r}, {c}] = {T[r, c]} is not finite")
    if np.any(T < 0):
        r, c = np.argwhere(T < 0)[0]
        raise ValueError(f"T[{r}, {c}] = {T[r, c]} is negative")
    sums = T.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"T row {r} sums to {sums[r]:.6g}, not 1 (rows are P(noisy | true))")
    return T


def transition_noise(
    labels: Any,
    T: Any,
    seed: int | np.random.Generator | None = None,
    atol: float = 1e-6,
) -> np.ndarray:
    """Class-conditional noise: the noisy label of a sample of class ``i`` is drawn from ``T[i]``.

    ``P(noisy = j | true = i) = T[i, j]``; sampled by inverse CDF, one uniform per sample.

    Parameters
    ----------
    labels : array-like or tensor of int, shape (N,)
        Clean labels in ``0..C-1``.
    T : array-like (C, C)
        Row-stochastic transition matrix (non-negative, finite, rows summing to 1 within atol).
    seed : int, numpy Generator or None
    atol : float
        Tolerance on the row sums.

    Returns
    -------
    np.ndarray of int64, shape (N,)
    """
    T = _check_transition(T, atol)
    y = _as_labels(labels, T.shape[0])
    rng = _rng(seed)
    cdf = np.cumsum(T / T.sum(axis=1, keepdims=True), axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: every u < 1 lands in some class
    u = rng.random(y.size)
    # first class whose cumulative probability exceeds u (classes with T = 0 are never chosen)
    return np.argmax(u[:, None] < cdf[y], axis=1).astype(np.int64)


def _n_flips(rate: float, n: int, name: str = "rate") -> int:
    """``floor(rate * n + 1/2)`` after checking that ``rate`` lies in [0, 1]."""
    _check_rate(rate, name)
    return int(np.floor(rate * n + 0.5))


def pair_noise(
    labels: Any,
    rate: float,
    n_classes: int,
    class_map: Any = None,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Pair (asymmetric) noise: a flipped label of class ``c`` becomes ``class_map[c]``.

    Exactly ``k = floor(rate * N + 1/2)`` samples, drawn uniformly without replacement among
    those whose class maps to another class, get ``class_map[y]``; the transition matrix is
    ``T[c, c] = 1 - rate``, ``T[c, class_map[c]] = rate`` in expectation. The default map is
    ``c -> (c + 1) mod C`` (Han et al.'s "pair flipping"). Report what was realised with
    [`empirical_noise_matrix`][noisylabel.noise_matrix.empirical_noise_matrix].

    Parameters
    ----------
    labels : array-like or tensor of int, shape (N,)
        Clean labels in ``0..n_classes-1``.
    rate : float
        Fraction of all samples to flip, in [0, 1].
    n_classes : int
        Number of classes C (>= 2).
    class_map : array-like of int, shape (C,), or dict, optional
        Target class of each class (a dict may leave classes out: they are never flipped).
    seed : int, numpy Generator or None

    Returns
    -------
    np.ndarray of int64, shape (N,)
        Noisy labels (a new array).

    Raises
    ------
    ValueError
        A bad ``rate``, ``n_classes`` or ``class_map``, or more flips asked for than samples
        whose class maps elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from noisylabel import pair_noise
    >>> y = np.arange(10) % 5
    >>> print(pair_noise(y, rate=0.4, n_classes=5, seed=0))
    [0 1 3 3 0 1 1 3 3 4]
    """
    _check_rate_and_classes(rate, n_classes, "pair")
    y = _as_labels(labels, n_classes)
    target = _class_map(class_map, n_classes)
    k = _n_flips(rate, y.size)
    movable = np.flatnonzero(target[y] != y)
    if k > movable.size:
        raise ValueError(f"rate={rate} asks for {k} flips but only {movable.size} samples have a "
                         "class that class_map sends elsewhere")
    flip = _rng(seed).choice(movable, size=k, replace=False)
    noisy = y.copy()
    noisy[flip] = target[y[flip]]
    return noisy


def _class_map(class_map: Any, n_classes: int) -> np.ndarray:
    """``class_map`` as an int64 array of length C (identity for classes a dict leaves out)."""
    if class_map is None:
        return (np.arange(n_classes) + 1) % n_classes
    if isinstance(class_map, dict):
        target = np.arange(n_classes)
        for c, t in class_map.items():
            if not (0 <= int(c) < n_classes):
                raise ValueError(f"class_map key {c!r} outside 0..{n_classes - 1}")
            target[int(c)] = t
    else:
        target = np.asarray(class_map)
        if target.shape != (n_classes,):
            raise ValueError(f"class_map: expected shape ({n_classes},), got {target.shape}")
    target = _as_labels(target, None)
    bad = np.flatnonzero((target < 0) | (target >= n_classes))
    if bad.size:
        raise ValueError(f"class_map[{bad[0]}] = {target[bad[0]]} outside 0..{n_classes - 1}")
    return target


def instance_noise(
    labels: Any,
    rate: float,
    pred_probs: Any,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Instance-dependent noise: samples a model finds confusing are flipped more often.

    With ``p_i`` a model's predicted probabilities for sample ``i`` (for example out-of-sample
    probabilities of a model trained on the clean labels), ``k = floor(rate * N + 1/2)``
    samples are drawn without replacement with probability proportional to the model's
    confusion ``u_i = 1 - p_{i, y_i} + 1e-6``, and each drawn sample gets a class drawn from
    ``p_i`` restricted to the other classes, ``P(j) = p_ij / sum_{l != y_i} p_il``
    (uniform over the other classes where that sum is 0). So a 3 that looks like an 8 is
    likelier to be flipped, and to an 8. Report what was realised with
    [`empirical_noise_matrix`][noisylabel.noise_matrix.empirical_noise_matrix].

    Parameters
    ----------
    labels : array-like or tensor of int, shape (N,)
        Clean labels in ``0..K-1``.
    rate : float
        Fraction of all samples to flip, in [0, 1].
    pred_probs : array-like of shape (N, K)
        The model's predicted probabilities (rows sum to 1).
    seed : int, numpy Generator or None

    Returns
    -------
    np.ndarray of int64, shape (N,)
        Noisy labels; exactly ``k`` differ from ``labels``.
    """
    from noisylabel._validation import check_pred_probs

    if is_tensor(pred_probs):
        pred_probs = pred_probs.detach().cpu().numpy()
    y = _as_labels(labels, None)
    p = np.asarray(check_pred_probs(pred_probs, y), dtype=np.float64)
    n, n_classes = p.shape
    k = _n_flips(rate, n)
    rng = _rng(seed)
    confusion = 1.0 - p[np.arange(n), y] + 1e-6
    flip = rng.choice(n, size=k, replace=False, p=confusion / confusion.sum())
    other = p[flip].copy()
    other[np.arange(k), y[flip]] = 0.0
    total = other.sum(axis=1, keepdims=True)
    uniform = np.ones_like(other) / (n_classes - 1)
    uniform[np.arange(k), y[flip]] = 0.0
    other = np.where(total > 0, other / np.where(total > 0, total, 1.0), uniform)
    cdf = np.cumsum(other, axis=1)
    cdf /= cdf[:, -1:]  # exactly 1 from the last class with mass on: y_i is never drawn
    noisy = y.copy()
    noisy[flip] = np.argmax(rng.random(k)[:, None] < cdf, axis=1)
    return noisy


def read_label_lines(path: str | os.PathLike, n_classes: int = 7, kind: str = "label file"
                     ) -> list[tuple[str, int, int]]:
    """Parse a ``<name> <label>`` file (RAF-DB's label file, EAC's noise files).

    Blank lines, trailing whitespace, CRLF line ends, a byte-order mark and a missing final
    newline are accepted.

    Parameters
    ----------
    path : path
        The file.
    n_classes : int
        Labels must lie in ``1..n_classes`` (1-based, as in RAF-DB).
    kind : str
        What the file is, for the "not found" message (e.g. ``"noise file"``).

    Returns
    -------
    list of (name, label0, line_number)
        In file order, with 0-based labels ``label0 = label - 1``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not UTF-8, a malformed line, a non-integer label, a label outside ``1..n_classes`` or
        a duplicated name; the message names the file and the line number.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # tolerate a byte-order mark
    except FileNotFoundError:
        raise FileNotFoundError(f"{kind} not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    entries: list[tuple[str, int, int]] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{path}, line {lineno}: expected '<name> <label>', got {line!r}")
        name, raw = parts
        if not re.fullmatch(r"[+-]?[0-9]+", raw):  # int() would read "0_5" as 5
            raise ValueError(f"{path}, line {lineno}: label {raw!r} is not an integer")
        label = int(raw)
        if not 1 <= label <= n_classes:
            raise ValueError(f"{path}, line {lineno}: label {label} outside 1..{n_classes}")
        if name in first_line:
            raise ValueError(f"{path}, line {lineno}: duplicated name {name!r} "
                             f"(first on line {first_line[name]})")
        first_line[name] = lineno
        entries.append((name, label - 1, lineno))
    return entries


def read_noise_file(path: str | os.PathLike, names: Sequence[str], n_classes: int = 7
                    ) -> np.ndarray:
    """Read an EAC-format noise file and align its labels with ``names``.

    Parameters
    ----------
    path : path
        File with lines ``<name> <label>`` (1-based labels). Blank lines, trailing whitespace,
        CRLF and a missing final newline are accepted.
    names : sequence of str
        Names of the split (e.g. ``FERSplit.names``); every one must appear exactly once in the
        file, and the file must name nothing else.
    n_classes : int
        Labels must lie in ``1..n_classes``.

    Returns
    -------
    np.ndarray of int64, shape (len(names),)
        0-based noisy labels, ``out[i]`` for ``names[i]``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Malformed line, label out of range, duplicated name, a name not in ``names``, or names
        missing from the file; the message names the file (and the line where there is one).
    """
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        raise ValueError("names: contains duplicates")
    out = np.full(len(names), -1, dtype=np.int64)
    for name, label0, lineno in read_label_lines(path, n_classes, kind="noise file"):
        i = index.get(name)
        if i is None:
            raise ValueError(f"{path}, line {lineno}: {name!r} is not in the split")
        out[i] = label0
    missing = np.flatnonzero(out < 0)
    if missing.size:
        shown = ", ".join(repr(names[i]) for i in missing[:5])
        more = f" and {missing.size - 5} more" if missing.size > 5 else ""
        raise ValueError(f"{path}: {missing.size} name(s) of the split missing from the file: "
                         f"{shown}{more}")
    return out


def write_noise_file(path: str | os.PathLike, names: Sequence[str], labels: Any,
                     n_classes: int = 7) -> Path:
    """Write labels in EAC format: one ``<name> <label + 1>`` line per name, in the given order.

    Parameters
    ----------
    path : path
        Output file (parent folders are created).
    names : sequence of str
        Image names (no whitespace, no duplicates).
    labels : array-like or tensor of int, shape (len(names),)
        0-based labels in ``0..n_classes-1``.
    n_classes : int

    Returns
    -------
    Path
    """
    y = _as_labels(labels, n_classes)
    if y.size != len(names):
        raise ValueError(f"labels has {y.size} entries, names has {len(names)}")
    seen: set[str] = set()
    for i, n in enumerate(names):
        if not n or any(c.isspace() for c in n):
            raise ValueError(f"names[{i}] = {n!r}: empty or contains whitespace")
        if n in seen:
            raise ValueError(f"names[{i}] = {n!r}: duplicated")
        seen.add(n)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n} {int(v) + 1}\n" for n, v in zip(names, y, strict=True)))
    return path
