"""The built wheel holds the package (the FER application included) and nothing that would
collide in site-packages, and its console command is declared."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("noisylabel-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_only_the_noisylabel_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    packages = {t for t in top if not t.endswith((".dist-info", ".data"))}
    assert packages == {"noisylabel"}, f"unexpected top-level entries in the wheel: {packages}"


def test_wheel_contains_the_fer_application(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in ("cli", "config", "layouts", "image_cache", "augment", "engine", "model", "train",
                   "report", "synthetic", "pretrain", "inference", "export"):
        assert f"noisylabel/apps/fer/{module}.py" in names


def test_wheel_declares_the_console_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "noisylabel-fer = noisylabel.apps.fer.cli:main" in text


def test_wheel_carries_the_license(wheel: zipfile.ZipFile) -> None:
    assert any(n.endswith("LICENSE") for n in wheel.namelist())


def test_wheel_ships_the_typing_marker(wheel: zipfile.ZipFile) -> None:
    assert "noisylabel/py.typed" in wheel.namelist()  # PEP 561: type checkers read our hints
