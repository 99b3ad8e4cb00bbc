"""Tests of the ``noisylabel-fer`` command: train / evaluate / predict in-process, --help installed."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from noisylabel.apps.fer import cli
from noisylabel.apps.fer import config as fer_config
from noisylabel.apps.fer.config import PretrainConfig, TrainConfig

TINY = ["--image-size", "16", "--batch-size", "16", "--device", "cpu", "--no-progress",
        "--no-tensorboard", "--seed", "1"]


@dataclass
class Run:
    """A finished ``noisylabel-fer train`` run: its folder and what it printed."""

    out: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def run(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Two epochs of ``full`` without the progress bar, TensorBoard asked for but not importable."""
    out = tmp_path_factory.mktemp("run")
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        mp.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails: not installed
        status = cli.main(["train", "--data", str(tiny_faces), "--epochs", "2", "--noise", "0.2",
                           "--variant", "full", "--out", str(out), *TINY, "--tensorboard"])
    assert status == 0, stderr.getvalue()
    return Run(out, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def trained(run: Run) -> Path:
    return run.out


def test_missing_tensorboard_is_said_once_and_recorded_as_off(run: Run) -> None:
    from noisylabel.apps.fer.report import TENSORBOARD_MISSING

    assert TENSORBOARD_MISSING == ("TensorBoard not installed (pip install tensorboard); "
                                   "metrics are in metrics.csv")
    assert run.stderr.count(TENSORBOARD_MISSING) == 1 and TENSORBOARD_MISSING not in run.stdout
    assert json.loads((run.out / "config.json").read_text())["tensorboard"] is False
    assert not (run.out / "tensorboard").exists()


def test_epoch_lines_and_time_estimate_without_the_progress_bar(run: Run) -> None:
    lines = run.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("noisylabel-fer: variant"))
    epoch1 = next(i for i, line in enumerate(lines) if line.startswith("epoch   1  loss"))
    estimate = next(i for i, line in enumerate(lines) if line.startswith("epoch 1 took"))
    epoch2 = next(i for i, line in enumerate(lines) if line.startswith("epoch   2  loss"))
    assert first < epoch1 < estimate < epoch2  # --no-progress hides the bar only
    assert "1 epoch left: about" in lines[estimate] and "in all (done around" in lines[estimate]
    assert sum("took" in line for line in lines) == 1  # once, after the first epoch


def test_train_log_holds_every_line(run: Run) -> None:
    log = (run.out / "train.log").read_text().splitlines()
    text = "\n".join(line.split("  ", 1)[1] for line in log)  # without the time stamps
    for line in run.stdout.splitlines()[:-1]:  # all but the final "outputs in ..." line
        assert line in text, line
    assert "epoch   2  loss" in text and "test accuracy of the target branch" in text
    assert log[0][:4].isdigit()  # time-stamped


