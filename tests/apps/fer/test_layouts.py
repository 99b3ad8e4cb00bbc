import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from noisylabel.apps.fer import image_cache
from noisylabel.apps.fer.layouts import (
    CLASS_NAMES,
    detect_layout,
    image_path,
    load_class_folders,
    load_split,
    read_identities,
    read_label_file,
)
from noisylabel.noise import read_noise_file, symmetric_noise, write_noise_file

SIZE = 16


def _write_dataset(root, n_train=6, n_test=3, final_newline=False, size=SIZE):
    """A tiny RAF-DB layout with random-colour JPEGs; label file without a final newline."""
    rng = np.random.default_rng(0)
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(1, n + 1):
            name = f"{split}_{i:05d}.jpg"
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(image_path(root, name), quality=95)
            lines.append(f"{name} {(i % 7) + 1}")
    text = "\n".join(lines) + ("\n" if final_newline else "")
    (root / "EmoLabel" / "list_patition_label.txt").write_text(text)
    return root


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path / "usercache"))
    return _write_dataset(tmp_path / "raf")


def test_class_names_rafdb_order():
    assert CLASS_NAMES == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger",
                           "Neutral")


# ------------------------------------------------------------------ label files


def test_read_label_file_without_final_newline_crlf_and_bom(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes(b"\xef\xbb\xbftrain_00001.jpg 5\r\ntrain_00002.jpg 1   \r\n\r\ntest_00001.jpg 7")
    assert read_label_file(p) == [("train_00001.jpg", 4), ("train_00002.jpg", 0),
                                  ("test_00001.jpg", 6)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train_00001.jpg 5\ntrain_00002.jpg\n", r"labels\.txt, line 2: expected"),
        ("train_00001.jpg 5\ntrain_00002.jpg 1 2\n", r"labels\.txt, line 2: expected"),
        ("train_00001.jpg five\n", r"line 1: label 'five' is not an integer"),
        ("train_00001.jpg 5\ntrain_00002.jpg 8", r"line 2: label 8 outside 1\.\.7"),
        ("train_00001.jpg 0\n", r"line 1: label 0 outside 1\.\.7"),
        ("train_00001.jpg 5\n\ntrain_00001.jpg 3\n", r"line 3: duplicated name 'train_00001.jpg'"),
    ],
)
def test_read_label_file_errors_name_file_and_line(tmp_path, text, match):
    p = tmp_path / "labels.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_label_file(p)


def test_read_label_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        read_label_file(tmp_path / "nothere.txt")


# ------------------------------------------------------------------ load_split


def test_load_split_shapes_dtypes_and_true_labels(dataset):
    tr = load_split(dataset, "train", cache=False)
    te = load_split(dataset, "test", cache=False)
    assert tr.images.dtype == torch.uint8 and tr.images.shape == (6, 3, SIZE, SIZE)
    assert tr.labels.dtype == torch.int64 and tr.labels.tolist() == [i % 7 for i in range(1, 7)]
    assert te.names == ["test_00001.jpg", "test_00002.jpg", "test_00003.jpg"]
    assert tr.class_names == CLASS_NAMES and len(tr) == 6 and tr.root == dataset
    # pixels equal a direct PIL decode
    ref = np.asarray(Image.open(image_path(dataset, "train_00002.jpg")).convert("RGB"))
    np.testing.assert_array_equal(tr.images[1].permute(1, 2, 0).numpy(), ref)


