from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from noisylabel.detect import clean_probability
from noisylabel.mixture import MixtureNotSeparatedWarning
from noisylabel.noise_model import FitReport, NoiseModel

N, C = 600, 4


def separated_epoch(seed=0, rate=0.3):
    """Predictions that follow the true class; 30% of the labels flipped."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, C, (N,), generator=g)
    logits = torch.randn(N, C, generator=g)
    logits[torch.arange(N), true] += 3.0
    flip = torch.rand(N, generator=g) < rate
    labels = torch.where(flip, (true + torch.randint(1, C, (N,), generator=g)) % C, true)
    return labels, logits.softmax(1), flip


def unimodal_epoch(seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    probs = (torch.randn(N, C, generator=g) * 0.05).softmax(1)  # all close to uniform
    return labels, probs


def record_all(nm, labels, probs, seed=0, batch=64):
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    for start in range(0, N, batch):
        idx = order[start : start + batch]
        nm.record(idx, probs[idx], labels[idx])


def test_record_by_index_survives_shuffled_order():
    labels, probs, flip = separated_epoch()
    a = NoiseModel(N, C)
    record_all(a, labels, probs, seed=1)
    b = NoiseModel(N, C)
    for idx in torch.arange(N).split(100):  # in order
        b.record(idx, probs[idx], labels[idx])
    ra, rb = a.fit(1), b.fit(1)
    assert rb.accepted
    assert isinstance(ra, FitReport) and ra.accepted and ra.reason == "accepted"
    torch.testing.assert_close(a.weights(torch.arange(N)), b.weights(torch.arange(N)))
    expected = clean_probability(labels.numpy(), probs.double().numpy(), pair_prior=False)
    np.testing.assert_allclose(a.clean_probability.numpy(), expected, atol=1e-4)
    w = a.weights(torch.arange(N))
    assert w[~flip].mean() > 0.8 and w[flip].mean() < 0.2
    assert ra.n_seen == N and ra.flagged_classes == []
    assert ra.as_dict()["epoch"] == 1
    cosine = probs[torch.arange(N), labels] / probs.norm(dim=1)
    torch.testing.assert_close(a.signal_, cosine, rtol=0, atol=1e-6)


def test_signal_is_nan_where_nothing_was_recorded():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C)
    assert nm.signal_ is None
    seen = torch.arange(0, N, 2)
    nm.record(seen, probs[seen], labels[seen])
    nm.fit(1)
    assert torch.isnan(nm.signal_[1::2]).all() and not torch.isnan(nm.signal_[seen]).any()


def test_repeated_records_are_averaged():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C)
    record_all(nm, labels, probs)
    record_all(nm, labels, probs, seed=3)  # each index twice
    nm.fit(1)
    ref = NoiseModel(N, C)
    record_all(ref, labels, probs)
    ref.fit(1)
    torch.testing.assert_close(nm.clean_probability, ref.clean_probability)


def test_warmup_keeps_w_at_one():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C, warmup=2)
    for epoch in (1, 2):
        record_all(nm, labels, probs)
        report = nm.fit(epoch)
        assert report.reason == "warmup" and not report.accepted
        assert torch.all(nm.clean_probability == 1)
    record_all(nm, labels, probs)
    report = nm.fit(3)
    assert report.accepted and report.last_accepted_epoch == 3
    assert nm.clean_probability.min() < 0.1


def test_unseparated_fit_keeps_last_accepted_w():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C)
    record_all(nm, labels, probs)
    nm.fit(1)
    w1 = nm.clean_probability.clone()
    u_labels, u_probs = unimodal_epoch()
    record_all(nm, u_labels, u_probs)
    with pytest.warns(MixtureNotSeparatedWarning, match="keeping the w of epoch 1"):
        report = nm.fit(2)
    assert report.reason == "not separated" and not report.accepted and not report.separated
    torch.testing.assert_close(nm.clean_probability, w1)


def test_unseparated_before_any_acceptance_gives_ones_and_ungated_uses_fit():
    u_labels, u_probs = unimodal_epoch()
    nm = NoiseModel(N, C)
    record_all(nm, u_labels, u_probs)
    with pytest.warns(MixtureNotSeparatedWarning, match=r"keeping w = 1 \(no fit accepted yet"):
        nm.fit(1)
    assert torch.all(nm.clean_probability == 1)
    exact = NoiseModel(N, C, gate=False, monotone=False)  # paper-exact: every fit is used
    record_all(exact, u_labels, u_probs)
    report = exact.fit(1)
    assert report.reason == "ungated" and report.accepted
    assert not torch.all(exact.clean_probability == 1)


def memorising_epoch(seed=0, rate=0.3):
    """Like ``separated_epoch``, but the network also predicts the given (wrong) label of most
    flipped samples, less surely than the right labels of the others."""
    labels, probs, flip = separated_epoch(seed, rate)
    g = torch.Generator().manual_seed(seed + 100)
    logits = torch.randn(N, C, generator=g)
    logits[torch.arange(N), labels] += torch.where(flip, 1.5, 3.0)
    return labels, logits.softmax(1), flip


def test_agreement_against_the_fits_clean_share():
    # a network that predicts the true class of the flipped labels fits fewer labels than the
    # fit calls clean; one that predicts most of their given labels, more
    for epoch, expect_over in ((separated_epoch, False), (memorising_epoch, True)):
        labels, probs, flip = epoch()
        nm = NoiseModel(N, C)
        record_all(nm, labels, probs)
        report = nm.fit(1)
        agree = (probs.argmax(1) == labels).float()
        assert report.agreement == pytest.approx(float(agree.mean()))
        assert report.fit_clean_share == pytest.approx(float(nm.clean_probability.mean()))
        assert (float(agree[flip].mean()) > 0.5) == expect_over
        assert (report.agreement > report.fit_clean_share) == expect_over


def test_mining_and_targets():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C, t=0.5)
    d0 = nm.class_distributions.clone()
    torch.testing.assert_close(d0.sum(1), torch.ones(C))
    record_all(nm, labels, probs)
    report = nm.fit(1)
    assert len(report.classes_accepted) == C
    d = nm.class_distributions
    torch.testing.assert_close(d.sum(1), torch.ones(C))
    idx = torch.tensor([5, 1, 300])
    p = probs[idx]
    q = nm.targets(idx, labels[idx], p)
    w = nm.weights(idx)[:, None]
    torch.testing.assert_close(q, w * d[labels[idx]] + (1 - w) * p)
    torch.testing.assert_close(q.sum(1), torch.ones(3))


def test_per_class_and_loss_signal():
    labels, probs, flip = separated_epoch()
    for kwargs in ({"per_class": True}, {"signal": "loss"}, {"mining_rule": "relative"}):
        nm = NoiseModel(N, C, **kwargs)
        record_all(nm, labels, probs)
        report = nm.fit(1)
        assert report.accepted
        w = nm.clean_probability
        assert w[~flip].mean() > 0.8 and w[flip].mean() < 0.2


def test_a_class_the_model_cannot_predict_is_reported_flagged_whole():
    # the model never predicts class 3: every label 3, right or wrong, looks wrong
    labels, probs, _ = separated_epoch()
    hard = labels == 3
    logits = torch.randn(int(hard.sum()), C, generator=torch.Generator().manual_seed(1))
    logits[:, 3] -= 4.0
    probs[hard] = logits.softmax(1)
    nm = NoiseModel(N, C)
    record_all(nm, labels, probs)
    with pytest.warns(UserWarning, match=r"every sample labelled with class\(es\) \[3\]"):
        report = nm.fit(1)
    assert report.accepted and report.flagged_classes == [3]
    assert (nm.clean_probability[hard] < 0.5).all()
    record_all(nm, labels, probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same classes again: reported, not warned again
        assert nm.fit(2).flagged_classes == [3]
    small = NoiseModel(N, C, min_class_samples=int(hard.sum()) + 1)  # too small to judge
    record_all(small, labels, probs)
    assert small.fit(1).flagged_classes == []


@pytest.mark.filterwarnings("ignore::noisylabel.mixture.MixtureNotSeparatedWarning")
def test_predictions_keep_the_last_fits_mean_record():
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C)
    torch.testing.assert_close(nm.predictions, torch.full((N, C), 1.0 / C))  # before any fit
    nm.record(torch.arange(10), probs[:10], labels[:10])
    nm.record(torch.arange(5), probs[10:15], labels[:5])  # indices 0..4 twice: their mean
    nm.fit(1)
    expected = probs[:10].clone()
    expected[:5] = (probs[:5] + probs[10:15]) / 2
    torch.testing.assert_close(nm.predictions[:10], expected / expected.sum(1, keepdim=True))
    torch.testing.assert_close(nm.predictions[10:], torch.full((N - 10, C), 1.0 / C))
    nm.record(torch.arange(3), probs[20:23], labels[:3])
    nm.fit(2)  # only the samples recorded again change
    torch.testing.assert_close(nm.predictions[:3], probs[20:23])
    torch.testing.assert_close(nm.predictions[3:10], expected[3:] / expected[3:].sum(1, keepdim=True))


def test_state_dict_round_trip(tmp_path):
    labels, probs, _ = separated_epoch()
    nm = NoiseModel(N, C, warmup=0)
    record_all(nm, labels, probs)
    nm.fit(1)
    nm.record(torch.arange(10), probs[:10], labels[:10])  # a partly recorded epoch
    path = tmp_path / "nm.pt"
    torch.save(nm.state_dict(), path)
    other = NoiseModel(N, C)
    other.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    torch.testing.assert_close(other.clean_probability, nm.clean_probability)
    torch.testing.assert_close(other.class_distributions, nm.class_distributions)
    torch.testing.assert_close(other.predictions, nm.predictions)
    assert other.last_accepted_epoch == 1
    record_all(nm, labels, probs)
    record_all(other, labels, probs)
    torch.testing.assert_close(other.fit(2).mean_w, nm.fit(2).mean_w)
    with pytest.raises(ValueError, match="600 samples"):
        NoiseModel(N + 1, C).load_state_dict(nm.state_dict())


def test_bad_input():
    nm = NoiseModel(N, C)
    with pytest.raises(ValueError, match="record"):
        nm.record(torch.arange(3), torch.ones(3, C + 1) / (C + 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="recorded"):
        nm.fit(1)
    with pytest.raises(ValueError, match="warmup"):
        NoiseModel(N, C, warmup=-1)


def test_fit_with_torch_distributed_single_process(tmp_path: Path):
    labels, probs, _ = separated_epoch()
    ref = NoiseModel(N, C)
    record_all(ref, labels, probs)
    ref.fit(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0,
                            world_size=1)
    try:
        nm = NoiseModel(N, C)
        record_all(nm, labels, probs)
        report = nm.fit(1)
    finally:
        dist.destroy_process_group()
    assert report.n_seen == N
    torch.testing.assert_close(nm.clean_probability, ref.clean_probability)


@pytest.mark.parametrize("indices,labels,pattern", [
    ([0, 1], [0.7, 1.0], r"labels must be integers, got dtype torch.float32"),
    ([0.0, 1.0], [0, 1], r"indices must be integers"),
    ([0, 1], [-1, 1], r"labels\[0\] = -1 outside 0\.\.2"),
    ([0, 1], [0, 3], r"labels\[1\] = 3 outside 0\.\.2"),
    ([0, 7], [0, 1], r"indices\[1\] = 7 outside 0\.\.3"),
])
def test_record_names_a_bad_index_or_label(indices: list, labels: list, pattern: str) -> None:
    model = NoiseModel(4, 3)
    with pytest.raises(ValueError, match=pattern):
        model.record(torch.tensor(indices), torch.full((2, 3), 1 / 3), torch.tensor(labels))
