"""``noisylabel-fer``: train, evaluate and predict with the paper's FER network.

Subcommands
-----------
train
    With no arguments: the built-in synthetic face data set (generated once into a cache folder,
    ``$NOISYLABEL_HOME`` or ``~/.cache/noisylabel``), small images, 30% symmetric label noise,
    the ``full`` variant, a few minutes on a laptop CPU. With ``--data PATH`` (RAF-DB layout) the
    paper's defaults apply: 100 px, batch 32, Adam 1e-3, ExponentialLR 0.9, 75 epochs.
evaluate
    Accuracy and a per-class table of a training checkpoint on a split.
predict
    Class probabilities for image files or folders, as CSV.

More subcommands plug in through :data:`SUBCOMMANDS`: a module listed there that defines
``add_arguments(parser)`` and ``run(args) -> int`` becomes ``noisylabel-fer NAME`` (a listed
module that is not installed is skipped). ``pretrain`` and ``export`` are registered that way.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noisylabel._version import __version__

__all__ = ["main", "build_parser", "SUBCOMMANDS", "SYNTHETIC_DEFAULTS", "synthetic_root"]

# name -> (module, one-line help); the module defines add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("noisylabel.apps.fer.pretrain",
                 "pretrain the ResNet18 trunk on faces (synthetic, RAF-DB layout or class folders)"),
    "export": ("noisylabel.apps.fer.export",
               "write a trained model as TorchScript or ONNX, checked against the model"),
}

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "n_train": 2000,
    "n_test": 500,
    "image_size": 32,
    "n_identities": 200,
    "seed": 0,
}
"""Settings of the built-in synthetic data set used when ``train`` gets no ``--data``."""

SYNTHETIC_PRETRAIN_TASK = "expression"
"""Pretraining task of the built-in data's backbone: expressions of faces whose identities are
disjoint from the training set's (the identity task transfers worse on these faces; see
benchmarks/README.md, "Ablation")."""
SYNTHETIC_PRETRAIN_EPOCHS = 15
"""Epochs of pretraining for the built-in data's backbone (made once, then cached)."""

# Training defaults per regime: the built-in synthetic data (small, CPU-friendly) and RAF-DB
# (the paper, SPEC 7; the rest comes from TrainConfig's defaults).
SYNTHETIC_TRAIN_DEFAULTS: dict[str, Any] = {"image_size": 32, "epochs": 15, "noise": 0.3,
                                            "batch_size": 32, "augment": "flip"}
RAFDB_TRAIN_DEFAULTS: dict[str, Any] = {"image_size": 100, "epochs": 75, "noise": 0.0,
                                        "batch_size": 32, "augment": "randaugment"}


