"""Issue 18, bad options and paths: each ends in one line naming the culprit, exit 2, before
any work starts (no training, no data generation, no pretraining). Issue 28: options that were
dropped or accepted without a word, and files of the wrong kind for evaluate and export."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_support import TINY, assert_one_line_error, run_cli

from noisylabel.apps.fer import pretrain as pretrain_module
from noisylabel.apps.fer.config import PretrainConfig, TrainConfig
from noisylabel.apps.fer.export import ONNX_HINT, output_format


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing here may generate data or pretrain: an empty cache shows it."""
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path / "cache"))

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretraining started before the options were checked")

    monkeypatch.setattr(pretrain_module, "pretrain", no_pretraining)


@pytest.mark.parametrize("field,value", [
    ("lr", float("inf")), ("lr", float("nan")), ("lr", 0.0), ("lr", -1e-3),
    ("lr_gamma", -1.0), ("lr_gamma", 0.0), ("lr_gamma", 1.5), ("weight_decay", -1.0),
    ("weight_decay", float("nan")), ("num_threads", -1), ("num_threads", 0),
])
def test_config_refuses_bad_hyperparameters(field: str, value: float) -> None:
    # before: --lr inf / --lr-gamma -1 trained (nan, or a negative learning rate in epoch 2)
    with pytest.raises(ValueError, match=rf"^{field}="):
        TrainConfig(data="x", **{field: value})


@pytest.mark.parametrize("field,value", [("lr", float("inf")), ("lr_gamma", -1.0)])
def test_pretrain_config_refuses_bad_schedule(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field}="):
        PretrainConfig(**{field: value})


def test_a_huge_learning_rate_warns() -> None:
    # before: --lr 1e8 trained to a loss of 6e18 without a word
    with pytest.warns(UserWarning, match="lr=1e.08 is far above"):
        TrainConfig(data="x", lr=1e8)


@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--lr-gamma", "-1"),
                                          ("--num-threads", "-1"), ("--weight-decay", "nan")])
def test_cli_bad_values_end_in_one_line(capsys, option: str, value: str) -> None:
    status, _, err = run_cli(capsys, "train", option, value, "--no-progress")
    assert_one_line_error(status, err, f"{option} {value}")


def test_device_bogus(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--device", "bogus")
    assert_one_line_error(status, err, "--device 'bogus'", "cpu, cuda")


def test_device_cuda_without_a_gpu(capsys, monkeypatch, tiny_faces: Path, tmp_path: Path
                                   ) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # on a GPU machine too
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--device", "cuda")
    assert_one_line_error(status, err, "--device cuda", "CUDA is not available",
                          "--device cpu")
    status, _, err = run_cli(capsys, "predict", "any.pt", "x.png", "--device", "cuda")
    assert_one_line_error(status, err, "--device cuda")


def test_train_out_is_a_file(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(target),
                             *TINY)
    assert_one_line_error(status, err, "--out", str(target), "not a folder")
    # the built-in data: refused before the data set or the backbone is made
    status, _, err = run_cli(capsys, "train", "--out", str(target), "--no-progress")
    assert_one_line_error(status, err, str(target))
    assert not (tmp_path / "cache").exists()


def test_predict_output_is_a_folder(capsys, tmp_path: Path) -> None:
    # refused before the checkpoint is read (it does not even exist here)
    status, _, err = run_cli(capsys, "predict", str(tmp_path / "none.pt"), "x.png",
                             "-o", str(tmp_path))
    assert_one_line_error(status, err, "--out", str(tmp_path), "a folder")


def test_pretrain_out_is_a_folder_refused_before_training(capsys, tmp_path: Path) -> None:
    # before: the error came after the whole pretraining
    status, _, err = run_cli(capsys, "pretrain", "--out", str(tmp_path), "--epochs", "1")
    assert_one_line_error(status, err, "--out", str(tmp_path), "a folder")
    assert not (tmp_path / "cache").exists()  # no data set generated either


def test_noise_file_is_a_folder(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--noise", "0",  # TINY's 0.2 and a
                             "--noise-file", str(tmp_path))  # noise file are refused together
    assert_one_line_error(status, err, "--noise-file", str(tmp_path), "a folder, not a file")
    assert not (tmp_path / "run").exists()


def test_missing_data_folder_is_named(capsys, tmp_path: Path) -> None:
    status, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "nowhere"), *TINY,
                             "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "nowhere")


def test_debug_shows_the_traceback(capsys) -> None:
    with pytest.raises(ValueError, match="lr_gamma=-1"):
        run_cli(capsys, "--debug", "train", "--lr-gamma", "-1")
    with pytest.raises(ValueError, match="lr_gamma=-1"):
        run_cli(capsys, "train", "--lr-gamma", "-1", "--debug")


# ----------------------------------------------------------------------------- issue 28


