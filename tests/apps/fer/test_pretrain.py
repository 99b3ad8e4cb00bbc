"""Tests of backbone pretraining: the MS-Celeb checkpoint format, sidecars, the CLI subcommand."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisylabel.apps.fer import cli
from noisylabel.apps.fer.model import create_model, load_backbone_checkpoint
from noisylabel.apps.fer.pretrain import PretrainConfig, pretrain
from noisylabel.apps.fer.train import describe_start


@pytest.mark.parametrize("task,n_classes", [("identity", 6), ("expression", 7)])
def test_pretrain_writes_an_msceleb_format_checkpoint(tiny_faces: Path, tmp_path: Path,
                                                      task: str, n_classes: int) -> None:
    out = tmp_path / "backbone.pth"
    result = pretrain(PretrainConfig(data=str(tiny_faces), task=task, out=str(out), image_size=16,
                                     epochs=1, batch_size=16, device="cpu", progress=False))
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"state_dict"}
    assert raw["state_dict"]["fc.weight"].shape == (result["num_classes"], 512)
    assert result["num_classes"] <= n_classes
    assert not any(k.startswith("module.") for k in raw["state_dict"])
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert result["sha256"] == sha
    assert Path(f"{out}.sha256").read_text() == f"{sha}  backbone.pth\n"
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["task"] == task and info["sha256"] == sha and 0 <= info["test_acc"] <= 1
    state, sha2 = load_backbone_checkpoint(out)  # loadable by --pretrained
    assert sha2 == sha
    model = create_model("full", pretrained=out)
    torch.testing.assert_close(model.target.layers[0][0].conv1.weight,
                               raw["state_dict"]["layer2.0.conv1.weight"])
    # the run's output says which regime ran, from the sidecar
    regime = describe_start(str(out), sha)
    assert regime.startswith(f"pretrained on {task} ({result['num_classes']} classes")
    assert sha in regime
    Path(f"{out}.json").unlink()  # e.g. the MS-Celeb file: no sidecar, the path is enough
    assert describe_start(str(out), sha) == f"pretrained from {out} (sha256 {sha})"


def test_pretrain_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="task='age'"):
        PretrainConfig(data="x", task="age")


def test_pretrain_subcommand(tiny_faces: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.pth"
    status = cli.main(["pretrain", "--data", str(tiny_faces), "--task", "identity", "--out",
                       str(out), "--epochs", "1", "--image-size", "16", "--device", "cpu",
                       "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}" in printed


def _write_folders(root: Path, counts: dict[str, int], size: int = 16) -> Path:
    """Random-colour images ``root/<split>/<class>/img<i>`` (PNG and JPEG in turn, one image of
    each class at 20 px so that pretraining has to resize)."""
    rng = np.random.default_rng(0)
    for key, n in counts.items():
        (root / key).mkdir(parents=True)
        for i in range(n):
            side = size + 4 if i == 0 else size
            arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / key / f"img{i}{'.png' if i % 2 else '.jpeg'}")
    return root


@pytest.mark.parametrize("task,with_test", [("identity", False), ("expression", True)])
def test_pretrain_on_class_folders(tmp_path: Path, task: str, with_test: bool) -> None:
    counts = {"train/anna": 4, "train/bo": 3, "train/cy": 3}
    if with_test:
        counts |= {"test/anna": 1, "test/cy": 2}
    data = _write_folders(tmp_path / "faces", counts)
    out = tmp_path / "folders.pth"
    result = pretrain(PretrainConfig(data=str(data), task=task, out=str(out), image_size=16,
                                     epochs=1, batch_size=4, device="cpu", progress=False))
    assert result["layout"] == "class-folders" and result["num_classes"] == 3
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"state_dict"} and raw["state_dict"]["fc.weight"].shape == (3, 512)
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["layout"] == "class-folders" and info["class_names"] == ["anna", "bo", "cy"]
    assert info["num_classes"] == 3 and info["task"] == task
    if with_test:
        assert (info["n_train"], info["n_test"], info["held_out"]) == (10, 3, "test/")
    else:
        assert (info["n_train"], info["n_test"], info["held_out"]) == (9, 1, "10% of train/ "
                                                                        "(seed 0)")
    state, sha = load_backbone_checkpoint(out)
    assert sha == result["sha256"] and not any(k.startswith("fc.") for k in state)
    model = create_model("full", pretrained=out)
    torch.testing.assert_close(model.target.layers[0][0].conv1.weight,
                               raw["state_dict"]["layer2.0.conv1.weight"])
    assert describe_start(str(out), sha).startswith(f"pretrained on {task} (3 classes")


def test_pretrain_records_rafdb_layout(tiny_faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "raf.pth"
    result = pretrain(PretrainConfig(data=str(tiny_faces), task="expression", out=str(out),
                                     image_size=16, epochs=1, batch_size=64, device="cpu",
                                     progress=False))
    info = json.loads(Path(f"{out}.json").read_text())
    assert result["layout"] == info["layout"] == "raf-db" and "class_names" not in info


@pytest.mark.parametrize("case", ["corrupt", "unknown_test_class", "no_layout",
                                  "one_training_image"])
def test_pretrain_data_errors_name_the_culprit(tmp_path: Path, case: str) -> None:
    data = _write_folders(tmp_path / "faces", {"train/anna": 2, "train/bo": 2, "test/bo": 1})
    if case == "corrupt":
        (data / "train" / "bo" / "img1.png").write_bytes(b"\x89PNG truncated")
        error, match = ValueError, r"cannot decode image .*img1\.png"
    elif case == "unknown_test_class":
        (data / "test" / "bo").rename(data / "test" / "zed")
        error, match = ValueError, r"\['zed'\] have no folder in .*train"
    elif case == "one_training_image":  # 2 images, no test/: one of them is held out
        shutil.rmtree(data)
        _write_folders(data, {"train/anna": 1, "train/bo": 1})
        error, match = ValueError, r"faces: 1 training image\(s\); pretraining needs at least 2"
    else:
        (data / "train").rename(data / "images")
        error, match = FileNotFoundError, r"no face data found in .*faces: .*RAF-DB layout .*" \
            r"class folders \(train/<class>"
    out = tmp_path / "never.pth"
    with pytest.raises(error, match=match):
        pretrain(PretrainConfig(data=str(data), out=str(out), image_size=16, epochs=1,
                                device="cpu", progress=False))
    assert not out.exists()
