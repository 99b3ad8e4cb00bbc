from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from noisylabel.losses import forward_cross_entropy, soft_target_kl, weighted_cross_entropy


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


def test_forward_cross_entropy_is_the_cross_entropy_of_the_noise_adapted_prediction() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 3, requires_grad=True)
    y = torch.randint(0, 3, (16,))
    t = torch.tensor([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.3, 0.0, 0.7]])
    want = -(z.softmax(1) @ t)[torch.arange(16), y].log().mean()
    assert forward_cross_entropy(z, y, t).item() == pytest.approx(want.item(), rel=1e-6)
    assert forward_cross_entropy(z, y, torch.eye(3)).item() == pytest.approx(
        F.cross_entropy(z, y).item(), rel=1e-6)
    forward_cross_entropy(z, y, t).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_forward_cross_entropy_moves_the_prediction_to_the_true_class() -> None:
    # every true 1 is labelled 0 half the time: a sample labelled 0 is best explained by a
    # prediction of class 1 only under the forward loss, not under plain cross-entropy
    t = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    z = torch.zeros(1, 2, requires_grad=True)
    y = torch.tensor([0])
    forward_cross_entropy(z, y, t).backward()
    forward_grad = z.grad.clone()
    z.grad = None
    F.cross_entropy(z, y).backward()
    assert forward_grad[0, 0] < 0 and z.grad[0, 0] < 0  # both raise class 0 ...
    # ... the forward loss less, as a true 1 explains the label 0 too
    assert abs(forward_grad[0, 0]) < abs(z.grad[0, 0])


@pytest.mark.parametrize("t, match", [
    (torch.eye(3), "shape"),
    (torch.tensor([[0.5, 0.4], [0.0, 1.0]]), r"noise_matrix\[0\]"),
    (torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), r"noise_matrix\[1\]"),
    (torch.tensor([[1.2, -0.2], [0.0, 1.0]]), r"noise_matrix\[0\]"),
])
def test_forward_cross_entropy_rejects_a_bad_noise_matrix(t: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        forward_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), t)
