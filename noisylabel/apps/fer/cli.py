"""``noisylabel-fer``: train, pretrain, evaluate and predict with the paper's FER network.

Subcommands
-----------
train
    With no arguments: the built-in synthetic face data set (generated once into
    [`cache_home`][noisylabel.apps.fer.config.cache_home]), small images, 30% symmetric label
    noise, the ``full`` variant, a few minutes on a laptop CPU (preset ``synthetic-cpu``). With
    ``--data PATH`` the paper's defaults apply (preset ``rafdb-paper``): 100 px, batch 32,
    Adam 1e-3, ExponentialLR 0.9, 75 epochs.
pretrain
    Pretrain the ResNet18 trunk on faces ([`pretrain`][noisylabel.apps.fer.pretrain]).
evaluate
    Accuracy and a per-class table of a training checkpoint on a split.
predict
    Class probabilities for image files or folders, as CSV.
prepare-ferplus
    Write the FER+ layout from Kaggle's and FER+'s CSV files.
export
    Write a trained model as TorchScript or ONNX.

The options of ``train`` and ``pretrain`` are built from the fields of
[`TrainConfig`][noisylabel.apps.fer.config.TrainConfig] and
[`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig]: their defaults and help texts are
defined there only. Building the parser imports neither torch nor timm.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import errno
import sys
import typing
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from noisylabel._version import __version__
from noisylabel.apps.fer import config as fer_config
from noisylabel.apps.fer import run_folder
from noisylabel.apps.fer.config import (
    PRETRAIN_PRESETS,
    TRAIN_PRESETS,
    PretrainConfig,
    TrainConfig,
    cache_home,
)

__all__ = ["main", "build_parser", "synthetic_root", "train_config_from_args",
           "resume_config_from_args", "built_in_data"]


def synthetic_root(settings: dict[str, Any] | None = None) -> Path:
    """Generate (once) the built-in synthetic data set; return its folder.

    The folder is ``cache_home() / f"synthetic-{hash}"`` with the generator's config hash, so a
    change of settings or of the generator gives a new folder.
    """
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset

    config = SyntheticFaceConfig(**(settings or fer_config.SYNTHETIC_DEFAULTS))
    root = cache_home() / f"synthetic-{config.hash()}"
    if not (root / "synthetic.json").is_file():
        print(f"generating the built-in synthetic face data set into {root} ...", flush=True)
    return generate_dataset(root, config)


# ----------------------------------------------------------------------------- parser


def _note_given(namespace: argparse.Namespace, dest: str) -> None:
    """Record in ``namespace._given`` that option ``dest`` was given on the command line."""
    namespace._given = {*getattr(namespace, "_given", ()), dest}


class _Given(argparse.Action):
    """Store an option's value and note in ``namespace._given`` that it was given, so that a
    preset fills in only the options left out (with ``nargs="?"`` and ``const``, as
    ``--resume [RUN_DIR]``: ``const`` when given without a value)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


class _GivenBool(argparse.BooleanOptionalAction):
    """``--NAME`` / ``--no-NAME`` (argparse's ``BooleanOptionalAction``), noted as given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _note_given(namespace, self.dest)


class _Deprecated(argparse.Action):
    """An old spelling of an option, kept for a release: hidden from ``--help``; when used it
    warns on standard error, then acts as ``new`` (the current spelling) does."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


# Argument groups of `train --help`: the field that opens each group.
_TRAIN_GROUPS = {"data": "data and label noise", "variant": "model", "epochs": "optimisation",
                 "t": "method (docs/method.md) and its safeguards", "seed": "run"}
_TYPES = {"int": int, "float": float, "str": str}


def _default_text(f: dataclasses.Field, presets: dict[str, dict[str, Any]]) -> str:
    """`` (default: X; preset P: Y)`` for ``f``, empty when it has no default value."""
    shown = [f"default: {f.default}"] if f.default not in (None, "") else []
    shown += [f"preset {name}: {values[f.name]}" for name, values in presets.items()
              if f.name in values]
    return f" ({'; '.join(shown)})" if shown else ""


