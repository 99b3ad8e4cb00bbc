from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from noisylabel.losses import soft_target_kl, weighted_cross_entropy


def test_weighted_ce_normalisations():
    torch.manual_seed(0)
    z = torch.randn(8, 4, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    w = torch.rand(8)
    ce = F.cross_entropy(z, y, reduction="none")
    assert weighted_cross_entropy(z, y, w, "batch").item() == pytest.approx((w * ce).mean().item())
    assert weighted_cross_entropy(z, y, w).item() == pytest.approx(((w * ce).sum() / w.sum()).item())
    ones = torch.ones(8)
    for mode in ("batch", "weights"):
        assert weighted_cross_entropy(z, y, ones, mode).item() == pytest.approx(F.cross_entropy(z, y).item())
    assert weighted_cross_entropy(z, y, torch.zeros(8)).item() == 0.0
    loss = weighted_cross_entropy(z, y, w)
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="normalize"):
        weighted_cross_entropy(z, y, w, "sum")
    with pytest.raises(ValueError, match="shape"):
        weighted_cross_entropy(z, y, w[:3])


def test_soft_target_kl():
    torch.manual_seed(0)
    z = torch.randn(6, 5, requires_grad=True)
    q = torch.softmax(torch.randn(6, 5), 1)
    expected = F.kl_div(F.log_softmax(z, 1), q, reduction="batchmean")
    assert soft_target_kl(z, q).item() == pytest.approx(expected.item(), rel=1e-6)
    # zero when the prediction equals the target; one-hot targets (0 log 0 = 0) give CE
    assert soft_target_kl(torch.log(q), q).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.randint(0, 5, (6,))
    onehot = F.one_hot(y, 5).float()
    assert soft_target_kl(z, onehot).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    soft_target_kl(z, q).backward()
    torch.testing.assert_close(z.grad, (torch.softmax(z, 1) - q).detach() / 6)
    with pytest.raises(ValueError, match="shape"):
        soft_target_kl(z, q[:, :3])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_weighted_cross_entropy_rejects_a_bad_weight(bad: float) -> None:
    logits, labels = torch.zeros(3, 2), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match=r"weights\[1\] = .*finite and >= 0"):
        weighted_cross_entropy(logits, labels, torch.tensor([1.0, bad, 1.0]))
    weighted_cross_entropy(logits, labels, torch.tensor([1.0, bad, 1.0]), validate=False)


@pytest.mark.parametrize("row", [[0.7, 0.7], [1.5, -0.5], [float("nan"), 1.0]])
def test_soft_target_kl_rejects_rows_that_are_not_distributions(row: list[float]) -> None:
    logits = torch.zeros(2, 2)
    targets = torch.tensor([[0.5, 0.5], row])
    with pytest.raises(ValueError, match=r"targets\[1\] = .*probability distribution"):
        soft_target_kl(logits, targets)
