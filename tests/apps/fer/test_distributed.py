"""Distributed FER training: the torchrun helpers, and a real 2-process gloo run on CPU."""

from __future__ import annotations

import socket

import pytest
import torch
from torch.utils.data import DistributedSampler

from noisylabel.apps.fer import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 2), (11, 4), (2, 3), (1, 2)])
def test_shard_is_distributed_samplers_split(n: int, world: int) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [distributed.shard(order, rank=r, world_size=world) for r in range(world)]
    for r, part in enumerate(shards):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)
        assert part.tolist() == order[list(sampler)].tolist()
    assert set(torch.cat(shards).tolist()) == set(range(n))
    assert len({len(part) for part in shards}) == 1  # equal step counts on every rank
    blocks = [order[distributed.block(n, rank=r, world_size=world)] for r in range(world)]
    assert torch.equal(torch.cat(blocks), order)  # every index exactly once, in order
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_single_process_defaults() -> None:
    order = torch.arange(5)
    assert not distributed.is_initialized()
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    assert distributed.is_main_process()
    assert distributed.shard(order) is order
    assert distributed.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
    assert distributed.block(5) == slice(0, 5)
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    bn = torch.nn.BatchNorm1d(2)
    distributed.broadcast_buffers(bn)  # nothing to copy from
    assert bn.running_mean.tolist() == [0.0, 0.0]
    distributed.barrier()
    with distributed.main_process_first():
        order = order + 1
    assert order.tolist() == [1, 2, 3, 4, 5]
    distributed.teardown()


def test_per_rank_batch_size() -> None:
    assert distributed.per_rank_batch_size(32) == 32
    assert distributed.per_rank_batch_size(32, world_size=4) == 8
    with pytest.raises(ValueError, match="batch_size=30 is the global batch .* 4 processes"):
        distributed.per_rank_batch_size(30, world_size=4)


def test_setup_joins_the_group_torchrun_describes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not distributed.launched_by_torchrun({"WORLD_SIZE": "2", "RANK": "0"})
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
    assert not distributed.is_initialized()
    env = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.launched_by_torchrun()
    try:
        assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
        assert distributed.is_initialized()
        assert torch.distributed.get_backend() == "gloo"
        assert distributed.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
    finally:
        distributed.teardown()
    assert not distributed.is_initialized()
    with pytest.raises(ValueError, match="cuda:LOCAL_RANK"):
        monkeypatch.setenv("LOCAL_RANK", "1")
        distributed.setup(torch.device("cuda:0"))