def _add_config_arguments(parser: argparse.ArgumentParser, config_cls: type,
                          presets: dict[str, dict[str, Any]],
                          groups: dict[str, str] | None = None) -> None:
    """One option per field of ``config_cls``: its name, default, type, choices, help and old
    spellings come from the field (``config._opt``); booleans become ``--NAME`` /
    ``--no-NAME``."""
    hints = typing.get_type_hints(config_cls)
    group: Any = parser
    for f in dataclasses.fields(config_cls):
        if groups and f.name in groups:
            group = parser.add_argument_group(groups[f.name])
        flag = "--" + (f.metadata["flag"] or f.name.replace("_", "-"))
        names = [flag, f.metadata["short"]] if f.metadata["short"] else [flag]
        help_text = (f.metadata["help"] + _default_text(f, presets)).replace("%", "%%")
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        if bool in kind and f.metadata["metavar"]:  # a flag that may take a value
            group.add_argument(*names, dest=f.name, action=_Given, nargs="?", const=True,
                               default=f.default, metavar=f.metadata["metavar"], help=help_text)
            continue
        if bool in kind:
            group.add_argument(*names, dest=f.name, action=_GivenBool, default=f.default,
                               help=help_text)
            continue
        typed = {"type": next(t for t in kind if t is not type(None)),
                 "choices": f.metadata["choices"], "metavar": f.metadata["metavar"]}
        group.add_argument(*names, dest=f.name, action=_Given, default=f.default, help=help_text,
                           **typed)
        for old in f.metadata["deprecated"]:
            group.add_argument(f"--{old}", dest=f.name, action=_Deprecated, new=flag,
                               default=f.default, **typed)
    parser.set_defaults(_given=())


def _add_inference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint.pt written by train, or its run folder "
                   "(predict: also model_best.pt / model_last.pt)")
    p.add_argument("--device", help="cuda or cpu (default: CUDA when present)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.eval_batch_size,
                   help="batch size (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The ``noisylabel-fer`` argument parser with all subcommands (imports no torch)."""
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
        description="Train a paper Table I variant. Options left out come from a preset: "
                    "synthetic-cpu without --data (the built-in synthetic faces), rafdb-paper "
                    "with it (the paper's RAF-DB settings), or the one --preset names.",
    )
    p_train.add_argument("--preset", choices=sorted(TRAIN_PRESETS),
                         help="named defaults (default: synthetic-cpu without --data, "
                              "rafdb-paper with it)")
    _add_config_arguments(p_train, TrainConfig, TRAIN_PRESETS, _TRAIN_GROUPS)

    p_pre = sub.add_parser(
        "pretrain", help="pretrain the ResNet18 trunk on faces (synthetic, RAF-DB layout or "
                         "class folders)",
        description="Pretrain the ResNet18 trunk on faces; write an MS-Celeb-format checkpoint.")
    _add_config_arguments(p_pre, PretrainConfig, PRETRAIN_PRESETS)

    p_eval = sub.add_parser("evaluate", help="accuracy and per-class table of a checkpoint",
                            description="Evaluate the target branch of a training checkpoint.")
    _add_inference_arguments(p_eval)
    p_eval.add_argument("--data", metavar="PATH",
                        help="data root (default: the one the checkpoint was trained on)")
    p_eval.add_argument("--split", choices=("test", "train", "valid"), default="test",
                        help="split to evaluate (default test; train uses the clean labels, "
                             "FER+: the votes; valid: FER+ layout only)")

    p_pred = sub.add_parser("predict", help="class probabilities of images as CSV",
                            description="Predict expression probabilities for image files or "
                                        "folders with the target branch.")
    _add_inference_arguments(p_pred)
    p_pred.add_argument("inputs", nargs="+", help="image files and/or folders")
    p_pred.add_argument("--out", "-o", metavar="CSV",
                        help="write the CSV here (default: standard output)")
    p_pred.add_argument("--output", dest="out", action=_Deprecated, new="--out")

    p_prep = sub.add_parser(
        "prepare-ferplus", help="write the FER+ layout from fer2013.csv and fer2013new.csv",
        description="From Kaggle's fer2013.csv (emotion,pixels,Usage) and FER+'s fer2013new.csv "
                    "(same row order), write FER2013Train|Valid|Test/ (a PNG per image and "
                    "label.csv with the 10 vote counts) and fer2013_train_labels.csv (the "
                    "original FER2013 label of each training image, for --train-labels).")
    p_prep.add_argument("fer2013_csv", help="Kaggle's fer2013.csv")
    p_prep.add_argument("fer2013new_csv", help="FER+'s fer2013new.csv")
    p_prep.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to write the layout in")
    p_prep.add_argument("--overwrite", action="store_true",
                        help="replace a FER+ layout already in DIR")

    p_exp = sub.add_parser("export", help="write a trained model as TorchScript or ONNX",
                           description="Write a trained model as TorchScript or ONNX, checked "
                                       "against the model on a batch before it is kept.")
    p_exp.add_argument("checkpoint", help="checkpoint.pt, model_last.pt, model_best.pt or a "
                                          "run folder")
    p_exp.add_argument("--format", choices=("torchscript", "onnx"),
                       help="torchscript or onnx (needs: pip install onnx onnxscript); default: "
                            "onnx for an --out ending in .onnx, else torchscript")
    p_exp.add_argument("--out", "-o", metavar="FILE",
                       help="file to write (default: model.torchscript.pt or model.onnx beside "
                            "the checkpoint)")
    p_exp.add_argument("--batch-size", type=int, default=4,
                       help="images in the batch the file is checked on (default 4)")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    for subparser in sub.choices.values():  # --debug after the command works too
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help=_DEBUG_HELP)
    return parser


