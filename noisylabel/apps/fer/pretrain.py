"""Pretrain the ResNet18 backbone on faces: the synthetic stand-in for MS-Celeb-1M.

The paper starts from a ResNet18 trained to recognise identities on MS-Celeb-1M; docs/method.md
("The per-epoch noise model and its safeguards") shows the method needs such a start (from scratch ``full`` does not beat plain CE). [`pretrain`][noisylabel.apps.fer.pretrain.pretrain] trains
timm's ``resnet18`` to recognise identities (``task="identity"``) or expressions
(``task="expression"``) on one of two data layouts, found by what the data root holds:

* RAF-DB layout (``EmoLabel/`` present, [`load_split`][noisylabel.apps.fer.layouts.load_split]): identities
  from ``EmoLabel/identities.csv`` (synthetic sets write it), expressions from the label file;
* class folders (``train/`` present, [`load_class_folders`][noisylabel.apps.fer.layouts.load_class_folders]):
  ``train/<class>/*.jpg|*.jpeg|*.png`` and optionally ``test/<class>/...``; the folders are the
  identities or the expression classes, as many as there are (when ``test/`` is absent a 10%
  holdout of ``train/``, drawn with the run's seed, is the held-out split).

It writes the checkpoint in the MS-Celeb file's format,
``{'state_dict': {conv1.weight, ..., fc.weight (K x 512)}}`` with un-prefixed keys, so
``noisylabel-fer train --pretrained FILE`` loads it like the real one (``fc`` is dropped there,
so K need not be 7). Next to it: ``FILE.sha256`` (``sha256sum`` format) and ``FILE.json`` (task,
layout, class count, and for class folders the class names, accuracy on the held-out split,
settings, data hash, sha256).

[`synthetic_backbone`][noisylabel.apps.fer.pretrain.synthetic_backbone] is what ``noisylabel-fer train`` uses on the built-in data: it
generates a source set whose identities are disjoint from the target set's (as MS-Celeb's are
from RAF-DB's) and pretrains on it once; the result is cached next to the generated data, keyed
by the generator's and the pretraining's settings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm.auto import tqdm

from noisylabel.apps.fer import layouts
from noisylabel.apps.fer.augment import make_augment
from noisylabel.apps.fer.config import SYNTHETIC_BACKBONE, PretrainConfig, check_output_path
from noisylabel.apps.fer.datasets import HOLDOUT, load_data_split
from noisylabel.apps.fer.engine import (
    Runtime,
    batch_slices,
    check_finite,
    epoch_permutation,
    predict_probs,
    train_one_epoch,
)
from noisylabel.apps.fer.report import format_time_estimate
from noisylabel.apps.fer.run_folder import (
    atomic_torch_save,
    atomic_write_text,
    remove_stale_temp_files,
    write_json,
)

if TYPE_CHECKING:
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig

__all__ = ["PretrainConfig", "pretrain", "pretraining_faces", "synthetic_backbone"]


def _labels(split: layouts.FERSplit, identities: dict[str, int] | None,
            id_index: dict[int, int] | None) -> torch.Tensor:
    """The split's own labels, or (``identities``) each image's identity as an index."""
    if identities is None:
        return split.labels
    missing = [n for n in split.names if n not in identities]
    if missing:
        raise ValueError(f"{split.root}: no identity for {missing[:5]} in identities.csv")
    return torch.tensor([id_index[identities[n]] for n in split.names], dtype=torch.int64)


def _step(logits: torch.Tensor, idx: torch.Tensor, labels: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of one batch and its sums: loss, correct."""
    loss = F.cross_entropy(logits, labels[idx])
    return loss, torch.stack([loss.detach() * len(idx),
                              (logits.argmax(1) == labels[idx]).sum().float()])


