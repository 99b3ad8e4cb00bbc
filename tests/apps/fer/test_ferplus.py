"""Tests of the FER+ layout (noisylabel.apps.fer.ferplus) on small files the tests write:
the vote-file reader, the vote rules through the loader, exclusions, --train-labels,
prepare-ferplus end to end, and one tiny training run through the CLI."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisylabel.apps.fer import cli
from noisylabel.apps.fer import layouts as fer_data
from noisylabel.apps.fer.classes import CLASS_NAMES
from noisylabel.apps.fer.ferplus import (
    FER2013_TRAIN_LABELS,
    VOTE_COLUMNS,
    class_index,
    is_ferplus,
    load_ferplus,
    prepare_ferplus,
    read_train_labels,
    read_vote_file,
)

# Vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
SU, FE, DI, HA, SA, AN, NE = range(7)  # CLASS_NAMES (RAF-DB order)
TRAIN_VOTES: dict[str, list[int]] = {
    # name: votes                                    majority    plurality   note
    "a": [6, 3, 1, 0, 0, 0, 0, 0, 0, 0],          # Neutral     Neutral
    "b": [0, 5, 0, 4, 0, 0, 1, 0, 0, 0],          # Happiness   Happiness
    "c": [0, 0, 0, 4, 4, 1, 1, 0, 0, 0],          # -           -           4 of 8: no majority, tie
    "d": [1, 0, 5, 0, 0, 0, 4, 0, 0, 0],          # Surprise    Surprise
    "e": [1, 0, 1, 1, 5, 1, 1, 0, 0, 0],          # Anger       Anger       wins only by the single-vote drop
    "f": [4, 0, 0, 0, 0, 0, 0, 6, 0, 0],          # contempt    contempt
    "g": [0, 3, 0, 0, 0, 0, 0, 0, 7, 0],          # unknown     unknown
    "h": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],         # NF          NF
    "i": [3, 0, 0, 3, 0, 0, 4, 0, 0, 0],          # -           Fear        4 of 10
    "j": [0, 0, 0, 0, 2, 8, 0, 0, 0, 0],          # Disgust     Disgust
    "k": [0, 6, 0, 0, 0, 0, 0, 2, 2, 0],          # Happiness   Happiness   contempt/unknown votes
}
MAJORITY = {"a": NE, "b": HA, "d": SU, "e": AN, "j": DI, "k": HA}
PLURALITY = {**MAJORITY, "i": FE}
SMALL_SPLIT = {"v1": [8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "v2": [0, 0, 9, 0, 0, 0, 0, 0, 1, 0],
               "v3": [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]}


def _name(key: str) -> str:
    return f"fer_{key}.png"


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _vote_line(name: str, votes: list[int]) -> str:
    return f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n'


def write_split(folder: Path, votes: dict[str, list[int]], seed: int = 0,
                images: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.csv").write_text("".join(_vote_line(_name(k), v) for k, v in votes.items()))
    if images:
        for i, key in enumerate(votes):
            Image.fromarray(_pixels(seed + i)).save(folder / _name(key))


def write_layout(root: Path, train: dict[str, list[int]] | None = None) -> Path:
    write_split(root / "FER2013Train", TRAIN_VOTES if train is None else train, seed=0)
    write_split(root / "FER2013Valid", SMALL_SPLIT, seed=100)
    write_split(root / "FER2013Test", SMALL_SPLIT, seed=200)
    return root


def write_train_labels(path: Path, rows: list[tuple[str, str]],
                       header: str = "image,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{n},{c}\n" for n, c in rows))
    return path


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return write_layout(tmp_path / "ferplus")


def _labels_by_name(split: fer_data.FERSplit) -> dict[str, int]:
    return {n[len("fer_"):-len(".png")]: int(y) for n, y in zip(split.names, split.labels, strict=True)}


# ---------------------------------------------------------------- layout and class mapping


def test_detect_layout_finds_ferplus(layout: Path, tmp_path: Path) -> None:
    assert fer_data.detect_layout(layout) == "ferplus"
    assert is_ferplus(layout)
    assert not is_ferplus(tmp_path)
    with pytest.raises(FileNotFoundError, match="FER2013Train/label.csv"):
        fer_data.detect_layout(tmp_path)


def test_class_mapping_ferplus_to_rafdb() -> None:
    expected = {"neutral": "Neutral", "happiness": "Happiness", "surprise": "Surprise",
                "sadness": "Sadness", "anger": "Anger", "disgust": "Disgust", "fear": "Fear"}
    for column, raf in expected.items():
        assert CLASS_NAMES[class_index(column)] == raf
    for fer2013, raf in {"angry": "Anger", "sad": "Sadness", "happy": "Happiness"}.items():
        assert CLASS_NAMES[class_index(fer2013)] == raf
    assert class_index("  NEUTRAL ") == CLASS_NAMES.index("Neutral")
    for bad in ("contempt", "unknown", "NF", ""):
        with pytest.raises(ValueError, match="unknown class"):
            class_index(bad)


# ---------------------------------------------------------------- vote rules through the loader


def test_majority_rule_with_single_vote_drop(layout: Path) -> None:
    split = load_ferplus(layout, "train", cache=False)
    assert _labels_by_name(split) == MAJORITY  # in file order, e (5 of 10) kept by the drop
    assert split.class_names == CLASS_NAMES
    assert split.excluded == {"contempt": 1, "unknown": 1, "not a face": 1,
                              "no majority winner": 2}
    assert split.soft_targets is None and split.given_labels is None
    agreement = dict(zip(_labels_by_name(split), split.agreement.tolist(), strict=True))
    assert agreement == pytest.approx({"a": .6, "b": .5, "d": .5, "e": .5, "j": .8, "k": .6})
    assert split.images.shape == (6, 3, 48, 48) and split.images.dtype == torch.uint8


def test_plurality_rule_leaves_ties_out(layout: Path) -> None:
    split = load_ferplus(layout, "train", rule="plurality", cache=False)
    assert _labels_by_name(split) == PLURALITY
    assert split.excluded == {"contempt": 1, "unknown": 1, "not a face": 1,
                              "no plurality winner": 1}
    assert dict(zip(_labels_by_name(split), split.agreement.tolist(), strict=True))["i"] == pytest.approx(.4)


def test_soft_rule_targets_sum_to_one_in_rafdb_order(layout: Path) -> None:
    split = load_ferplus(layout, "train", rule="soft", cache=False)
    assert _labels_by_name(split) == PLURALITY
    soft = split.soft_targets
    assert soft.shape == (7, len(CLASS_NAMES)) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(1), torch.ones(7))
    by_name = dict(zip(_labels_by_name(split), soft, strict=True))
    expected_a = torch.zeros(7)
    expected_a[[NE, HA, SU]] = torch.tensor([.6, .3, .1])
    torch.testing.assert_close(by_name["a"], expected_a)
    expected_k = torch.zeros(7)
    expected_k[HA] = 1.0  # contempt and unknown votes are not among the 7 classes
    torch.testing.assert_close(by_name["k"], expected_k)
    for key, target in by_name.items():  # the hard label is the soft target's arg-max
        assert int(target.argmax()) == PLURALITY[key]


def test_valid_and_test_splits(layout: Path) -> None:
    for split_name in ("valid", "test"):
        split = load_ferplus(layout, split_name, image_size=16, cache=False)
        assert _labels_by_name(split) == {"v1": NE, "v2": SU}
        assert split.excluded == {"contempt": 1}
        assert split.images.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="split='val'"):
        load_ferplus(layout, "val")
    with pytest.raises(ValueError, match="rule='mean'"):
        load_ferplus(layout, "train", rule="mean", cache=False)


def test_images_decode_to_the_written_pixels(layout: Path) -> None:
    split = load_ferplus(layout, "train", cache=False)
    keys = list(TRAIN_VOTES)
    for name, image in zip(split.names, split.images, strict=True):
        seed = keys.index(name[len("fer_"):-len(".png")])
        for channel in image:
            np.testing.assert_array_equal(channel.numpy(), _pixels(seed))


def test_cache_is_keyed_by_rule_and_train_labels(layout: Path, tmp_path: Path) -> None:
    first = load_ferplus(layout, "train", image_size=16)
    again = load_ferplus(layout, "train", image_size=16)
    torch.testing.assert_close(first.images, again.images)
    plural = load_ferplus(layout, "train", image_size=16, rule="plurality")
    assert len(plural) == 7 and plural.images.shape[0] == 7
    labels = write_train_labels(tmp_path / "t.csv", [(_name("a"), "happy")])
    only_a = load_ferplus(layout, "train", image_size=16, train_labels=labels)
    assert only_a.images.shape[0] == 1
    torch.testing.assert_close(only_a.images[0], first.images[0])


# ---------------------------------------------------------------- --train-labels


def test_train_labels_replace_training_labels(layout: Path, tmp_path: Path) -> None:
    path = write_train_labels(tmp_path / "labels.csv", [
        (_name("a"), "happy"), (_name("b"), "Happiness"), (_name("d"), "surprise"),
        (_name("e"), "angry"), (_name("k"), "sad"),
        (_name("f"), "neutral"),  # contempt under the votes: left out as contempt
        (_name("c"), "fear"),     # no majority: left out as such
    ])  # j not listed
    split = load_ferplus(layout, "train", train_labels=path, cache=False)
    assert _labels_by_name(split) == {k: v for k, v in MAJORITY.items() if k != "j"}
    given = dict(zip(_labels_by_name(split), split.given_labels.tolist(), strict=True))
    assert given == {"a": HA, "b": HA, "d": SU, "e": AN, "k": SA}
    assert split.excluded == {"contempt": 1, "unknown": 1, "not a face": 1,
                              "no majority winner": 2, "not in train-labels": 1}
    assert float((split.given_labels != split.labels).float().mean()) == pytest.approx(0.4)


def test_train_labels_only_for_the_train_split(layout: Path, tmp_path: Path) -> None:
    path = write_train_labels(tmp_path / "labels.csv", [("v1.png", "happy")])
    with pytest.raises(ValueError, match="train split only"):
        load_ferplus(layout, "test", train_labels=path)


def test_train_labels_naming_a_missing_image(layout: Path, tmp_path: Path) -> None:
    path = write_train_labels(tmp_path / "labels.csv",
                              [(_name("a"), "happy"), ("fer9999999.png", "sad")])
    with pytest.raises(ValueError) as err:
        load_ferplus(layout, "train", train_labels=path, cache=False)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and "fer9999999.png" in message
    assert "FER2013Train" in message


@pytest.mark.parametrize("content, pattern", [
    ("image,label\nfer_a.png,joy\n", r"line 2: unknown class 'joy'"),
    ("name,class\nfer_a.png,happy\n", r"line 1: expected the header 'image,label'"),
    ("fer_a.png,happy\n", r"line 1: expected the header 'image,label'"),
    ("image,label\nfer_a.png,happy\n\nfer_a.png,sad\n", r"line 4: fer_a.png already listed "
                                                         r"on line 2"),
    ("image,label\nfer_a.png,happy,extra\n", r"line 2: expected 'image,label'"),
    ("image,label\n", r"no labels"),
    ("", r"line 1: expected the header"),
])
def test_bad_train_labels_file(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + pattern):
        read_train_labels(path)


def test_train_labels_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-labels file not found"):
        read_train_labels(tmp_path / "nope.csv")


def test_train_labels_accepts_bom_and_spellings(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffimage,label\r\nx.png, Angry\r\ny.png,surprise\r\n", newline="")
    assert read_train_labels(path) == {"x.png": (AN, 2), "y.png": (SU, 3)}


# ---------------------------------------------------------------- bad vote files


@pytest.mark.parametrize("line, pattern", [
    ('fer_x.png,"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0\n', r"line 2: .*10 vote counts, got 9"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0,0,0\n', r"line 2: .*got 11"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,x,4,0,0,0,0,0,0\n', r"line 2: vote 'x' is not an integer"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,2.5,4,0,0,0,0,0,0\n', r"line 2: vote '2.5' is not"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,,4,0,0,0,0,0,0\n', r"line 2: vote '' is not"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,-3,4,0,0,0,0,0,0\n', r"line 2: .*negative"),
    ('fer_a.png,"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0,0\n', r"line 2: fer_a.png already listed "
                                                         r"on line 1"),
    (',"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0,0\n', r"line 2: empty image name"),
    ("fer_x.png 1 2 3 4 0 0 0 0 0 0\n", r"line 2: .*got 0"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,1_0,4,0,0,0,0,0,0\n', r"line 2: vote '1_0' is not"),
    ('fer_x.png,"(0, 0, 48, 48)",1,2,\u00b2,4,0,0,0,0,0,0\n', r"line 2: vote '\u00b2' is not"),
])
def test_bad_vote_file(tmp_path: Path, line: str, pattern: str) -> None:
    path = tmp_path / "label.csv"
    path.write_text(_vote_line("fer_a.png", [1] * 10) + line)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + pattern):
        read_vote_file(path)


def test_vote_file_reads_real_format(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_text(_vote_line("fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0])
                    + "\n" + _vote_line("fer0000001.png", [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]))
    names, counts = read_vote_file(path)
    assert names == ["fer0000000.png", "fer0000001.png"]
    assert counts.dtype == np.int64 and counts.shape == (2, len(VOTE_COLUMNS))
    assert counts[1].tolist() == [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]


def test_empty_vote_file(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_text("\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": no rows"):
        read_vote_file(path)
    with pytest.raises(FileNotFoundError, match="FER\\+ label file not found"):
        read_vote_file(tmp_path / "missing.csv")


def test_empty_label_file_through_the_loader(layout: Path) -> None:
    label = layout / "FER2013Valid" / "label.csv"
    label.write_text("")
    with pytest.raises(ValueError, match=re.escape(str(label)) + ": no rows"):
        load_ferplus(layout, "valid", cache=False)


def test_missing_png_names_file_and_line(layout: Path) -> None:
    (layout / "FER2013Train" / _name("d")).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_ferplus(layout, "train", cache=False)
    message = str(err.value)
    assert _name("d") in message and str(layout / "FER2013Train" / "label.csv") in message
    assert "line 4" in message


def test_missing_split_folder(layout: Path) -> None:
    import shutil

    shutil.rmtree(layout / "FER2013Test")
    with pytest.raises(FileNotFoundError, match="FER2013Test"):
        load_ferplus(layout, "test")


def test_no_image_left(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "f", train={"f": TRAIN_VOTES["f"], "h": TRAIN_VOTES["h"]})
    with pytest.raises(ValueError, match=r"no image left under the 'majority' rule "
                                         r"\(left out: 1 contempt, 1 not a face\)"):
        load_ferplus(root, "train", cache=False)
    labels = write_train_labels(tmp_path / "t.csv", [(_name("f"), "happy")])
    write_layout(root)
    with pytest.raises(ValueError, match=r"'majority' rule with the labels of .*t\.csv "
                                         r"\(left out: 1 contempt.* 6 not in train-labels"):
        load_ferplus(root, "train", train_labels=labels, cache=False)


# ---------------------------------------------------------------- prepare-ferplus

FER_HEADER = "emotion,pixels,Usage"
NEW_HEADER = "Usage,Image name," + ",".join(VOTE_COLUMNS)
# (emotion, pixel seed, usage, image name, votes)
PREP_ROWS = [
    (0, 1, "Training", "fer0000000.png", [0, 0, 0, 1, 8, 1, 0, 0, 0, 0]),  # angry / Anger
    (3, 2, "Training", "fer0000001.png", [1, 9, 0, 0, 0, 0, 0, 0, 0, 0]),  # happy / Happiness
    (4, 3, "Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),               # no FER+ image
    (6, 4, "Training", "fer0000003.png", [7, 0, 0, 3, 0, 0, 0, 0, 0, 0]),  # duplicate of row 4...
    (2, 4, "PublicTest", "fer0000004.png", [0, 0, 0, 0, 0, 0, 9, 1, 0, 0]),  # ...other label
    (5, 5, "PublicTest", "fer0000005.png", [0, 0, 10, 0, 0, 0, 0, 0, 0, 0]),
    (4, 6, "PrivateTest", "fer0000006.png", [2, 0, 0, 8, 0, 0, 0, 0, 0, 0]),
    (0, 1, "PrivateTest", "fer0000007.png", [0, 0, 0, 1, 8, 1, 0, 0, 0, 0]),  # same label dup
]


def write_pair(folder: Path, rows=PREP_ROWS, fer_header: str = FER_HEADER,
               new_header: str = NEW_HEADER) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fer, new = folder / "fer2013.csv", folder / "fer2013new.csv"
    fer.write_text(fer_header + "\n" + "".join(
        f'{e},{" ".join(map(str, _pixels(s).ravel())) if isinstance(s, int) else s},{u}\n'
        for e, s, u, _, _ in rows))
    new.write_text(new_header + "\n" + "".join(
        f'{u},{n},{",".join(map(str, v))}\n' for _, _, u, n, v in rows))
    return fer, new


def test_prepare_ferplus_end_to_end(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv")
    out = tmp_path / "layout"
    counts = prepare_ferplus(fer, new, out)
    assert counts == {"FER2013Train": 3, "FER2013Valid": 2, "FER2013Test": 2, "ambiguous": 1}
    assert fer_data.detect_layout(out) == "ferplus"
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid",
               "PrivateTest": "FER2013Test"}
    for _, seed, usage, name, _ in PREP_ROWS:
        if not name:
            continue
        with Image.open(out / folders[usage] / name) as im:
            assert im.mode == "L" and im.size == (48, 48)
            np.testing.assert_array_equal(np.asarray(im), _pixels(seed))
    assert not (out / "FER2013Train" / "fer0000002.png").exists()
    assert sorted(p.name for p in (out / "FER2013Train").glob("*.png")) == [
        "fer0000000.png", "fer0000001.png", "fer0000003.png"]
    lines = (out / "FER2013Train" / "label.csv").read_text().splitlines()
    assert lines == ['fer0000000.png,"(0, 0, 48, 48)",0,0,0,1,8,1,0,0,0,0',
                     'fer0000001.png,"(0, 0, 48, 48)",1,9,0,0,0,0,0,0,0,0',
                     'fer0000003.png,"(0, 0, 48, 48)",7,0,0,3,0,0,0,0,0,0']
    names, votes = read_vote_file(out / "FER2013Test" / "label.csv")
    assert names == ["fer0000006.png", "fer0000007.png"]
    assert votes.tolist() == [PREP_ROWS[6][4], PREP_ROWS[7][4]]
    # fer0000003 has a pixel-identical copy (fer0000004) labelled fear: its label is uncertain;
    # fer0000000 has a copy with the same label: kept
    assert read_train_labels(out / FER2013_TRAIN_LABELS) == {
        "fer0000000.png": (AN, 2), "fer0000001.png": (HA, 3)}

    train = load_ferplus(out, "train", train_labels=out / FER2013_TRAIN_LABELS, cache=False)
    assert train.names == ["fer0000000.png", "fer0000001.png"]
    assert train.labels.tolist() == [AN, HA] and train.given_labels.tolist() == [AN, HA]
    assert train.excluded == {"not in train-labels": 1}
    np.testing.assert_array_equal(train.images[0, 0].numpy(), _pixels(1))
    valid = load_ferplus(out, "valid", cache=False)
    assert valid.names == ["fer0000004.png", "fer0000005.png"]
    assert valid.labels.tolist() == [FE, SU]


def test_prepare_ferplus_cli(tmp_path: Path, capsys) -> None:
    fer, new = write_pair(tmp_path / "csv")
    out = tmp_path / "layout"
    assert cli.main(["prepare-ferplus", str(fer), str(new), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"wrote the FER+ layout into {out}")
    for part in ("FER2013Train 3", "FER2013Valid 2", "FER2013Test 2",
                 str(out / FER2013_TRAIN_LABELS), "1 left out"):
        assert part in printed
    # a second run refuses to overwrite, --overwrite replaces
    assert cli.main(["prepare-ferplus", str(fer), str(new), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a FER+ layout" in err and "--overwrite" in err
    assert cli.main(["prepare-ferplus", str(fer), str(new), "--out", str(out),
                     "--overwrite"]) == 0


def test_prepare_refuses_to_overwrite(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv")
    out = write_layout(tmp_path / "layout")
    before = (out / "FER2013Train" / "label.csv").read_bytes()
    with pytest.raises(ValueError, match="already holds a FER\\+ layout"):
        prepare_ferplus(fer, new, out)
    assert (out / "FER2013Train" / "label.csv").read_bytes() == before
    prepare_ferplus(fer, new, out, overwrite=True)
    assert read_vote_file(out / "FER2013Train" / "label.csv")[0] == [
        "fer0000000.png", "fer0000001.png", "fer0000003.png"]


def _replace(rows, index, **changes):
    fields = ("emotion", "seed", "usage", "name", "votes")
    row = dict(zip(fields, rows[index], strict=True))
    row.update(changes)
    return [*rows[:index], tuple(row[f] for f in fields), *rows[index + 1:]]


@pytest.mark.parametrize("which, kwargs, pattern", [
    ("fer", {"fer_header": "label,pixels,Usage"}, r"line 1: expected the header "
                                                  r"'emotion,pixels,Usage'"),
    ("new", {"new_header": NEW_HEADER.replace("NF", "nf")}, r"line 1: expected the header "
                                                             r"'Usage,Image name,neutral"),
    ("new", {"new_header": "Usage,Image name"}, r"line 1: expected the header"),
    ("fer", {"rows": _replace(PREP_ROWS, 1, seed="1 2 3")}, r"line 3: pixels must be 2304 "
                                                            r"integers in 0..255 \(got 3 "
                                                            r"values\)"),
    ("fer", {"rows": _replace(PREP_ROWS, 1, seed=" ".join(["300"] * 2304))},
     r"line 3: pixels must be 2304 integers in 0..255"),
    ("fer", {"rows": _replace(PREP_ROWS, 1, seed=" ".join(["1.5"] * 2304))},
     r"line 3: pixels must be 2304 integers in 0..255"),
    ("fer", {"rows": _replace(PREP_ROWS, 5, emotion=7)}, r"line 7: emotion '7' is not in 0..6"),
    ("fer", {"rows": _replace(PREP_ROWS, 5, usage="Validation")},
     r"line 7: Usage 'Validation' is not one of"),
    ("new", {"rows": _replace(PREP_ROWS, 1, votes=[1] * 9)},
     r"line 3: expected 12 fields \(Usage, Image name, 10 votes\), got 11"),
    ("new", {"rows": _replace(PREP_ROWS, 1, votes=[1, "x", *[1] * 8])},
     r"line 3: vote 'x' is not an integer"),
    ("new", {"rows": _replace(PREP_ROWS, 1, votes=[1, "\u00b2", *[1] * 8])},
     r"line 3: vote '\u00b2' is not an integer"),
    ("fer", {"rows": _replace(PREP_ROWS, 1, seed=" ".join(["\u00b2"] * 2304))},
     r"line 3: pixels must be 2304 integers in 0..255"),
])
def test_prepare_bad_input(tmp_path: Path, which: str, kwargs: dict, pattern: str) -> None:
    fer, new = write_pair(tmp_path / "csv", **kwargs)
    path = fer if which == "fer" else new
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + pattern):
        prepare_ferplus(fer, new, tmp_path / "out")
    assert not is_ferplus(tmp_path / "out")


def test_prepare_usage_mismatch(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv")
    rows = new.read_text().splitlines()
    rows[6] = rows[6].replace("PublicTest", "PrivateTest", 1)
    new.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as err:
        prepare_ferplus(fer, new, tmp_path / "out")
    message = str(err.value)
    assert f"{new}, line 7: Usage 'PrivateTest' differs from {fer}, line 7" in message
    assert not is_ferplus(tmp_path / "out")


def test_prepare_different_row_counts(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv")
    new.write_text("\n".join(new.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(fer))} has 8 rows, "
                                         f"{re.escape(str(new))} has 7"):
        prepare_ferplus(fer, new, tmp_path / "out")


def test_prepare_missing_input(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv")
    with pytest.raises(FileNotFoundError, match="fer2013.csv not found"):
        prepare_ferplus(tmp_path / "nope.csv", new, tmp_path / "out")
    assert cli.main(["prepare-ferplus", str(fer), str(tmp_path / "nope.csv"), "--out",
                     str(tmp_path / "out")]) == 2


# ---------------------------------------------------------------- training through the CLI


def _train_layout(root: Path) -> tuple[Path, Path]:
    """33 training images (3 copies of TRAIN_VOTES), labels for all but the j copies."""
    votes = {f"{k}{c}": v for c in range(3) for k, v in TRAIN_VOTES.items()}
    write_split(root / "FER2013Train", votes, seed=0)
    write_split(root / "FER2013Valid", SMALL_SPLIT, seed=100)
    write_split(root / "FER2013Test", SMALL_SPLIT, seed=200)
    rows = [(_name(f"{k}{c}"), "happy" if k in ("a", "k") else CLASS_NAMES[MAJORITY[k]])
            for c in range(3) for k in MAJORITY if k != "j"]
    return root, write_train_labels(root.parent / "train_labels.csv", rows)


@pytest.fixture(scope="module")
def ferplus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """One epoch of baseline on the 33-image layout with a train-labels file: (data root,
    train-labels file, run folder, printed output)."""
    tmp = tmp_path_factory.mktemp("ferplus_run")
    root, labels = _train_layout(tmp / "ferplus")
    out = tmp / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["train", "--data", str(root), "--train-labels", str(labels),
                           "--image-size", "16", "--epochs", "1", "--variant", "baseline",
                           "--pretrained", "none", "--no-plots", "--no-progress",
                           "--num-threads", "1", "--device", "cpu", "--no-tensorboard", "--out", str(out)])
    assert status == 0, printed.getvalue()
    return root, labels, out, printed.getvalue()


@pytest.mark.slow
def test_train_cli_first_line_describes_ferplus(ferplus_run) -> None:
    _, labels, out, printed = ferplus_run
    first = printed.splitlines()[0]
    assert "15 train / 2 test images" in first
    assert "FER+ layout" in first and "majority vote" in first
    for part in ("3 contempt", "3 not a face", "3 unknown", "6 no majority winner",
                 "3 not in train-labels"):
        assert part in first
    assert f"train labels from {labels} differ from the votes on 20.0%" in first
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_acc"]) <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["n_valid"] == 2 and "FER+ layout" in config["data_description"]
    assert config["train_labels"] == str(labels) and config["vote_rule"] == "majority"


@pytest.mark.slow
def test_evaluate_a_ferplus_checkpoint(ferplus_run, capsys) -> None:
    _, _, out, _ = ferplus_run
    for split in ("test", "valid"):
        assert cli.main(["evaluate", str(out / "checkpoint.pt"), "--split", split,
                         "--device", "cpu"]) == 0, capsys.readouterr().err
        assert f"{split} split of" in capsys.readouterr().out


@pytest.mark.slow
def test_train_soft_votes(tmp_path: Path, capsys) -> None:
    root, _ = _train_layout(tmp_path / "ferplus")
    status = cli.main(["train", "--data", str(root), "--vote-rule", "soft",
                       "--image-size", "16", "--epochs", "1", "--variant", "baseline",
                       "--pretrained", "none", "--no-plots", "--no-progress",
                       "--num-threads", "1", "--device", "cpu", "--no-tensorboard", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    first = captured.out.splitlines()[0]
    assert "21 train / 2 test images" in first and "soft vote" in first
    assert "3 no soft winner" in first and "differ from the votes" not in first


def test_train_labels_need_the_ferplus_layout(tiny_faces: Path, tmp_path: Path,
                                              capsys) -> None:
    labels = write_train_labels(tmp_path / "labels.csv", [("train_00001.jpg", "happy")])
    status = cli.main(["train", "--data", str(tiny_faces), "--train-labels", str(labels),
                       "--image-size", "16", "--epochs", "1", "--out", str(tmp_path / "run"),
                       "--no-progress", "--device", "cpu"])
    assert status == 2
    assert "need the FER+ layout" in capsys.readouterr().err


def test_soft_rule_refuses_train_labels(layout: Path, tmp_path: Path, capsys) -> None:
    labels = write_train_labels(tmp_path / "labels.csv", [(_name("a"), "happy")])
    status = cli.main(["train", "--data", str(layout), "--train-labels", str(labels),
                       "--vote-rule", "soft", "--variant", "baseline", "--epochs", "1",
                       "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    assert status == 2
    assert "--vote-rule 'soft'" in capsys.readouterr().err


def test_prepare_duplicate_image_name(tmp_path: Path) -> None:
    fer, new = write_pair(tmp_path / "csv", rows=_replace(PREP_ROWS, 5, name="fer0000004.png"))
    with pytest.raises(ValueError, match=re.escape(str(new)) + ", line 7: fer0000004.png "
                                         "already listed on line 6"):
        prepare_ferplus(fer, new, tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.png", "sub/fer0000001.png", "fer0000001.jpg",
                                  "fer0000001"])
def test_prepare_image_name_must_be_a_png_file_name(tmp_path: Path, name: str) -> None:
    fer, new = write_pair(tmp_path / "csv", rows=_replace(PREP_ROWS, 1, name=name))
    with pytest.raises(ValueError, match=re.escape(str(new)) + ", line 3: image name "
                                         + re.escape(repr(name))):
        prepare_ferplus(fer, new, tmp_path / "out" / "layout")
    assert not (tmp_path / "out").exists()


def test_prepare_checks_every_row_before_writing(tmp_path: Path) -> None:
    """A bad last row leaves an existing layout as it was, even with overwrite."""
    out = write_layout(tmp_path / "layout")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for rows in (_replace(PREP_ROWS, 7, seed="1 2 3"), _replace(PREP_ROWS, 7, usage="Training")):
        fer, new = write_pair(tmp_path / "csv", rows=rows)
        if rows[7][2] == "Training":  # Usage differs between the two files on the last row
            new.write_text(new.read_text().replace("Training,fer0000007", "PrivateTest,"
                                                   "fer0000007"))
        with pytest.raises(ValueError, match="line 9"):
            prepare_ferplus(fer, new, out, overwrite=True)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError):
        prepare_ferplus(fer, new, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.slow
def test_pretrain_on_the_ferplus_layout(layout: Path, tmp_path: Path) -> None:
    """Pretraining reads the FER+ majority labels of FER2013Train and holds out FER2013Valid."""
    from noisylabel.apps.fer.pretrain import PretrainConfig, pretrain

    out = tmp_path / "pre" / "ferplus.pth"
    result = pretrain(PretrainConfig(data=str(layout), task="expression", out=str(out),
                                     image_size=16, epochs=1, batch_size=4, progress=False))
    assert result["layout"] == "ferplus" and result["num_classes"] == 7
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["held_out"] == "FER2013Valid"
    assert info["n_train"] == len(load_ferplus(layout, "train", 16))
    with pytest.raises(ValueError, match="expressions, not identities"):
        pretrain(PretrainConfig(data=str(layout), task="identity", out=str(out), image_size=16,
                                epochs=1, progress=False))