def test_load_split_resizes_antialiased(dataset):
    s = load_split(dataset, "train", image_size=8, cache=False)
    assert s.images.shape == (6, 3, 8, 8)
    ref = Image.open(image_path(dataset, "train_00001.jpg")).convert("RGB").resize(
        (8, 8), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(s.images[0].permute(1, 2, 0).numpy(), np.asarray(ref))


def test_cache_written_reused_and_invalidated(dataset):
    a = load_split(dataset, "train", image_size=8)
    cache_files = list((dataset / ".noisylabel_cache").glob("*.pt"))
    assert len(cache_files) == 1
    blob = torch.load(cache_files[0], weights_only=True)
    assert torch.equal(blob["images"], a.images)
    # a hit returns the cached tensors (prove it by planting a marker in the cache)
    blob["labels"] = blob["labels"].clone()
    blob["labels"][0] = 6
    torch.save(blob, cache_files[0])
    assert load_split(dataset, "train", image_size=8).labels[0].item() == 6
    # changing an image (size / mtime) invalidates it
    p = image_path(dataset, "train_00003.jpg")
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(p, quality=50)
    os.utime(p, ns=(1, 1))
    b = load_split(dataset, "train", image_size=8)
    assert b.labels[0].item() == a.labels[0].item()
    assert b.images[2].max().item() < 20
    # changing the label file invalidates it too
    lf = dataset / "EmoLabel" / "list_patition_label.txt"
    lf.write_text(lf.read_text().replace("train_00001.jpg 2", "train_00001.jpg 4"))
    assert load_split(dataset, "train", image_size=8).labels[0].item() == 3


def test_cache_user_dir_used_when_local_not_writable(dataset, tmp_path, monkeypatch):
    real = image_cache._writable_dir
    monkeypatch.setattr(image_cache, "_writable_dir",
                        lambda p: False if ".noisylabel_cache" in str(p) else real(p))
    a = load_split(dataset, "test")
    assert not (dataset / ".noisylabel_cache").exists()
    files = list((tmp_path / "usercache").rglob("test_orig.pt"))
    assert len(files) == 1
    assert torch.equal(load_split(dataset, "test").images, a.images)


def test_missing_label_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="list_patition_label.txt"):
        load_split(tmp_path, "train")


def test_unreadable_label_file(dataset):
    lf = dataset / "EmoLabel" / "list_patition_label.txt"
    lf.unlink()
    lf.mkdir()  # a directory where the file should be: unreadable as a file
    with pytest.raises((ValueError, OSError), match="list_patition_label.txt"):
        load_split(dataset, "train")


def test_malformed_label_file_in_load_split(dataset):
    lf = dataset / "EmoLabel" / "list_patition_label.txt"
    lf.write_text(lf.read_text() + "\ntrain_00099.jpg 9")
    with pytest.raises(ValueError, match=r"list_patition_label\.txt, line 10: label 9"):
        load_split(dataset, "train")


def test_missing_image_raise_and_skip(dataset):
    image_path(dataset, "train_00004.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="train_00004_aligned.jpg"):
        load_split(dataset, "train", cache=False)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        s = load_split(dataset, "train", on_error="skip")
    assert len(s) == 5 and "train_00004.jpg" not in s.names and s.skipped == ["train_00004.jpg"]
    assert s.labels.tolist() == [1, 2, 3, 5, 6]
    with pytest.warns(UserWarning, match="skipped 1"):  # cached, still reported
        assert load_split(dataset, "train", on_error="skip").skipped == ["train_00004.jpg"]


def test_corrupt_jpeg_raise_and_skip(dataset):
    p = image_path(dataset, "test_00002.jpg")
    p.write_bytes(p.read_bytes()[:40])  # truncated
    image_path(dataset, "test_00003.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="test_00002_aligned.jpg"):
        load_split(dataset, "test", cache=False)
    with pytest.warns(UserWarning, match="skipped 2 unreadable image.*test_00002.jpg"):
        s = load_split(dataset, "test", on_error="skip", cache=False)
    assert s.names == ["test_00001.jpg"] and s.images.shape[0] == 1


def test_all_images_bad_is_an_error(dataset):
    for i in (1, 2, 3):
        image_path(dataset, f"test_{i:05d}.jpg").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="every image"):
            load_split(dataset, "test", on_error="skip", cache=False)


def test_mixed_sizes_need_image_size(dataset):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(image_path(dataset, "test_00002.jpg"))
    with pytest.raises(ValueError, match="test_00002_aligned.jpg has size 12x10"):
        load_split(dataset, "test", cache=False)
    assert load_split(dataset, "test", image_size=8, cache=False).images.shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "val"}, "split"), ({"on_error": "ignore"}, "on_error"),
     ({"image_size": 0}, "image_size")],
)
def test_load_split_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_split(dataset, **kwargs)


