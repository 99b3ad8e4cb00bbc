"""A two-process gloo group for the distributed tests (run under ``torch.multiprocessing.spawn``).

The ranks meet through a file in the test's own folder, so no port can be taken by a parallel
test between a probe and the bind; and they leave after a barrier, so no rank tears its
connections down while another still reads from them (which gloo answers with ``SIGABRT``,
"terminate called without an active exception"). ``noisylabel.apps.fer.distributed.teardown``
leaves the same way. Before the barrier, garbage is collected: an autograd graph through a
collective (``AverageAnchor(sync=True)``) can keep gloo work objects alive until the
interpreter exits, and freeing them then aborts the process the same way.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


@contextmanager
def gloo_group(rank: int, world_size: int, folder: str) -> Iterator[None]:
    """Join the group as ``rank`` (one thread per process), run the block, barrier, leave."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world_size)
    try:
        yield
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