_DEBUG_HELP = "on an error, show the full traceback instead of the one-line message"


# ----------------------------------------------------------------------------- commands


def _fmt_rate(rate: float) -> str:
    return f"{rate:g}".replace(".", "")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Turn ``train`` arguments into a [`TrainConfig`][noisylabel.apps.fer.config.TrainConfig];
    parsing only: nothing is generated, trained, created or checked on disk.

    Options left out take the preset's values: ``--preset``, else ``synthetic-cpu`` without
    ``--data`` and ``rafdb-paper`` with it; a noise file replaces the preset's ``noise`` (a
    ``--noise`` above 0 given with it is refused). Without ``--data``, ``data`` stays empty (and
    ``pretrained`` None unless given): the command fills them in after the checks
    ([`built_in_data`][noisylabel.apps.fer.cli.built_in_data]). ``--out`` left out is the
    default folder's name, ``out/<data>-<variant>-noise<rate>-seed<seed>``, which the command
    numbers ([`claim_next`][noisylabel.apps.fer.run_folder.claim_next]). ``--resume`` takes
    the run's own configuration from its checkpoint
    ([`resume_config_from_args`][noisylabel.apps.fer.cli.resume_config_from_args]).

    Parameters
    ----------
    args : argparse.Namespace
        ``build_parser().parse_args(["train", ...])``.

    Returns
    -------
    TrainConfig
        The run's options.

    Raises
    ------
    ValueError
        ``--noise`` above 0 and ``--noise-file`` both given, or a bad option value.
    """
    given = {name: getattr(args, name) for name in args._given}
    if given.get("resume"):
        return resume_config_from_args(args)
    if given.get("noise_file") and given.get("noise"):
        raise ValueError(f"--noise {given['noise']:g} and --noise-file {given['noise_file']}: the "
                         "noise file holds the noisy labels, and no noise is injected on top of "
                         "it; give one of them")
    synthetic = not given.get("data")
    preset = args.preset or ("synthetic-cpu" if synthetic else "rafdb-paper")
    options = {**TRAIN_PRESETS[preset], **given}
    if options.get("noise_file"):
        options["noise"] = 0.0
    if "out" not in given:
        options["out"] = _default_out(options, synthetic)
    if not synthetic and options.get("pretrained") is None:
        print("note: no --pretrained backbone: training from random initialisation. The paper "
              "starts from resnet18_msceleb.pth; pass --pretrained FILE (or 'none' to silence)",
              file=sys.stderr)
    if str(options.get("pretrained")).lower() == "none":
        options["pretrained"] = None
    return _config(options)


def built_in_data(config: TrainConfig, backbone: bool) -> TrainConfig:
    """``config`` on the built-in synthetic faces when it names no ``data``: the data set is
    generated once into [`cache_home`][noisylabel.apps.fer.config.cache_home]
    ([`synthetic_root`][noisylabel.apps.fer.cli.synthetic_root]) and, with ``backbone``, a
    backbone pretrained once on the expressions of other synthetic faces (the paper's regime:
    a face-pretrained trunk; [`synthetic_backbone`][noisylabel.apps.fer.pretrain.synthetic_backbone]).

    Parameters
    ----------
    config : TrainConfig
        The parsed options ([`train_config_from_args`][noisylabel.apps.fer.cli.train_config_from_args]).
    backbone : bool
        Pretrain (or reuse) the built-in backbone: ``--pretrained`` was left out.

    Returns
    -------
    TrainConfig
        ``config`` itself when it names ``data``; else with ``data`` (and ``pretrained``).
    """
    if config.data:
        return config
    data = str(synthetic_root())
    if not backbone:
        return dataclasses.replace(config, data=data)
    from noisylabel.apps.fer.pretrain import synthetic_backbone

    pretrained = synthetic_backbone(fer_config.SYNTHETIC_DEFAULTS, cache_home(),  # the
                                    progress=config.progress, quiet=config.quiet)  # defaults
    return dataclasses.replace(config, data=data, pretrained=str(pretrained))


def _config(options: dict[str, Any], **changes: Any) -> TrainConfig:
    return TrainConfig(**{**options, **changes})


def _as_option(message: str) -> str:
    """``lr_gamma=-1: ...`` -> ``--lr-gamma -1: ...``: a message about a configuration field
    names the command-line option."""
    name, sep, rest = message.partition("=")
    fields = {f.name for cls in (TrainConfig, PretrainConfig) for f in dataclasses.fields(cls)}
    if sep and name in fields:
        return f"--{name.replace('_', '-')} {rest}"
    if sep and name.startswith("-") and " " not in name:  # already an option: --output=x
        return f"{name} {rest}"
    return message


def _default_out(options: dict[str, Any], synthetic: bool) -> str:
    """The run folder when ``--out`` is left out: ``<out>/<data>-<variant>-noise<rate>-seed<seed>``."""
    opt = {f.name: options.get(f.name, f.default) for f in dataclasses.fields(TrainConfig)}
    tag = "synthetic" if synthetic else Path(opt["data"]).resolve().name
    noise = "file" if opt["noise_file"] else _fmt_rate(opt["noise"])
    return str(Path(opt["out"]) / f"{tag}-{opt['variant']}-noise{noise}-seed{opt['seed']}")


def resume_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The configuration of ``train --resume [RUN_DIR]``: the checkpoint's own.

    The run folder is RUN_DIR, else ``--out``, else the newest of the numbered folders the given
    options name by default ([`newest`][noisylabel.apps.fer.run_folder.newest]). Options given
    as well must agree with the checkpoint's (paths as resolved paths)
    or be among those that may change
    ([`RESUME_MAY_CHANGE`][noisylabel.apps.fer.config.RESUME_MAY_CHANGE]), which then apply.

    Raises
    ------
    ValueError
        No checkpoint in the run folder, RUN_DIR and ``--out`` naming different folders, or
        given options that differ from the run's (each named, with both values).
    """
    from noisylabel.apps.fer.engine import load_checkpoint
    from noisylabel.apps.fer.train import same_option

    given = {name: getattr(args, name) for name in args._given}
    run_dir = given["resume"] if isinstance(given["resume"], str) else None
    if run_dir and given.get("out") and Path(run_dir).resolve() != Path(given["out"]).resolve():
        raise ValueError(f"--resume {run_dir} and --out {given['out']} name different folders; "
                         "give one of them")
    if run_dir is None:
        run_dir = given.get("out") or _newest_default_folder(args, given)
    run_folder.decide(run_dir, resume=True, overwrite=False)
    saved = load_checkpoint(Path(run_dir) / run_folder.CHECKPOINT, mmap=True)["config"]
    changes, conflicts = {}, []
    for name, value in given.items():
        if name in ("resume", "out"):
            continue
        if name == "pretrained" and str(value).lower() == "none":
            value = None
        if name in fer_config.RESUME_MAY_CHANGE:
            changes[name] = value
        elif not same_option(name, saved.get(name), value):
            conflicts.append(f"--{name.replace('_', '-')} {value} (the run's: {saved.get(name)})")
    if conflicts:
        may = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(fer_config.RESUME_MAY_CHANGE))
        raise ValueError(f"cannot resume {run_dir}: {'; '.join(conflicts)}. A resumed run keeps "
                         f"its options; only {may} may change")
    return _config({**saved, **changes, "out": str(run_dir), "resume": True, "overwrite": False})