def test_noise_on_train_only_keeps_split_and_test_clean(dataset, tmp_path):
    tr = load_split(dataset, "train", cache=False)
    te = load_split(dataset, "test", cache=False)
    clean_test = te.labels.clone()
    noisy = symmetric_noise(tr.labels, 0.5, 7, seed=0)
    assert int((noisy != tr.labels.numpy()).sum()) == 3
    assert tr.labels.tolist() == [i % 7 for i in range(1, 7)]  # the split keeps true labels
    # an EAC noise file for the train split; a test name in it is an error
    path = write_noise_file(tmp_path / "noise01.txt", tr.names, noisy)
    np.testing.assert_array_equal(read_noise_file(path, tr.names), noisy)
    with open(path, "a") as f:
        f.write("test_00001.jpg 3\n")
    with pytest.raises(ValueError, match=r"noise01\.txt, line 7: 'test_00001.jpg' is not in"):
        read_noise_file(path, tr.names)
    assert torch.equal(load_split(dataset, "test", cache=False).labels, clean_test)


def test_read_identities(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    p = tmp_path / "EmoLabel" / "identities.csv"
    p.write_text("name,identity\ntrain_00001.jpg,4\ntest_00001.jpg,17\n")
    assert read_identities(tmp_path) == {"train_00001.jpg": 4, "test_00001.jpg": 17}
    p.write_text("name,identity\ntrain_00001.jpg,x\n")
    with pytest.raises(ValueError, match=r"identities\.csv, line 2"):
        read_identities(tmp_path)
    p.unlink()
    with pytest.raises(FileNotFoundError, match="identities.csv"):
        read_identities(tmp_path)


# ------------------------------------------------------------------ class folders


def _write_folders(root, counts, ext=".png", size=SIZE, seed=0):
    """``root/<split>/<class>/img<i><ext>`` random-colour images; ``counts`` maps
    ``"split/class"`` to an image count. Returns {relative name: HxWx3 array written}."""
    rng = np.random.default_rng(seed)
    written = {}
    for key, n in counts.items():
        folder = root / key
        folder.mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"img{i}{ext}")
            written[f"{key}/img{i}{ext}"] = arr
    return written


def test_load_class_folders_with_test_folder(tmp_path):
    written = _write_folders(tmp_path, {"train/sad": 2, "train/happy": 3, "test/happy": 1})
    (tmp_path / "train" / "sad" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "sad" / "._img0.png").write_bytes(b"macOS resource fork")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    tr = load_class_folders(tmp_path, "train")
    te = load_class_folders(tmp_path, "test")
    assert tr.class_names == te.class_names == ("happy", "sad")
    assert tr.names == ["train/happy/img0.png", "train/happy/img1.png", "train/happy/img2.png",
                        "train/sad/img0.png", "train/sad/img1.png"]
    assert tr.labels.dtype == torch.int64 and tr.labels.tolist() == [0, 0, 0, 1, 1]
    assert tr.images.dtype == torch.uint8 and tr.images.shape == (5, 3, SIZE, SIZE)
    for name, img in zip(tr.names, tr.images, strict=True):  # PNG is lossless
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), written[name])
    assert te.names == ["test/happy/img0.png"] and te.labels.tolist() == [0]
    assert tr.root == tmp_path


