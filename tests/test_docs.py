"""The documentation cannot silently go stale: every ``python`` code block of the README and
the docs pages is executed, and every public name appears in the API reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import noisylabel

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    """The bodies of the page's fenced ```python blocks, in order."""
    return FENCE.findall(page.read_text(encoding="utf-8"))


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's blocks run in order in one namespace, as a reader would paste them."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.relative_to(ROOT)} [python block {i + 1}]", "exec")
        exec(code, namespace)  # noqa: S102 - executing our own documentation is the point


def test_every_public_name_is_in_the_api_reference() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: noisylabel\.(?:\w+\.)*?(\w+)\s*$", api, flags=re.MULTILINE))
    missing = sorted(set(noisylabel._EXPORTS) - documented)
    assert not missing, f"public names missing from docs/api.md: {missing}"
