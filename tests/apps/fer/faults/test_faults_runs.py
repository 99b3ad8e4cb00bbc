"""Issue 18 (and issue 19, item 3), faults during a run: non-finite training, run folders that
must not be overwritten, resuming (paths, epochs, ``--resume RUN_DIR``), Ctrl-C, a full disk, a
killed checkpoint write, file modes. Issue 28: a training split missing classes of the test
split, and the final list of outputs. Each training here is one or two epochs at 16 px."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
from faults_support import TINY, assert_one_line_error, run_cli, tiny_config

from noisylabel.apps.fer import train as train_module
from noisylabel.apps.fer.engine import NonFiniteError, load_checkpoint
from noisylabel.apps.fer.layouts import CLASS_NAMES
from noisylabel.apps.fer.run_folder import atomic_torch_save
from noisylabel.apps.fer.train import load_data, missing_classes_warning, train


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


# ----------------------------------------------------------------------------- non-finite


def test_nan_backbone_weights_are_refused(tiny_faces: Path, tmp_path: Path) -> None:
    # before: exit 0, NaN in metrics.csv as empty cells, a chance-level table printed as normal
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    backbone = tmp_path / "nan_backbone.pth"
    torch.save({"state_dict": state}, backbone)
    with pytest.raises(NonFiniteError, match=r"nan_backbone\.pth.*not finite"):
        train(tiny_config(tiny_faces, tmp_path / "run", pretrained=str(backbone)))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_nan_loss_stops_before_the_checkpoint(monkeypatch, run_copy: Path, tiny_faces: Path
                                                ) -> None:
    good = _bytes(run_copy / "checkpoint.pt")
    real = train_module.compute_loss

    def diverging(*args, **kwargs):
        loss, *rest = real(*args, **kwargs)
        return (loss * float("nan"), *rest)

    monkeypatch.setattr(train_module, "compute_loss", diverging)
    with pytest.raises(NonFiniteError, match=r"epoch 2/2, batch 1/3: the loss is not finite.*"
                                             r"lower --lr"):
        train(tiny_config(tiny_faces, run_copy, epochs=2, resume=True))
    assert _bytes(run_copy / "checkpoint.pt") == good  # the last good checkpoint stays
    assert load_checkpoint(run_copy / "checkpoint.pt")["epoch"] == 1


# ----------------------------------------------------------------------------- run folders


def test_a_finished_run_is_not_overwritten(capsys, run_copy: Path, tiny_faces: Path) -> None:
    before = {p.name: _bytes(p) for p in run_copy.iterdir() if p.is_file()}
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(run_copy),
                             *TINY, "--epochs", "1")
    assert_one_line_error(status, err, str(run_copy), "--resume", "--overwrite")
    assert {p.name: _bytes(p) for p in run_copy.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_run(capsys, run_copy: Path, tiny_faces: Path) -> None:
    (run_copy / "model_best.pt").write_bytes(b"from the old run")
    status, _, _ = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(run_copy),
                           *TINY, "--epochs", "1", "--seed", "2", "--overwrite")
    assert status == 0
    assert not (run_copy / "model_best.pt").exists()  # no file of the old run is left
    assert load_checkpoint(run_copy / "checkpoint.pt")["config"]["seed"] == 2


def test_resume_with_a_mistyped_out_is_an_error(capsys, finished_run: Path, tiny_faces: Path
                                                ) -> None:
    # before: started from scratch without a word
    typo = finished_run.parent / "rnu"
    status, _, err = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(typo),
                             *TINY, "--resume")
    assert_one_line_error(status, err, str(typo), "no run to continue")
    assert not typo.exists()
    status, _, err = run_cli(capsys, "train", "--resume", str(typo))
    assert_one_line_error(status, err, str(typo))


def test_resume_with_more_epochs_is_recorded_everywhere(run_copy: Path, tiny_faces: Path
                                                        ) -> None:
    # before: config.json said 2 epochs while summary.json said 3
    train(tiny_config(tiny_faces, run_copy, epochs=2, resume=True))
    config = json.loads((run_copy / "config.json").read_text())
    summary = json.loads((run_copy / "summary.json").read_text())
    assert config["epochs"] == summary["epochs"] == 2 and config["resumed_after_epoch"] == 1
    assert load_checkpoint(run_copy / "checkpoint.pt")["config"]["epochs"] == 2
    with pytest.raises(ValueError, match=r"epochs=1: the run has already trained 2 epochs"):
        train(tiny_config(tiny_faces, run_copy, epochs=1, resume=True))


@pytest.mark.parametrize("spelling", ["trailing-slash", "relative", "moved"])
def test_resume_finds_the_run_however_its_folder_is_named(monkeypatch, run_copy: Path,
                                                          tiny_faces: Path, spelling: str
                                                          ) -> None:
    # before: "options changed (out: ...)", and the run could never be resumed
    if spelling == "trailing-slash":
        out = f"{run_copy}/"
    elif spelling == "relative":
        monkeypatch.chdir(run_copy.parent)
        out = run_copy.name
    else:
        out = str(shutil.move(run_copy, run_copy.parent / "moved"))
    result = train(tiny_config(tiny_faces, Path(out), resume=True))  # epochs unchanged: 1
    assert len(result["history"]) == 1


# ----------------------------------------------------------------------------- Ctrl-C, resume


@pytest.fixture(scope="module")
def interrupted(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 2-epoch CLI run interrupted by Ctrl-C during epoch 2: (status, stderr, run folder)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    real = train_module.run_epoch

    def ctrl_c_in_epoch_2(epoch, *args, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(epoch, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, _Capture() as cap:
        mp.setattr(train_module, "run_epoch", ctrl_c_in_epoch_2)
        from noisylabel.apps.fer import cli

        status = cli.main(["train", "--data", str(tiny_faces), "--out", str(out), *TINY,
                           "--epochs", "2", "--variant", "full", "--beta", "1", "--no-gate"])
    return status, cap.err, out


class _Capture:
    """stderr of a block, for a module-scoped fixture (capsys is function-scoped)."""

    def __enter__(self) -> _Capture:
        import contextlib
        import io

        self._buf = io.StringIO()
        self._redirect = contextlib.redirect_stderr(self._buf)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._redirect.__exit__(*exc)
        self.err = self._buf.getvalue()


def test_ctrl_c_ends_in_one_line_saying_how_to_resume(interrupted) -> None:
    # before: a 40-line KeyboardInterrupt traceback, no hint that --resume continues the run
    status, err, out = interrupted
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 130
    assert "Traceback" not in err
    assert lines[-1] == (f"noisylabel-fer: interrupted; continue from the last checkpoint "
                         f"with: noisylabel-fer train --resume {out}")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_resume_run_dir_alone_equals_the_uninterrupted_run(capsys, interrupted,
                                                           tiny_faces: Path, tmp_path: Path
                                                           ) -> None:
    # issue 19, item 3: the checkpoint's own configuration, nothing retyped
    _, _, out = interrupted
    straight = tmp_path / "straight"
    status, _, _ = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(straight),
                           *TINY, "--epochs", "2", "--variant", "full", "--beta", "1",
                           "--no-gate")
    assert status == 0
    status, _, err = run_cli(capsys, "train", "--resume", str(out), "--lr", "0.5")
    assert_one_line_error(status, err, "--lr 0.5", "the run's: 0.001")  # must agree
    status, stdout, _ = run_cli(capsys, "train", "--resume", str(out))
    assert status == 0 and "resuming after epoch 1" in stdout
    a, b = (load_checkpoint(d / "checkpoint.pt") for d in (straight, out))
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-6, rtol=0, msg=key)
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        for key in ("loss", "train_acc", "test_acc", "w_mean_clean"):
            assert row_a[key] == pytest.approx(row_b[key], abs=1e-6), key


# ----------------------------------------------------------------------------- disk faults


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _zip_writer_on_full_disk(*args, **kwargs):
    # what the real torch.save raises on a full disk: its zip writer's RuntimeError, while
    # handling the ENOSPC of the write (seen in a CI run whose scratch disk filled up); raised,
    # as torch does, with the ENOSPC as its context and no cause, hence no "from"
    message = "[enforce fail at inline_container.cc:672] . unexpected pos"
    try:
        _full_disk()
    except OSError:
        raise RuntimeError(message)  # noqa: B904


@pytest.mark.parametrize("save", [_full_disk, _zip_writer_on_full_disk])
def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(capsys, monkeypatch,
                                                                  run_copy: Path, save) -> None:
    # before: a torch traceback with no word of the disk or the file
    good = _bytes(run_copy / "checkpoint.pt")
    monkeypatch.setattr(torch, "save", save)
    status, _, err = run_cli(capsys, "train", "--resume", str(run_copy), "--epochs", "2")
    assert_one_line_error(status, err, str(run_copy / "checkpoint.pt"),
                          "No space left on device", "disk is full")
    assert _bytes(run_copy / "checkpoint.pt") == good
    assert not list(run_copy.glob(".*.tmp"))


def test_a_permission_error_names_the_file(capsys, monkeypatch, run_copy: Path) -> None:
    real = os.replace

    def denied(src, dst):
        if str(dst).endswith("config.json"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", denied)
    status, _, err = run_cli(capsys, "train", "--resume", str(run_copy))
    assert_one_line_error(status, err, str(run_copy / "config.json"), "Permission denied")
    assert not list(run_copy.glob(".*.tmp"))


def test_a_killed_checkpoint_write_leaves_no_tmp_behind(capsys, run_copy: Path) -> None:
    # before: a .tmp file of up to 266 MB that no later run removed
    stale = run_copy / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    status, stdout, _ = run_cli(capsys, "train", "--resume", str(run_copy))
    assert status == 0 and not stale.exists()
    assert f"removed {stale}" in stdout


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_umask(capsys, run_copy: Path, tmp_path: Path, umask: int,
                                  mode: int) -> None:
    # before: every output was 0600 whatever the umask
    old = os.umask(umask)
    try:
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "checkpoint.pt")
        status, _, _ = run_cli(capsys, "train", "--resume", str(run_copy))
    finally:
        os.umask(old)
    assert status == 0
    for path in (tmp_path / "checkpoint.pt", run_copy / "config.json",
                 run_copy / "summary.json"):
        assert path.stat().st_mode & 0o777 == mode, path


# ----------------------------------------------------------------------------- issue 28


def test_a_one_class_training_split_warns(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    # issue 28, item 2; before: it trained without a word (full: AUC(w) 0.500)
    root = Path(shutil.copytree(tiny_faces, tmp_path / "faces",
                                ignore=shutil.ignore_patterns(".noisylabel_cache")))
    labels = root / "EmoLabel" / "list_patition_label.txt"
    lines = [line.split() for line in labels.read_text().splitlines() if line.strip()]
    labels.write_text("".join(f"{name} {4 if name.startswith('train_') else label}\n"
                              for name, label in lines))
    status, _, err = run_cli(capsys, "train", "--data", str(root), "--out",
                             str(tmp_path / "run"), *TINY, "--epochs", "1")
    assert status == 0, err
    test_classes = sorted({int(label) for name, label in lines if name.startswith("test_")})
    missing = ", ".join(CLASS_NAMES[c - 1] for c in test_classes if c != 4)
    assert err.splitlines() == [
        f"noisylabel-fer: warning: {root}: the training labels hold 1 of the 7 classes "
        f"(Happiness); {missing} occur in the test split but never in training, so the model "
        "cannot learn to predict them"]


def test_every_class_in_training_says_nothing(tiny_faces: Path) -> None:
    splits = load_data(tiny_config(tiny_faces, Path("unused")))
    assert missing_classes_warning(splits["train"], splits["test"]) is None


def test_the_outputs_line_lists_what_is_there(capsys, tiny_faces: Path, tmp_path: Path) -> None:
    # issue 28, item 9; before: "plots" under --no-plots, and model_best.pt never written
    out = tmp_path / "run"
    status, stdout, _ = run_cli(capsys, "train", "--data", str(tiny_faces), "--out", str(out),
                                *TINY, "--epochs", "1")
    assert status == 0
    written = sorted(p.name for p in out.iterdir())
    assert stdout.splitlines()[-1] == (
        f"outputs in {out}: checkpoint.pt, model_last.pt, model_card.json, metrics.csv, "
        "config.json, summary.json, train.log")
    assert written == sorted(["checkpoint.pt", "model_last.pt", "model_card.json", "metrics.csv",
                              "config.json", "summary.json", "train.log"])
