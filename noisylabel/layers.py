"""Average Expression Anchoring as a reusable layer (SPEC 2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["AverageAnchor"]


class AverageAnchor(nn.Module):
    """Add a learnable multiple of the mean feature: ``f'_i = f_i + a ⊙ anchor``.

    * training: ``anchor = mean_{j in batch} f_j`` (not detached: gradients flow through
      it to every sample of the batch); the running mean is updated BatchNorm-style,
      ``running_mean <- (1 - momentum) running_mean + momentum * anchor.detach()``;
    * eval, ``inference="running"`` (default): ``anchor = running_mean`` (a registered
      buffer), so a prediction does not depend on the other samples in its batch;
    * eval, ``inference="batch"``: ``anchor`` = the eval batch mean (SLM-AEA's behaviour).

    ``a`` is a learnable vector initialised to ones.

    Parameters
    ----------
    num_features : int
        Feature dimension D (the last dimension of the input).
    momentum : float
        Running-mean momentum.
    inference : {"running", "batch"}
        Anchor used in eval mode.
    """

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.1,
        inference: Literal["running", "batch"] = "running",
    ) -> None:
        super().__init__()
        if inference not in ("running", "batch"):
            raise ValueError(f"inference must be 'running' or 'batch', got {inference!r}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.num_features = num_features
        self.momentum = momentum
        self.inference = inference
        self.a = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """``f`` of shape (B, D) -> ``f + a * anchor`` of the same shape."""
        if f.ndim != 2 or f.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (B, {self.num_features}), got {tuple(f.shape)}")
        if self.training:
            anchor = f.mean(dim=0)
            with torch.no_grad():
                self.running_mean.lerp_(anchor.detach().to(self.running_mean.dtype), self.momentum)
                self.num_batches_tracked += 1
        elif self.inference == "running":
            anchor = self.running_mean.to(f.dtype)
        else:
            anchor = f.mean(dim=0)
        return f + self.a * anchor

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, inference={self.inference!r}"
