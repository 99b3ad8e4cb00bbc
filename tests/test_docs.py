"""The documentation cannot silently go stale.

* Every ``python`` code block of the README and the docs pages is executed (one namespace per
  page, blocks in order, in a temporary working directory). A ``text`` block that directly
  follows a ``python`` block (nothing but blank lines between them) is that block's printed
  output, and must match what the block prints.
* Every public name appears in the API reference.
* The site builds with ``mkdocs build --strict`` (broken links or anchors, pages missing from
  the navigation, docstrings mkdocstrings cannot render: all fail the build).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import noisylabel

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def code_blocks(page: Path) -> list[tuple[str, str | None]]:
    """``(code, expected output or None)`` for each fenced ``python`` block of the page."""
    text = page.read_text(encoding="utf-8")
    fences = list(FENCE.finditer(text))
    blocks = []
    for i, fence in enumerate(fences):
        if fence.group("lang") != "python":
            continue
        expected = None
        nxt = fences[i + 1] if i + 1 < len(fences) else None
        if nxt is not None and nxt.group("lang") == "text" \
                and not text[fence.end():nxt.start()].strip():
            expected = nxt.group("body")
        blocks.append((fence.group("body"), expected))
    return blocks


def _normalise(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.strip().splitlines())


PAGES_WITH_CODE = [p for p in PAGES if code_blocks(p)]


def test_fence_parser_pairs_code_with_its_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nprint(1)\n```\n\n```text\n1\n```\n\nprose\n\n```python\nx = 2\n```\n"
                    "\nIt prints:\n\n```text\nnot an output: prose in between\n```\n",
                    encoding="utf-8")
    assert code_blocks(page) == [("print(1)\n", "1\n"), ("x = 2\n", None)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's blocks run in order in one namespace, as a reader would paste them, and print
    what the page says they print."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, (block, expected) in enumerate(code_blocks(page)):
        where = f"{page.relative_to(ROOT)} [python block {i + 1}]"
        code = compile(block, where, "exec")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, namespace)  # noqa: S102 - executing our own documentation is the point
        if expected is not None:
            assert _normalise(out.getvalue()) == _normalise(expected), f"{where} printed other text"


def test_every_public_name_is_in_the_api_reference() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: noisylabel\.(?:\w+\.)*?(\w+)\s*$", api, flags=re.MULTILINE))
    missing = sorted(set(noisylabel._EXPORTS) - documented)
    assert not missing, f"public names missing from docs/api.md: {missing}"


def test_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (run from the repository root: snippets resolve from there)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "api" / "index.html").is_file()
