"""Small numpy/torch dispatch helpers.

Nothing here imports torch at module import: a tensor is recognised by the module
its type comes from (``type(x).__module__``), and torch is imported only once a
tensor has actually been passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """Return True if ``x`` is a ``torch.Tensor`` (checked without importing torch).

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    bool
        True for ``torch.Tensor`` and its subclasses (``nn.Parameter``).
    """
    for cls in type(x).__mro__:
        if cls.__module__.startswith("torch") and cls.__name__ == "Tensor":
            return True
    return False


def to_numpy_float(x: Any) -> np.ndarray:
    """Return ``x`` (array-like, not a tensor) as a float64 numpy array, copy-free when possible."""
    return np.asarray(x, dtype=np.float64)


def compute_dtype(x: Any) -> Any:
    """The floating dtype the torch path computes in: float64, except on MPS (no float64)."""
    import torch

    return torch.float32 if x.device.type == "mps" else torch.float64


def like(values: Any, reference: Any) -> Any:
    """Return ``values`` (numpy or tensor) with the array type and device of ``reference``.

    Used so that numpy in gives numpy out and a tensor in gives a tensor on the same
    device out.
    """
    if is_tensor(reference):
        import torch

        if is_tensor(values):
            return values.to(device=reference.device)
        return torch.as_tensor(values, device=reference.device)
    if is_tensor(values):
        return values.detach().cpu().numpy()
    return np.asarray(values)