def _newest_default_folder(args: argparse.Namespace, given: dict[str, Any]) -> str:
    """``--resume`` without a folder: the newest numbered folder the options name by default
    (the unnumbered name when there is none, for the message)."""
    synthetic = not given.get("data")
    preset = args.preset or ("synthetic-cpu" if synthetic else "rafdb-paper")
    base = _default_out({**TRAIN_PRESETS[preset], **given}, synthetic)
    return str(run_folder.newest(base) or base)


def _cmd_train(args: argparse.Namespace) -> int:
    """``noisylabel-fer train``: parse, check, make the built-in data, place, train."""
    from noisylabel.apps.fer import distributed
    from noisylabel.apps.fer.engine import resolve_device
    from noisylabel.apps.fer.train import train

    distributed.setup(resolve_device(args.device))  # under torchrun: join the process group
    main = distributed.is_main_process()
    try:
        config, numbered = _default_folder(train_config_from_args(args), args)
        _check_before_work(config, numbered)
        with distributed.main_process_first():  # one rank generates the built-in data set
            config = built_in_data(config, backbone=args.pretrained is None)
        with _new_numbered_folder(config, numbered) as config:
            args._run_dir = config.out  # for the message on Ctrl-C
            result = train(config)
    finally:
        distributed.teardown()
    if main:
        print(f"outputs in {result['out']}: {', '.join(run_folder.outputs(result['out']))}")
    return 0


