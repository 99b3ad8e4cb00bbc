"""Tests of the one layout dispatch (issue 26): each layout read by its loader, and the layouts a
caller cannot use refused with the message it gave before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisylabel.apps.fer import cli
from noisylabel.apps.fer.datasets import (
    EXPRESSION_LAYOUTS,
    HOLDOUT,
    data_splits,
    load_data_split,
)
from noisylabel.apps.fer.layouts import load_class_folders, load_split


def _class_folders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("calm", "smile"):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                folder / f"img{i}.png")
    return root


def test_raf_db_layout(tiny_faces: Path) -> None:
    assert data_splits(tiny_faces) == data_splits(tiny_faces, EXPRESSION_LAYOUTS) == (
        "train", "test")
    got = load_data_split(tiny_faces, "test", 16, layouts=EXPRESSION_LAYOUTS)
    want = load_split(tiny_faces, "test", image_size=16)
    assert got.names == want.names and torch.equal(got.images, want.images)


def test_class_folders_hold_out_with_the_seed(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "folders")
    assert data_splits(root) == ("train", "test")
    got = load_data_split(root, "test", seed=4)
    want = load_class_folders(root, "test", holdout=HOLDOUT, seed=4)
    assert got.names == want.names and got.class_names == ("calm", "smile")


def test_what_a_caller_cannot_read_is_refused(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "folders")
    with pytest.raises(ValueError, match=r"folders: the class-folders layout cannot be used "
                                         r"here; expected the ferplus or raf-db layout"):
        load_data_split(root, "train", layouts=EXPRESSION_LAYOUTS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no face data found"):
        load_data_split(empty, "train")
    with pytest.raises(FileNotFoundError, match=r"label file not found: .*list_patition"):
        load_data_split(empty, "train", layouts=EXPRESSION_LAYOUTS)  # as training said before


@pytest.mark.parametrize("option", [{"train_labels": "labels.csv"}, {"vote_rule": "soft"}])
def test_vote_options_need_the_ferplus_layout(tiny_faces: Path, option: dict) -> None:
    with pytest.raises(ValueError, match=r"train_labels and vote_rule need the FER\+ layout"):
        load_data_split(tiny_faces, "train", **option)


def test_train_refuses_class_folders_in_one_line(tmp_path: Path, capsys) -> None:
    root = _class_folders(tmp_path / "folders")
    status = cli.main(["train", "--data", str(root), "--out", str(tmp_path / "run"),
                       "--pretrained", "none", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "the class-folders layout cannot be used here" in err
    assert not (tmp_path / "run").exists()
