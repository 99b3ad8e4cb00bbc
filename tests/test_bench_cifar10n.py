"""benchmarks/cifar10n.py: the index -> image-file mapping, the stratified subset, the detection
metrics, the fake data of --quick read back through the loader, and each hook loss on a tiny
training run."""

from __future__ import annotations

import numpy as np
import pytest

BENCHMARK = "cifar10n"  # the `bench` fixture (conftest.py) imports benchmarks/cifar10n.py


def test_expected_files_count_per_class(bench):
    # the first rows of the real index: frog, truck, truck, deer
    assert bench.expected_files(np.array([6, 9, 9, 4, 6])) == [
        "train/frog/0000.jpg", "train/truck/0000.jpg", "train/truck/0001.jpg",
        "train/deer/0000.jpg", "train/frog/0001.jpg"]


def test_check_mapping_names_the_first_bad_row(bench):
    index = {"file": np.array(["train/frog/0000.jpg", "train/frog/0000.jpg"]),
             "clean_label": np.array([6, 6])}
    with pytest.raises(ValueError, match="index row 1: file 'train/frog/0000.jpg', expected "
                                         "'train/frog/0001.jpg'"):
        bench.check_mapping(index)


def test_stratified_subset(bench):
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    sub = bench.stratified_subset(labels, 100, seed=1)
    assert len(sub) == 100 and len(set(sub)) == 100 and np.all(np.diff(sub) > 0)
    assert np.bincount(labels[sub]).tolist() == [50, 30, 20]
    assert np.array_equal(sub, bench.stratified_subset(labels, 100, seed=1))
    assert not np.array_equal(sub, bench.stratified_subset(labels, 100, seed=2))
    assert len(bench.stratified_subset(labels, 5000, seed=1)) == 1000


def test_detection_metrics(bench):
    wrong = np.array([1, 1, 0, 0, 0, 0], bool)
    flagged = np.array([1, 0, 1, 0, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    m = bench.detection_metrics(flagged, score, wrong)
    assert m["precision"] == pytest.approx(50) and m["recall"] == pytest.approx(50)
    assert m["f1"] == pytest.approx(50) and m["auc"] == pytest.approx(100)
    assert m["flagged"] == pytest.approx(100 / 3)
    none = bench.detection_metrics(np.zeros(6, bool), score, wrong)
    assert none["precision"] == 0 and none["f1"] == 0


def test_fake_data_round_trip(bench, tmp_path):
    index_path = bench.make_fake_data(tmp_path, n_per_class=3, n_test_per_class=2)
    index = bench.read_index(index_path)
    bench.check_mapping(index)
    profile = {"n_train": 20, "n_test": None}
    data = bench.load_data(index_path, tmp_path, tmp_path / "cache.npz", profile)
    assert data["train_x"].shape == (20, 32, 32, 3) and data["train_x"].dtype == np.uint8
    assert data["test_x"].shape == (20, 32, 32, 3)
    assert np.bincount(data["test_y"]).tolist() == [2] * 10
    assert np.array_equal(data["clean"], index["clean_label"][data["train_index"]])
    again = bench.load_data(index_path, tmp_path, tmp_path / "cache.npz", profile)  # cached
    assert np.array_equal(again["train_x"], data["train_x"])


def test_missing_files_are_named(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="index not found"):
        bench.read_index(tmp_path / "nope.csv.gz")
    with pytest.raises(FileNotFoundError, match="test folder not found"):
        bench.test_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="image not found"):
        bench.read_images(tmp_path, ["train/cat/0000.jpg"])


@pytest.mark.parametrize("loss", ["q", "wce", "forward", "forward-true"])
def test_hook_losses_train_and_return_w(bench, loss):
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(48, 3, 32, 32)).astype(np.float32))
    y = rng.integers(0, 10, 48)
    profile = {**bench.PROFILES["quick"], "epochs": 2, "warmup": 1}
    hook = {"loss": loss, "gate": False, "signal": "cosine", "per_class": False, "warmup": 1,
            "true_matrix": np.full((10, 10), 0.02) + 0.8 * np.eye(10)}
    net, extra = bench.train(x, y, profile, seed=0, hook=hook)
    assert extra["w"].shape == (48,) and np.isfinite(extra["w"]).all()
    assert [r["epoch"] for r in extra["reports"]] == [1, 2]
    assert np.isfinite(bench.predict(net, x)).all()


def test_augment_crops_flips_and_keeps_the_layout(bench):
    import torch
    import torch.nn.functional as F

    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    out = bench.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    padded = F.pad(x, (4, 4, 4, 4))
    found = set()
    for img, pad in zip(out, padded, strict=True):  # each: one window of the padded image
        views = {(dy, dx, flip): pad[:, dy:dy + 32, dx:dx + 32] for dy in range(9)
                 for dx in range(9) for flip in (False, True)}
        match = [k for k, v in views.items() if torch.equal(img, v.flip(2) if k[2] else v)]
        assert len(match) == 1
        found.add(match[0][2])
    assert found == {False, True}  # 16 images: both flipped and unflipped ones


