"""Tests of the run folder (issue 26): file names, atomic writes, the new / resume / overwrite
decision, numbered default folders, and the lock that keeps a second writer out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from noisylabel.apps.fer import cli, run_folder
from noisylabel.apps.fer.run_folder import (
    CHECKPOINT,
    LOCK,
    RunFolderInUse,
    atomic_output,
    atomic_write_text,
    claim_next,
    decide,
    lock,
    newest,
    next_folder,
    write_json,
)

# a tiny, fast CLI run (16 px, batch 16, 40 images, CPU, one thread, no plots)
TINY = ["--image-size", "16", "--batch-size", "16", "--device", "cpu", "--no-progress",
        "--no-tensorboard", "--no-plots", "--num-threads", "1", "--pretrained", "none",
        "--variant", "baseline", "--noise", "0.2", "--epochs", "1"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _cli(*argv: str) -> subprocess.Popen:
    """``noisylabel-fer ARGV`` in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "noisylabel.apps.fer.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ----------------------------------------------------------------------------- names, writes


def test_the_run_files_are_named_once() -> None:
    assert run_folder.RUN_FILES == (
        "checkpoint.pt", "model_last.pt", "model_best.pt", "model_card.json", "metrics.csv",
        "config.json", "summary.json", "curves.png", "confusion.png", "similarity.png",
        "train.log")
    assert run_folder.MODEL_FILES == ("model_best.pt", "model_last.pt", "checkpoint.pt")
    assert set(run_folder.WEIGHT_FILES) < set(run_folder.RUN_FILES)
    assert LOCK not in run_folder.RUN_FILES  # --overwrite never removes another run's lock


def test_atomic_writes_leave_no_temp_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "one\n")
    write_json(tmp_path / "b.json", {"z": 1, "a": Path("p")})
    assert (tmp_path / "a.txt").read_text() == "one\n"
    assert (tmp_path / "b.json").read_text() == '{\n  "a": "p",\n  "z": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]


def test_atomic_output_replaces_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(ValueError, match="check failed"), atomic_output(target) as tmp:
        tmp.write_text("new but wrong")
        raise ValueError("check failed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.pt.")
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------- the decision


def test_decide_new_resume_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert decide(run, resume=False, overwrite=False) == "new"
    assert decide(run, resume=False, overwrite=True) == "overwrite"
    with pytest.raises(ValueError, match=r"^--resume: there is no run to continue in .*run "
                                         r"\(no checkpoint\.pt\)"):
        decide(run, resume=True, overwrite=False)
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"a run")
    assert decide(run, resume=True, overwrite=False) == "resume"
    assert decide(run, resume=False, overwrite=True) == "overwrite"
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint\.pt\): pass "
                                         r"--resume to continue it, --overwrite to replace it, "
                                         r"or another --out"):
        decide(run, resume=False, overwrite=False)
    with pytest.raises(ValueError, match="give one of them"):
        decide(run, resume=True, overwrite=True)


# ----------------------------------------------------------------------------- numbered folders


