"""The data layouts: RAF-DB and class folders, each split loaded into memory as a
[`FERSplit`][noisylabel.apps.fer.layouts.FERSplit] (the FER+ layout is
``ferplus``).

RAF-DB layout ("basic", and what ``synthetic`` writes)::

    root/EmoLabel/list_patition_label.txt     train_00001.jpg 5   (labels 1..7)
    root/Image/aligned/train_00001_aligned.jpg

[`load_class_folders`][noisylabel.apps.fer.layouts.load_class_folders] reads a second layout, a
user's own images sorted into one folder per class (the class of an image is its folder's name;
``test/`` is optional)::

    root/train/<class>/*.jpg|*.jpeg|*.png|*.bmp
    root/test/<class>/*.jpg|*.jpeg|*.png|*.bmp

[`load_split`][noisylabel.apps.fer.layouts.load_split] decodes every image of a split once and
stacks the split into one uint8 tensor ``(N, 3, H, W)``, through the on-disk cache of
[`image_cache`][noisylabel.apps.fer.image_cache].

The split holds the *true* labels. Label noise is applied by the caller with
``noisylabel.noise`` (``symmetric_noise`` or ``read_noise_file``), to training
labels only.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from noisylabel.apps.fer.classes import CLASS_NAMES
from noisylabel.apps.fer.image_cache import (
    IMAGE_SUFFIXES,
    SplitDecoder,
    cache_candidates,
    cache_key,
    check_image_size,
    check_same_size,
    load_cache,
    name_list,
    save_cache,
    stack_images,
    warn_resized,
)
from noisylabel.noise import read_label_lines

__all__ = ["LABEL_FILE", "IDENTITY_FILE", "IMAGE_DIR", "CLASS_NAMES", "FERSplit",
           "read_label_file", "image_path", "read_identities", "load_split", "detect_layout",
           "load_class_folders"]

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
IDENTITY_FILE = Path("EmoLabel") / "identities.csv"
IMAGE_DIR = Path("Image") / "aligned"
_SPLITS = ("train", "test")


def read_label_file(path: str | os.PathLike, n_classes: int = 7) -> list[tuple[str, int]]:
    """Read a RAF-DB label file: lines ``<name> <label>``, labels 1-based.

    Blank lines, trailing whitespace, CRLF line ends and a missing final newline are accepted.

    Parameters
    ----------
    path : path
        The label file (e.g. ``EmoLabel/list_patition_label.txt``).
    n_classes : int
        Labels must lie in ``1..n_classes``.

    Returns
    -------
    list of (name, label0)
        In file order, with 0-based labels ``label0 = label - 1``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        A malformed line, a label outside ``1..n_classes`` or a duplicated name; the message
        names the file and the line number.
    """
    return [(name, label0) for name, label0, _ in read_label_lines(path, n_classes)]


def image_path(root: str | os.PathLike, name: str) -> Path:
    """Aligned image of ``name``: ``train_00001.jpg`` -> ``Image/aligned/train_00001_aligned.jpg``."""
    stem, ext = os.path.splitext(name)
    return Path(root) / IMAGE_DIR / f"{stem}_aligned{ext}"


def read_identities(root: str | os.PathLike) -> dict[str, int]:
    """Read ``EmoLabel/identities.csv`` (columns ``name,identity``; synthetic data sets only).

    Returns
    -------
    dict name -> identity id

    Raises
    ------
    FileNotFoundError, ValueError (naming the file and line)
    """
    path = Path(root) / IDENTITY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"identity file not found: {path}")
    out: dict[str, int] = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != ["name", "identity"]:
            raise ValueError(f"{path}, line 1: expected header 'name,identity', got {header!r}")
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}, line {lineno}: expected 2 fields, got {row!r}")
            name, raw = row[0].strip(), row[1].strip()
            try:
                out[name] = int(raw)
            except ValueError:
                raise ValueError(f"{path}, line {lineno}: identity {raw!r} is not an integer"
                                 ) from None
    return out


@dataclass
class FERSplit:
    """One split in memory.

    Attributes
    ----------
    names : list of str
        Image names as in the label file (``train_00001.jpg``), in file order.
    images : torch.Tensor
        uint8, (N, 3, H, W).
    labels : torch.Tensor
        int64, (N,), true (file) labels, 0-based.
    class_names : tuple of str
    root : Path
    skipped : list of str
        Names dropped with ``on_error="skip"`` (missing or unreadable images).
    agreement : torch.Tensor or None
        float64, (N,): share of annotator votes on ``labels`` (vote-labelled layouts: FER+).
    soft_targets : torch.Tensor or None
        float32, (N, C): the vote distribution (FER+ with the ``soft`` rule).
    given_labels : torch.Tensor or None
        int64, (N,): training labels from another label set (a train-labels file), to train on
        while ``labels`` stay the reference the noise is measured against.
    excluded : dict
        Reason -> number of images the loader left out (FER+: contempt, unknown, ...).
    """

    names: list[str]
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...] = CLASS_NAMES
    root: Path = field(default_factory=Path)
    skipped: list[str] = field(default_factory=list)
    agreement: torch.Tensor | None = None
    soft_targets: torch.Tensor | None = None
    given_labels: torch.Tensor | None = None
    excluded: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


def load_split(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | None = None,
    cache: bool = True,
    on_error: str = "raise",
) -> FERSplit:
    """Load one split of a RAF-DB-layout folder into a uint8 tensor.

    Parameters
    ----------
    root : path
        Data folder holding ``EmoLabel/`` and ``Image/aligned/``.
    split : "train" or "test"
        Names starting with ``<split>_`` in the label file.
    image_size : int, optional
        Resize every image to ``image_size x image_size`` (bicubic, antialiased). None keeps the
        stored size (all images must then share it).
    cache : bool
        Read and write the on-disk cache (see the module docstring).
    on_error : "raise" or "skip"
        A missing, unreadable or corrupt image raises (naming the file) or is dropped with one
        warning giving the count; dropped names are in ``FERSplit.skipped``. Images resized from
        an odd size get one warning too
        ([`warn_resized`][noisylabel.apps.fer.image_cache.warn_resized]; both also when the
        split comes from the cache).

    Returns
    -------
    FERSplit

    Raises
    ------
    FileNotFoundError
        Missing label file or (with on_error="raise") missing image.
    ValueError
        Bad arguments, malformed label file, corrupt image, no image in the split.
    """
    if split not in _SPLITS:
        raise ValueError(f"split={split!r}: must be one of {_SPLITS}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}: must be 'raise' or 'skip'")
    check_image_size(image_size)
    root = Path(root)
    label_path = root / LABEL_FILE
    try:
        label_bytes = label_path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {label_path}") from None
    except OSError as e:
        raise ValueError(f"cannot read label file {label_path}: {e}") from None
    entries = [(n, y) for n, y in read_label_file(label_path) if n.startswith(f"{split}_")]
    if not entries:
        raise ValueError(f"{label_path}: no '{split}_*' entries")
    paths = [image_path(root, n) for n, _ in entries]

    candidates = cache_candidates(root, split, image_size)
    key = cache_key(label_bytes, split, image_size, on_error, paths) if cache else ""
    if cache:
        for c in candidates:
            blob = load_cache(c, key)
            if blob is not None:
                skipped = list(blob["skipped"])
                if skipped:
                    _warn_skipped(skipped, split, root)
                warn_resized(blob.get("resized", []), f"{root}, split {split!r}", image_size)
                return FERSplit(list(blob["names"]), blob["images"], blob["labels"],
                                CLASS_NAMES, root, skipped)

    decode = SplitDecoder(image_size)
    arrays, names, labels, skipped = [], [], [], []
    for (name, label), path in zip(entries, paths, strict=True):
        try:
            arr = decode(path, name)
        except FileNotFoundError:
            if on_error == "raise":
                raise FileNotFoundError(f"image not found: {path} (listed in {label_path})"
                                        ) from None
            skipped.append(name)
            continue
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if on_error == "raise":
                raise ValueError(f"cannot decode image {path}: {e}") from None
            skipped.append(name)
            continue
        if arrays:
            check_same_size(arr, path, arrays[0], paths[0].name)
        arrays.append(arr)
        names.append(name)
        labels.append(label)
    if skipped:
        _warn_skipped(skipped, split, root)
    warn_resized(decode.resized, f"{root}, split {split!r}", image_size)
    if not arrays:
        raise ValueError(f"{root}: every image of split {split!r} failed to load")
    images = stack_images(arrays)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if cache:
        save_cache(candidates, {"key": key, "names": names, "images": images,
                                 "labels": label_tensor, "skipped": skipped,
                                 "resized": decode.resized})
    return FERSplit(names, images, label_tensor, CLASS_NAMES, root, skipped)


def _warn_skipped(skipped: Sequence[str], split: str, root: Path) -> None:
    warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s) of split {split!r}: "
                  f"{name_list(skipped)}", stacklevel=3)


def detect_layout(root: str | os.PathLike) -> str:
    """Which data layout ``root`` holds, checked in this order: ``FER2013Train/label.csv`` ->
    FER+ (``load_ferplus``), ``EmoLabel/`` -> RAF-DB
    ([`load_split`][noisylabel.apps.fer.layouts.load_split]), ``train/`` -> class folders ([`load_class_folders`][noisylabel.apps.fer.layouts.load_class_folders]).

    Parameters
    ----------
    root : path
        The data root.

    Returns
    -------
    str
        ``"ferplus"``, ``"raf-db"`` or ``"class-folders"``.

    Raises
    ------
    FileNotFoundError
        Neither folder is there; the message names ``root`` and both layouts.
    """
    root = Path(root)
    if (root / "FER2013Train" / "label.csv").is_file():
        return "ferplus"
    if (root / "EmoLabel").is_dir():
        return "raf-db"
    if (root / "train").is_dir():
        return "class-folders"
    raise FileNotFoundError(
        f"no face data found in {root}: expected the FER+ layout (FER2013Train/label.csv), "
        f"the RAF-DB layout "
        f"({LABEL_FILE.as_posix()} and {IMAGE_DIR.as_posix()}/) or class "
        "folders (train/<class>/*.jpg|*.jpeg|*.png|*.bmp, optional test/<class>/)")


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (sorted) under one split folder."""
    visible = sorted(p for p in split_dir.iterdir() if not p.name.startswith("."))
    folders = [p for p in visible if p.is_dir()]
    if not folders:
        raise ValueError(f"{split_dir}: no class folders (expected {split_dir}/<class>/*.jpg)")
    out = {}
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {folder} holds no image "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        out[folder.name] = files
    return out


