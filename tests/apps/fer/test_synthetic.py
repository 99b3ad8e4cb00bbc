import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisylabel.apps.fer.layouts import CLASS_NAMES, load_split, read_identities, read_label_file
from noisylabel.apps.fer.synthetic import (
    CLASS_NAMES as SYN_CLASS_NAMES,
)
from noisylabel.apps.fer.synthetic import (
    CUES,
    PROTOTYPES,
    SyntheticFaceConfig,
    contact_sheet,
    disjoint_config,
    expression_cues,
    generate_dataset,
    main,
    make_identity,
    read_config,
    render_face,
    render_split,
    sample_split,
)

TINY = SyntheticFaceConfig(n_train=21, n_test=7, image_size=24, n_identities=5, seed=1)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("syn"), TINY)


def test_class_order_matches_loader():
    assert SYN_CLASS_NAMES == CLASS_NAMES
    assert len(PROTOTYPES) == 7 and PROTOTYPES[6] == {}
    assert all(set(p) <= set(CUES) for p in PROTOTYPES)


def test_layout_readable_by_load_split(tiny_root):
    entries = read_label_file(tiny_root / "EmoLabel" / "list_patition_label.txt")
    names = [n for n, _ in entries]
    assert names[:2] == ["train_00001.jpg", "train_00002.jpg"]
    assert names[21:23] == ["test_00001.jpg", "test_00002.jpg"] and len(names) == 28
    assert (tiny_root / "Image" / "aligned" / "train_00001_aligned.jpg").is_file()
    tr = load_split(tiny_root, "train", cache=False)
    te = load_split(tiny_root, "test", cache=False)
    assert tr.images.shape == (21, 3, 24, 24) and tr.images.dtype == torch.uint8
    assert te.images.shape == (7, 3, 24, 24)
    # uniform priors: every class present, counts differ by at most one
    counts = np.bincount(tr.labels.numpy(), minlength=7)
    assert counts.min() == counts.max() == 3
    assert sorted(te.labels.tolist()) == list(range(7))
    meta = sample_split(TINY, "train")
    np.testing.assert_array_equal(tr.labels.numpy(), meta["labels"])


def test_identities_csv_and_json(tiny_root):
    ids = read_identities(tiny_root)
    assert len(ids) == 28 and set(ids.values()) <= set(range(5))
    info = json.loads((tiny_root / "synthetic.json").read_text())
    assert info["hash"] == TINY.hash() and len(info["hash"]) == 12
    assert read_config(tiny_root) == TINY
    meta = sample_split(TINY, "test")
    assert [ids[f"test_{i + 1:05d}.jpg"] for i in range(7)] == meta["identities"].tolist()