def _default_folder(config: TrainConfig, args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """With ``--out`` left out: ``--overwrite`` replaces the newest numbered default folder,
    and a new run is to go to the next one (True: the command numbers it)."""
    if "out" in args._given or config.resume:
        return config, False
    if config.overwrite:
        newest = run_folder.newest(config.out) or config.out
        return dataclasses.replace(config, out=str(newest)), False
    return config, True


def _check_before_work(config: TrainConfig, numbered: bool) -> None:
    """The options' paths, before the data set or the backbone is made (``train`` checks them
    again); a ``numbered`` run is checked in the folder it would get now."""
    out = run_folder.next_folder(config.out) if numbered else config.out
    dataclasses.replace(config, out=str(out)).check_paths()


@contextlib.contextmanager
def _new_numbered_folder(config: TrainConfig, numbered: bool) -> Iterator[TrainConfig]:
    """``config`` for the block, in the next numbered folder when ``numbered`` (rank 0 claims
    it and tells the others; said when it is not the first of its name)."""
    from noisylabel.apps.fer import distributed

    if not numbered:
        yield config
        return
    main = distributed.is_main_process()
    with run_folder.claim_next(config.out) if main else contextlib.nullcontext() as folder:
        out = distributed.all_gather_object(str(folder) if main else None)[0]
        if main and out != config.out:
            print(f"this run goes to {out} ({config.out} is taken)", flush=True)
        yield dataclasses.replace(config, out=out)


def _load_for_inference(checkpoint: str, device: str | None):
    from noisylabel.apps.fer.engine import load_checkpoint, resolve_device
    from noisylabel.apps.fer.train import build_model

    dev = resolve_device(device)
    ckpt = load_checkpoint(run_folder.checkpoint_of(checkpoint))
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(dev).eval()
    return model, cfg, ckpt, dev


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from noisylabel.apps.fer.datasets import EXPRESSION_LAYOUTS, load_data_split
    from noisylabel.apps.fer.engine import predict_probs
    from noisylabel.apps.fer.layouts import CLASS_NAMES
    from noisylabel.apps.fer.report import format_class_table

    model, cfg, ckpt, dev = _load_for_inference(args.checkpoint, args.device)
    root = args.data or cfg.data
    split = load_data_split(root, args.split, cfg.image_size, cfg.vote_rule,
                            layouts=EXPRESSION_LAYOUTS)  # FER+: the model's own vote rule
    probs = predict_probs(model, split.images, "target", args.batch_size, dev)
    pred = probs.argmax(1).cpu().numpy()
    true = split.labels.numpy()
    acc = float((pred == true).mean())
    names = ckpt.get("class_names") or list(CLASS_NAMES[: cfg.num_classes])
    print(f"checkpoint {args.checkpoint} (variant {cfg.variant}, epoch {ckpt['epoch']}, "
          f"{ckpt.get('regime', '')})")
    print(f"{args.split} split of {root}: {len(true)} images, accuracy {100 * acc:.2f}%")
    print(format_class_table(true, pred, names))
    return 0


def _collect_images(inputs: Sequence[str]) -> list[Path]:
    from noisylabel.apps.fer.image_cache import IMAGE_SUFFIXES

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


def _cmd_predict(args: argparse.Namespace) -> int:
    """``noisylabel-fer predict``: the public inference API (``load_model``) over files."""
    from noisylabel.apps.fer.engine import resolve_device
    from noisylabel.apps.fer.inference import load_images, load_model

    if args.out:  # before any work
        fer_config.check_output_path("--out", args.out, folder=False)
    model = load_model(args.checkpoint, resolve_device(args.device))
    files = _collect_images(args.inputs)
    probs = model.predict_proba(load_images(files, model.image_size), args.batch_size)
    names = model.class_names
    sink = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(sink)
        writer.writerow(["file", "prediction", *names])
        for f, row in zip(files, probs, strict=True):
            writer.writerow([str(f), names[int(row.argmax())], *(f"{v:.6f}" for v in row)])
    finally:
        if sink is not sys.stdout:
            sink.close()
    if args.out:
        print(f"wrote {len(files)} predictions to {args.out}")
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


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """``noisylabel-fer pretrain``: write the checkpoint and print its sha256."""
    from noisylabel.apps.fer.engine import resolve_device
    from noisylabel.apps.fer.pretrain import pretrain

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)}
    PretrainConfig(**options)  # the options, output path and device checked before any work
    fer_config.check_output_path("out", options["out"], folder=False)
    resolve_device(options["device"])
    if not options["data"]:  # faces whose identities are disjoint from the built-in set's
        from noisylabel.apps.fer.pretrain import pretraining_faces
        from noisylabel.apps.fer.synthetic import generate_dataset

        source = pretraining_faces(fer_config.SYNTHETIC_DEFAULTS)
        options["data"] = str(generate_dataset(cache_home() / f"synthetic-{source.hash()}",
                                               source))
    result = pretrain(PretrainConfig(**options))
    print(f"wrote {result['path']} ({result['num_classes']}-way {result['task']} head, held-out "
          f"accuracy {100 * result['test_acc']:.1f}%)\nsha256 {result['sha256']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from noisylabel.apps.fer import export

    return export.run(args)


_COMMANDS = {"train": _cmd_train, "pretrain": _cmd_pretrain, "evaluate": _cmd_evaluate,
             "predict": _cmd_predict, "prepare-ferplus": _cmd_prepare_ferplus,
             "export": _cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``noisylabel-fer``; returns the exit status.

    The one error boundary: an expected failure (bad option value, path, device, image or data
    file; a full disk or a missing permission; a diverged run) ends in one line
    ``noisylabel-fer: error: ...`` and exit status 2; Ctrl-C in one line saying how to resume,
    and status 130. A warning is one line ``noisylabel-fer: warning: ...``. ``--debug`` shows
    the traceback instead, and warnings in Python's format (with their source line).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = _COMMANDS[args.command]
    try:
        with _warnings_as_lines(args.debug):
            return int(run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\nnoisylabel-fer: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if args.debug or (isinstance(exc, RuntimeError) and not _is_out_of_memory(exc)):
            raise  # an unexpected RuntimeError is a bug: its traceback is the report
        print(f"noisylabel-fer: error: {describe_error(exc)}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _warnings_as_lines(debug: bool) -> Iterator[None]:
    """Warnings issued in the block are shown as one line on standard error,
    ``noisylabel-fer: warning: MESSAGE``, each message once (a configuration is checked again
    each time it is copied). With ``debug``: Python's format, source line included."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: typing.TextIO | None = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            print(f"noisylabel-fer: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = show
        yield


_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or write elsewhere",
    errno.EACCES: "permission denied: choose a path you may write to",
    errno.EPERM: "permission denied: choose a path you may write to",
    errno.EROFS: "a read-only file system: write elsewhere",
}


def describe_error(exc: BaseException) -> str:
    """One line for an expected failure: the message, and for an OSError the file and the
    cause (with what to do for a full disk or a missing permission)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
        if exc.errno in _ERRNO_HINTS:
            text += f" ({_ERRNO_HINTS[exc.errno]})"
    elif _is_out_of_memory(exc):
        text = (f"out of device memory ({str(exc).splitlines()[0]}); lower --batch-size or "
                "--eval-batch-size, or use --device cpu")
    else:
        text = _as_option(str(exc)) or type(exc).__name__
    return " ".join(text.split())


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError"


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C left: for ``train``, how to continue the run from its last checkpoint."""
    run_dir = getattr(args, "_run_dir", None)
    if args.command != "train" or run_dir is None:
        return "interrupted"
    if (Path(run_dir) / run_folder.CHECKPOINT).is_file():
        return (f"interrupted; continue from the last checkpoint with: noisylabel-fer train "
                f"--resume {run_dir}")
    return f"interrupted before the first checkpoint was written in {run_dir}: nothing to resume"


if __name__ == "__main__":
    sys.exit(main())
