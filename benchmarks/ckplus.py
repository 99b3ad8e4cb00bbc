"""Real posed faces with injected label noise: CK+48, split by subject, from a face start.

CK+48 (981 grayscale 48x48 peak frames of the Extended Cohn-Kanade sequences, 118 subjects) is
small enough for a CPU and easy enough that the network is strong on it, so it shows what the
noise model's near-perfect detection is worth downstream. Contempt (54 images) is left out: RAF-DB
has no such class, leaving 6. Every image of a subject is on one side of every split (the three
frames of a sequence are near-copies; a random split would leak test copies into training).

Two protocols on the training subjects of ``--split`` (``ckplus48_split.csv``: path, label,
subject, split, sha256):

- ``valid``: a seeded fifth of the 80 training subjects is held out; every choice of a default
  is made on this protocol (the test subjects are never looked at for a choice);
- ``test``: all 80 training subjects against the 26 test subjects: the figures we report.

Start (``--starts``): ``faces``, a ResNet18 pretrained once by this script on FER2013's own
labels of the FER+ training images (FER2013Train, 48 px, a few epochs, plain cross-entropy; its
FER2013Test accuracy is printed and kept in ``FILE.json``), or ``scratch``. Injected symmetric
noise: ``--noises`` (0 / 10 / 20 / 30 / 40%). Variants: see ``VARIANTS``. Columns: final / last-5
/ best (optimistic) test accuracy of the target branch, the AUC of the last w, the mean w on
clean / flipped labels, and the share of the noise cost recovered,
``(variant - baseline) / (clean ceiling - baseline)`` with the ceiling = ``baseline`` on clean
labels (last-5 means over seeds).

Every finished run is appended to ``<work>/runs.jsonl`` and skipped by a rerun (resumable); a
run folder without its row is an interrupted run and starts again. Runs go to a process pool,
one torch thread each. Nothing is downloaded: give local copies.

Examples
--------
CPU profile (what benchmarks/README.md reports)::

    python benchmarks/ckplus.py --ckplus DATA/CK+48 --split DATA/ckplus48_split.csv \
        --ferplus DATA/ferplus --fer2013-labels DATA/fer2013_original_labels.csv

Well-formedness check without data (CI; tiny fake faces)::

    python benchmarks/ckplus.py --quick --work /tmp/ckplus
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 20251  # which training subjects are the validation fifth
CLASSES = ("anger", "disgust", "fear", "happy", "sadness", "surprise")  # contempt left out
FER2013_FOLDERS = {"FER2013Train": "train", "FER2013Test": "test"}


# ----------------------------------------------------------------------------- data views


def read_split(path: Path) -> list[dict[str, str]]:
    """Rows of ``ckplus48_split.csv`` (path, label, subject, split, sha256), contempt dropped."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"path", "label", "subject", "split", "sha256"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns {sorted(need)}")
    return [r for r in rows if r["split"] != "excluded" and r["label"] in CLASSES]


def _check_sha(image: Path, expected: str) -> None:
    got = hashlib.sha256(image.read_bytes()).hexdigest()
    if got != expected:
        raise ValueError(f"{image}: sha256 {got[:12]}... differs from the split file's "
                         f"{expected[:12]}... (another copy of CK+48?)")


def _link_folders(view: Path, source: Path, parts: dict[str, list[dict[str, str]]]) -> None:
    """Class folders ``view/<part>/<class>/`` of symbolic links into ``source``."""
    for part, rows in parts.items():
        for r in rows:
            link = view / part / r["label"] / Path(r["path"]).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                target = (source / r["path"]).resolve()
                _check_sha(target, r["sha256"])
                link.symlink_to(target)


def make_views(ckplus: Path, split_file: Path, work: Path) -> dict[str, str]:
    """The two protocols as class-folder views (``train/`` and ``test/``) under ``work``:
    ``test`` (training subjects / test subjects) and ``valid`` (four fifths of the training
    subjects / the other fifth, seeded)."""
    rows = read_split(split_file)
    train = [r for r in rows if r["split"] == "train"]
    subjects = sorted({r["subject"] for r in train})
    rng = np.random.default_rng(SPLIT_SEED)
    held = set(np.asarray(subjects)[rng.permutation(len(subjects))[:len(subjects) // 5]])
    views = {"test": work / "view-test", "valid": work / "view-valid"}
    _link_folders(views["test"], ckplus, {
        "train": train, "test": [r for r in rows if r["split"] == "test"]})
    _link_folders(views["valid"], ckplus, {
        "train": [r for r in train if r["subject"] not in held],
        "test": [r for r in train if r["subject"] in held]})
    return {k: str(v) for k, v in views.items()}


def make_fer2013_view(ferplus: Path, labels_file: Path, work: Path,
                      n_train: int | None = None) -> Path:
    """FER+'s FER2013Train / FER2013Test images in class folders by their FER2013 label
    (images whose original label is ambiguous left out)."""
    view = work / "view-fer2013"
    with labels_file.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in FER2013_FOLDERS
                and r["ambiguous"] == "0"]
    if n_train is not None:  # --quick: a few images per split
        rows = [r for r in rows if r["split"] == "FER2013Train"][:n_train] + \
               [r for r in rows if r["split"] == "FER2013Test"][:n_train // 4]
    for r in rows:
        link = view / FER2013_FOLDERS[r["split"]] / r["fer2013_label"] / r["image"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((ferplus / r["split"] / r["image"]).resolve())
    return view


def pretrain_faces(view: Path, work: Path, profile: dict[str, Any]) -> str:
    """The face start: ResNet18 on FER2013's labels (built once; kept in ``work/pretrained``)."""
    from noisylabel.apps.fer.pretrain import PretrainConfig, pretrain

    out = work / "pretrained" / "resnet18_fer2013.pth"
    if not Path(f"{out}.json").is_file():
        result = pretrain(PretrainConfig(
            data=str(view), task="expression", out=str(out), image_size=profile["image_size"],
            epochs=profile["pretrain_epochs"], batch_size=64, augment="flip", progress=False))
        print(f"pretrained on FER2013Train (FER2013 labels): FER2013Test accuracy "
              f"{100 * result['test_acc']:.1f}%", flush=True)
    return str(out)
