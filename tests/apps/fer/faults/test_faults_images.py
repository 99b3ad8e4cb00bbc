"""Issue 18, bad images: decompression bombs refused with the file named, 16-bit PNGs scaled to
8 bits (not clipped to white), a failed optional image-cache write only warns. Issue 28: images
of odd sizes are warned about once per split, and the image-cache warning is one line."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_support import assert_one_line_error, run_cli
from PIL import Image

from noisylabel.apps.fer import image_cache
from noisylabel.apps.fer.image_cache import cache_candidates, decode_image, odd_size
from noisylabel.apps.fer.layouts import image_path, load_class_folders, load_split


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    # before: Pillow's convert("RGB") clipped every value > 255: a mid-grey image read as white
    values = np.full((8, 8), 32896, dtype=np.uint16)  # 50% grey in 16 bits
    values[0, :2] = (65535, 0)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    rgb = decode_image(path, None)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    assert rgb[4, 4].tolist() == [128, 128, 128]
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 0, 0]


def test_decompression_bomb_is_refused(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (16, 16)).save(path)
    # over the limit (Pillow only warns) and over twice the limit (Pillow raises its own error)
    for limit in (200, 100):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="decompression bomb"):
                decode_image(path, 16)


def test_decompression_bomb_in_predict_names_the_file(capsys, monkeypatch, finished_run: Path,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (16, 16)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    status, _, err = run_cli(capsys, "predict", str(finished_run / "checkpoint.pt"), str(path),
                             "--device", "cpu")
    assert_one_line_error(status, err, str(path), "decompression bomb")


def test_a_failed_image_cache_write_warns_and_goes_on(monkeypatch, tiny_faces: Path,
                                                      tmp_path: Path) -> None:
    # before: torch raised RuntimeError (not OSError) and killed the run; a 0-byte file stayed
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path))  # the second place a cache may go
    def full_disk(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match="could not write the image cache"):
        split = load_split(tiny_faces, "test", image_size=12)  # a size no other test caches
    assert split.images.shape == (20, 3, 12, 12)
    for candidate in cache_candidates(Path(tiny_faces), "test", 12):
        if candidate.parent.is_dir():
            assert not [p for p in candidate.parent.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- issue 28


def _faces_copy(tiny_faces: Path, folder: Path) -> Path:
    """A private copy of the tiny faces, without their image cache."""
    return Path(shutil.copytree(tiny_faces, folder, ignore=shutil.ignore_patterns(
        ".noisylabel_cache")))


def test_odd_sizes_warn_once_per_split_with_a_count(tiny_faces: Path, tmp_path: Path) -> None:
    # issue 28, item 8; before: a 1x1 and a 4000x10 image were resized without a word
    root = _faces_copy(tiny_faces, tmp_path / "faces")
    Image.new("RGB", (1, 1)).save(image_path(root, "train_00001.jpg"))
    Image.new("RGB", (4000, 10)).save(image_path(root, "train_00002.jpg"))
    Image.new("RGB", (30, 20)).save(image_path(root, "train_00003.jpg"))  # 3:2, not odd
    for source in ("decoded", "cached"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            split = load_split(root, "train", image_size=16)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, (source, messages)
        assert messages[0].startswith(f"{root}, split 'train': 2 image(s) resized to 16x16 px "
                                      "from an odd size (more than 2:1, or enlarged more than "
                                      "8x)"), source
        assert messages[0].endswith("train_00001.jpg, train_00002.jpg")
        assert split.images.shape == (40, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_split(root, "test", image_size=16)  # 16 px faces at 16 px: nothing to say


def test_odd_sizes_in_class_folders_warn(tmp_path: Path) -> None:
    for name in ("happy", "sad"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16)).save(tmp_path / "train" / name / f"{i}.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "train" / "sad" / "tiny.png")
    with pytest.warns(UserWarning, match=r"split 'train': 1 image\(s\) resized .*"
                                         r"train/sad/tiny.png"):
        load_class_folders(tmp_path, "train", image_size=16, holdout=0.01)


def test_odd_size_rule() -> None:
    assert odd_size(1, 1, 16) and odd_size(4000, 10, 100) and odd_size(10, 25, 16)
    assert not odd_size(48, 48, 224)  # FER+ at 224 px: enlarged 4.7x
    assert not odd_size(100, 100, 100) and not odd_size(1, 1, None)
    assert not odd_size(640, 480, 100) and not odd_size(20, 40, 16)


def test_an_image_cache_warning_is_one_line_naming_a_file_home(capsys, monkeypatch,
                                                             finished_run: Path,
                                                             tiny_faces: Path,
                                                             tmp_path: Path) -> None:
    # issue 28, item 10; before: a raw "file:line: UserWarning:" with its source line, and a
    # NOISYLABEL_HOME that is a file was "not writable"
    root = _faces_copy(tiny_faces, tmp_path / "faces")
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("NOISYLABEL_HOME", str(home))
    real = image_cache._writable_dir
    monkeypatch.setattr(image_cache, "_writable_dir",  # the data folder is read-only
                        lambda p: False if ".noisylabel_cache" in str(p) else real(p))
    status, out, err = run_cli(capsys, "evaluate", str(finished_run), "--data", str(root),
                               "--device", "cpu")
    assert status == 0 and "accuracy" in out
    assert err.splitlines() == [
        f"noisylabel-fer: warning: could not write the image cache ({root / '.noisylabel_cache'}"
        f": not writable; {home}: a file, not a folder); going on without it (the images are "
        "decoded again next time)"]
