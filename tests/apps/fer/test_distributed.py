"""Distributed FER training: the torchrun helpers, and a real 2-process gloo run on CPU."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from noisylabel.apps.fer import distributed
from noisylabel.apps.fer.train import load_checkpoint


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


# ----------------------------------------------------------------------------- torchrun runs

TRAIN_ARGS = ["--image-size", "16", "--batch-size", "16", "--noise", "0.3", "--device", "cpu",
              "--num-threads", "1", "--no-tensorboard", "--no-progress", "--seed", "5",
              "--noise-warmup", "0", "--no-gate"]
OUTPUTS = {"checkpoint.pt", "config.json", "metrics.csv", "summary.json", "curves.png",
           "confusion.png", "similarity.png", "model_last.pt", "model_card.json", "train.log"}

# Under torchrun, in one process group, through the Python API: an uninterrupted 2-epoch run
# in OUT_A; a 1-epoch run in OUT_B, then its resumption to epoch 2.
RESUME_DRIVER = """
import sys
from noisylabel.apps.fer import cli, distributed
from noisylabel.apps.fer.train import train

data, out_a, out_b, *args = sys.argv[1:]
parser = cli.build_parser()
try:
    for out, extra in ((out_a, ["--epochs", "2"]), (out_b, ["--epochs", "1"]),
                       (out_b, ["--epochs", "2", "--resume"])):
        argv = ["train", "--data", data, "--out", out, *args, *extra]
        train(cli.train_config_from_args(parser.parse_args(argv)))
finally:
    distributed.teardown()
"""


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in distributed.TORCHRUN_VARIABLES:
        env.pop(name, None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_torchrun_training_writes_one_set_of_outputs(tiny_faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _torchrun("-m", "noisylabel.apps.fer.cli", "train", "--data", str(tiny_faces),
                     "--out", str(out), "--epochs", "1", *TRAIN_ARGS)
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no second copy, no temporary file
    assert proc.stdout.count("noisylabel-fer: variant full") == 1  # rank 0 alone prints
    assert proc.stdout.count(f"outputs in {out}") == 1
    assert "2 processes x batch 8" in proc.stdout
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("1,")  # header + epoch 1, written once
    config = json.loads((out / "config.json").read_text())
    assert (config["world_size"], config["per_rank_batch_size"], config["batch_size"]) == (2, 8, 16)
    assert config["sync_anchor"] is False  # default: each rank's own batch mean
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["rng"]["augment_ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the unwrapped model
    (row,) = ckpt["history"]
    assert math.isfinite(row["loss"]) and 0.0 <= row["test_acc"] <= 1.0
    assert row["bmm_n_iter"] >= 1 and row["w_updated"]  # the mixture was fitted and used


def test_torchrun_resume_reaches_the_uninterrupted_result(tiny_faces: Path,
                                                          tmp_path: Path) -> None:
    out_a, out_b = tmp_path / "straight", tmp_path / "resumed"
    driver = tmp_path / "driver.py"
    driver.write_text(RESUME_DRIVER)
    _torchrun(str(driver), str(tiny_faces), str(out_a), str(out_b), *TRAIN_ARGS,
              "--sync-anchor", "--no-plots")
    assert json.loads((out_b / "config.json").read_text())["sync_anchor"] is True
    straight, resumed = (load_checkpoint(o / "checkpoint.pt") for o in (out_a, out_b))
    assert straight["epoch"] == resumed["epoch"] == 2
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        for key in ("loss", "l1", "lkld", "train_acc", "test_acc", "w_mean_clean", "mean_w"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, atol=1e-6, rtol=0, msg=key)
    torch.testing.assert_close(resumed["noise_model"]["w"], straight["noise_model"]["w"])
