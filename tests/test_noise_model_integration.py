"""The PyTorch integration of docs/plugins.md, run as written.

The training loop is not copied here: it is read from the doc's ```python block that builds a
``NoiseModel``, so the doc and this test cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import noisylabel
from noisylabel import NoiseModel

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def doc_loop() -> str:
    """The docs/plugins.md code block with the PyTorch training loop."""
    blocks = [b for b in FENCE.findall(DOC.read_text(encoding="utf-8")) if "NoiseModel(" in b]
    assert len(blocks) == 1, f"expected one NoiseModel loop in {DOC.name}, found {len(blocks)}"
    return blocks[0]


class RecordingNoiseModel(NoiseModel):
    """NoiseModel that remembers the order in which indices were recorded, per epoch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[list[int]] = [[]]

    def record(self, indices, pred_probs, labels) -> None:
        self.recorded[-1].extend(torch.as_tensor(indices).tolist())
        super().record(indices, pred_probs, labels)

    def fit(self, epoch):
        report = super().fit(epoch)
        self.recorded.append([])
        return report


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-32-3 MLP: extra threads only oversubscribe the CI's 2 cores
    mp = pytest.MonkeyPatch()
    mp.setattr(noisylabel, "NoiseModel", RecordingNoiseModel)  # the doc imports it from here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        exec(compile(doc_loop(), f"{DOC.name} [NoiseModel loop]", "exec"), namespace)  # noqa: S102
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return namespace


def test_doc_loop_records_in_shuffled_order(trained) -> None:
    noise = trained["noise"]
    n = trained["n"]
    assert isinstance(noise, RecordingNoiseModel)
    first_epoch = noise.recorded[0]
    assert sorted(first_epoch) == list(range(n))  # every sample once per epoch ...
    assert first_epoch != list(range(n))  # ... but not in dataset order
    assert noise.recorded[1] != first_epoch  # and in a new order each epoch


def test_doc_loop_gives_wrong_labels_low_weights(trained) -> None:
    w = trained["w_all"]
    flipped = trained["flipped"]
    noise = trained["noise"]
    assert trained["report"].accepted  # the last fit was used, after the warm-up
    assert noise.last_accepted_epoch is not None and noise.last_accepted_epoch > noise.warmup
    # measured with the doc's seed: clean 1.00, wrong 0.03
    assert w[~flipped].mean() > 0.8
    assert w[flipped].mean() < 0.3
    # w[i] belongs to sample i: ranking the samples by w finds the flips
    order = torch.argsort(w)
    n_flipped = int(flipped.sum())
    assert flipped[order[:n_flipped]].float().mean() > 0.8


def test_weights_are_bound_to_dataset_indices_not_record_order() -> None:
    """The same predictions recorded in order and in shuffled, uneven batches give the same w."""
    rng = np.random.default_rng(0)
    n, c = 400, 4
    labels = torch.as_tensor(rng.integers(0, c, n))
    wrong = torch.as_tensor(rng.random(n) < 0.25)
    probs = torch.full((n, c), 0.1 / (c - 1), dtype=torch.float64)
    probs[torch.arange(n), labels] = 0.9
    other = (labels + 1) % c
    probs[wrong] = 0.1 / (c - 1)
    probs[wrong, other[wrong]] = 0.9  # the model confidently disagrees with the wrong labels
    probs += torch.as_tensor(rng.uniform(0, 0.05, (n, c)))
    probs /= probs.sum(1, keepdim=True)

    in_order = NoiseModel(n, c)
    in_order.record(torch.arange(n), probs, labels)
    in_order.fit(1)

    shuffled = NoiseModel(n, c)
    perm = torch.as_tensor(rng.permutation(n))
    for chunk in torch.split(perm, [1, 63, 100, 7, 229]):
        shuffled.record(chunk, probs[chunk], labels[chunk])
    shuffled.fit(1)

    everyone = torch.arange(n)
    torch.testing.assert_close(shuffled.weights(everyone), in_order.weights(everyone))
    w = shuffled.weights(everyone)
    assert bool((w[wrong] < 0.5).all()) and bool((w[~wrong] > 0.5).all())
    # a batch lookup returns each index's own w, whatever the order asked
    ask = perm[:50]
    torch.testing.assert_close(shuffled.weights(ask), w[ask])
