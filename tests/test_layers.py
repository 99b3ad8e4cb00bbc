from __future__ import annotations

import pytest
import torch

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
