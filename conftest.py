"""Every test runs in its own temporary working folder, with a cache that is not the user's.

Whatever a test (or the code it calls) writes to a relative path, such as the default run
folder ``runs/fer/...`` or ``pretrained/``, goes to the test's ``tmp_path``; whatever it caches
goes to ``tmp_path / "noisylabel-home"`` (``NOISYLABEL_HOME``, created only when used). So the
suite passes the same from a fresh clone, from a folder where ``noisylabel-fer train`` has run,
and on a machine whose ``~/.cache/noisylabel`` holds anything. The synthetic sets the tests
share are session fixtures in their own temporary folders (``tiny_faces``), not in the cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_folder_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOISYLABEL_HOME", str(tmp_path / "noisylabel-home"))
