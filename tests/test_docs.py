"""The documentation cannot silently go stale.

* Every ``python`` code block of the README and the docs pages is executed (one namespace per
  page, blocks in order, in a temporary working directory). A ``text`` block that directly
  follows a ``python`` block (nothing but blank lines between them) is that block's printed
  output, and must match what the block prints.
* Every public name appears in the API reference.
* The site builds with ``mkdocs build --strict`` (broken links or anchors, pages missing from
  the navigation, docstrings mkdocstrings cannot render, unresolved cross-references: all fail
  the build).
* The built site works offline and reads as written: no page loads a script or stylesheet from
  the network, formulas are typeset by the bundled KaTeX (and, where ``node`` is installed, every
  formula of the site is rendered with it), and no page shows a literal Sphinx role
  (``:class:`...```, which mkdocstrings does not render) or refers to "SPEC", an internal
  document that is not in the repository.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict`` (run from the
    repository root: snippets resolve from there)."""
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strict(site: Path) -> None:
    assert (site / "api" / "index.html").is_file()
    assert (site / "method" / "index.html").is_file()


class _Page(HTMLParser):
    """What a browser would show and fetch: visible text (outside ``<script>`` and ``<style>``),
    script sources, the targets of the ``<link>`` elements it fetches (stylesheets, icons,
    preloads, preconnects: not ``next``/``prev``/``canonical``) and the arithmatex elements
    (tag, TeX source)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.formulas: list[tuple[str, str]] = []
        self._hidden = 0
        self._formula: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "style"):
            self._hidden += 1
            if tag == "script" and a.get("src"):
                self.scripts.append(a["src"] or "")
        elif tag == "link" and a.get("href") \
                and not {"next", "prev", "canonical", "alternate"} & set((a.get("rel") or "").split()):
            self.links.append(a["href"] or "")
        elif "arithmatex" in (a.get("class") or "").split():
            self._formula = (tag, [])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1
        elif self._formula is not None and tag == self._formula[0]:
            self.formulas.append((tag, "".join(self._formula[1]).strip()))
            self._formula = None

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)
        if self._formula is not None:
            self._formula[1].append(data)


def _parse(source: Path | str) -> _Page:
    page = _Page()
    page.feed(source.read_text(encoding="utf-8") if isinstance(source, Path) else source)
    page.close()
    return page


def _api_parts(site: Path) -> tuple[str, str]:
    """The API page's HTML before and from the heading of its FER section."""
    source = (site / "api" / "index.html").read_text(encoding="utf-8")
    cut = source.index('<h2 id="fer-application"')
    return source[:cut], source[cut:]


def _html_pages(site: Path) -> list[Path]:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 10, f"only {len(pages)} pages built"
    return pages


ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|obj|exc|ref|py:\w+):")
SPEC = re.compile(r"\bSPEC\b")


def _unrendered(text: str) -> list[str]:
    """Literal Sphinx roles and "SPEC" references in a page's visible text, with context."""
    return [text[max(0, m.start() - 40):m.end() + 40].replace("\n", " ")
            for pattern in (ROLE, SPEC) for m in pattern.finditer(text)]


def test_no_page_shows_sphinx_roles_or_spec(site: Path) -> None:
    """Every page but the API reference's FER section (see the next test)."""
    found = {}
    for path in _html_pages(site):
        source = _api_parts(site)[0] if path == site / "api" / "index.html" else path
        text = "".join(_parse(source).text)
        if hits := _unrendered(text):
            found[str(path.relative_to(site))] = hits
    assert not found, f"literal Sphinx roles or SPEC references in the built site: {found}"


def test_api_fer_section_shows_no_sphinx_roles_or_spec(site: Path) -> None:
    assert not _unrendered("".join(_parse(_api_parts(site)[1]).text))


def test_no_page_loads_from_the_network(site: Path) -> None:
    """Scripts, stylesheets, icons (and no font preconnect) are local files that exist in the
    site; links a reader clicks (``<a href>``) may point anywhere."""
    for path in _html_pages(site):
        page = _parse(path)
        for url in page.scripts + page.links:
            assert not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, flags=re.IGNORECASE), \
                f"{path.relative_to(site)} loads {url}"
            target = url.split("#")[0].split("?")[0]
            # 404.html refers to the site root (``/assets/...``): no site_url is configured
            local = (site / target.lstrip("/") if target.startswith("/")
                     else path.parent / target).resolve()
            assert local.is_file(), f"{path.relative_to(site)} refers to {url}: not in the site"


def test_formulas_are_wired_to_the_bundled_katex(site: Path) -> None:
    """The method page's formulas reach KaTeX: arithmatex leaves the TeX in
    ``class="arithmatex"`` elements, the page loads the bundled KaTeX (script, then the
    typesetting script, and its stylesheet) and every font the stylesheet names is there."""
    method = site / "method" / "index.html"
    page = _parse(method)
    display = [tex for tag, tex in page.formulas if tag == "div"]
    assert any(tex.startswith("\\[") and "\\mathrm{Beta}(S; \\alpha_k, \\beta_k)" in tex
               for tex in display), "the Beta mixture formula (eq. 4) is not a display formula"
    assert len(page.formulas) > 20
    scripts = [(method.parent / s).resolve() for s in page.scripts]
    katex_js = (site / "javascripts" / "katex" / "katex.min.js").resolve()
    typeset_js = (site / "javascripts" / "katex.js").resolve()
    assert katex_js in scripts and typeset_js in scripts
    assert scripts.index(katex_js) < scripts.index(typeset_js)
    typeset = typeset_js.read_text(encoding="utf-8")
    assert ".arithmatex" in typeset and "katex.render(" in typeset
    css = (site / "javascripts" / "katex" / "katex.min.css").resolve()
    assert css in [(method.parent / href).resolve() for href in page.links]
    fonts = re.findall(r"url\(([^)]+)\)", css.read_text(encoding="utf-8"))
    assert len(fonts) >= 20
    missing = [f for f in fonts if not (css.parent / f.strip("'\"")).is_file()]
    assert not missing, f"fonts named in katex.min.css but not in the site: {missing}"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_formula_renders_with_the_bundled_katex(site: Path, tmp_path: Path) -> None:
    """KaTeX is not MathJax: each formula of the site is rendered by the bundled katex.min.js
    (in node, ``throwOnError``), so a macro KaTeX lacks fails here and not in a reader's
    browser."""
    formulas = [(tex, tag == "div") for path in _html_pages(site)
                for tag, tex in _parse(path).formulas]
    assert len(formulas) > 50
    for tex, display in formulas:
        assert tex[:2] == ("\\[" if display else "\\(") and tex[-2:] == ("\\]" if display else "\\)")
    script = tmp_path / "render.js"
    script.write_text(
        "const katex = require(process.argv[2]);\n"
        "const formulas = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "const errors = [];\n"
        "for (const [tex, displayMode] of formulas) {\n"
        "  try { katex.renderToString(tex, { displayMode, throwOnError: true }); }\n"
        "  catch (e) { errors.push(e.message); }\n"
        "}\n"
        "console.log(JSON.stringify(errors));\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        ["node", str(script), str(site / "javascripts" / "katex" / "katex.min.js")],
        input=json.dumps([[html.unescape(tex[2:-2]), display] for tex, display in formulas]),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout)
    assert not errors, f"{len(errors)} of {len(formulas)} formulas fail in KaTeX: {errors}"