def test_load_class_folders_holds_out_a_seeded_part_of_train(tmp_path):
    _write_folders(tmp_path, {"train/a": 6, "train/b": 4}, ext=".jpg")
    tr = load_class_folders(tmp_path, "train", seed=1)
    te = load_class_folders(tmp_path, "test", seed=1)
    assert len(te) == 1 and len(tr) == 9  # max(1, round(0.1 * 10))
    assert sorted(tr.names + te.names) == sorted(f"train/{c}/img{i}.jpg" for c, n in
                                                 (("a", 6), ("b", 4)) for i in range(n))
    assert te.class_names == ("a", "b")
    assert load_class_folders(tmp_path, "test", seed=1).names == te.names
    assert len({tuple(load_class_folders(tmp_path, "test", seed=s).names) for s in range(6)}) > 1
    half = load_class_folders(tmp_path, "test", holdout=0.5, seed=1)
    assert len(half) == 5 and half.images.shape == (5, 3, SIZE, SIZE)


def test_load_class_folders_sizes(tmp_path):
    _write_folders(tmp_path, {"train/a": 1, "train/b": 1, "test/a": 1})
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "train" / "b" / "img0.png")
    with pytest.raises(ValueError, match=r"train[/\\]b[/\\]img0\.png has size 12x10"):
        load_class_folders(tmp_path, "train")
    assert load_class_folders(tmp_path, "train", image_size=8).images.shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("corrupt", ValueError, r"cannot decode image .*train[/\\]b[/\\]img1\.png"),
        ("empty_class", ValueError, r"class folder .*train[/\\]c holds no image"),
        ("unknown_test_class", ValueError, r"\['angry'\] have no folder in"),
        ("one_class", ValueError, r"one class folder \('a'\)"),
        ("no_class_folders", ValueError, r"no class folders"),
        ("no_train", FileNotFoundError, r"train not found"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isidentifier() else "",
)
def test_load_class_folders_errors_name_the_culprit(tmp_path, case, error, match):
    _write_folders(tmp_path, {"train/a": 2, "train/b": 2, "test/a": 1})
    if case == "corrupt":
        (tmp_path / "train" / "b" / "img1.png").write_bytes(b"not a png")
    elif case == "empty_class":
        (tmp_path / "train" / "c").mkdir()
    elif case == "unknown_test_class":
        (tmp_path / "test" / "angry").mkdir()
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / "test/angry/x.png")
    elif case == "one_class":
        for f in (tmp_path / "train" / "b").iterdir():
            f.unlink()
        (tmp_path / "train" / "b").rmdir()
    elif case == "no_class_folders":
        for f in (tmp_path / "test" / "a").iterdir():
            f.unlink()
        (tmp_path / "test" / "a").rmdir()
        (tmp_path / "test" / "loose.png").write_bytes(b"")
    else:
        (tmp_path / "train").rename(tmp_path / "training")
    split = "test" if case == "no_class_folders" else "train"
    with pytest.raises(error, match=match):
        load_class_folders(tmp_path, split)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "val"}, "split"), ({"holdout": 1.0}, "holdout"), ({"holdout": 0}, "holdout"),
     ({"image_size": 0}, "image_size")],
)
def test_load_class_folders_bad_arguments(tmp_path, kwargs, match):
    _write_folders(tmp_path, {"train/a": 1, "train/b": 1})
    with pytest.raises(ValueError, match=match):
        load_class_folders(tmp_path, **kwargs)


def test_detect_layout(dataset, tmp_path):
    assert detect_layout(dataset) == "raf-db"
    (tmp_path / "folders" / "train").mkdir(parents=True)
    assert detect_layout(tmp_path / "folders") == "class-folders"
    with pytest.raises(FileNotFoundError, match=r"no face data found in .*empty: expected the FER\+ "
                       r"layout \(FER2013Train/label\.csv\), the RAF-DB layout "
                       r"\(EmoLabel/list_patition_label\.txt.*or class folders"):
        detect_layout(tmp_path / "empty")


# ------------------------------------------------------------------ augmentation