def cache_home() -> Path:
    """``$NOISYLABEL_HOME``, else ``$XDG_CACHE_HOME/noisylabel``, else ``~/.cache/noisylabel``."""
    if os.environ.get("NOISYLABEL_HOME"):
        return Path(os.environ["NOISYLABEL_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "noisylabel"


def synthetic_root(settings: dict[str, Any] | None = None) -> Path:
    """Generate (once) the built-in synthetic data set; return its folder.

    The folder is ``cache_home() / f"synthetic-{hash}"`` with the generator's config hash, so a
    change of settings or of the generator gives a new folder.
    """
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset

    config = SyntheticFaceConfig(**(settings or SYNTHETIC_DEFAULTS))
    root = cache_home() / f"synthetic-{config.hash()}"
    if not (root / "synthetic.json").is_file():
        print(f"generating the built-in synthetic face data set into {root} ...", flush=True)
    return generate_dataset(root, config)


# ----------------------------------------------------------------------------- parser


def _bool_flag(group: argparse._ArgumentGroup, name: str, help_on: str, help_off: str) -> None:
    dest = name.replace("-", "_")
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help_on)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=help_off)


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data and label noise")
    d.add_argument("--data", metavar="PATH",
                   help="data root: RAF-DB layout (EmoLabel/list_patition_label.txt, "
                        "Image/aligned/) or FER+ layout (FER2013Train|Valid|Test/label.csv). "
                        "Default: the built-in synthetic faces, generated on first use.")
    d.add_argument("--noise", type=float, metavar="RATE",
                   help="symmetric label-noise rate injected into the training labels, seeded by "
                        "--seed (default 0.3 on the synthetic data, 0 with --data)")
    d.add_argument("--noise-file", metavar="FILE",
                   help="EAC-format noisy train labels (e.g. noise03.txt); overrides --noise")
    d.add_argument("--train-labels", metavar="CSV",
                   help="FER+ layout: train on these labels (CSV 'image,label', e.g. FER2013's "
                        "original labels from prepare-ferplus) while the votes stay the "
                        "reference; images it does not list are left out")
    d.add_argument("--vote-rule", choices=("majority", "plurality", "soft"),
                   help="FER+ layout: votes -> label (default majority: FER+'s rule; soft: the "
                        "vote distribution as target, baseline / aea only)")
    d.add_argument("--noise-mode", choices=("exact", "bernoulli"),
                   help="exact: flip round(rate*N) labels; bernoulli: flip each with prob. rate "
                        "(default exact)")
    d.add_argument("--image-size", type=int, metavar="PX",
                   help="input side in pixels (default 32 synthetic, 100 RAF-DB as in the paper; "
                        "most public code uses 224)")

    m = p.add_argument_group("model")
    m.add_argument("--variant", choices=("baseline", "aea", "full"),
                   help="paper Table I: baseline = ResNet18 + CE, aea = + AEA, full = dual branch "
                        "+ AEA + noise model + correction (default full)")
    m.add_argument("--pretrained", metavar="PATH|none",
                   help="local ResNet18 backbone checkpoint (resnet18_msceleb.pth: "
                        "{'state_dict': ...}, 'module.'-prefixed or bare); 'none' = random init. "
                        "Default: none with --data; on the built-in data, a backbone pretrained "
                        "once on the expressions of other synthetic faces (disjoint identities; "
                        "cached)")
    _bool_flag(m, "freeze-trunk", "freeze the shared stem + layer1",
               "train the shared stem + layer1 (default: frozen iff --pretrained is given)")
    m.add_argument("--anchor-inference", choices=("running", "batch"),
                   help="AEA anchor at evaluation: running mean (default) or the eval batch "
                        "mean (SLM-AEA; predictions then depend on the batch)")
    m.add_argument("--sync-anchor", action="store_true", default=None,
                   help="under torchrun: AEA's training anchor is the mean of the global batch "
                        "over all processes (default: each process's own batch)")

    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help="epochs (default 15 synthetic, 75 RAF-DB)")
    o.add_argument("--batch-size", type=int,
                   help="global training batch per optimiser step (default 32); under torchrun "
                        "each of N processes takes batch/N, so N must divide it")
    o.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    o.add_argument("--lr-gamma", type=float,
                   help="ExponentialLR decay per epoch (default 0.9)")
    o.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0)")
    o.add_argument("--augment", choices=("randaugment", "flip", "none"),
                   help="randaugment: flip + RandAugment m5-n3-mstd0.5 + random erasing (the "
                        "paper, default with --data); flip: flip + random erasing (default on "
                        "the synthetic faces, whose small cues RandAugment destroys); none")

    s = p.add_argument_group("method (paper sections 3-6) and safeguards (section 9)")
    s.add_argument("--t", type=float, help="class-distribution mining threshold (default 0.7)")
    s.add_argument("--beta", type=float, help="loss-weight schedule parameter (default 3)")
    s.add_argument("--signal", choices=("cosine", "loss"),
                   help="per-sample signal of the Beta mixture (default cosine)")
    s.add_argument("--target-loss", choices=("kl", "kl+ce"),
                   help="target branch loss: KL(q || target) (kl, the paper, default) or that "
                        "plus the w-weighted CE on the given labels (kl+ce, ours)")
    s.add_argument("--stats-pass", choices=("train", "eval"),
                   help="noise-model input: the training pass's predictions (default; free) or "
                        "an extra eval-mode pass over the train set (as the references; "
                        "--paper-exact)")
    s.add_argument("--paper-exact", action="store_true", default=None,
                   help="the paper literally: no warm-up gate, plain-mean L1, non-monotone "
                        "posterior, global fit, absolute t rule (overrides the options below)")
    s.add_argument("--warmup", type=int, metavar="EPOCHS",
                   help="ignore the fits of epochs 1..K (logged, not used): w = 1 during epochs "
                        "1..K+1 (default ceil(beta); 0 with --paper-exact)")
    _bool_flag(s, "gate", "use a fit's w only when its two components are separated (default)",
               "use every fit's w")
    _bool_flag(s, "monotone", "posterior monotone in the signal (default)",
               "raw (possibly non-monotone) posterior")
    _bool_flag(s, "per-class", "class-aware mixture fitting",
               "one global mixture over all samples (default)")
    s.add_argument("--mining-rule", choices=("absolute", "relative"),
                   help="accept a class distribution when its diagonal >= t (absolute, default) "
                        "or is the row's largest entry (relative)")
    s.add_argument("--l1-normalize", choices=("weights", "batch"),
                   help="L1 = sum w CE / sum w (weights, default) or mean w CE (batch, paper)")

    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, help="the one seed (noise, init, order, augmentation)")
    r.add_argument("--out", metavar="DIR",
                   help="run folder (default runs/fer/<data>-<variant>-noise<rate>-seed<seed>)")
    r.add_argument("--device", help="cuda, cuda:1, cpu (default: CUDA when present)")
    r.add_argument("--resume", action="store_true", default=None,
                   help="continue from DIR/checkpoint.pt (same final result as uninterrupted)")
    r.add_argument("--num-threads", type=int, help="torch CPU threads")
    _bool_flag(r, "amp", "mixed precision on CUDA (default)", "float32 everywhere")
    _bool_flag(r, "tensorboard", "TensorBoard logs when installed (default)", "no TensorBoard")
    _bool_flag(r, "plots", "PNG plots at the end (default)", "no plots")
    _bool_flag(r, "progress", "progress bar and per-epoch lines (default)", "quiet")


