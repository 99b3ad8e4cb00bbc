"""Fixtures of the fault tests: a finished tiny run and private copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from faults_support import tiny_config

from noisylabel.apps.fer.train import train


@pytest.fixture(scope="session")
def finished_run(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch baseline run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(tiny_faces, out))
    return out


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))
