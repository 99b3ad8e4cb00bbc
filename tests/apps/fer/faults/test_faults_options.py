"""Issue 18, bad options and paths: each ends in one line naming the culprit, exit 2, before
any work starts (no training, no data generation, no pretraining)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from faults_support import TINY, assert_one_line_error, run_cli

from noisylabel.apps.fer import pretrain as pretrain_module
from noisylabel.apps.fer.config import PretrainConfig, TrainConfig


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
                             str(tmp_path / "run"), *TINY, "--noise-file", str(tmp_path))
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
