from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _gloo import gloo_group

from noisylabel.layers import AverageAnchor


def test_training_uses_batch_mean_with_gradient():
    torch.manual_seed(0)
    layer = AverageAnchor(4)
    f = torch.randn(5, 4, requires_grad=True)
    out = layer(f)
    torch.testing.assert_close(out, f + f.mean(0))
    out[0].sum().backward()
    # not detached: sample 1 gets a gradient through the anchor
    torch.testing.assert_close(f.grad[1], torch.full((4,), 1 / 5))
    assert layer.a.grad is not None


def test_running_mean_buffer():
    layer = AverageAnchor(3, momentum=0.1)
    assert "running_mean" in dict(layer.named_buffers())
    f = torch.ones(4, 3) * 2
    layer(f)
    torch.testing.assert_close(layer.running_mean, torch.full((3,), 0.2))
    layer(f)
    torch.testing.assert_close(layer.running_mean, torch.full((3,), 0.38))
    assert "running_mean" in layer.state_dict()


def test_eval_running_is_independent_of_batch():
    torch.manual_seed(0)
    layer = AverageAnchor(6)
    for _ in range(20):
        layer(torch.randn(16, 6) + 1)
    layer.eval()
    x = torch.randn(1, 6)
    alone = layer(x)
    with_others = layer(torch.cat([x, torch.randn(31, 6) * 10]))[:1]
    torch.testing.assert_close(alone, with_others)
    torch.testing.assert_close(alone, x + layer.a * layer.running_mean)


def test_eval_batch_mode_uses_eval_batch():
    layer = AverageAnchor(2, inference="batch").eval()
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(layer(x), x + x.mean(0))
    assert not torch.equal(layer(x[:1]), layer(x)[:1])


def test_invalid():
    with pytest.raises(ValueError, match="inference"):
        AverageAnchor(2, inference="test")
    with pytest.raises(ValueError, match="shape"):
        AverageAnchor(3)(torch.zeros(2, 4))


SIZES = (3, 5)  # unequal per-rank batches: the global mean weights ranks by their size


def _sync_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(sum(SIZES), 4, generator=g) + 2
    upstream = torch.randn(sum(SIZES), 4, generator=g)  # d loss / d output
    return f, upstream


def _sync_step(rank: int) -> dict[str, torch.Tensor]:
    """One synced forward and backward on this rank's share; plain tensors back (the autograd
    graph, which holds the collectives' work, dies with this frame, inside the group)."""
    f, upstream = _sync_inputs()
    part = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
    layer = AverageAnchor(4, sync=True)
    with torch.no_grad():
        layer.a.mul_(torch.arange(1.0, 5.0))
    mine = f[part].clone().requires_grad_(True)
    out_r = layer(mine)
    (out_r * upstream[part]).sum().backward()
    dist.all_reduce(layer.a.grad)  # what DDP does with parameter gradients (as a sum)
    return {"out": out_r.detach().clone(), "f_grad": mine.grad.clone(),
            "a_grad": layer.a.grad.clone(), "running_mean": layer.running_mean.clone()}


def _sync_worker(rank: int, out: str) -> None:
    with gloo_group(rank, len(SIZES), out):
        torch.save(_sync_step(rank), Path(out) / f"rank{rank}.pt")


def test_sync_anchor_is_the_global_batch_mean_with_its_gradient(tmp_path: Path):
    mp.spawn(_sync_worker, args=(str(tmp_path),), nprocs=len(SIZES), join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(len(SIZES))]
    # reference: one process, one layer, the concatenated batch, loss = sum of the ranks' losses
    f, upstream = _sync_inputs()
    layer = AverageAnchor(4)
    with torch.no_grad():
        layer.a.mul_(torch.arange(1.0, 5.0))
    f = f.requires_grad_(True)
    out = layer(f)
    (out * upstream).sum().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach())
    torch.testing.assert_close(torch.cat([r["f_grad"] for r in ranks]), f.grad)
    for r in ranks:
        torch.testing.assert_close(r["a_grad"], layer.a.grad)
        torch.testing.assert_close(r["running_mean"], layer.running_mean)
    # per-rank (unsynchronised) anchors would differ: the check above can fail
    assert not torch.allclose(f[:3].mean(0), f.mean(0))


def test_sync_without_process_group_is_the_local_mean():
    f = torch.randn(6, 3)
    torch.testing.assert_close(AverageAnchor(3, sync=True)(f), AverageAnchor(3)(f))
    assert "sync=True" in repr(AverageAnchor(3, sync=True))
