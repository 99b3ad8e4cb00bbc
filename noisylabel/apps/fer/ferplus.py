"""The FER+ layout: FER2013's faces with ten annotators' votes per image (Barsoum et al., 2016).

Layout (what ``microsoft/FERPlus``'s ``generate_training_data.py`` writes, and what
``noisylabel-fer prepare-ferplus`` writes from Kaggle's ``fer2013.csv`` and ``fer2013new.csv``)::

    root/FER2013Train/label.csv      fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0
    root/FER2013Train/fer0000000.png
    root/FER2013Valid/...            (Kaggle's PublicTest: the validation split)
    root/FER2013Test/...             (Kaggle's PrivateTest: the test split)

``label.csv`` has no header: image name, face box, then the vote counts of ``VOTE_COLUMNS``.
A vote rule of ``noisylabel.annotators`` turns the votes into one label per image; images
whose winner is ``contempt``, ``unknown`` or ``NF`` (not a face), or that have no winner, are
left out (RAF-DB has no contempt class), and ``FERSplit.excluded`` counts each reason.
The seven kept classes map onto RAF-DB's (``noisylabel.apps.fer.classes.CLASS_NAMES``).

A *train-labels* file (``read_train_labels``) replaces the training labels by another
label set, FER2013's original labels for the real-noise protocol (``docs/ferplus.md``)::

    image,label
    fer0000000.png,neutral
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisylabel.annotators import NO_LABEL, soft_vote_targets, vote_agreement, vote_labels
from noisylabel.apps.fer.classes import CLASS_NAMES
from noisylabel.apps.fer.image_cache import decode_images
from noisylabel.apps.fer.layouts import FERSplit
from noisylabel.apps.fer.run_folder import atomic_write_text

__all__ = ["FER2013_CLASSES", "FER2013_TRAIN_LABELS", "FERPLUS_SPLITS", "VOTE_COLUMNS",
           "class_index", "is_ferplus", "load_ferplus", "prepare_ferplus", "read_train_labels",
           "read_vote_file", "vote_classes"]

FERPLUS_SPLITS: dict[str, str] = {"train": "FER2013Train", "valid": "FER2013Valid",
                                  "test": "FER2013Test"}
"""Split name -> folder (Kaggle's Usage: Training, PublicTest, PrivateTest)."""

VOTE_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger",
                                 "disgust", "fear", "contempt", "unknown", "NF")
"""The vote columns of ``label.csv`` and ``fer2013new.csv``, in file order."""

_EXCLUDED_CLASSES = {"contempt": "contempt", "unknown": "unknown", "NF": "not a face"}

# Spellings of the seven shared classes (FER+, FER2013 / its image-folder copy, RAF-DB).
_SYNONYMS: dict[str, str] = {
    "surprise": "Surprise", "fear": "Fear", "disgust": "Disgust",
    "happiness": "Happiness", "happy": "Happiness",
    "sadness": "Sadness", "sad": "Sadness",
    "anger": "Anger", "angry": "Anger", "neutral": "Neutral",
}
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                    "neutral")
"""FER2013's ``emotion`` codes 0..6 of Kaggle's ``fer2013.csv``, as class names."""


def class_index(name: str) -> int:
    """Index in ``noisylabel.apps.fer.classes.CLASS_NAMES`` of a class name in any of the
    spellings of FER+, FER2013 or RAF-DB (case-insensitive: ``happy``, ``happiness``,
    ``Happiness`` -> 3). Raises ValueError naming the accepted names."""
    canonical = _SYNONYMS.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown class {name!r}; accepted: {sorted(_SYNONYMS)}")
    return CLASS_NAMES.index(canonical)


_COLUMN_OF_CLASS: list[int] = [
    next(k for k, col in enumerate(VOTE_COLUMNS) if col not in _EXCLUDED_CLASSES
         and class_index(col) == c) for c in range(len(CLASS_NAMES))]