def test_split_holds_out_a_seeded_fifth(bench):
    data = {"train_x": np.arange(50)[:, None], "clean": np.arange(50) % 10,
            "worse": (np.arange(50) + 1) % 10, "test_x": np.zeros((3, 1)), "test_y": np.zeros(3)}
    x, y, yc, x_eval, y_eval = bench.split(data, "worse", "valid")
    assert len(x) == 40 and len(x_eval) == 10
    assert not set(x[:, 0]) & set(x_eval[:, 0])
    assert np.array_equal(y, (x[:, 0] + 1) % 10) and np.array_equal(y_eval, x_eval[:, 0] % 10)
    assert np.array_equal(bench.split(data, "worse", "valid")[3], x_eval)
    x, y, yc, x_eval, y_eval = bench.split(data, "clean", "test")
    assert len(x) == 50 and np.array_equal(y, yc) and len(y_eval) == 3


def test_preact_resnet18_is_resnet18_sized(bench):
    import torch

    net = bench.make_net(64, "preact18")
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(11.17e6, rel=0.01)
    small = bench.make_net(4, "preact18")
    out = small(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    with pytest.raises(RuntimeError):
        small(torch.zeros(2, 1, 32, 32))  # three colour channels expected


@pytest.mark.parametrize("augment", [True, False])
def test_run_one_reports_the_accuracy_curve(bench, augment):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, 40)
    data = {"train_x": rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), "clean": clean,
            "worse": np.where(rng.random(40) < 0.3, (clean + 1) % 10, clean),
            "test_x": rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8),
            "test_y": rng.integers(0, 10, 12)}
    profile = {**bench.PROFILES["quick"], "epochs": 6, "warmup": 2, "augment": augment}
    hook = {"loss": "q", "gate": False, "signal": "cosine", "per_class": False, "warmup": 2}
    row = bench.run_one(data, "worse", "hook", 0, profile, "test", hook, device="cpu")
    assert len(row["curve"]) == 6 and row["curve"][-1] == pytest.approx(row["test_acc"])
    assert row["acc_last5"] == pytest.approx(np.mean(row["curve"][1:]))
    assert row["acc_best"] == max(row["curve"]) and row["device"] == "cpu"
    assert [f["epoch"] for f in row["fits"]] == [2, 3, 4, 5, 6]


def test_one_cycle_schedule_rises_then_decays_to_zero(bench):
    import torch

    net = torch.nn.Linear(2, 2)
    opt, sched = bench.make_optimizer(net, {"lr": 0.1}, steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 20 <= peak <= 25 and max(lrs) == pytest.approx(0.1)
    assert np.all(np.diff(lrs[:peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) <= 0)
    assert lrs[-1] < 1e-3


def test_table_has_one_row_per_hook_setting(bench):
    def row(method, seed, acc, hook=None, f1=None):
        r = {"label_set": "worse", "method": method, "seed": seed, "test_acc": acc,
             "acc_last5": acc, "acc_best": acc, "noise": 40.0, "wall_s": 60.0,
             "n_train": 100, "n_eval": 50, "fit_wrong": 90.0}
        return r | ({"hook": hook} if hook else {}) | ({"f1": f1} if f1 else {})

    rows = [row("ce", 0, 50.0), row("hook", 0, 54.0, "q-a", 70.0),
            row("hook", 0, 48.0, "q-b", 60.0), row("cleanlab", 0, 52.0, f1=65.0)]
    text = bench.table(rows, bench.PROFILES["cpu-noaug"], "cpu-noaug")
    assert text.count("| worse | 40.0 | hook `q-a` |") == 1
    assert text.count("| worse | 40.0 | hook `q-b` |") == 1
    assert "| worse | 0 | hook `q-a` | 54.0 | 4.0 | 70.0 | 5.0 |" in text
    assert "| worse | 0 | hook `q-b` | 48.0 | -2.0 | 60.0 | -5.0 |" in text
    assert "no augmentation" in text


def test_resolve_device_names_a_bad_value(bench, capsys):
    import argparse

    import torch

    p = argparse.ArgumentParser(prog="cifar10n.py")
    assert bench.resolve_device("cpu", p) == "cpu"
    assert bench.resolve_device("auto", p) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SystemExit):
        bench.resolve_device("banana", p)
    assert "--device 'banana'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.resolve_device("cuda", p)
        assert "no CUDA device" in capsys.readouterr().err
