"""Average Expression Anchoring as a reusable layer (docs/method.md, AEA)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
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

    Under ``torch.distributed`` (DistributedDataParallel) the training anchor is, by default,
    the mean of the *rank's own* batch, as BatchNorm's statistics are (and as the reference
    code's anchor is per GPU under ``nn.DataParallel``). With ``sync=True`` it is the mean of
    the global batch, as ``torch.nn.SyncBatchNorm`` does:
    ``anchor = (sum_r sum_{j in batch_r} f_j) / (sum_r B_r)``, one all-reduce of the D sums and
    the count per forward pass, through ``torch.distributed.nn.functional.all_reduce`` so
    that the gradient of every rank's loss reaches every rank's features. Batches may differ in
    size across ranks. Without an initialised process group (or with one rank) ``sync`` changes
    nothing. Every rank of the group must then call ``forward`` in training mode in lockstep;
    evaluation never communicates.

    Parameters
    ----------
    num_features : int
        Feature dimension D (the last dimension of the input).
    momentum : float
        Running-mean momentum.
    inference : {"running", "batch"}
        Anchor used in eval mode.
    sync : bool
        Training anchor over the global batch of all ranks (see above) instead of the rank's.
    process_group : torch.distributed.ProcessGroup, optional
        Group whose batches are pooled with ``sync`` (default: the whole world).
    """

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.1,
        inference: Literal["running", "batch"] = "running",
        sync: bool = False,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        if inference not in ("running", "batch"):
            raise ValueError(f"inference must be 'running' or 'batch', got {inference!r}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.num_features = num_features
        self.momentum = momentum
        self.inference = inference
        self.sync = sync
        self.process_group = process_group
        self.a = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """``f`` of shape (B, D) -> ``f + a * anchor`` of the same shape."""
        if f.ndim != 2 or f.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (B, {self.num_features}), got {tuple(f.shape)}")
        if self.training:
            anchor = self._global_mean(f) if self._synchronised() else f.mean(dim=0)
            with torch.no_grad():
                self.running_mean.lerp_(anchor.detach().to(self.running_mean.dtype), self.momentum)
                self.num_batches_tracked += 1
        elif self.inference == "running":
            anchor = self.running_mean.to(f.dtype)
        else:
            anchor = f.mean(dim=0)
        return f + self.a * anchor

    def _synchronised(self) -> bool:
        return (self.sync and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def _global_mean(self, f: torch.Tensor) -> torch.Tensor:
        """``sum over all ranks' batches of f / their total size``, differentiable."""
        from torch.distributed.nn.functional import all_reduce

        local = torch.cat([f.float().sum(dim=0), f.new_full((1,), f.shape[0], dtype=torch.float32)])
        total = all_reduce(local, group=self.process_group)
        return (total[:-1] / total[-1]).to(f.dtype)

    def extra_repr(self) -> str:
        sync = ", sync=True" if self.sync else ""
        return (f"{self.num_features}, momentum={self.momentum}, "
                f"inference={self.inference!r}{sync}")