def test_noise_file_with_noise_is_refused(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    # issue 28, item 6; before: --noise 0.3 was dropped without a word
    noise_file = tmp_path / "noise.txt"
    noise_file.write_text("train_00001.jpg 1\n")
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--noise-file", str(noise_file),
                             "--noise", "0.3")
    assert_one_line_error(status, err, "--noise 0.3", f"--noise-file {noise_file}",
                          "give one of them")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("noise,num_classes,warns", [
    (0.99, 7, True), (6 / 7, 7, True), (0.85, 7, False), (0.5, 2, True), (0.45, 2, False)])
def test_noise_at_or_above_chance_warns(noise: float, num_classes: int, warns: bool) -> None:
    # issue 28, item 7; before: --noise 0.99 was accepted without a word
    limit = f"{(num_classes - 1) / num_classes:.3f}"
    if warns:
        with pytest.warns(UserWarning, match=rf"noise={noise:g} is at or above \(K-1\)/K = "
                                             rf"{limit} for K = {num_classes} classes"):
            TrainConfig(data="x", noise=noise, num_classes=num_classes)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            TrainConfig(data="x", noise=noise, num_classes=num_classes)


def test_noise_at_or_above_chance_warns_once_in_one_line(capsys, tiny_faces: Path,
                                                         tmp_path: Path) -> None:
    # issue 28, item 7 (and item 10, the form of a warning): one line, no source line, once
    # (the configuration is checked again each time the command copies it)
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--epochs", "1", "--noise", "0.99")
    assert status == 0
    assert err.splitlines() == [
        "noisylabel-fer: warning: noise=0.99 is at or above (K-1)/K = 0.857 for K = 7 "
        "classes: with symmetric noise that high a label is no more likely to be the true "
        "class than any other class (above it, less likely), so the labels are no better than "
        "random (worse above it)"]


def test_batch_size_one_names_batchnorm(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    # issue 28, item 4; before: torch's "Expected more than 1 value per channel when training"
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out",
                             str(tmp_path / "run"), *TINY, "--batch-size", "1")
    assert_one_line_error(status, err, "--batch-size 1", "BatchNorm cannot train on batches of "
                          "one image at 16 px", "2 or more")
    assert "Expected more than 1 value" not in err and not (tmp_path / "run").exists()
    status, _, err = run_cli(capsys, "pretrain", "--batch-size", "1", "--epochs", "1")
    assert_one_line_error(status, err, "--batch-size 1", "BatchNorm", "at 32 px")
    assert TrainConfig(data="x", batch_size=1, image_size=33).batch_size == 1  # not 1x1 there


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_evaluate_a_file_that_is_not_a_checkpoint(capsys, tmp_path: Path) -> None:
    # issue 28, item 5; before: torch's advice to load with weights_only=False was repeated
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    arrays = tmp_path / "arrays.pt"
    torch.save({"x": np.zeros(3)}, arrays)
    for path, cause in ((text, "not a file written by torch.save"),
                        (arrays, "only tensors and plain values are loaded")):
        for command in ("evaluate", "predict"):
            status, _, err = run_cli(capsys, command, str(path), *(
                ["x.png"] if command == "predict" else []), "--device", "cpu")
            assert_one_line_error(status, err, str(path), cause)
            assert "weights_only" not in err and "add_safe_globals" not in err


def test_export_takes_the_format_from_the_suffix(capsys, monkeypatch, finished_run: Path,
                                                 tmp_path: Path) -> None:
    # issue 28, item 1; before: TorchScript written under x.onnx, said "(torchscript)"
    out = tmp_path / "x.onnx"
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails: the ONNX path is taken
    status, _, err = run_cli(capsys, "export", str(finished_run), "--out", str(out))
    assert status == 2 and err.strip() == f"noisylabel-fer export: error: {ONNX_HINT}"
    assert not out.exists()
    status, _, err = run_cli(capsys, "export", str(finished_run), "--out", str(out),
                             "--format", "torchscript")
    assert_one_line_error(status, err, "--format torchscript", f"--out {out}", ".onnx",
                          "leave out --format")
    assert not out.exists()


@pytest.mark.parametrize("given,out,expected", [
    (None, "x.onnx", "onnx"), (None, "X.ONNX", "onnx"), (None, "x.pt", "torchscript"),
    (None, "model", "torchscript"), (None, None, "torchscript"), ("onnx", None, "onnx"),
    ("onnx", "x.onnx", "onnx"), ("torchscript", "x.pth", "torchscript")])
def test_export_format_of_the_file_name(given: str | None, out: str | None,
                                       expected: str) -> None:
    assert output_format(given, out) == expected


@pytest.mark.parametrize("given,out", [("torchscript", "x.onnx"), ("onnx", "x.pt")])
def test_export_format_disagreeing_with_the_file_name(given: str, out: str) -> None:
    with pytest.raises(ValueError, match=rf"--format {given} and --out {out} disagree"):
        output_format(given, out)


def test_export_out_is_a_folder(capsys, tmp_path: Path) -> None:
    # issue 28, item 3; before: the error named an internal temporary file
    status, _, err = run_cli(capsys, "export", str(tmp_path / "none.pt"), "--out", str(tmp_path))
    assert_one_line_error(status, err, f"--out {tmp_path}", "a folder; give a file name")
    assert ".tmp" not in err
