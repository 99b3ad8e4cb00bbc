"""NoiseModel under torch.distributed: two gloo processes on CPU, each recording its
DistributedSampler shard, end with the same mixture, class distributions and w on both ranks,
equal to what one process fitting all the predictions gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from _gloo import gloo_group
from torch.utils.data import DistributedSampler

from noisylabel.noise_model import NoiseModel

N, C, WORLD = 301, 5, 2  # odd N: DistributedSampler pads one duplicate
CONFIGS = {  # name -> NoiseModel options (two fits each: epoch 1 and 2)
    "default": dict(warmup=0),
    "paper_exact": dict(warmup=0, gate=False, monotone=False),
    "per_class_loss": dict(warmup=0, per_class=True, min_class_samples=20, signal="loss"),
}


def _epoch(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (30% flipped) and per-sample predictions; deterministic in ``epoch``."""
    rng = np.random.default_rng(epoch)
    true = rng.integers(0, C, N)
    labels = true.copy()
    flip = rng.random(N) < 0.3
    labels[flip] = (true[flip] + rng.integers(1, C, flip.sum())) % C
    logits = rng.normal(0, 1, (N, C))
    logits[np.arange(N), true] += 3.0 + epoch
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return torch.as_tensor(labels), torch.as_tensor(probs, dtype=torch.float32)


def _result(nm: NoiseModel, report) -> dict:
    bmm = nm.mixture_
    return {
        "w": nm.clean_probability.clone(),
        "d": nm.class_distributions.clone(),
        "alphas": torch.as_tensor(np.asarray(bmm.alphas_)),
        "betas": torch.as_tensor(np.asarray(bmm.betas_)),
        "weights": torch.as_tensor(np.asarray(bmm.weights_)),
        "n_seen": report.n_seen,
        "accepted": report.accepted,
    }


def _run(shard_for: callable) -> dict[str, list[dict]]:
    """Both epochs of every config; ``shard_for(epoch)`` gives the indices this process records."""
    results: dict[str, list[dict]] = {}
    for name, options in CONFIGS.items():
        nm = NoiseModel(N, C, **options)
        results[name] = []
        for epoch in (1, 2):
            labels, probs = _epoch(epoch)
            idx = shard_for(epoch)
            for chunk in idx.split(16):  # batches in the sampler's (shuffled) order
                nm.record(chunk, probs[chunk], labels[chunk])
            results[name].append(_result(nm, nm.fit(epoch)))
    return results


def _worker(rank: int, out: str) -> None:
    with gloo_group(rank, WORLD, out):
        def shard_for(epoch: int) -> torch.Tensor:
            sampler = DistributedSampler(range(N), num_replicas=WORLD, rank=rank, shuffle=True,
                                         seed=7)
            sampler.set_epoch(epoch)
            return torch.tensor(list(sampler))

        torch.save(_run(shard_for), Path(out) / f"rank{rank}.pt")


def test_two_ranks_fit_the_same_model_as_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = _run(lambda epoch: torch.randperm(N, generator=torch.Generator().manual_seed(epoch)))

    # the shards really were partial and overlapping: padding gives one index to both ranks
    sampler = [list(DistributedSampler(range(N), WORLD, r, shuffle=True, seed=7)) for r in (0, 1)]
    assert len(sampler[0]) == len(sampler[1]) == (N + 1) // 2
    assert len(set(sampler[0]) & set(sampler[1])) == 1

    for name in CONFIGS:
        for epoch in (0, 1):
            a, b, ref = ranks[0][name][epoch], ranks[1][name][epoch], single[name][epoch]
            assert a["n_seen"] == b["n_seen"] == N
            assert a["accepted"] == b["accepted"] == ref["accepted"]
            for key in ("w", "d", "alphas", "betas", "weights"):
                # (a) identical on both ranks
                assert torch.equal(a[key], b[key]), (name, epoch, key)
                # (b) what one process computes from the same per-sample predictions
                torch.testing.assert_close(a[key], ref[key], rtol=1e-6, atol=1e-6,
                                           msg=f"{name} epoch {epoch + 1} {key}")
            assert not torch.all(a["w"] == 1), name  # the fits were used: w is informative