def test_train_writes_the_run_outputs(trained: Path, capsys) -> None:
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["variant"] == "full"
    assert summary["regime"] == "from scratch (random initialisation)"
    for name in ("checkpoint.pt", "metrics.csv", "config.json", "curves.png", "confusion.png",
                 "similarity.png"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader(open(trained / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    config = json.loads((trained / "config.json").read_text())
    assert config["noise"] == 0.2 and config["epochs"] == 2 and config["pretrained"] is None


def test_evaluate_prints_accuracy_and_class_table(trained: Path, capsys) -> None:
    assert cli.main(["evaluate", str(trained / "checkpoint.pt"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "test split" in out and "20 images, accuracy" in out
    for name in ("Surprise", "Neutral", "mean class"):
        assert name in out


def test_predict_writes_probabilities(trained: Path, tiny_faces: Path, tmp_path: Path) -> None:
    images = tiny_faces / "Image" / "aligned"
    target = tmp_path / "preds.csv"
    one = sorted(images.glob("test_*.jpg"))[0]
    assert cli.main(["predict", str(trained / "checkpoint.pt"), str(images), str(one),
                     "-o", str(target), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(target)))
    assert len(rows) == 60 + 1
    assert rows[0].keys() >= {"file", "prediction", "Surprise", "Neutral"}
    for row in rows[:5]:
        probs = [float(row[c]) for c in ("Surprise", "Fear", "Disgust", "Happiness", "Sadness",
                                         "Anger", "Neutral")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["prediction"] in row and float(row[row["prediction"]]) == max(probs)
    # the weights-only file of the same epoch predicts the same
    again = tmp_path / "again.csv"
    assert cli.main(["predict", str(trained / "model_last.pt"), str(one), "-o", str(again),
                     "--device", "cpu"]) == 0
    alone = list(csv.DictReader(open(again)))[0]  # a batch of one: other CPU kernels, ~1e-6
    assert (alone["file"], alone["prediction"]) == (rows[-1]["file"], rows[-1]["prediction"])
    for c in ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"):
        assert float(alone[c]) == pytest.approx(float(rows[-1][c]), abs=1e-5)


def test_errors_name_the_file(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("nope")
    assert cli.main(["evaluate", str(bogus)]) == 2
    assert "bogus.pt" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "nowhere"), *TINY]) == 2
    assert "nowhere" in capsys.readouterr().err


def _default_train_config(*argv: str) -> TrainConfig:
    """What ``noisylabel-fer train ARGV`` trains on: the parsed options, then the built-in data
    the command fills in (``--pretrained`` left out: the built-in backbone)."""
    args = cli.build_parser().parse_args(["train", *argv])
    return cli.built_in_data(cli.train_config_from_args(args), backbone=args.pretrained is None)


def test_default_train_uses_the_cached_synthetic_set(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path))
    monkeypatch.setitem(fer_config.SYNTHETIC_BACKBONE, "epochs", 1)
    monkeypatch.setitem(fer_config.SYNTHETIC_BACKBONE, "n_faces", 14)
    monkeypatch.setattr(fer_config, "SYNTHETIC_DEFAULTS",
                        {"n_train": 14, "n_test": 7, "image_size": 16, "n_identities": 3})
    config = _default_train_config()
    root = Path(config.data)
    assert root.parent == tmp_path and root.name.startswith("synthetic-")
    assert (root / "EmoLabel" / "list_patition_label.txt").is_file()
    assert (config.noise, config.variant, config.image_size, config.epochs) == (0.3, "full", 32, 10)
    assert config.augment == "flip"
    # the paper's regime on the built-in data: a backbone pretrained once on other faces
    backbone = Path(config.pretrained)
    assert backbone.parent.parent == tmp_path and backbone.is_file()
    info = json.loads(Path(f"{backbone}.json").read_text())
    assert info["task"] == fer_config.SYNTHETIC_BACKBONE["task"] == "expression" and info["sha256"] in Path(f"{backbone}.sha256").read_text()
    mtime = backbone.stat().st_mtime_ns
    again = _default_train_config("--no-progress")
    assert again.pretrained == config.pretrained and backbone.stat().st_mtime_ns == mtime  # cached
    # other generator settings: a new data set and a new backbone, the old ones untouched
    monkeypatch.setattr(fer_config, "SYNTHETIC_DEFAULTS",
                        {"n_train": 14, "n_test": 7, "image_size": 16, "n_identities": 4})
    changed = _default_train_config()
    assert changed.data != config.data and changed.pretrained != config.pretrained
    assert Path(changed.pretrained).is_file() and backbone.stat().st_mtime_ns == mtime
    assert _default_train_config("--pretrained", "none").pretrained is None
    rafdb = cli.train_config_from_args(cli.build_parser().parse_args(["train", "--data", "x"]))
    assert (rafdb.image_size, rafdb.epochs, rafdb.batch_size, rafdb.lr) == (100, 75, 32, 1e-3)
    assert (rafdb.augment, rafdb.lr_gamma, rafdb.t, rafdb.beta) == ("randaugment", 0.9, 0.7, 3.0)


def test_parsing_only_parses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 26: ``train_config_from_args`` makes no data set, no backbone, no folder, and does
    not look at the run folder (a run left in the default folder does not stop it)."""
    leftover = Path("runs/fer/synthetic-full-noise03-seed0")
    leftover.mkdir(parents=True)
    (leftover / "checkpoint.pt").write_bytes(b"the README's main job ran here")
    before = sorted(p for p in tmp_path.rglob("*"))
    config = cli.train_config_from_args(cli.build_parser().parse_args(["train"]))
    assert config.data == "" and config.pretrained is None
    assert Path(config.out) == leftover  # the name; the command numbers it
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_the_suite_passes_after_the_readme_main_job(tmp_path: Path) -> None:
    """Issue 26, the regression: ``noisylabel-fer train`` in a folder left
    ``runs/fer/synthetic-full-noise03-seed0``, then the README's test command ran there and
    this module's default-data test failed ("already holds a run")."""
    leftover = tmp_path / "clone" / "runs" / "fer" / "synthetic-full-noise03-seed0"
    leftover.mkdir(parents=True)
    (leftover / "checkpoint.pt").write_bytes(b"the README's main job ran here")
    test = f"{Path(__file__)}::test_default_train_uses_the_cached_synthetic_set"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "-p",
                           "no:cacheprovider", test], cwd=leftover.parents[2],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in leftover.iterdir()) == ["checkpoint.pt"]


def test_installed_console_script_help() -> None:
    bindir = str(Path(sys.executable).parent)
    exe = shutil.which("noisylabel-fer", path=bindir) or shutil.which("noisylabel-fer")
    assert exe is not None, "noisylabel-fer is not installed (pip install .)"
    done = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in ("--data", "--noise", "--paper-exact", "--pretrained", "--resume",
                   "--noise-warmup"):
        assert option in done.stdout


@pytest.mark.parametrize("command,config_cls", [("train", TrainConfig),
                                                ("pretrain", PretrainConfig)])
def test_every_parser_default_is_its_dataclass_field(command: str, config_cls: type) -> None:
    import dataclasses

    args = cli.build_parser().parse_args([command])
    for f in dataclasses.fields(config_cls):
        assert getattr(args, f.name) == f.default, f.name
    assert args._given == ()  # nothing given: the preset decides


def test_options_left_out_come_from_the_preset() -> None:
    parse = cli.build_parser().parse_args
    rafdb = cli.train_config_from_args(parse(["train", "--data", "x", "--pretrained", "none",
                                              "--epochs", "75", "--no-gate"]))
    assert rafdb == TrainConfig(data="x", epochs=75, gate=False,
                                out=str(Path("runs/fer/x-full-noise0-seed0")))
    wide = cli.train_config_from_args(parse(["train", "--data", "x", "--preset", "rafdb-224",
                                             "--pretrained", "none", "--out", "o"]))
    assert wide == fer_config.train_preset("rafdb-224", data="x", out="o")


def test_help_imports_neither_torch_nor_timm() -> None:
    code = ("import sys\n"
            "from noisylabel.apps.fer import cli\n"
            "try:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    cli.main(['pretrain', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'timm' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "False False"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from noisylabel._version import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"noisylabel-fer {__version__}"


def _help(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    return capsys.readouterr().out


def test_help_text_has_no_percent_artefacts(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [[], ["train"], ["pretrain"], ["evaluate"], ["predict"], ["prepare-ferplus"],
                ["export"]]
    for command in commands:
        text = _help(command, capsys)
        assert "%%" not in text and "%(" not in text, command
    assert "30% noise" in " ".join(_help([], capsys).split())  # one %, wherever it wraps
    assert "10% of train/" in " ".join(_help(["pretrain"], capsys).split())


def test_every_subcommand_writes_with_out(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["train"], ["pretrain"], ["predict", "c.pt", "x"],
                    ["prepare-ferplus", "a.csv", "b.csv"], ["export", "c.pt"]):
        assert "--out" in _help(command[:1], capsys), command
        for spelling in ("--out", "-o"):
            args = cli.build_parser().parse_args([*command, spelling, "target"])
            assert args.out == "target", (command, spelling)


def test_old_spellings_still_parse_to_the_same_config(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    parse = cli.build_parser().parse_args
    base = ["train", "--data", "x", "--pretrained", "none", "--out", "o"]
    new = cli.train_config_from_args(parse([*base, "--noise-warmup", "5"]))
    assert capsys.readouterr().err.count("deprecated") == 0
    old = cli.train_config_from_args(parse([*base, "--warmup", "5"]))
    assert old == new and new.warmup == 5
    assert "--warmup is deprecated and will be removed; use --noise-warmup" in \
        capsys.readouterr().err
    assert parse(["predict", "c.pt", "x", "--output", "p.csv"]).out == "p.csv"
    assert "--output is deprecated" in capsys.readouterr().err
    # the old names are accepted but not offered
    assert "--warmup " not in _help(["train"], capsys).replace("formerly --warmup", "")
    assert "--output" not in _help(["predict"], capsys)


def test_boolean_options_are_pairs_noted_as_given() -> None:
    parse = cli.build_parser().parse_args
    args = parse(["train", "--no-gate", "--quiet", "--no-progress"])
    assert (args.gate, args.quiet, args.progress) == (False, True, False)
    assert set(args._given) == {"gate", "quiet", "progress"}
    assert parse(["train", "--no-freeze-trunk"]).freeze_trunk is False
    assert parse(["train"]).freeze_trunk is None


def test_pretrain_defaults_are_the_backbone_train_builds(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """``noisylabel-fer pretrain`` alone pretrains what ``train`` pretrains for itself: same
    data, task, epochs, size, schedule and augmentation (only the output file differs)."""
    from noisylabel.apps.fer import pretrain, synthetic

    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path))
    made: list[PretrainConfig] = []

    def fake_pretrain(config: PretrainConfig) -> dict:
        made.append(config)
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        return {"path": config.out, "sha256": "0", "test_acc": 0.5, "num_classes": 7,
                "task": config.task}

    monkeypatch.setattr(synthetic, "generate_dataset", lambda root, config: Path(root))
    monkeypatch.setattr(pretrain, "pretrain", fake_pretrain)
    assert cli.main(["pretrain"]) == 0
    built = pretrain.synthetic_backbone(fer_config.SYNTHETIC_DEFAULTS, tmp_path)
    by_cli, by_train = made
    assert (by_cli.task, by_cli.epochs) == ("expression", 10)
    assert fer_config.SYNTHETIC_BACKBONE == {"task": "expression", "epochs": 10, "n_faces": 2000}
    differ = {k for k in PretrainConfig.__dataclass_fields__
              if getattr(by_cli, k) != getattr(by_train, k)}
    assert differ == {"out"} and Path(by_train.out) == built