"""For each class of CLASS_NAMES, its vote column."""


def is_ferplus(root: str | os.PathLike) -> bool:
    """True when ``root`` holds ``FER2013Train/label.csv``."""
    return (Path(root) / FERPLUS_SPLITS["train"] / "label.csv").is_file()


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _csv_rows(path: Path, kind: str) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f))
    except FileNotFoundError:
        raise FileNotFoundError(f"{kind} not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def read_vote_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a FER+ ``label.csv``: ``name,"(x, y, w, h)",v1,...,v10`` per line, no header.

    Returns
    -------
    names : list of str
        Image file names, in file order.
    counts : numpy.ndarray of int64, shape (N, 10)
        Votes in the order of ``VOTE_COLUMNS``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A row without 10 vote counts, a vote that is not a non-negative integer, a duplicated
        or empty name; the message names the file and the line.
    """
    names, counts, _ = _read_votes(Path(path))
    return names, counts


def _read_votes(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """``read_vote_file``, plus the line number of each row (for error messages)."""
    names, rows, seen = [], [], {}
    for lineno, row in enumerate(_csv_rows(path, "FER+ label file"), start=1):
        if not any(cell.strip() for cell in row):
            continue
        votes = row[2:]
        if len(votes) != len(VOTE_COLUMNS):
            raise ValueError(f"{path}, line {lineno}: expected name, face box and "
                             f"{len(VOTE_COLUMNS)} vote counts, got {len(votes)} vote(s)")
        name = row[0].strip()
        if not name:
            raise ValueError(f"{path}, line {lineno}: empty image name")
        if name in seen:
            raise ValueError(f"{path}, line {lineno}: {name} already listed on line {seen[name]}")
        seen[name] = lineno
        bad = [v for v in votes if not _INTEGER.fullmatch(v.strip())]
        if bad:  # int() alone would take '1_0' as 10 and fail on '²' past isdigit()
            raise ValueError(f"{path}, line {lineno}: vote {bad[0]!r} is not an integer")
        counts = [int(v) for v in votes]
        if min(counts) < 0:
            raise ValueError(f"{path}, line {lineno}: negative vote count {min(counts)}")
        names.append(name)
        rows.append(counts)
    if not names:
        raise ValueError(f"{path}: no rows")
    return names, np.asarray(rows, dtype=np.int64), list(seen.values())


def read_train_labels(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Read a train-labels CSV: header ``image,label``, then one image name and class name per
    line (any spelling ``class_index`` accepts).

    Returns
    -------
    dict
        image name -> (class index, line number).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, a wrong header, a row without two fields, an unknown class, a repeated
        image; the message names the file and the line.
    """
    path = Path(path)
    rows = _csv_rows(path, "train-labels file")
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["image", "label"]:
        raise ValueError(f"{path}, line 1: expected the header 'image,label'")
    out: dict[str, tuple[int, int]] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise ValueError(f"{path}, line {lineno}: expected 'image,label', got {row!r}")
        name = row[0].strip()
        if name in out:
            raise ValueError(f"{path}, line {lineno}: {name} already listed on line "
                             f"{out[name][1]}")
        try:
            out[name] = (class_index(row[1]), lineno)
        except ValueError as e:
            raise ValueError(f"{path}, line {lineno}: {e}") from None
    if not out:
        raise ValueError(f"{path}: no labels")
    return out


def vote_classes(winners: np.ndarray, rule: str) -> tuple[np.ndarray, Counter]:
    """FER+ vote-column winners mapped to the 7 classes of ``CLASS_NAMES``.

    Parameters
    ----------
    winners : ndarray of int, shape (N,)
        The winning vote column of each image, as
        [`vote_labels`][noisylabel.annotators.vote_labels] returns it for ``rule`` (``-1``: no
        winner).
    rule : str
        The vote rule that chose the winners (it names the "no winner" reason).

    Returns
    -------
    labels : ndarray of int64, shape (N,)
        The class index, or ``-1`` for an image left out (contempt, unknown, not a face, no
        winner).
    excluded : collections.Counter
        The number of images left out for each reason (reasons with none are dropped).
    """
    mapped = np.full(len(winners), NO_LABEL, dtype=np.int64)
    excluded: Counter = Counter()
    for k, column in enumerate(VOTE_COLUMNS):
        hit = winners == k
        if column in _EXCLUDED_CLASSES:
            excluded[_EXCLUDED_CLASSES[column]] += int(hit.sum())
        else:
            mapped[hit] = class_index(column)
    excluded["no " + rule + " winner"] += int((winners == NO_LABEL).sum())
    return mapped, +excluded  # +: drop zero counts


def load_ferplus(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | None = None,
    rule: str = "majority",
    train_labels: str | os.PathLike | None = None,
    cache: bool = True,
) -> FERSplit:
    """Load one split of a FER+ folder: images, vote-rule labels, agreement, soft targets.

    Parameters
    ----------
    root : path
        Folder holding ``FER2013Train/``, ``FER2013Valid/`` and ``FER2013Test/``.
    split : {"train", "valid", "test"}
    image_size : int, optional
        Resize to ``image_size`` px (bicubic); None keeps 48 px.
    rule : {"majority", "plurality", "soft"}
        Vote rule of ``noisylabel.annotators.vote_labels``; ``soft`` also fills
        ``soft_targets`` with the vote distribution over the seven classes.
    train_labels : path, optional
        A train-labels CSV (``read_train_labels``) whose labels become ``given_labels``;
        images it does not list are left out (counted as ``"not in train-labels"``). Only for
        ``split="train"``.
    cache : bool
        Use the on-disk image cache of
        [`decode_images`][noisylabel.apps.fer.image_cache.decode_images].

    Returns
    -------
    FERSplit
        ``labels`` are the vote labels (the reference), ``agreement`` the share of votes on
        them, ``excluded`` the count of each reason an image was left out.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing folder, file or image; a malformed vote or train-labels file; a train-labels
        entry naming an image that is not in the split (file and line named).
    """
    if split not in FERPLUS_SPLITS:
        raise ValueError(f"split={split!r}: choose one of {tuple(FERPLUS_SPLITS)}")
    if train_labels is not None and split != "train":
        raise ValueError("train_labels replaces the labels of the train split only")
    folder = Path(root) / FERPLUS_SPLITS[split]
    label_path = folder / "label.csv"
    names, counts, lines = _read_votes(label_path)
    winners = vote_labels(counts, rule)
    labels, excluded = vote_classes(winners, rule)
    given = None
    if train_labels is not None:
        given = _given_labels(Path(train_labels), names, folder)
        missing = (given == NO_LABEL) & (labels != NO_LABEL)
        excluded["not in train-labels"] += int(missing.sum())
        labels = np.where(given == NO_LABEL, NO_LABEL, labels)
    keep = np.flatnonzero(labels != NO_LABEL)
    if keep.size == 0:
        left_out = ", ".join(f"{n} {why}" for why, n in sorted(excluded.items()))
        raise ValueError(f"{label_path}: no image left under the {rule!r} rule"
                         + (f" with the labels of {train_labels}" if train_labels else "")
                         + f" (left out: {left_out})")
    kept_names = [names[i] for i in keep]
    paths = [folder / n for n in kept_names]
    for i, path in zip(keep, paths, strict=True):
        if not path.is_file():
            raise FileNotFoundError(f"{label_path}, line {lines[i]}: image {names[i]} not found "
                                    f"in {folder}")
    tag = f"ferplus-{split}-{rule}"
    images = decode_images(paths, label_path, tag, image_size, cache=cache)
    soft = soft_vote_targets(counts[keep][:, _COLUMN_OF_CLASS]) if rule == "soft" else None
    return FERSplit(
        kept_names, images, torch.as_tensor(labels[keep]), CLASS_NAMES, Path(root),
        agreement=torch.as_tensor(vote_agreement(counts, winners)[keep]),
        soft_targets=None if soft is None else torch.as_tensor(soft, dtype=torch.float32),
        given_labels=None if given is None else torch.as_tensor(given[keep]),
        excluded=dict(excluded))


def _given_labels(path: Path, names: list[str], folder: Path) -> np.ndarray:
    """Labels of ``path`` aligned with ``names`` (-1 where the file has none); a listed image
    that the split does not hold is an error naming the line."""
    table = read_train_labels(path)
    index = {n: i for i, n in enumerate(names)}
    out = np.full(len(names), NO_LABEL, dtype=np.int64)
    for name, (label, lineno) in table.items():
        i = index.get(name)
        if i is None:
            raise ValueError(f"{path}, line {lineno}: image {name!r} is not in "
                             f"{folder / 'label.csv'}")
        out[i] = label
    return out


# ----------------------------------------------------------------------------- preparation

FER2013_TRAIN_LABELS = "fer2013_train_labels.csv"
"""File name of the original FER2013 labels of the training split that ``prepare_ferplus``
writes (the ``train_labels`` of the real-noise protocol)."""

_USAGE_FOLDERS = {"Training": FERPLUS_SPLITS["train"], "PublicTest": FERPLUS_SPLITS["valid"],
                  "PrivateTest": FERPLUS_SPLITS["test"]}
_FACE_BOX = "(0, 0, 48, 48)"


def _read_fer2013(path: Path) -> list[tuple[int, str, str, int]]:
    """Rows of Kaggle's ``fer2013.csv`` as (emotion, pixels, usage, line)."""
    rows = _csv_rows(path, "fer2013.csv")
    if not rows or [c.strip() for c in rows[0][:3]] != ["emotion", "pixels", "Usage"]:
        raise ValueError(f"{path}, line 1: expected the header 'emotion,pixels,Usage'")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise ValueError(f"{path}, line {lineno}: expected 3 fields, got {len(row)}")
        emotion, pixels, usage = (c.strip() for c in row)
        if emotion not in {str(k) for k in range(len(FER2013_CLASSES))}:
            raise ValueError(f"{path}, line {lineno}: emotion {emotion!r} is not in 0..6")
        if usage not in _USAGE_FOLDERS:
            raise ValueError(f"{path}, line {lineno}: Usage {usage!r} is not one of "
                             f"{sorted(_USAGE_FOLDERS)}")
        out.append((int(emotion), pixels, usage, lineno))
    return out


def _pixels(text: str, path: Path, lineno: int) -> np.ndarray:
    values = text.split()
    if len(values) != 48 * 48 or not all(v.isascii() and v.isdigit() and int(v) < 256 for v in values):
        raise ValueError(f"{path}, line {lineno}: pixels must be 2304 integers in 0..255 "
                         f"(got {len(values)} values)")
    return np.asarray(values, dtype=np.uint8).reshape(48, 48)


def _read_fer2013new(path: Path) -> list[tuple[str, str, list[str], int]]:
    """Rows of ``fer2013new.csv`` as (usage, image name, vote cells, line)."""
    rows = _csv_rows(path, "fer2013new.csv")
    header = [c.strip() for c in rows[0]] if rows else []
    if header != ["Usage", "Image name", *VOTE_COLUMNS]:
        raise ValueError(f"{path}, line 1: expected the header 'Usage,Image name,"
                         f"{','.join(VOTE_COLUMNS)}'")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 2 + len(VOTE_COLUMNS):
            raise ValueError(f"{path}, line {lineno}: expected {2 + len(VOTE_COLUMNS)} fields "
                             f"(Usage, Image name, {len(VOTE_COLUMNS)} votes), got {len(row)}")
        votes = [c.strip() for c in row[2:]]
        bad = [v for v in votes if not (v.isascii() and v.isdigit())]
        if bad:
            raise ValueError(f"{path}, line {lineno}: vote {bad[0]!r} is not an integer")
        out.append((row[0].strip(), row[1].strip(), votes, lineno))
    return out


def prepare_ferplus(fer2013_csv: str | os.PathLike, fer2013new_csv: str | os.PathLike,
                    out: str | os.PathLike, overwrite: bool = False) -> dict[str, int]:
    """Write the FER+ layout from Kaggle's ``fer2013.csv`` and FER+'s ``fer2013new.csv``.

    Row ``i`` of both files is the same image (``fer{i:07d}.png``); rows that FER+ left without
    an image name are skipped, as ``generate_training_data.py`` does. Besides a PNG per image
    and ``label.csv`` per split, writes ``FER2013_TRAIN_LABELS``: each training image's
    original FER2013 label, leaving out the images whose pixel-identical copies in
    ``fer2013.csv`` carry different labels (their original label is uncertain).

    Returns
    -------
    dict
        Images written per split folder, and ``ambiguous`` (training images left out of the
        FER2013 label file).

    Raises
    ------
    FileNotFoundError, ValueError
        A missing input, a malformed row (file and line named), files of different lengths or
        with different Usage on a row, an image name that is not a ``.png`` file name or is
        repeated, an output folder that already holds a FER+ layout (unless ``overwrite``).
        Every row is checked before anything is written.
    """
    fer_path, new_path, out = Path(fer2013_csv), Path(fer2013new_csv), Path(out)
    if is_ferplus(out) and not overwrite:
        raise ValueError(f"{out} already holds a FER+ layout; pass overwrite=True "
                         "(--overwrite) to replace it")
    fer, new = _read_fer2013(fer_path), _read_fer2013new(new_path)
    if len(fer) != len(new):
        raise ValueError(f"{fer_path} has {len(fer)} rows, {new_path} has {len(new)}: they "
                         "must be the same images in the same order")
    labels_of: dict[str, set[int]] = {}
    for emotion, pixels, _, _ in fer:
        labels_of.setdefault(pixels, set()).add(emotion)
    label_rows: dict[str, list[str]] = {folder: [] for folder in FERPLUS_SPLITS.values()}
    train_rows, counts = ["image,label"], Counter()
    images: list[tuple[Path, np.ndarray]] = []
    line_of: dict[str, int] = {}
    # every row is checked before anything is written: a bad row leaves ``out`` as it was
    for (emotion, pixels, usage, line), (usage2, name, votes, line2) in zip(fer, new, strict=True):
        if usage != usage2:
            raise ValueError(f"{new_path}, line {line2}: Usage {usage2!r} differs from "
                             f"{fer_path}, line {line} ({usage!r})")
        if not name:
            continue
        if Path(name).name != name or not name.lower().endswith(".png"):
            raise ValueError(f"{new_path}, line {line2}: image name {name!r} must be a file "
                             "name ending in .png")
        if name in line_of:
            raise ValueError(f"{new_path}, line {line2}: {name} already listed on line "
                             f"{line_of[name]}")
        line_of[name] = line2
        folder = _USAGE_FOLDERS[usage]
        images.append((out / folder / name, _pixels(pixels, fer_path, line)))
        label_rows[folder].append(f'{name},"{_FACE_BOX}",{",".join(votes)}')
        counts[folder] += 1
        if usage == "Training":
            if len(labels_of[pixels]) > 1:
                counts["ambiguous"] += 1
            else:
                train_rows.append(f"{name},{FER2013_CLASSES[emotion]}")
    for path, array in images:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    for folder, rows in label_rows.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / folder / "label.csv", "".join(r + "\n" for r in rows))
    atomic_write_text(out / FER2013_TRAIN_LABELS, "\n".join(train_rows) + "\n")
    return dict(counts)
