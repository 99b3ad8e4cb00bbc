"""Tests of the shared training loop's pieces (apps/fer/engine.py)."""

import torch

from noisylabel.apps.fer.engine import batch_slices


def test_batch_slices_never_leave_a_single_sample_batch() -> None:
    # BatchNorm cannot train on one sample at ResNet18's 1x1 last feature map (32 px and below)
    order = torch.randperm(9)
    assert [len(b) for b in batch_slices(order, 4)] == [4, 5]
    assert torch.equal(torch.cat(batch_slices(order, 4)), order)
    assert [len(b) for b in batch_slices(order, 3)] == [3, 3, 3]
    assert [len(b) for b in batch_slices(order[:2], 64)] == [2]
