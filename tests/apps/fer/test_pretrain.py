"""Tests of backbone pretraining: the MS-Celeb checkpoint format, sidecars, the CLI subcommand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

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