def test_deterministic_by_seed(tmp_path):
    cfg = SyntheticFaceConfig(n_train=8, n_test=0, image_size=16, n_identities=3, seed=5)
    a = generate_dataset(tmp_path / "a", cfg)
    b = generate_dataset(tmp_path / "b", cfg)
    for name in ("EmoLabel/list_patition_label.txt", "EmoLabel/identities.csv",
                 "Image/aligned/train_00005_aligned.jpg"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    other, _ = render_split(SyntheticFaceConfig(n_train=8, n_test=0, image_size=16,
                                                n_identities=3, seed=6), "train")
    same, _ = render_split(cfg, "train")
    assert not np.array_equal(other, same)
    assert cfg.hash() != SyntheticFaceConfig(n_train=8, n_test=0, image_size=16, n_identities=3,
                                             seed=6).hash()


def test_regeneration_skipped_when_hash_matches(tmp_path):
    cfg = SyntheticFaceConfig(n_train=4, n_test=1, image_size=16, n_identities=2)
    root = generate_dataset(tmp_path / "d", cfg)
    marker = root / "Image" / "aligned" / "train_00001_aligned.jpg"
    marker.write_bytes(b"changed")
    generate_dataset(root, cfg)
    assert marker.read_bytes() == b"changed"
    generate_dataset(root, cfg, force=True)
    assert marker.read_bytes() != b"changed"


def test_disjoint_identity_option_really_disjoint(tiny_root, tmp_path):
    src_cfg = disjoint_config(TINY, n_train=14, n_test=0)
    assert src_cfg.identity_offset == TINY.identity_offset + TINY.n_identities
    src = generate_dataset(tmp_path / "src", src_cfg)
    target_ids = set(read_identities(tiny_root).values())
    source_ids = set(read_identities(src).values())
    assert source_ids and target_ids.isdisjoint(source_ids)
    assert set(TINY.identity_ids).isdisjoint(src_cfg.identity_ids)
    # different ids -> different appearance, same id -> same appearance
    seed = TINY.seed
    tgt_faces = {make_identity(i, seed) for i in TINY.identity_ids}
    src_faces = {make_identity(i, seed) for i in src_cfg.identity_ids}
    assert tgt_faces.isdisjoint(src_faces)
    assert make_identity(3, seed) == make_identity(3, seed)


def test_identity_varies_more_than_expression():
    cfg = SyntheticFaceConfig(n_train=0, n_test=1, image_size=24)
    faces = [make_identity(i, 0) for i in range(6)]
    by_identity = np.stack([[render_face(f, expression_cues(c, 1.0), None, 24).astype(float)
                             for c in range(7)] for f in faces])  # (identity, class, H, W, 3)
    total = by_identity.var(axis=(0, 1)).sum()
    identity_share = by_identity.mean(axis=1).var(axis=0).sum() / total
    expression_share = by_identity.mean(axis=0).var(axis=0).sum() / total
    assert identity_share > 3 * expression_share > 0
    assert cfg.n_test == 1


def test_expressions_differ_and_close_pairs_are_closer():
    face = make_identity(0, 0)
    imgs = [render_face(face, expression_cues(c, 1.0), None, 48, 2, 1.4).astype(float)
            for c in range(7)]

    def d(a, b):
        return np.abs(imgs[a] - imgs[b]).mean()

    assert all(d(c, 6) > 0.5 for c in range(6))  # every expression changes pixels
    assert d(4, 6) < d(3, 6)  # sadness is closer to neutral than happiness is
    assert d(0, 1) < d(0, 3)  # surprise is closer to fear than to happiness


def test_expression_cues_formula():
    rest = [0.1] * len(CUES)
    cues = expression_cues(3, 0.5, rest)
    assert cues["curve"] == pytest.approx(0.1 + 0.5 * PROTOTYPES[3]["curve"])
    assert cues["press"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="label=7"):
        expression_cues(7, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_train": 0, "n_test": 0}, "n_train"), ({"image_size": 4}, "image_size"),
     ({"n_identities": 0}, "n_identities"), ({"intensity_range": (0.8, 0.2)}, "intensity"),
     ({"class_priors": (0.5, 0.5)}, "class_priors"), ({"class_priors": "zipf"}, "class_priors")],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFaceConfig(**kwargs)


def test_config_dict_round_trip_and_rafdb_priors():
    cfg = SyntheticFaceConfig(class_priors="rafdb", intensity_range=(0.2, 0.9))
    assert SyntheticFaceConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.priors()[3] == pytest.approx(max(cfg.priors()))  # happiness most frequent
    with pytest.raises(ValueError, match="unknown"):
        SyntheticFaceConfig.from_dict({"n_trian": 3})
    meta = sample_split(SyntheticFaceConfig(n_train=400, class_priors="rafdb"), "train")
    counts = np.bincount(meta["labels"], minlength=7)
    assert counts[3] > counts[6] > counts[1]


def test_command_line(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--n-train", "3", "--n-test", "2", "--image-size", "16",
          "--n-identities", "2"])
    assert "3 train + 2 test" in capsys.readouterr().out
    assert len(load_split(tmp_path / "cli", "test", cache=False)) == 2



def test_contact_sheet(tmp_path):
    path = contact_sheet(tmp_path / "sheet.png", TINY, n_identities=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "P" and im.size[1] > im.size[0]
