"""Copy the benchmark plots into the docs so the Benchmarks page can show them.

MkDocs only serves files under ``docs/``; the benchmark scripts write their plots to
``benchmarks/results/``. Run from the repository root after a benchmark has written a new plot::

    python docs/scripts/copy_benchmark_figures.py

Every ``benchmarks/results/*.png`` is copied to ``docs/images/benchmarks/`` (same name) when it
is missing there or differs; the script prints what it copied.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "benchmarks" / "results"
TARGET = ROOT / "docs" / "images" / "benchmarks"


def copy_figures(source: Path = SOURCE, target: Path = TARGET) -> list[Path]:
    """Copy every PNG of ``source`` into ``target`` unless an identical copy is there."""
    copied = []
    for png in sorted(source.glob("*.png")):
        dest = target / png.name
        if dest.is_file() and filecmp.cmp(png, dest, shallow=False):
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dest)
        copied.append(dest)
    return copied


if __name__ == "__main__":
    done = copy_figures()
    print("\n".join(f"copied {p.relative_to(ROOT)}" for p in done) or "figures up to date")
