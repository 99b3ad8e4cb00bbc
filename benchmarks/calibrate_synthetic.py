"""Difficulty of the synthetic faces: a timm ResNet18 from scratch, clean or noisy labels.

Generates the default synthetic data set (``SyntheticFaceConfig()``, 2400 train / 600 test,
100 px JPEGs) into a folder, loads it at ``--size`` px with ``load_split``, trains a ResNet18
(random init, Adam lr 1e-3, ExponentialLR 0.9 per epoch, batch 64) with plain cross-entropy and
prints test accuracy per epoch and the final confusion matrix (rows = true class). With
``--noise RATE`` the training labels get symmetric noise (``symmetric_noise``, exact mode);
test labels stay clean. The data set
is meant to be learnable but not trivial, with the confusions concentrated on the close pairs
(surprise / fear, disgust / anger, sadness / neutral).

Usage::

    python benchmarks/calibrate_synthetic.py --size 32 --epochs 15 --augment flip
    python benchmarks/calibrate_synthetic.py --size 48 --epochs 20 --noise 0.3
    python benchmarks/calibrate_synthetic.py --quick     # 2 epochs at 24 px, small data set
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from noisylabel.apps.fer.augment import BatchAugment, normalize
from noisylabel.apps.fer.layouts import CLASS_NAMES, load_split
from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset
from noisylabel.noise import symmetric_noise

AUGMENTS = {
    "none": lambda: BatchAugment(ops=(), flip_p=0.0, erase_p=0.0),
    "flip": lambda: BatchAugment(ops=(), erase_p=0.5),  # flip + random erasing
    "full": lambda: BatchAugment(),  # flip + rand-m5-n3-mstd0.5 + random erasing
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--augment", choices=sorted(AUGMENTS), default="flip")
    p.add_argument("--data", default=None, help="data folder (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.0, help="symmetric noise rate (train only)")
    p.add_argument("--quick", action="store_true", help="2 epochs, 24 px, 350/140 images")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    config = SyntheticFaceConfig()
    if a.quick:
        config = replace(config, n_train=350, n_test=140, n_identities=50)
        a.epochs, a.size = 2, 24
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.data) if a.data else Path(tmp) / "faces"
        t0 = time.perf_counter()
        generate_dataset(root, config)
        print(f"data {root} (hash {config.hash()}): {time.perf_counter() - t0:.1f} s")
        train = load_split(root, "train", image_size=a.size)
        test = load_split(root, "test", image_size=a.size)
        labels = torch.from_numpy(symmetric_noise(train.labels, a.noise, len(CLASS_NAMES),
                                                  seed=a.seed))
        print(f"training labels: {100 * (labels != train.labels).float().mean():.1f}% flipped")

        torch.manual_seed(a.seed)
        model = timm.create_model("resnet18", num_classes=len(CLASS_NAMES))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
        augment = AUGMENTS[a.augment]()
        gen = torch.Generator().manual_seed(a.seed)
        n = len(train)
        for epoch in range(1, a.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, 64):
                idx = order[i : i + 64]
                loss = F.cross_entropy(model(augment(train.images[idx], gen)), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(normalize(test.images[i : i + 256])).argmax(1)
                                  for i in range(0, len(test), 256)])
            acc = (pred == test.labels).float().mean().item()
            print(f"epoch {epoch:2d}  train loss {total / n:.3f}  test acc {100 * acc:.1f}%  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    cm = np.zeros((7, 7), dtype=int)
    np.add.at(cm, (test.labels.numpy(), pred.numpy()), 1)
    print("confusion (rows true, columns predicted):")
    print("           " + " ".join(f"{c[:5]:>5}" for c in CLASS_NAMES))
    for c, row in zip(CLASS_NAMES, cm, strict=True):
        print(f"{c:>10} " + " ".join(f"{v:5d}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
