"""torch.distributed plumbing of the FER trainer: launch detection, ranks, sharding, sums.

A process started by ``torchrun`` (or ``python -m torch.distributed.run``) finds ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` in its environment; [`setup`][noisylabel.apps.fer.distributed.setup] then joins the process group
(NCCL on GPUs, each rank pinned to ``cuda:LOCAL_RANK``; gloo on CPU) and [`teardown`][noisylabel.apps.fer.distributed.teardown] leaves
it. Without those variables every helper here behaves as a single process of world size 1, so
the trainer has one code path.

Every rank draws the same epoch permutation from the same seeded generator; [`shard`][noisylabel.apps.fer.distributed.shard] gives
the rank its part of it, as ``torch.utils.data.DistributedSampler`` with ``shuffle=False``
would over the permuted indices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "TORCHRUN_VARIABLES",
    "launched_by_torchrun",
    "setup",
    "teardown",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "main_process_first",
    "shard",
    "block",
    "per_rank_batch_size",
    "all_reduce_sum",
    "all_gather_object",
    "broadcast_buffers",
]

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
"""Environment variables every process launched by torchrun receives."""


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are all set (by torchrun)."""
    env = os.environ if environ is None else environ
    return all(name in env for name in TORCHRUN_VARIABLES)


def is_initialized() -> bool:
    """A default process group exists."""
    return dist.is_available() and dist.is_initialized()


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (when launched by it); return this rank's device.

    On CUDA the rank uses ``cuda:LOCAL_RANK`` (choose the GPUs with ``CUDA_VISIBLE_DEVICES``)
    and the NCCL backend; on CPU the gloo backend. Rendezvous through ``env://`` (the
    ``MASTER_ADDR``/``MASTER_PORT`` torchrun sets). A group that already exists is kept.

    Parameters
    ----------
    device : torch.device
        The device the run asked for (``cuda`` or ``cpu``).

    Returns
    -------
    torch.device
        ``device``, with the CUDA index replaced by ``LOCAL_RANK`` under torchrun.
    """
    if not launched_by_torchrun():
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if device.index not in (None, local_rank):
            raise ValueError(
                f"device {device} under torchrun: each process uses cuda:LOCAL_RANK "
                f"(here cuda:{local_rank}); pick the GPUs with CUDA_VISIBLE_DEVICES instead"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://",
                                device_id=device if device.type == "cuda" else None)
    return device


def teardown() -> None:
    """Leave the process group (after a barrier, so no rank exits while others still talk)."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 (or no process group): the only process that writes files and prints."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (which wait at a barrier).

    For work that fills a cache on disk (decoded images, a generated data set, a pretrained
    backbone): rank 0 writes it, the others then read it instead of repeating the work.
    """
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def shard(
    order: torch.Tensor, rank: int | None = None, world_size: int | None = None
) -> torch.Tensor:
    """This rank's part of a sequence of dataset indices.

    With R ranks and N indices this is ``torch.utils.data.DistributedSampler``'s
    split (``shuffle=False, drop_last=False``): the sequence is repeated from its start up to
    ``R * ceil(N / R)`` entries and rank r takes entries ``r, r + R, r + 2R, ...``, so every rank
    gets ``ceil(N / R)`` indices (equal step counts for DDP) and up to R - 1 indices are seen
    twice per epoch ([`block`][noisylabel.apps.fer.distributed.block] splits without repeats).

    Parameters
    ----------
    order : torch.Tensor of shape (N,)
        Indices, e.g. the epoch's permutation (identical on every rank).
    rank, world_size : int, optional
        Default: this process's rank and the group's size.

    Returns
    -------
    torch.Tensor
        The rank's indices, on ``order``'s device; ``order`` itself in a single process.
    """
    r = get_rank() if rank is None else rank
    size = get_world_size() if world_size is None else world_size
    if size == 1:
        return order
    n = order.shape[0]
    total = size * math.ceil(n / size)
    return order.repeat(math.ceil(total / n))[:total][r::size]


def block(n: int, rank: int | None = None, world_size: int | None = None) -> slice:
    """This rank's contiguous part of ``range(n)``: every index exactly once over all ranks.

    Rank r of R gets ``floor(r n / R) .. floor((r + 1) n / R) - 1`` (sizes differ by at most
    one; a slice, so ``images[block(n)]`` is a view, not a copy). For evaluation and
    statistics passes, whose results are summed ([`all_reduce_sum`][noisylabel.apps.fer.distributed.all_reduce_sum]) or recorded by index.
    """
    r = get_rank() if rank is None else rank
    size = get_world_size() if world_size is None else world_size
    return slice(r * n // size, (r + 1) * n // size)


def per_rank_batch_size(batch_size: int, world_size: int | None = None) -> int:
    """``batch_size / world_size``: ``--batch-size`` is the global batch of one optimiser step.

    Raises
    ------
    ValueError
        When the global batch does not split evenly over the ranks.
    """
    size = get_world_size() if world_size is None else world_size
    if batch_size % size:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must be divisible by the "
            f"{size} processes (use a multiple of {size})"
        )
    return batch_size // size


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it (unchanged in a single process)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` alone."""
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm and AEA running statistics) to every rank.

    DDP broadcasts them at the start of each training forward pass, but the pass itself then
    updates each rank's copy from its own batch; call this before evaluating so that every rank
    evaluates the model rank 0 saves.
    """
    if is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src)