def load_class_folders(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | None = None,
    holdout: float = 0.1,
    seed: int = 0,
) -> FERSplit:
    """Load one split of a class-folder data set (``root/train/<class>/*.jpg``) into memory.

    The classes are the sorted folder names under ``root/train``; an image's label is the index
    of its folder's name. ``root/test/<class>/`` is optional: when it is absent, a seeded random
    ``max(1, round(holdout * N))`` of the ``N`` training images (at most ``N - 1``, not
    stratified) is the test split and the rest the train split, so ``split="train"`` and
    ``split="test"`` with the same ``holdout`` and ``seed`` partition ``root/train``.
    Files ending in one of ``IMAGE_SUFFIXES`` (any case) are images; other files and
    hidden entries (names starting with ``.``) are ignored. Nothing is cached on disk. Images
    resized from an odd size get one warning
    ([`warn_resized`][noisylabel.apps.fer.image_cache.warn_resized]).

    Parameters
    ----------
    root : path
        Data folder holding ``train/`` (and optionally ``test/``).
    split : "train" or "test"
    image_size : int, optional
        Resize every image to ``image_size x image_size`` (bicubic, antialiased). None keeps the
        stored size (all images must then share it).
    holdout : float
        Fraction of ``root/train`` held out as the test split when ``root/test`` is absent;
        in (0, 1).
    seed : int
        Seed of the held-out draw (``numpy.random.default_rng(seed).permutation``).

    Returns
    -------
    FERSplit
        ``names`` are paths relative to ``root`` (``train/happy/img1.jpg``), in class then file
        name order; ``class_names`` are the sorted folder names of ``root/train``.

    Raises
    ------
    FileNotFoundError
        ``root/train`` is not a folder.
    ValueError
        Bad arguments; a split folder without class folders; a class folder without images;
        fewer than 2 classes; a ``test/`` class absent from ``train/``; a corrupt image; images
        of different sizes without ``image_size``. The message names the folder or file.
    """
    if split not in _SPLITS:
        raise ValueError(f"split={split!r}: must be one of {_SPLITS}")
    check_image_size(image_size)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout={holdout!r}: must be in (0, 1)")
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"class-folder data: {train_dir} not found "
                                "(expected train/<class>/*.jpg under the data root)")
    train = _class_files(train_dir)
    classes = sorted(train)
    if len(classes) < 2:
        raise ValueError(f"{train_dir}: one class folder ({classes[0]!r}); need at least 2")
    index = {c: i for i, c in enumerate(classes)}
    if test_dir.is_dir():
        test = _class_files(test_dir)
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise ValueError(f"{test_dir}: class folder(s) {unknown} have no folder in "
                             f"{train_dir} (its classes: {classes})")
        files = train if split == "train" else test
        items = [(p, index[c]) for c in sorted(files) for p in files[c]]
    else:
        items = [(p, index[c]) for c in classes for p in train[c]]
        n = len(items)
        n_held = min(max(1, round(holdout * n)), n - 1)
        held = np.zeros(n, dtype=bool)
        held[np.random.default_rng(seed).permutation(n)[:n_held]] = True
        items = [it for it, h in zip(items, held, strict=True) if h == (split == "test")]

    decode = SplitDecoder(image_size)
    arrays = []
    for path, _ in items:
        try:
            arr = decode(path, path.relative_to(root).as_posix())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot decode image {path}: {e}") from None
        if arrays:
            check_same_size(arr, path, arrays[0], items[0][0])
        arrays.append(arr)
    warn_resized(decode.resized, f"{root}, split {split!r}", image_size)
    images = stack_images(arrays)
    labels = torch.tensor([y for _, y in items], dtype=torch.int64)
    names = [p.relative_to(root).as_posix() for p, _ in items]
    return FERSplit(names, images, labels, tuple(classes), root)
