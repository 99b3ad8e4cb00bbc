"""The data layouts behind one call: the one place where FER+, RAF-DB and class folders are told
apart.

[`load_data_split`][noisylabel.apps.fer.datasets.load_data_split] finds the layout of a data
root ([`detect_layout`][noisylabel.apps.fer.layouts.detect_layout]) and loads a split of it:
FER+ with ``ferplus.load_ferplus`` (labels by a vote rule), RAF-DB with
[`load_split`][noisylabel.apps.fer.layouts.load_split], class folders with
[`load_class_folders`][noisylabel.apps.fer.layouts.load_class_folders].
[`SPLITS`][noisylabel.apps.fer.datasets.SPLITS] says which splits each layout has. Training,
evaluation and pretraining read their data through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from noisylabel.apps.fer.ferplus import load_ferplus
from noisylabel.apps.fer.layouts import FERSplit, detect_layout, load_class_folders, load_split

__all__ = ["LAYOUTS", "EXPRESSION_LAYOUTS", "SPLITS", "HOLDOUT", "data_splits",
           "load_data_split"]

LAYOUTS = ("ferplus", "raf-db", "class-folders")
"""The layouts, as [`detect_layout`][noisylabel.apps.fer.layouts.detect_layout] names them."""
EXPRESSION_LAYOUTS = ("ferplus", "raf-db")
"""The layouts whose classes are the seven expressions (what training and evaluation read)."""
SPLITS = {"ferplus": ("train", "valid", "test"), "raf-db": ("train", "test"),
          "class-folders": ("train", "test")}
"""The splits of each layout."""
HOLDOUT = 0.1
"""Fraction of ``train/`` held out (with the run's seed) when class folders have no ``test/``."""


def load_data_split(root: str | os.PathLike, split: str, image_size: int | None = None,
                    vote_rule: str = "majority", train_labels: str | os.PathLike | None = None,
                    seed: int = 0, layouts: Sequence[str] = LAYOUTS) -> FERSplit:
    """Load split ``split`` of the data root ``root``, whatever its layout.

    Parameters
    ----------
    root : path
        The data root.
    split : str
        One of the layout's [`SPLITS`][noisylabel.apps.fer.datasets.SPLITS].
    image_size : int or None
        Resize to ``image_size`` px; None keeps the stored size.
    vote_rule : {"majority", "plurality", "soft"}
        FER+ layout: how the votes become labels.
    train_labels : path or None
        FER+ layout, train split: the train-labels CSV whose labels are trained on.
    seed : int
        Class folders without ``test/``: the seed of the held-out draw
        ([`HOLDOUT`][noisylabel.apps.fer.datasets.HOLDOUT] of ``train/``).
    layouts : sequence of str
        The layouts the caller can use. Without ``"class-folders"`` (training and evaluation:
        [`EXPRESSION_LAYOUTS`][noisylabel.apps.fer.datasets.EXPRESSION_LAYOUTS]) a root holding
        no layout is read as RAF-DB, whose loader names the missing label file.

    Returns
    -------
    FERSplit
        The split, with its true labels (FER+: the vote labels).

    Raises
    ------
    FileNotFoundError
        No layout in ``root`` (the message names what was looked for), or a missing file.
    ValueError
        A layout not in ``layouts``; ``train_labels`` or a vote rule other than ``majority``
        without the FER+ layout; malformed data (the message names the file).
    """
    layout = _layout(root, layouts)
    if layout == "ferplus":
        return load_ferplus(root, split, image_size, vote_rule, train_labels)
    if train_labels or vote_rule != "majority":
        raise ValueError(f"train_labels and vote_rule need the FER+ layout; {root} holds "
                         "none (use noise_file for an EAC-format label file on RAF-DB)")
    if layout == "class-folders":
        return load_class_folders(root, split, image_size, holdout=HOLDOUT, seed=seed)
    return load_split(root, split, image_size=image_size)


def data_splits(root: str | os.PathLike, layouts: Sequence[str] = LAYOUTS) -> tuple[str, ...]:
    """The splits of the data root ``root`` ([`SPLITS`][noisylabel.apps.fer.datasets.SPLITS] of
    its layout, found as [`load_data_split`][noisylabel.apps.fer.datasets.load_data_split]
    finds it).

    Parameters
    ----------
    root : path
        The data root.
    layouts : sequence of str
        The layouts the caller can use.

    Returns
    -------
    tuple of str
        ``("train", "valid", "test")`` for FER+, else ``("train", "test")``.
    """
    return SPLITS[_layout(root, layouts)]


def _layout(root: str | os.PathLike, layouts: Sequence[str]) -> str:
    try:
        layout = detect_layout(root)
    except FileNotFoundError:
        if "class-folders" in layouts:
            raise
        layout = "raf-db"  # its loader's message names the missing label file
    if layout not in layouts:
        raise ValueError(f"{root}: the {layout} layout cannot be used here; expected the "
                         f"{' or '.join(layouts)} layout")
    return layout
