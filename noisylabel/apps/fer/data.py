"""FER data: label files, an in-memory uint8 image cache, batch augmentation.

Layout (RAF-DB "basic", and what :mod:`noisylabel.apps.fer.synthetic` writes)::

    root/EmoLabel/list_patition_label.txt     train_00001.jpg 5   (labels 1..7)
    root/Image/aligned/train_00001_aligned.jpg

:func:`load_class_folders` reads a second layout, a user's own images sorted into one folder per
class (the class of an image is its folder's name; ``test/`` is optional)::

    root/train/<class>/*.jpg|*.jpeg|*.png
    root/test/<class>/*.jpg|*.jpeg|*.png

:func:`load_split` decodes every image of a split once (PIL, RGB), optionally resizes it
(antialiased), and stacks the split into one uint8 tensor ``(N, 3, H, W)``, cached on disk with
``torch.save`` (loaded with ``weights_only=True``). The cache key is the SHA-256 of the label
file's bytes, the split, the image size, the error mode and every image's size and mtime, so any
change of the data invalidates it. The cache lives in ``root/.noisylabel_cache/`` or, when the
data folder is not writable, in ``$NOISYLABEL_CACHE_DIR`` (default
``$XDG_CACHE_HOME/noisylabel`` or ``~/.cache/noisylabel``).

The split holds the *true* labels. Label noise is applied by the caller with
:mod:`noisylabel.noise` (``symmetric_noise`` or ``read_noise_file``), to training labels only.

Augmentation (:class:`BatchAugment`) runs on uint8 batches on any device; see its docstring for
how it follows and where it departs from timm's ``rand-m5-n3-mstd0.5``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from noisylabel.apps.fer.classes import CLASS_NAMES
from noisylabel.noise import read_label_lines

"""RAF-DB's classes in label order (file label ``k`` is class ``k - 1``)."""

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
IDENTITY_FILE = Path("EmoLabel") / "identities.csv"
IMAGE_DIR = Path("Image") / "aligned"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_CACHE_VERSION = 1
_SPLITS = ("train", "test")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")


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


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (int(image_size) != image_size or image_size < 1):
        raise ValueError(f"image_size={image_size!r}: must be a positive integer or None")


def _decode(path: Path, image_size: int | None) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if image_size is not None and im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def _check_same_size(arr: np.ndarray, path: Path, first: np.ndarray, first_name: object) -> None:
    """Without ``image_size`` every image must share the first one's size; name both."""
    if arr.shape != first.shape:
        raise ValueError(f"image {path} has size {arr.shape[1]}x{arr.shape[0]}, "
                         f"{first_name} has {first.shape[1]}x{first.shape[0]}: "
                         "pass image_size to resize")