def test_numbered_folders_count_up_and_the_newest_is_the_highest(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "fer" / "synthetic-full-noise03-seed0"
    assert newest(base) is None and next_folder(base) == base
    made = []
    for _ in range(3):
        with claim_next(base) as folder:
            (folder / "train.log").write_text("a run")
            made.append(folder)
    assert [p.name for p in made] == [base.name, f"{base.name}-2", f"{base.name}-3"]
    assert newest(base) == made[-1]
    (base.parent / "synthetic-full-noise03-seed0-10").mkdir()  # not in the sequence:
    (base.parent / "synthetic-full-noise03-seed00").mkdir()  # other names are left alone
    assert newest(base).name == f"{base.name}-10"
    made[1].rename(tmp_path / "moved")  # a removed run's number is not given again
    assert next_folder(base).name == f"{base.name}-11"


def test_a_claimed_folder_left_empty_is_removed(tmp_path: Path) -> None:
    base = tmp_path / "run"
    with pytest.raises(RuntimeError), claim_next(base) as folder:
        assert folder.is_dir()
        raise RuntimeError("the run failed before writing anything")
    assert not base.exists() and next_folder(base) == base


def test_default_out_twice_gives_two_folders_resume_and_overwrite_take_the_newest(
        tiny_faces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = Path("runs/fer") / f"{tiny_faces.name}-baseline-noise02-seed0"
    assert cli.main(["train", "--data", str(tiny_faces), *TINY]) == 0
    first = capsys.readouterr().out
    assert "is taken" not in first and f"outputs in {base}:" in first
    assert cli.main(["train", "--data", str(tiny_faces), *TINY]) == 0
    second = capsys.readouterr().out
    again = base.with_name(f"{base.name}-2")
    assert second.splitlines()[0] == f"this run goes to {again} ({base} is taken)"
    assert f"outputs in {again}:" in second
    assert (base / CHECKPOINT).is_file() and (again / CHECKPOINT).is_file()
    assert cli.main(["train", "--data", str(tiny_faces), *TINY[:-1], "2", "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "resuming after epoch 1" in resumed and f"outputs in {again}:" in resumed
    assert json.loads((base / "summary.json").read_text())["epochs"] == 1  # untouched
    assert json.loads((again / "summary.json").read_text())["epochs"] == 2
    assert cli.main(["train", "--data", str(tiny_faces), *TINY, "--overwrite"]) == 0
    assert f"removed the previous run's files from {again}" in capsys.readouterr().out
    assert json.loads((again / "summary.json").read_text())["epochs"] == 1  # the newest, again
    assert not base.with_name(f"{base.name}-3").exists()
    # an explicit --out keeps the refusal
    assert cli.main(["train", "--data", str(tiny_faces), *TINY, "--out", str(base)]) == 2
    assert "already holds a run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the lock


def test_a_held_folder_refuses_a_second_writer(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with lock(out) as held:
        assert held == out and (out / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunFolderInUse) as refused, lock(out):
            pass  # another open file description: refused as another process would be
        assert str(refused.value) == (f"{out} is in use by another run (pid {os.getpid()}): "
                                      "wait for it to finish, or give another --out")
        assert (out / LOCK).is_file()  # the refused attempt took nothing away
    assert not out.exists()  # the lock made the folder; left empty, it goes again
    out.mkdir()
    with lock(out):
        (out / "train.log").write_text("a run")
    assert sorted(p.name for p in out.iterdir()) == ["train.log"]  # no lock file left


def test_a_crashed_holder_leaves_no_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = ("import os, signal, sys\n"
            "from noisylabel.apps.fer.run_folder import lock\n"
            "with lock(sys.argv[1]):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(out)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert (out / LOCK).is_file()  # the file stays behind, the lock died with the process
    with lock(out):
        assert (out / LOCK).read_text() == f"{os.getpid()}\n"
    assert not (out / LOCK).exists()


def test_train_into_a_held_folder_is_refused_in_one_line(tiny_faces: Path, tmp_path: Path
                                                         ) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with lock(out):
        before = _files(out)
        proc = _cli("train", "--data", str(tiny_faces), "--out", str(out), *TINY)
        _, err = proc.communicate(timeout=300)
        assert _files(out) == before  # nothing written, nothing removed
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [
        f"noisylabel-fer: error: {out} is in use by another run (pid {os.getpid()}): wait for "
        "it to finish, or give another --out"]


@pytest.mark.slow
def test_two_runs_started_together_into_one_out(tiny_faces: Path, tmp_path: Path) -> None:
    """Before: both exited 0 and mixed their files. Now one run is intact and the other is
    refused (by the lock, or, when it comes after the first has finished, by the finished
    run's checkpoint)."""
    out = tmp_path / "run"
    procs = {seed: _cli("train", "--data", str(tiny_faces), "--out", str(out), *TINY[:-1], "2",
                        "--seed", str(seed)) for seed in (1, 2)}
    done = {seed: (*proc.communicate(timeout=600), proc.returncode)
            for seed, proc in procs.items()}
    (winner,) = [seed for seed, (_, _, rc) in done.items() if rc == 0]
    (loser,) = [seed for seed, (_, _, rc) in done.items() if rc != 0]
    _, err, rc = done[loser]
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("noisylabel-fer: error: "), err
    assert str(out) in lines[0] and ("in use by another run (pid" in lines[0]
                                     or "already holds a run" in lines[0])
    from noisylabel.apps.fer.engine import load_checkpoint

    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["config"]["seed"] == winner and ckpt["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["seed"] == winner
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header and two epochs
    log = (out / "train.log").read_text()
    assert log.count("noisylabel-fer: variant") == 1 and log.count("epoch   1  loss") == 1
    assert f"outputs in {out}:" in done[winner][0]
    assert not (out / LOCK).exists()