def _pretrain_data(config: PretrainConfig) -> tuple[layouts.FERSplit, layouts.FERSplit,
                                                    torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Training and held-out splits of ``config.data`` (any layout: FER+ holds out
    FER2013Valid), their labels for ``config.task``, and what the sidecar records of the data
    (layout, classes, held-out)."""
    layout = layouts.detect_layout(config.data)
    if layout == "ferplus" and config.task != "expression":
        raise ValueError(f"{config.data}: the FER+ layout has expressions, not identities; "
                         "use task='expression'")
    held_out = "valid" if layout == "ferplus" else "test"
    train_set, test_set = (load_data_split(config.data, split, config.image_size,
                                           seed=config.seed) for split in ("train", held_out))
    info: dict[str, Any] = {"layout": layout, "num_classes": len(train_set.class_names)}
    if layout == "ferplus":
        info["held_out"] = "FER2013Valid"
    elif layout == "class-folders":
        info.update(class_names=list(train_set.class_names),
                    held_out=("test/" if (Path(config.data) / "test").is_dir()
                              else f"{HOLDOUT:.0%} of train/ (seed {config.seed})"))
    identities = id_index = None
    if config.task == "identity" and layout == "raf-db":  # class folders: the folders are
        identities = layouts.read_identities(config.data)  # the identities already
        ids = sorted({identities[n] for n in [*train_set.names, *test_set.names]
                      if n in identities})
        id_index = {k: i for i, k in enumerate(ids)}
        info["num_classes"] = len(id_index)
    y_train = _labels(train_set, identities, id_index)
    y_test = _labels(test_set, identities, id_index)
    return train_set, test_set, y_train, y_test, info


def pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Train ResNet18 on identities or expressions; write the MS-Celeb-format checkpoint.

    Minimises the mean cross-entropy ``-log softmax(f(x_i))[y_i]`` over the training images, with
    ``y_i`` the identity or expression (RAF-DB layout) or the class folder (class folders).

    Returns
    -------
    dict
        ``path``, ``sha256``, ``test_acc`` (held-out split), ``num_classes``, ``task``,
        ``layout`` (``"raf-db"`` or ``"class-folders"``).

    Raises
    ------
    FileNotFoundError
        The data root holds neither layout (see
        [`detect_layout`][noisylabel.apps.fer.layouts.detect_layout]), or a file is missing.
    ValueError
        Malformed data (the message names the file or folder).
    """
    check_output_path("out", config.out, folder=False)  # before the work, not after it
    rt = Runtime.create(config.device, join=False)  # float32, no torchrun group
    device = rt.device
    torch.manual_seed(config.seed)
    train_set, test_set, y_train, y_test, layout_info = _pretrain_data(config)
    y_train, y_test = y_train.to(device), y_test.to(device)
    layout, num_classes = layout_info["layout"], layout_info["num_classes"]
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_gamma)
    augment = make_augment(config.augment)
    order_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    images, test_images = train_set.images.to(device), test_set.images.to(device)
    n = len(y_train)
    if n < 2:
        raise ValueError(f"{config.data}: {n} training image(s); pretraining needs at least 2")
    start = time.perf_counter()
    test_acc = float("nan")
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        batches = batch_slices(epoch_permutation(n, order_gen), config.batch_size)
        total = train_one_epoch(
            model, functools.partial(_step, labels=y_train), batches, images, optimizer, rt,
            augment, aug_gen, f"pretrain {config.task} {epoch}/{config.epochs}",
            config.progress)
        scheduler.step()
        probs = predict_probs(model, test_images, None, 256, device)
        test_acc = float((probs.argmax(1) == y_test).float().mean())
        if not config.quiet:
            tqdm.write(f"pretrain {config.task} epoch {epoch:>2}  loss {total[0].item() / n:.3f}"
                       f"  train {100 * total[1].item() / n:.1f}%  held-out {100 * test_acc:.1f}%")
            if epoch == 1 < config.epochs:
                now = time.perf_counter()
                tqdm.write("pretrain " + format_time_estimate(
                    epoch, now - epoch_start, config.epochs - epoch, now - start))

    out = Path(config.out)
    check_finite(model, f"pretraining, epoch {config.epochs}",
                 hint="nothing was written; try a lower --lr")
    remove_stale_temp_files(out.parent, [out.name, f"{out.name}.sha256", f"{out.name}.json"])
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({"state_dict": state}, out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    atomic_write_text(Path(f"{out}.sha256"), f"{sha}  {out.name}\n")
    data_meta = Path(config.data) / "synthetic.json"
    info = {
        "task": config.task,
        **layout_info,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "test_acc": test_acc,
        "sha256": sha,
        "seconds": round(time.perf_counter() - start, 1),
        "data_hash": json.loads(data_meta.read_text()).get("hash") if data_meta.is_file()
        else None,
        "config": dataclasses.asdict(config),
        "format": "{'state_dict': ...} with un-prefixed timm/torchvision resnet18 keys",
    }
    write_json(Path(f"{out}.json"), info)
    return {"path": str(out), "sha256": sha, "test_acc": test_acc, "num_classes": num_classes,
            "task": config.task, "layout": layout}


def pretraining_faces(target_settings: dict[str, Any],
                      n_faces: int | None = None) -> SyntheticFaceConfig:
    """The generator settings of the built-in backbone's source faces.

    Parameters
    ----------
    target_settings : dict
        [`SyntheticFaceConfig`][noisylabel.apps.fer.synthetic.SyntheticFaceConfig] fields of the
        training set.
    n_faces : int or None
        Training faces of the source; None = ``SYNTHETIC_BACKBONE["n_faces"]`` (read when
        called).

    Returns
    -------
    SyntheticFaceConfig
        ``n_faces`` faces whose identities are disjoint from the target's.
    """
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, disjoint_config

    if n_faces is None:
        n_faces = SYNTHETIC_BACKBONE["n_faces"]
    return disjoint_config(SyntheticFaceConfig(**target_settings), n_train=n_faces)


def synthetic_backbone(target_settings: dict[str, Any], root: Path, task: str | None = None,
                       epochs: int | None = None, n_faces: int | None = None,
                       progress: bool = True, quiet: bool = False) -> Path:
    """Pretrained backbone for the built-in synthetic data, made once and cached.

    A source data set of ``n_faces`` training faces with identities disjoint from the target's
    (same generator, other faces, as MS-Celeb is to RAF-DB) is generated under ``root``, and
    ResNet18 is pretrained on it (``task``, ``epochs``). ``task``, ``epochs`` and ``n_faces``
    left at None are read from
    [`SYNTHETIC_BACKBONE`][noisylabel.apps.fer.config.SYNTHETIC_BACKBONE] when called. Both are
    keyed by a hash of the target's generator settings and the pretraining settings, so changing
    either makes a new file.

    The pretraining settings other than ``task`` and ``epochs`` are the
    [`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig] defaults, so
    ``noisylabel-fer pretrain`` with no options makes the same backbone. ``progress`` and
    ``quiet`` are those of [`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig].

    Returns
    -------
    Path
        The checkpoint (``{'state_dict': ...}``).
    """
    from noisylabel.apps.fer.synthetic import generate_dataset

    task = SYNTHETIC_BACKBONE["task"] if task is None else task
    epochs = SYNTHETIC_BACKBONE["epochs"] if epochs is None else epochs
    source = pretraining_faces(target_settings, n_faces)
    settings = {"source": source.hash(), "task": task, "epochs": epochs,
                "image_size": source.image_size, "augment": PretrainConfig.augment,
                "batch_size": PretrainConfig.batch_size, "version": 3}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = root / f"pretrained-{key}" / f"resnet18_{task}.pth"
    if path.is_file() and Path(f"{path}.json").is_file():
        return path
    source_root = root / f"synthetic-{source.hash()}"
    if not (source_root / "synthetic.json").is_file():
        print(f"generating the pretraining faces (identities disjoint from the target's) into "
              f"{source_root} ...", flush=True)
    generate_dataset(source_root, source)
    print(f"pretraining ResNet18 on {task} ({epochs} epochs) -> {path}", flush=True)
    result = pretrain(PretrainConfig(data=str(source_root), task=task, out=str(path),
                                     image_size=source.image_size, epochs=epochs,
                                     progress=progress, quiet=quiet))
    print(f"pretrained backbone: held-out {task} accuracy {100 * result['test_acc']:.1f}%, "
          f"sha256 {result['sha256']}", flush=True)
    return path
