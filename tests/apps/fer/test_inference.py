"""Tests of the trained model as a product: load_model, the run folder's model files and card,
and the TorchScript / ONNX export."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from noisylabel.apps.fer import cli
from noisylabel.apps.fer.export import ONNX_HINT, export_model
from noisylabel.apps.fer.inference import FERModel, load_model, write_model_files
from noisylabel.apps.fer.model import create_model
from noisylabel.apps.fer.train import (
    TrainConfig,
    build_model,
    load_checkpoint,
    load_data,
    predict_probs,
    train,
)


@pytest.fixture(scope="module")
def run(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch ``full`` run at 16 px on the RAF-DB layout (no validation split)."""
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(data=str(tiny_faces), out=str(out), image_size=16, batch_size=16, epochs=1,
                      noise=0.3, device="cpu", progress=False, tensorboard=False, plots=False,
                      eval_batch_size=32, seed=5))
    return out


def _reference_probs(run: Path) -> tuple[np.ndarray, torch.Tensor]:
    """The trainer's own evaluation of the checkpoint on the test images."""
    ckpt = load_checkpoint(run / "checkpoint.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    net = build_model(cfg, load_pretrained=False)
    net.load_state_dict(ckpt["model"])
    images = load_data(cfg)["test"].images
    return predict_probs(net, images, "target").numpy(), images


def test_load_model_from_checkpoint_weights_file_and_folder(run: Path) -> None:
    expected, images = _reference_probs(run)
    for source in (run / "checkpoint.pt", run / "model_last.pt", run):
        model = load_model(source, device="cpu")
        assert isinstance(model, FERModel) and not model.training
        assert model.net.aux is None  # the auxiliary branch only supervises the noise model
        assert (model.image_size, len(model.class_names)) == (16, 7)
        assert model.class_names[3] == "Happiness"
        np.testing.assert_allclose(model.predict_proba(images), expected, atol=1e-6)


def test_predict_from_files_and_shape_errors(run: Path, tiny_faces: Path) -> None:
    model = load_model(run, device="cpu")
    files = sorted((tiny_faces / "Image" / "aligned").glob("test_*"))[:3]
    probs = model.predict_proba(files)
    assert probs.shape == (3, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict(files) == [model.class_names[k] for k in probs.argmax(axis=1)]
    assert model.predict_proba(str(files[0])).shape == (1, 7)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, 16, 16\)"):
        model.predict_proba(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="cannot read image"):
        model.predict_proba([run / "model_card.json"])


def test_run_folder_holds_last_weights_and_card_without_best(run: Path) -> None:
    assert (run / "model_last.pt").is_file()
    assert not (run / "model_best.pt").exists()  # no validation split: no selection
    card = json.loads((run / "model_card.json").read_text())
    assert card["variant"] == "full" and len(card["classes"]) == 7
    assert card["input"]["shape"] == [3, 16, 16]
    assert card["input"]["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert card["data"]["layout"] == "raf-db" and card["data"]["noise"] == 0.3
    assert card["data"]["actual_noise_rate"] == pytest.approx(12 / 40)
    assert card["start"]["regime"].startswith("from scratch")
    assert card["selection"]["epoch"] is None and "no validation split" in card["selection"]["note"]
    assert set(card["test_accuracy"]) >= {"final", "last5_mean", "best_optimistic"}
    digest = hashlib.sha256((run / "model_last.pt").read_bytes()).hexdigest()
    assert card["sha256"] == {"model_last.pt": digest}


def _checkpoint(epoch: int, history: list[dict], data: str) -> dict:
    """A minimal checkpoint dict as the trainer saves it, with epoch-specific weights."""
    net = create_model("baseline", num_classes=3)
    with torch.no_grad():
        net.target.head.bias.fill_(float(epoch))
    config = TrainConfig(data=data, variant="baseline", num_classes=3, image_size=16).to_dict()
    return {"epoch": epoch, "config": config, "model": net.state_dict(),
            "history": history[:epoch], "class_names": ["a", "b", "c"], "regime": "test"}


def test_best_is_selected_on_validation_not_test(tmp_path: Path) -> None:
    history = [{"epoch": 1, "test_acc": 0.5, "val_acc": 0.5},
               {"epoch": 2, "test_acc": 0.6, "val_acc": 0.7},
               {"epoch": 3, "test_acc": 0.9, "val_acc": 0.6}]
    for epoch in (1, 2, 3):
        card = write_model_files(tmp_path, _checkpoint(epoch, history, str(tmp_path)))
    assert card["selection"] == {"by": "val_acc", "epoch": 2, "val_acc": 0.7, "test_acc": 0.6,
                                 "file": "model_best.pt"}
    assert card["test_accuracy"]["best_epoch_optimistic"] == 3
    best = torch.load(tmp_path / "model_best.pt", weights_only=True)
    assert best["epoch"] == 2 and float(best["model"]["target.head.bias"][0]) == 2.0
    assert set(card["sha256"]) == {"model_last.pt", "model_best.pt"}
    assert load_model(tmp_path, device="cpu").class_names == ("a", "b", "c")  # best first
    # a later run in the same folder without a validation split leaves no stale best file
    no_val = [{"epoch": 1, "test_acc": 0.4}]
    write_model_files(tmp_path, _checkpoint(1, no_val, str(tmp_path)))
    assert not (tmp_path / "model_best.pt").exists()


def test_wrong_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found: .*nothing.pt"):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="holds no model file"):
        load_model(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk.pt is not a readable PyTorch file"):
        load_model(junk)
    backbone = tmp_path / "backbone.pth"
    torch.save({"state_dict": create_model("baseline").state_dict()}, backbone)
    with pytest.raises(ValueError, match=r"backbone.pth is not a noisylabel-fer checkpoint"):
        load_model(backbone)
    foreign = tmp_path / "other.pt"
    torch.save({"format": "something-else/1"}, foreign)
    with pytest.raises(ValueError, match=r"other.pt .*format 'something-else/1'"):
        load_model(foreign)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_torchscript_matches_the_model(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.pt"
    assert cli.main(["export", str(run / "checkpoint.pt"), "--out", str(out)]) == 0
    assert "max abs difference from the model" in capsys.readouterr().out
    extra = {"model.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["model.json"])["image_size"] == 16
    model = load_model(run, device="cpu")
    x = torch.randint(0, 256, (5, 3, 16, 16)).float()  # another batch size than the check's
    with torch.no_grad():
        assert (scripted(x) - model(x)).abs().max() <= 1e-5
    assert export_model(run, tmp_path / "again.pt", "torchscript") <= 1e-5


def test_export_onnx_matches_the_model(run: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx")
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")
    out = tmp_path / "model.onnx"
    assert export_model(run, out, "onnx", batch_size=2) <= 1e-5
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["noisylabel"])["class_names"][0] == "Surprise"


def test_export_onnx_without_onnx_says_how_to_install(run: Path, tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError
    status = cli.main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert status == 2
    assert capsys.readouterr().err.strip() == f"noisylabel-fer export: error: {ONNX_HINT}"
    assert not (tmp_path / "m.onnx").exists()
