"""The lazily re-exported public API: every advertised name resolves, and importing the
package does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import noisylabel


@pytest.mark.parametrize("name", sorted(noisylabel._EXPORTS))
def test_every_public_name_resolves(name: str) -> None:
    obj = getattr(noisylabel, name)
    assert obj.__name__ == name
    assert obj.__doc__, f"public name {name} has no docstring"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        noisylabel.no_such_name  # noqa: B018


def test_import_does_not_import_torch() -> None:
    code = "import sys, noisylabel; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_numpy_path_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np, noisylabel\n"
        "rng = np.random.default_rng(0)\n"
        "p = rng.dirichlet(np.ones(3), size=200)\n"
        "y = rng.integers(0, 3, size=200)\n"
        "noisylabel.clean_probability(y, p)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_version_is_a_string() -> None:
    assert isinstance(noisylabel.__version__, str) and noisylabel.__version__.count(".") == 2
