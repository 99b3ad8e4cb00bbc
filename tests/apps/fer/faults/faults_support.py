"""Helpers of the fault tests (issue 18): tiny settings, a CLI runner, the one-line check."""

from __future__ import annotations

from pathlib import Path

import pytest

from noisylabel.apps.fer import cli
from noisylabel.apps.fer.config import TrainConfig

# CLI options of a tiny, fast run (16 px, batch 16, 40 images, CPU, one thread, no plots)
TINY = ["--image-size", "16", "--batch-size", "16", "--device", "cpu", "--no-progress",
        "--no-tensorboard", "--no-plots", "--num-threads", "1", "--pretrained", "none",
        "--seed", "1", "--variant", "baseline", "--noise", "0.2"]


def tiny_config(root: Path, out: Path, **kw) -> TrainConfig:
    """The same tiny run through the Python API."""
    base = dict(data=str(root), out=str(out), image_size=16, batch_size=16, epochs=1,
                noise=0.2, device="cpu", progress=False, tensorboard=False, plots=False,
                eval_batch_size=32, seed=1, variant="baseline", num_threads=1)
    base.update(kw)
    return TrainConfig(**base)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``noisylabel-fer ARGV`` in-process: exit status, stdout, stderr."""
    capsys.readouterr()
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *names: str) -> None:
    """Exit 2 and one line ``noisylabel-fer: error: ...`` naming each of ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("noisylabel-fer: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