def build_parser() -> argparse.ArgumentParser:
    """The ``noisylabel-fer`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="noisylabel-fer",
        description="Facial expression recognition under label noise: the dual-branch network "
                    "with Average Expression Anchoring, a Beta-mixture noise model and "
                    "label-distribution correction.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_train = sub.add_parser(
        "train", help="train a model (no arguments: built-in synthetic faces, 30%% noise)",
        description="Train a paper Table I variant. Without --data: the built-in synthetic faces "
                    "(32 px, 2000 train / 500 test, 30%% noise, 15 epochs, flip + erasing). With --data: the "
                    "paper's RAF-DB defaults (100 px, batch 32, Adam 1e-3, ExponentialLR 0.9, "
                    "75 epochs, t=0.7, beta=3).",
    )
    _add_train_arguments(p_train)

    p_eval = sub.add_parser("evaluate", help="accuracy and per-class table of a checkpoint",
                            description="Evaluate the target branch of a training checkpoint.")
    p_eval.add_argument("checkpoint", help="checkpoint.pt written by train")
    p_eval.add_argument("--data", metavar="PATH",
                        help="data root (default: the one the checkpoint was trained on)")
    p_eval.add_argument("--split", choices=("test", "train", "valid"), default="test",
                        help="split to evaluate (default test; train uses the clean labels, "
                             "FER+: the votes; valid: FER+ layout only)")
    p_eval.add_argument("--device", help="cuda or cpu (default: CUDA when present)")
    p_eval.add_argument("--batch-size", type=int, default=256, help="eval batch size")

    p_pred = sub.add_parser("predict", help="class probabilities of images as CSV",
                            description="Predict expression probabilities for image files or "
                                        "folders (jpg, jpeg, png, bmp) with the target branch.")
    p_pred.add_argument("checkpoint", help="checkpoint.pt written by train")
    p_pred.add_argument("inputs", nargs="+", help="image files and/or folders")
    p_pred.add_argument("--output", "-o", metavar="CSV",
                        help="write the CSV here (default: standard output)")
    p_pred.add_argument("--device", help="cuda or cpu (default: CUDA when present)")
    p_pred.add_argument("--batch-size", type=int, default=256, help="batch size")

    p_prep = sub.add_parser(
        "prepare-ferplus", help="write the FER+ layout from fer2013.csv and fer2013new.csv",
        description="From Kaggle's fer2013.csv (emotion,pixels,Usage) and FER+'s fer2013new.csv "
                    "(same row order), write FER2013Train|Valid|Test/ (a PNG per image and "
                    "label.csv with the 10 vote counts) and fer2013_train_labels.csv (the "
                    "original FER2013 label of each training image, for --train-labels).")
    p_prep.add_argument("fer2013_csv", help="Kaggle's fer2013.csv")
    p_prep.add_argument("fer2013new_csv", help="FER+'s fer2013new.csv")
    p_prep.add_argument("--out", required=True, metavar="DIR", help="folder to write the layout in")
    p_prep.add_argument("--overwrite", action="store_true",
                        help="replace a FER+ layout already in DIR")

    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p_ext = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p_ext)
        p_ext.set_defaults(_run=module.run)
    return parser


# ----------------------------------------------------------------------------- commands


def _fmt_rate(rate: float) -> str:
    return f"{rate:g}".replace(".", "")


def train_config_from_args(args: argparse.Namespace) -> Any:
    """Turn ``train`` arguments into a :class:`~noisylabel.apps.fer.train.TrainConfig`.

    Options left unset take the regime's defaults: the synthetic ones without ``--data``, the
    paper's RAF-DB ones with it. Without ``--data`` the built-in data set is generated here.
    """
    from noisylabel.apps.fer.train import TrainConfig

    options = {k: v for k, v in vars(args).items()
               if v is not None and k not in ("command", "_run")}
    synthetic = options.get("data") is None
    defaults = SYNTHETIC_TRAIN_DEFAULTS if synthetic else RAFDB_TRAIN_DEFAULTS
    options = {**defaults, **options}
    if synthetic:
        options["data"] = str(synthetic_root())
        if options.get("pretrained") is None:  # the paper's regime: a face-pretrained trunk
            from noisylabel.apps.fer.pretrain import synthetic_backbone

            options["pretrained"] = str(synthetic_backbone(
                SYNTHETIC_DEFAULTS, cache_home(), task=SYNTHETIC_PRETRAIN_TASK,
                epochs=SYNTHETIC_PRETRAIN_EPOCHS,
                progress=options.get("progress", True)))
    if not synthetic and options.get("pretrained") is None:
        print("note: no --pretrained backbone: training from random initialisation. The paper "
              "starts from resnet18_msceleb.pth; pass --pretrained FILE (or 'none' to silence)",
              file=sys.stderr)
    if str(options.get("pretrained", "none")).lower() == "none":
        options["pretrained"] = None
    if options.get("noise_file"):
        options["noise"] = 0.0
    if "out" not in options:
        tag = "synthetic" if synthetic else Path(options["data"]).resolve().name
        noise = "file" if options.get("noise_file") else _fmt_rate(options["noise"])
        options["out"] = str(Path("runs") / "fer" / (
            f"{tag}-{options.get('variant', 'full')}-noise{noise}-seed{options.get('seed', 0)}"))
    return TrainConfig(**options)


def _cmd_train(args: argparse.Namespace) -> int:
    from noisylabel.apps.fer import distributed
    from noisylabel.apps.fer.train import resolve_device, train

    distributed.setup(resolve_device(args.device))  # under torchrun: join the process group
    main = distributed.is_main_process()
    try:
        with distributed.main_process_first():  # one rank generates the built-in data set
            config = train_config_from_args(args)
        result = train(config)
    finally:
        distributed.teardown()
    if main:
        print(f"outputs in {result['out']}: metrics.csv, config.json, summary.json, "
              "checkpoint.pt, model_last.pt (model_best.pt with a validation split), "
              "model_card.json, plots")
    return 0


def _load_for_inference(checkpoint: str, device: str | None):
    from noisylabel.apps.fer.train import (
        TrainConfig,
        build_model,
        load_checkpoint,
        resolve_device,
    )

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(dev).eval()
    return model, cfg, ckpt, dev


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from noisylabel.apps.fer import data as fer_data
    from noisylabel.apps.fer import ferplus
    from noisylabel.apps.fer.report import format_class_table
    from noisylabel.apps.fer.train import predict_probs

    model, cfg, ckpt, dev = _load_for_inference(args.checkpoint, args.device)
    root = args.data or cfg.data
    if ferplus.is_ferplus(root):  # labelled by the vote rule the model was trained with
        split = ferplus.load_ferplus(root, args.split, cfg.image_size, cfg.vote_rule)
    else:
        split = fer_data.load_split(root, args.split, image_size=cfg.image_size)
    probs = predict_probs(model, split.images, "target", args.batch_size, dev)
    pred = probs.argmax(1).cpu().numpy()
    true = split.labels.numpy()
    acc = float((pred == true).mean())
    names = ckpt.get("class_names") or list(fer_data.CLASS_NAMES[: cfg.num_classes])
    print(f"checkpoint {args.checkpoint} (variant {cfg.variant}, epoch {ckpt['epoch']}, "
          f"{ckpt.get('regime', '')})")
    print(f"{args.split} split of {root}: {len(true)} images, accuracy {100 * acc:.2f}%")
    print(format_class_table(true, pred, names))
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _collect_images(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such image file or folder: {path}")
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {list(inputs)}")
    return files


def _read_image(path: Path, size: int):
    """One image as uint8 (3, size, size), decoded and resized as ``load_split`` does."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from noisylabel.apps.fer import data as fer_data
    from noisylabel.apps.fer.train import predict_probs

    model, cfg, ckpt, dev = _load_for_inference(args.checkpoint, args.device)
    files = _collect_images(args.inputs)
    images = torch.stack([_read_image(f, cfg.image_size) for f in files])
    probs = predict_probs(model, images, "target", args.batch_size, dev).cpu().numpy()
    names = ckpt.get("class_names") or list(fer_data.CLASS_NAMES[: cfg.num_classes])
    sink = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(sink)
        writer.writerow(["file", "prediction", *names])
        for f, row in zip(files, probs, strict=True):
            writer.writerow([str(f), names[int(row.argmax())], *(f"{v:.6f}" for v in row)])
    finally:
        if sink is not sys.stdout:
            sink.close()
    if args.output:
        print(f"wrote {len(files)} predictions to {args.output}")
    return 0


def _cmd_prepare_ferplus(args: argparse.Namespace) -> int:
    from noisylabel.apps.fer.ferplus import FER2013_TRAIN_LABELS, prepare_ferplus

    counts = prepare_ferplus(args.fer2013_csv, args.fer2013new_csv, args.out, args.overwrite)
    ambiguous = counts.pop("ambiguous", 0)
    written = ", ".join(f"{folder} {n}" for folder, n in sorted(counts.items()))
    print(f"wrote the FER+ layout into {args.out}: {written} images; "
          f"{Path(args.out) / FER2013_TRAIN_LABELS} lists the original labels of the training "
          f"images ({ambiguous} left out: duplicates with conflicting FER2013 labels)")
    return 0


_COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict,
             "prepare-ferplus": _cmd_prepare_ferplus}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``noisylabel-fer``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = getattr(args, "_run", None) or _COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"noisylabel-fer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
