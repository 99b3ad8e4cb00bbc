"""Every test runs in its own temporary working folder, with a cache that is not the user's.

Whatever a test (or the code it calls) writes to a relative path, such as the default run
folder ``runs/fer/...`` or ``pretrained/``, goes to the test's ``tmp_path``; whatever it caches
goes to ``tmp_path / "noisylabel-home"`` (``NOISYLABEL_HOME``, created only when used). So the
suite passes the same from a fresh clone, from a folder where ``noisylabel-fer train`` has run,
and on a machine whose ``~/.cache/noisylabel`` holds anything. The synthetic sets the tests
share are session fixtures in their own temporary folders (``tiny_faces``), not in the cache.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"


@pytest.fixture(autouse=True)
def _own_folder_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path / "noisylabel-home"))


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest):
    """The script ``benchmarks/<BENCHMARK>.py`` imported as a module, ``BENCHMARK`` named by the
    requesting test module (benchmark scripts are not part of the package)."""
    name = request.module.BENCHMARK
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