def _to_batch(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> one contiguous (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _user_cache_dir() -> Path:
    env = os.environ.get("NOISYLABEL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "noisylabel"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _cache_key(label_bytes: bytes, split: str, image_size: int | None, on_error: str,
               paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"v{_CACHE_VERSION}|{split}|{image_size}|{on_error}|".encode())
    h.update(hashlib.sha256(label_bytes).digest())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{p.name}:missing;".encode())
    return h.hexdigest()


def _cache_candidates(root: Path, split: str, image_size: int | None) -> list[Path]:
    fname = f"{split}_{image_size or 'orig'}.pt"
    local = root / ".noisylabel_cache" / fname
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [local, _user_cache_dir() / tag / fname]


def _load_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file is a cache miss, never an error
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob


def _save_cache(candidates: Sequence[Path], blob: dict) -> Path | None:
    for path in candidates:
        if not _writable_dir(path.parent):
            continue
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            torch.save(blob, tmp)
            os.replace(tmp, path)
            return path
        except OSError:
            tmp.unlink(missing_ok=True)
    warnings.warn(f"could not write an image cache in any of {[str(c) for c in candidates]}",
                  stacklevel=3)
    return None


def decode_images(paths: Sequence[Path], label_path: Path, tag: str, image_size: int | None,
                  cache: bool = True) -> torch.Tensor:
    """Decode ``paths`` into one uint8 tensor (N, 3, H, W), through the on-disk cache.

    The cache file is named by ``tag`` and keyed like :func:`load_split`'s (the label file's
    bytes, the image size, every image's size and mtime).

    Raises
    ------
    FileNotFoundError
        A missing image (named, with the label file that lists it).
    ValueError
        A corrupt image, or images of different sizes without ``image_size``.
    """
    _check_image_size(image_size)
    root = label_path.parent
    candidates = _cache_candidates(root, tag, image_size)
    key = _cache_key(label_path.read_bytes(), tag, image_size, "raise", paths) if cache else ""
    for c in candidates if cache else ():
        blob = _load_cache(c, key)
        if blob is not None:
            return blob["images"]
    arrays = []
    for path in paths:
        try:
            arr = _decode(path, image_size)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {path} (listed in {label_path})"
                                    ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot decode image {path}: {e}") from None
        if arrays:
            _check_same_size(arr, path, arrays[0], paths[0].name)
        arrays.append(arr)
    images = _to_batch(arrays)
    if cache:
        _save_cache(candidates, {"key": key, "images": images})
    return images


def batch_slices(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split an epoch's sample order into consecutive batches of ``batch_size``.

    A last batch of a single sample joins the one before it: BatchNorm cannot train on one
    sample once ResNet18's feature map is 1 x 1, as it is at 32 px and below.

    Parameters
    ----------
    order : torch.Tensor of shape (N,)
        Sample indices in the epoch's order.
    batch_size : int

    Returns
    -------
    list of torch.Tensor
        The batches; their concatenation is ``order``.
    """
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


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
        warning giving the count; dropped names are in ``FERSplit.skipped``.

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
    _check_image_size(image_size)
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

    candidates = _cache_candidates(root, split, image_size)
    key = _cache_key(label_bytes, split, image_size, on_error, paths) if cache else ""
    if cache:
        for c in candidates:
            blob = _load_cache(c, key)
            if blob is not None:
                skipped = list(blob["skipped"])
                if skipped:
                    _warn_skipped(skipped, split, root)
                return FERSplit(list(blob["names"]), blob["images"], blob["labels"],
                                CLASS_NAMES, root, skipped)

    arrays, names, labels, skipped = [], [], [], []
    for (name, label), path in zip(entries, paths, strict=True):
        try:
            arr = _decode(path, image_size)
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
            _check_same_size(arr, path, arrays[0], paths[0].name)
        arrays.append(arr)
        names.append(name)
        labels.append(label)
    if skipped:
        _warn_skipped(skipped, split, root)
    if not arrays:
        raise ValueError(f"{root}: every image of split {split!r} failed to load")
    images = _to_batch(arrays)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if cache:
        _save_cache(candidates, {"key": key, "names": names, "images": images,
                                 "labels": label_tensor, "skipped": skipped})
    return FERSplit(names, images, label_tensor, CLASS_NAMES, root, skipped)


def _warn_skipped(skipped: Sequence[str], split: str, root: Path) -> None:
    shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
    warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s) of split {split!r}: "
                  f"{shown}", stacklevel=3)


def detect_layout(root: str | os.PathLike) -> str:
    """Which data layout ``root`` holds, checked in this order: ``FER2013Train/label.csv`` ->
    FER+ (:func:`noisylabel.apps.fer.ferplus.load_ferplus`), ``EmoLabel/`` -> RAF-DB
    (:func:`load_split`), ``train/`` -> class folders (:func:`load_class_folders`).

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
        "folders (train/<class>/*.jpg|*.jpeg|*.png, optional test/<class>/)")


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
    Files ending in ``.jpg``, ``.jpeg`` or ``.png`` (any case) are images; other files and
    hidden entries (names starting with ``.``) are ignored. Nothing is cached on disk.

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
    _check_image_size(image_size)
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

    arrays = []
    for path, _ in items:
        try:
            arr = _decode(path, image_size)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot decode image {path}: {e}") from None
        if arrays:
            _check_same_size(arr, path, arrays[0], items[0][0])
        arrays.append(arr)
    images = _to_batch(arrays)
    labels = torch.tensor([y for _, y in items], dtype=torch.int64)
    names = [p.relative_to(root).as_posix() for p, _ in items]
    return FERSplit(names, images, labels, tuple(classes), root)


# --------------------------------------------------------------------------- normalisation


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Eval transform: ``(images / 255 - mean) / std`` as float32 on the images' device.

    Parameters
    ----------
    images : torch.Tensor
        uint8 (N, 3, H, W) (or float in [0, 255]).

    Returns
    -------
    torch.Tensor float32 (N, 3, H, W)
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s



# --------------------------------------------------------------------------- augmentation

RAND_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
"""timm's ``_RAND_TRANSFORMS`` (the op set of ``rand-m*-n*``)."""

_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_GRAY = (0.299, 0.587, 0.114)  # PIL's "L" conversion weights


@dataclass
class AugmentParams:
    """Per-sample random draws of one :class:`BatchAugment` call (all tensors have length N).

    ``ops`` (N, n) op indices into ``BatchAugment.ops``, ``applied`` (N, n) bool, ``magnitude``
    (N, n) in [0, 10], ``sign`` (N, n) +-1, ``flip`` (N,) bool, ``erase`` (N,) bool and the erase
    boxes ``erase_box`` (N, 4) = (top, left, height, width) in pixels.
    """

    ops: torch.Tensor
    applied: torch.Tensor
    magnitude: torch.Tensor
    sign: torch.Tensor
    flip: torch.Tensor
    erase: torch.Tensor
    erase_box: torch.Tensor


class BatchAugment:
    """Training augmentation of a uint8 batch, vectorised, on the batch's device.

    ``out = erase(normalize(randaugment(flip(x))))`` with, per sample:

    * horizontal flip with probability ``flip_p``;
    * RandAugment like timm's ``rand-m{magnitude}-n{num_ops}-mstd{magnitude_std}``: ``num_ops``
      ops drawn uniformly *with replacement* from :data:`RAND_OPS`, each applied with probability
      ``op_p`` (timm: 0.5) at magnitude ``m ~ N(magnitude, magnitude_std)`` clipped to [0, 10],
      and timm's level-to-argument maps: rotate ``30 m/10`` degrees, shear ``0.3 m/10``,
      translate ``0.45 m/10`` of the image side (so it scales with the image), each with a random
      sign; colour / contrast / brightness / sharpness factor ``1.8 m/10 + 0.1``; posterize to
      ``int(4 m/10)`` bits; solarize above ``256 m/10``; solarize-add ``int(110 m/10)`` below 128;
      autocontrast, equalize and invert take no magnitude;
    * random erasing with probability ``erase_p`` of a box of area ``U(erase_scale)`` of the
      image and aspect ratio log-uniform in ``erase_ratio``, set to 0 after normalisation (the
      mean colour), as the FER code bases built on SCN / EAC do with torchvision's
      ``RandomErasing(scale=(0.02, 0.25))`` (its default p = 0.5); torchvision retries a box that
      does not fit, here the box sides are clipped to the image.

    Differences from timm's PIL implementation (documented, deliberate):

    * Geometric ops of a sample are composed into one affine matrix (about the image centre)
      and applied with one ``affine_grid`` + ``grid_sample`` (bilinear) per batch, before the
      colour ops; timm resamples once per op, in the drawn order, with a random bilinear or
      bicubic filter. Pixel-wise colour ops commute with the geometry, so only the out-of-image
      fill and the statistics of autocontrast / equalize (computed on the warped image) differ.
    * Shear is about the image centre; timm shears about the top-left corner, which adds a
      translation of up to ``shear * side``.
    * The fill colour of uncovered pixels is timm's ``img_mean`` (ImageNet mean), as in timm.
    * Colour ops run in float32 on the 0..255 scale and are rounded to integers after each op
      (PIL works in uint8); equalize follows PIL's look-up-table formula per channel.
    * Sharpness blends with PIL's 3x3 SMOOTH kernel applied to the whole image (PIL keeps the
      one-pixel border unchanged).

    Parameters
    ----------
    num_ops, magnitude, magnitude_std, op_p : RandAugment settings (timm defaults for ``m5-n3``).
    flip_p : float
        Horizontal flip probability.
    erase_p, erase_scale, erase_ratio : random erasing settings.
    mean, std : normalisation (ImageNet).
    ops : sequence of str
        Op names, a subset of :data:`RAND_OPS`. An empty sequence disables RandAugment.
    """

    def __init__(
        self,
        num_ops: int = 3,
        magnitude: float = 5.0,
        magnitude_std: float = 0.5,
        op_p: float = 0.5,
        flip_p: float = 0.5,
        erase_p: float = 0.5,
        erase_scale: tuple[float, float] = (0.02, 0.25),
        erase_ratio: tuple[float, float] = (0.3, 3.3),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ops: Sequence[str] = RAND_OPS,
    ) -> None:
        unknown = [o for o in ops if o not in RAND_OPS]
        if unknown:
            raise ValueError(f"unknown augmentation ops {unknown}; choose from {RAND_OPS}")
        for name, p in (("op_p", op_p), ("flip_p", flip_p), ("erase_p", erase_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p}: must be in [0, 1]")
        if num_ops < 0:
            raise ValueError(f"num_ops={num_ops}: must be >= 0")
        if not 0.0 < erase_scale[0] <= erase_scale[1] < 1.0:
            raise ValueError(f"erase_scale={erase_scale}: need 0 < low <= high < 1")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.op_p = float(op_p)
        self.flip_p = float(flip_p)
        self.erase_p = float(erase_p)
        self.erase_scale = (float(erase_scale[0]), float(erase_scale[1]))
        self.erase_ratio = (float(erase_ratio[0]), float(erase_ratio[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.ops = tuple(ops)

    def __repr__(self) -> str:
        return (f"BatchAugment(rand-m{self.magnitude:g}-n{self.num_ops}-mstd"
                f"{self.magnitude_std:g}, op_p={self.op_p}, flip_p={self.flip_p}, "
                f"erase_p={self.erase_p}, erase_scale={self.erase_scale})")

    # -- random draws ------------------------------------------------------------------------
    def sample_params(self, n: int, height: int, width: int,
                      generator: torch.Generator | None = None) -> AugmentParams:
        """Draw every per-sample random choice for a batch of ``n`` images (on the CPU or on the
        generator's device)."""
        dev = generator.device if generator is not None else torch.device("cpu")

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        k = max(self.num_ops, 0)
        n_ops = max(len(self.ops), 1)
        ops = torch.randint(0, n_ops, (n, k), generator=generator, device=dev)
        applied = (rand(n, k) < self.op_p) & (len(self.ops) > 0)
        mag = self.magnitude + self.magnitude_std * torch.randn(n, k, generator=generator,
                                                                device=dev)
        mag = mag.clamp(0.0, 10.0)
        sign = torch.where(rand(n, k) < 0.5, -1.0, 1.0)
        flip = rand(n) < self.flip_p
        erase = rand(n) < self.erase_p
        area = (self.erase_scale[0] + (self.erase_scale[1] - self.erase_scale[0]) * rand(n)) \
            * height * width
        lo, hi = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        ratio = torch.exp(lo + (hi - lo) * rand(n))
        eh = torch.sqrt(area * ratio).round().clamp(1, height - 1 if height > 1 else 1)
        ew = torch.sqrt(area / ratio).round().clamp(1, width - 1 if width > 1 else 1)
        top = (rand(n) * (height - eh + 1)).floor()
        left = (rand(n) * (width - ew + 1)).floor()
        box = torch.stack([top, left, eh, ew], dim=1).long()
        return AugmentParams(ops, applied, mag, sign, flip, erase, box)

    # -- application -------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None,
                 params: AugmentParams | None = None) -> torch.Tensor:
        """Augment and normalise a batch.

        Parameters
        ----------
        images : torch.Tensor
            uint8 (N, 3, H, W), on any device.
        generator : torch.Generator, optional
            Source of all randomness (CPU or on the images' device).
        params : AugmentParams, optional
            Use these draws instead of sampling (for tests and replay).

        Returns
        -------
        torch.Tensor
            float32 (N, 3, H, W), normalised, on the images' device.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images: expected dtype uint8, got {images.dtype}")
        n, _, h, w = images.shape
        dev = images.device
        p = params if params is not None else self.sample_params(n, h, w, generator)
        ops, applied = p.ops.to(dev), p.applied.to(dev)
        mag, sign = p.magnitude.to(dev), p.sign.to(dev)
        x = images.float()
        if n == 0:
            return normalize(images, self.mean, self.std)
        x = self._geometric(x, ops, applied, mag, sign, p.flip.to(dev))
        for j in range(ops.shape[1]):
            for k, name in enumerate(self.ops):
                if name in _GEOMETRIC:
                    continue
                sel = applied[:, j] & (ops[:, j] == k)
                if bool(sel.any()):
                    x[sel] = _COLOUR_OPS[name](x[sel], mag[sel, j]).round().clamp(0.0, 255.0)
        out = normalize(x, self.mean, self.std)
        if self.erase_p > 0:
            box = p.erase_box.to(dev)
            rows = torch.arange(h, device=dev).view(1, h, 1)
            cols = torch.arange(w, device=dev).view(1, 1, w)
            top, left, eh, ew = (box[:, i].view(n, 1, 1) for i in range(4))
            mask = ((rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
                    & p.erase.to(dev).view(n, 1, 1))
            out = out.masked_fill(mask.unsqueeze(1), 0.0)
        return out

    def _geometric(self, x: torch.Tensor, ops: torch.Tensor, applied: torch.Tensor,
                   mag: torch.Tensor, sign: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Flip + every geometric op of each sample as one inverse affine map, one grid_sample.

        In normalised coordinates ``u in [-1, 1]^2`` (output -> input), ops applied in the order
        flip, op_1, ..., op_n compose to ``theta = F A_1 ... A_n``.
        """
        n, _, h, w = x.shape
        dev = x.device
        theta = torch.eye(3, device=dev).repeat(n, 1, 1)
        theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        any_geo = bool(flip.any())
        for j in range(ops.shape[1]):
            level = mag[:, j] / 10.0 * sign[:, j]
            a = torch.eye(3, device=dev).repeat(n, 1, 1)
            for k, name in enumerate(self.ops):
                if name not in _GEOMETRIC:
                    continue
                sel = applied[:, j] & (ops[:, j] == k)
                if not bool(sel.any()):
                    continue
                any_geo = True
                v = level[sel]
                m = torch.eye(3, device=dev).repeat(int(sel.sum()), 1, 1)
                if name == "Rotate":  # PIL rotates counter-clockwise by +deg
                    t = torch.deg2rad(30.0 * v)
                    c, s = torch.cos(t), torch.sin(t)
                    # inverse map in pixel-aspect-corrected normalised coordinates
                    m[:, 0, 0], m[:, 0, 1] = c, -s * (h / w)
                    m[:, 1, 0], m[:, 1, 1] = s * (w / h), c
                elif name == "ShearX":  # x_in = x + f y (pixels) -> u_in = u + f (h/w) v
                    m[:, 0, 1] = 0.3 * v * (h / w)
                elif name == "ShearY":
                    m[:, 1, 0] = 0.3 * v * (w / h)
                elif name == "TranslateXRel":  # x_in = x + f * w -> u_in = u + 2 f
                    m[:, 0, 2] = 2.0 * 0.45 * v
                else:  # TranslateYRel
                    m[:, 1, 2] = 2.0 * 0.45 * v
                a[sel] = m
            theta = theta @ a
        if not any_geo:
            return x
        grid = F.affine_grid(theta[:, :2, :], [n, 4, h, w], align_corners=False)
        ones = torch.ones(n, 1, h, w, device=dev, dtype=x.dtype)
        warped = F.grid_sample(torch.cat([x, ones], 1), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        fill = torch.tensor([255.0 * m for m in IMAGENET_MEAN], device=dev).view(1, 3, 1, 1)
        cover = warped[:, 3:4]
        return (warped[:, :3] + (1.0 - cover) * fill.round()).clamp(0.0, 255.0)


# colour ops on float (k, 3, H, W) in [0, 255] with per-sample magnitude (k,) in [0, 10]
def _gray(x: torch.Tensor) -> torch.Tensor:
    wts = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def _factor(m: torch.Tensor) -> torch.Tensor:
    return (m / 10.0 * 1.8 + 0.1).view(-1, 1, 1, 1)


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    off = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return (x - off) * scale


def _equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # PIL: step = (count - count of the last non-empty bin) // 255; lut[v] = (cum[v] + step//2)
    # // step with cum the exclusive cumulative histogram; identity when step == 0.
    k, c, h, w = x.shape
    flat = x.round().long().clamp(0, 255).view(k * c, h * w)
    hist = torch.zeros(k * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - torch.argmax((hist.flip(1) > 0).long(), dim=1)
    step = (h * w - hist.gather(1, last.view(-1, 1)).squeeze(1)) // 255
    cum = torch.cumsum(hist, 1) - hist
    safe = step.clamp_min(1).view(-1, 1)
    lut = ((cum + safe // 2) // safe).clamp(0, 255)
    out = torch.gather(lut, 1, flat).to(x.dtype)
    out = torch.where((step > 0).view(-1, 1), out, flat.to(x.dtype))
    return out.view(k, c, h, w)


def _invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return 255.0 - x


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    bits = (m / 10.0 * 4).floor().clamp(0, 8)
    q = torch.pow(2.0, 8 - bits).view(-1, 1, 1, 1)
    return torch.floor(x / q) * q


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    thresh = torch.clamp((m / 10.0 * 256).floor(), max=256).view(-1, 1, 1, 1)
    return torch.where(x >= thresh, 255.0 - x, x)


def _solarize_add(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    add = torch.clamp((m / 10.0 * 110).floor(), max=128).view(-1, 1, 1, 1)
    return torch.where(x < 128, (x + add).clamp(max=255.0), x)


def _color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    g = _gray(x)
    return g + _factor(m) * (x - g)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).round().mean(dim=(1, 2, 3), keepdim=True)
    return mean + _factor(m) * (x - mean)


def _brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x * _factor(m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device,
                          dtype=x.dtype) / 13.0
    weight = kernel.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=3)
    return blurred + _factor(m) * (x - blurred)


_COLOUR_OPS = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "SolarizeAdd": _solarize_add,
    "Color": _color,
    "Contrast": _contrast,
    "Brightness": _brightness,
    "Sharpness": _sharpness,
}
