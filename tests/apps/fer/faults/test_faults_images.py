"""Issue 18, bad images: decompression bombs refused with the file named, 16-bit PNGs scaled to
8 bits (not clipped to white), a failed optional image-cache write only warns."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_support import assert_one_line_error, run_cli
from PIL import Image

from noisylabel.apps.fer.image_cache import cache_candidates, decode_image
from noisylabel.apps.fer.layouts import load_split


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
