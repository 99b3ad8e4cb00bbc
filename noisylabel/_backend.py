"""Small numpy/torch dispatch helpers.

Nothing here imports torch at module import: a tensor is recognised by the module
its type comes from (``type(x).__module__``), and torch is imported only once a
tensor has actually been passed in.
"""

from __future__ import annotations

from typing import Any


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


def compute_dtype(x: Any) -> Any:
    """The floating dtype the torch path computes in: float64, except on MPS (no float64)."""
    import torch

    return torch.float32 if x.device.type == "mps" else torch.float64


def sigmoid(x: Any) -> Any:
    """Logistic function ``1 / (1 + exp(-x))``, on a numpy array or a torch tensor (its device)."""
    if is_tensor(x):
        import torch

        return torch.sigmoid(x)
    from scipy.special import expit

    return expit(x)
