"""What does a pretrained backbone know about expressions? A linear probe of its features.

For each start of the ablation (``benchmarks/ablation.py``): random weights (``scratch``), the
backbone pretrained on the identities of disjoint synthetic faces (``identity``) and the one
pretrained on their expressions (``expression``), this script extracts two feature sets from
the *target* data set, without any training on it:

* ``trunk``: the output of the shared stem + ``layer1`` (the part ``train --pretrained``
  freezes), average-pooled to 4 x 4 cells (64 x 16 values per image);
* ``pooled``: the global-average-pooled output of ``layer4`` (512 values), where the branches'
  heads read.

A logistic regression on standardised features is fitted on the training split's clean labels
and scored on the test split: the held-out accuracy says how linearly readable the expression is
from what the backbone computes before any fine-tuning (chance: 14.3%).

Usage::

    python benchmarks/probe_backbones.py          # the ablation's CPU profile; writes results/
    python benchmarks/probe_backbones.py --quick  # tiny data, print only (CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F  # noqa: N812
from ablation import PROFILES, REGIMES, prepare_data  # the same data and cached backbones
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from noisylabel.apps.fer import augment as fer_augment
from noisylabel.apps.fer import layouts as fer_layouts
from noisylabel.apps.fer.model import load_backbone_checkpoint

HERE = Path(__file__).resolve().parent


@torch.no_grad()
def features(backbone: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """``trunk`` (stem + layer1, pooled to 4 x 4) and ``pooled`` (layer4, global mean)."""
    backbone.eval()
    trunk, pooled = [], []
    for i in range(0, len(images), 256):
        x = fer_augment.normalize(images[i : i + 256])
        h = backbone.layer1(backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(x)))))
        trunk.append(F.adaptive_avg_pool2d(h, 4).flatten(1))
        h = backbone.layer4(backbone.layer3(backbone.layer2(h)))
        pooled.append(h.mean((2, 3)))
    return {"trunk": torch.cat(trunk).numpy(), "pooled": torch.cat(pooled).numpy()}


def probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
          y_test: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression on standardised features."""
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=2000, C=0.1)
    clf.fit(scaler.transform(x_train), y_train)
    return float(clf.score(scaler.transform(x_test), y_test))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny data, print only")
    p.add_argument("--work", type=Path, default=None,
                   help="the ablation's work folder, whose data and cached backbones are reused "
                        "(default: benchmarks/_work/ablation; with --quick a temporary folder)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    profile_name = "quick" if args.quick else "cpu"
    profile = PROFILES[profile_name]
    if args.work is None:
        args.work = Path(tempfile.mkdtemp()) if args.quick else HERE / "_work" / "ablation"
    work = args.work / profile_name
    t0 = time.perf_counter()
    data, backbones = prepare_data(work, profile, list(REGIMES))
    size = profile["image_size"]
    train = fer_layouts.load_split(data, "train", image_size=size)
    test = fer_layouts.load_split(data, "test", image_size=size)

    rows = []
    for regime in REGIMES:
        torch.manual_seed(0)
        backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
        if backbones[regime] is not None:
            state, _ = load_backbone_checkpoint(backbones[regime])
            backbone.load_state_dict(state, strict=True)
        f_train, f_test = features(backbone, train.images), features(backbone, test.images)
        accs = {k: probe(f_train[k], train.labels.numpy(), f_test[k], test.labels.numpy())
                for k in ("trunk", "pooled")}
        rows.append((regime, accs))
        print(f"{regime:>10}: trunk {100 * accs['trunk']:.1f}%  pooled "
              f"{100 * accs['pooled']:.1f}%", flush=True)

    md = [f"Profile `{profile_name}`: {len(train)} train / {len(test)} test synthetic faces at "
          f"{size} px (the ablation's data and backbones); logistic regression (C = 0.1) on "
          "standardised features, fitted on the clean training labels, accuracy on the test "
          "split (%). Chance: 14.3%.\n",
          "| start | stem + layer1 (frozen in training), 4 x 4 pooled | layer4, global pool |",
          "|---|---|---|"]
    md += [f"| {regime} | {100 * a['trunk']:.1f} | {100 * a['pooled']:.1f} |" for regime, a in rows]
    text = "\n".join(md) + "\n"
    print(text)
    if not args.quick:
        out = HERE / "results" / "probe_backbones.md"
        out.write_text(text)
        print(f"wrote {out}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
