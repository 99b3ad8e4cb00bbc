"""Configuration of the FER application: every option, its default and its help text, once.

[`TrainConfig`][noisylabel.apps.fer.config.TrainConfig] and
[`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig] hold the options of a training and
a pretraining run. Each field carries its command-line help in ``metadata["help"]``; the
``noisylabel-fer`` parser is built from the fields (``cli``), so a
default is written in one place only.

Named presets, in the spirit of timm's ``default_cfgs``, are overrides of those defaults:
[`TRAIN_PRESETS`][noisylabel.apps.fer.config.TRAIN_PRESETS] (``rafdb-paper``, the dataclass
defaults; ``rafdb-224``; ``synthetic-cpu``, what ``noisylabel-fer train`` runs without
``--data``) and [`PRETRAIN_PRESETS`][noisylabel.apps.fer.config.PRETRAIN_PRESETS]. Build a
configuration from one with [`train_preset`][noisylabel.apps.fer.config.train_preset] or
[`pretrain_preset`][noisylabel.apps.fer.config.pretrain_preset].

Generated data, pretrained backbones and image caches live under
[`cache_home`][noisylabel.apps.fer.config.cache_home] (``$NOISYLABEL_HOME``).

This module imports neither torch nor timm, so ``noisylabel-fer --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noisylabel.apps.fer.run_folder import decide

__all__ = ["TrainConfig", "PretrainConfig", "RESUME_MAY_CHANGE", "BATCHNORM_MAX_1X1",
           "check_output_path",
           "TRAIN_PRESETS", "PRETRAIN_PRESETS", "train_preset",
           "pretrain_preset", "cache_home", "SYNTHETIC_DEFAULTS", "SYNTHETIC_BACKBONE"]


def _opt(default: Any, help: str, metavar: str | None = None,  # noqa: A002 (argparse's name)
         choices: tuple[str, ...] | None = None, flag: str | None = None, short: str | None = None,
         deprecated: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its command-line spelling and help in ``metadata``.

    Parameters
    ----------
    default, help, metavar, choices
        As ``argparse.ArgumentParser.add_argument``.
    flag : str or None
        The option's name without ``--``; None = the field name with ``-`` for ``_``.
    short : str or None
        A one-letter form such as ``-o``.
    deprecated : tuple of str
        Old names without ``--``, still accepted for a release (hidden from ``--help``; using
        one prints a warning naming the new one).
    """
    meta = {"help": help, "metavar": metavar, "choices": choices, "flag": flag, "short": short,
            "deprecated": deprecated}
    return field(default=default, metadata=meta)


_VARIANTS = ("baseline", "aea", "full")
RESUME_MAY_CHANGE = frozenset({"epochs", "progress", "quiet", "device", "tensorboard", "plots",
                               "num_threads"})
"""Options a resumed run may set differently from its checkpoint (``epochs`` may only grow);
the others must agree, and ``out``, ``resume`` and ``overwrite`` are not compared."""
_AUGMENTS = ("randaugment", "flip", "none")


@dataclass
class TrainConfig:
    """Every option of a training run. Defaults are the paper's RAF-DB settings (docs/method.md)
    and the safeguards of docs/method.md, "The per-epoch noise model and its safeguards";
    ``paper_exact=True`` restores the paper's equations literally.

    Parameters
    ----------
    data : str
        Data root: RAF-DB layout (``EmoLabel/list_patition_label.txt``, ``Image/aligned``) or
        FER+ layout (``ferplus``).
    out : str
        Run folder: checkpoint, metrics.csv, config.json, summary.json, plots, TensorBoard
        (its files, its lock and the numbered default folders:
        [`run_folder`][noisylabel.apps.fer.run_folder]).
    noise : float
        Rate of symmetric label noise injected into the training labels (each flipped label
        goes to a uniformly random other class), seeded by ``seed``. Ignored with ``noise_file``.
        A rate at or above ``(K - 1) / K`` (K = ``num_classes``) warns: the labels are then no
        better than random.
    noise_file : str or None
        EAC-format noisy label file (``train_00001.jpg 5``, 1-based) replacing the train labels.
    train_labels : str or None
        FER+ layout only: a train-labels CSV (``image,label``) whose labels replace the vote
        labels for training (e.g. FER2013's original labels); the vote labels stay the
        reference that the label noise and the noise model's detection are measured against.
        Images it does not list are left out of training. ``noise`` is injected on top of it.
    vote_rule : {"majority", "plurality", "soft"}
        FER+ layout only: how the votes become labels (``annotators``);
        ``soft`` trains ``baseline`` / ``aea`` on the vote distribution.
    noise_mode : {"exact", "bernoulli"}
        ``exact`` flips round(rate * N) labels, ``bernoulli`` flips each with probability rate.
    image_size : int
        Side of the (square) network input; images are resized once when loaded.
    variant : {"baseline", "aea", "full"}
        Network of the paper's Table I.
    num_classes : int
        Number of classes (7 for RAF-DB).
    pretrained : str or None
        Local ResNet18 checkpoint for the backbone (MS-Celeb format, ``module.``-prefixed or bare);
        None trains from random initialisation.
    freeze_trunk : bool or None
        Freeze the shared stem + layer1; None = frozen exactly when ``pretrained`` is given.
    anchor_inference : {"running", "batch"}
        AEA anchor at evaluation: running mean (default) or the eval batch's mean (SLM-AEA).
    sync_anchor : bool
        Under torchrun: AEA's training anchor is the mean over the global batch of all ranks
        (``AverageAnchor(sync=True)``) instead of each rank's own batch.
    epochs, batch_size, lr, lr_gamma, weight_decay : training schedule
        Adam with learning rate ``lr`` (finite, > 0) and ``weight_decay`` (>= 0),
        ExponentialLR(``lr_gamma``, in (0, 1]) stepped once per epoch.
        ``batch_size`` is the global batch of one optimiser step: under torchrun each of the
        R ranks takes ``batch_size / R`` samples (R must divide it); 1 is refused at
        ``image_size`` 32 and below, where BatchNorm cannot train on one image.
    augment : {"randaugment", "flip", "none"}
        Training augmentation on the device: ``randaugment`` = horizontal flip, RandAugment
        ``m5-n3-mstd0.5`` and random erasing (the paper); ``flip`` = flip and random erasing only;
        ``none``.
    t : float
        Class-distribution mining threshold (docs/method.md, "Eq. 7-8").
    beta : float
        Loss-weight schedule parameter (docs/method.md, "Eq. 10-13").
    signal : {"calibrated", "cosine", "loss"}
        Per-sample signal the Beta mixture is fitted to: ``calibrated`` (ours, the default;
        [`calibrated_cosine`][noisylabel.signals.calibrated_cosine]), ``cosine`` (the paper) or
        the bounded loss (docs/method.md, "Our additions").
    target_loss : {"kl", "kl+ce", "wce"}
        The target branch's loss: ``kl`` = KL(q || target) (the paper); ``kl+ce`` (ours) adds
        the w-weighted cross-entropy of the target branch on the given labels, normalised as
        L1; ``wce`` is that weighted cross-entropy alone, without q (docs/method.md, "Our
        additions").
    class_targets : {"onehot", "mined", "smoothed"}
        The ``D[y]`` of ``q = w D[y] + (1 - w) p``: the given label's one-hot (ours, the
        default), the miner's class distributions (the paper) or the smoothed one-hot the miner
        starts from (the miner never accepts a row) (docs/method.md, "Our additions").
    q_from : {"soft", "pseudo", "aux", "target"}
        The ``p`` of q: ``soft`` (ours, the default): the auxiliary branch's prediction for the
        un-augmented image in the last statistics pass
        ([`NoiseModel.predictions`][noisylabel.noise_model.NoiseModel.predictions]);
        ``pseudo`` (ours): the one-hot of that prediction's class; ``aux``: the auxiliary
        branch's prediction on the batch (the paper); ``target``: the target branch's own.
    aux_decay : bool
        The auxiliary loss weight ``mu1`` decays after ``beta`` (the paper); False keeps it 1.
    stats_pass : {"eval", "train"}
        Where the end-of-epoch predictions for the noise model come from: an extra eval-mode
        pass over the training set (default, as the references do): on real faces with
        RandAugment it separates the wrong labels better than the training pass's predictions
        on augmented images (benchmarks/README.md, "Real faces"); or the training pass itself
        (free; as good with light augmentation).
    paper_exact : bool
        Restore the paper's equations (docs/method.md, "Eq. 4-6" to "Eq. 10-13") literally:
        no warm-up gate, plain-mean L1, non-monotone posterior, one global fit, absolute t
        rule. Overrides the five safeguard options below.
    warmup : int or None
        Warm-up gate of the noise model (docs/method.md, "The per-epoch noise model and its
        safeguards"; not a learning-rate warm-up): the fits after epochs 1..warmup are logged
        but not used, so w = 1 during epochs 1..warmup+1 (epoch 1 never has a fit).
        None = ``ceil(beta)``. Command line: ``--noise-warmup`` (``--warmup``, deprecated).
    gate : bool
        Use a fit's w only when the mixture is separated; otherwise keep the last accepted w.
    monotone : bool
        Monotone posterior in the signal (docs/method.md, "Monotone posterior").
    per_class : bool
        Class-aware fitting instead of one global mixture (docs/method.md, safeguards).
    mining_rule : {"absolute", "relative"}
        Acceptance rule of the class-distribution miner (docs/method.md, safeguards).
    l1_normalize : {"weights", "batch"}
        ``weights``: L1 = sum w CE / sum w (docs/method.md, safeguards); ``batch``:
        mean_i w_i CE_i (paper).
    seed : int
        The one seed: noise injection, initialisation, data order, augmentation.
    device : str or None
        ``cuda``, ``cpu``, ...; None = CUDA when present, else CPU.
    amp : bool
        Mixed precision on CUDA (bf16 when supported, else fp16 with a GradScaler).
    channels_last : bool
        channels_last memory format on CUDA.
    eval_batch_size : int
        Batch size of the evaluation and statistics passes.
    resume : bool
        Continue from ``out/checkpoint.pt`` (same final result as uninterrupted); an error when
        there is none. Options that differ from the checkpoint's must be among those that may
        change ([`RESUME_MAY_CHANGE`][noisylabel.apps.fer.config.RESUME_MAY_CHANGE]; ``epochs``
        may only grow).
    overwrite : bool
        Replace a run already in ``out``. Without it (and without ``resume``) a folder holding a
        ``checkpoint.pt`` is refused, so a finished run is never overwritten by mistake.
    tensorboard : bool
        TensorBoard event files, when ``tensorboard`` is installed; when it is not, the run says
        so once and its ``config.json`` records ``"tensorboard": false``.
    plots : bool
        PNG plots at the end.
    progress : bool
        tqdm progress bar during each epoch (the per-epoch lines do not depend on it).
    quiet : bool
        Print only the run's first line and its final table; ``train.log`` in the run folder
        still gets every line.
    num_threads : int or None
        ``torch.set_num_threads`` for CPU runs (None = leave torch's default).
    """

    data: str = _opt("", "data root: RAF-DB layout (EmoLabel/list_patition_label.txt, "
                     "Image/aligned/) or FER+ layout (FER2013Train|Valid|Test/label.csv); "
                     "empty: the built-in synthetic faces, generated on first use", "PATH")
    out: str = _opt("runs/fer", "run folder; left at the default, a subfolder "
                    "<data>-<variant>-noise<rate>-seed<seed> of it, numbered -2, -3, ... for "
                    "each new run", "DIR", short="-o")
    noise: float = _opt(0.0, "symmetric label-noise rate injected into the training labels, "
                        "seeded by --seed", "RATE")
    noise_file: str | None = _opt(None, "EAC-format noisy train labels (e.g. noise03.txt), "
                                  "instead of --noise (the two are refused together)", "FILE")
    train_labels: str | None = _opt(None, "FER+ layout: train on these labels (CSV "
                                    "'image,label', e.g. FER2013's original labels from "
                                    "prepare-ferplus) while the votes stay the reference; "
                                    "images it does not list are left out", "CSV")
    vote_rule: str = _opt("majority", "FER+ layout: votes -> label (majority: FER+'s rule; "
                          "soft: the vote distribution as target, baseline / aea only)",
                          choices=("majority", "plurality", "soft"))
    noise_mode: str = _opt("exact", "exact: flip round(rate*N) labels; bernoulli: flip each "
                           "with probability rate", choices=("exact", "bernoulli"))
    image_size: int = _opt(100, "input side in pixels (the paper: 100; most public code uses "
                           "224)", "PX")
    variant: str = _opt("full", "paper Table I: baseline = ResNet18 + CE, aea = + AEA, full = "
                        "dual branch + AEA + noise model + correction", choices=_VARIANTS)
    num_classes: int = _opt(7, "number of classes")
    pretrained: str | None = _opt(None, "local ResNet18 backbone checkpoint (resnet18_msceleb"
                                  ".pth: {'state_dict': ...}, 'module.'-prefixed or bare); "
                                  "'none' = random init. Unset: none with --data; on the "
                                  "built-in data, a backbone pretrained once on the expressions "
                                  "of other synthetic faces (disjoint identities; cached)",
                                  "PATH|none")
    freeze_trunk: bool | None = _opt(None, "freeze the shared stem + layer1 (unset: frozen iff "
                                     "--pretrained is given)")
    anchor_inference: str = _opt("running", "AEA anchor at evaluation: running mean or the "
                                 "eval batch mean (SLM-AEA; predictions then depend on the "
                                 "batch)", choices=("running", "batch"))
    sync_anchor: bool = _opt(False, "under torchrun: AEA's training anchor is the mean of the "
                             "global batch over all processes (else each process's own batch)")
    epochs: int = _opt(75, "epochs")
    batch_size: int = _opt(32, "global training batch per optimiser step; under torchrun each "
                           "of N processes takes batch/N, so N must divide it")
    lr: float = _opt(1e-3, "Adam learning rate")
    lr_gamma: float = _opt(0.9, "ExponentialLR decay per epoch")
    weight_decay: float = _opt(0.0, "Adam weight decay")
    augment: str = _opt("randaugment", "randaugment: flip + RandAugment m5-n3-mstd0.5 + random "
                        "erasing (the paper); flip: flip + random erasing (for the synthetic "
                        "faces, whose small cues RandAugment destroys); none", choices=_AUGMENTS)
    t: float = _opt(0.7, "class-distribution mining threshold")
    beta: float = _opt(3.0, "loss-weight schedule parameter")
    signal: str = _opt("calibrated", "per-sample signal of the Beta mixture: calibrated (ours: "
                       "the cosine after dividing each class's probability by the class's mean "
                       "self-confidence, so that no class is flagged whole), cosine (the paper) "
                       "or the bounded loss", choices=("calibrated", "cosine", "loss"))
    target_loss: str = _opt("kl", "target branch loss: KL(q || target) (kl, the paper) or that "
                            "plus the w-weighted CE on the given labels (kl+ce, ours)",
                            choices=("kl", "kl+ce", "wce"))
    class_targets: str = _opt("onehot", "D[y] in q = w D[y] + (1-w) p: the given label's "
                              "one-hot (ours), the mined class distributions (the paper) or the "
                              "smoothed one-hot (miner off)",
                              choices=("onehot", "mined", "smoothed"))
    q_from: str = _opt("soft", "the p in q: soft (ours): the auxiliary branch's prediction for "
                       "the un-augmented image at the last fit; pseudo (ours): the one-hot of "
                       "its class; aux: the auxiliary branch's prediction on the batch (the "
                       "paper); target: the target branch's",
                       choices=("soft", "pseudo", "aux", "target"))
    aux_decay: bool = _opt(True, "decay the auxiliary loss weight mu1 after beta (the paper)")
    stats_pass: str = _opt("eval", "noise-model input: an extra eval-mode pass over the train set "
                           "(as the references; separates the wrong labels better under "
                           "RandAugment) or the training pass's own predictions (free)",
                           choices=("eval", "train"))
    paper_exact: bool = _opt(False, "the paper literally: no warm-up gate, plain-mean L1, "
                             "non-monotone posterior, global fit, absolute t rule (overrides "
                             "the options below)")
    warmup: int | None = _opt(None, "noise-model warm-up, not a learning-rate one: ignore the "
                              "fits of epochs 1..K (logged, not used), so w = 1 during epochs "
                              "1..K+1 (unset: ceil(beta); 0 with --paper-exact; formerly "
                              "--warmup)", "K", flag="noise-warmup", deprecated=("warmup",))
    gate: bool = _opt(True, "use a fit's w only when its two components are separated")
    monotone: bool = _opt(True, "posterior monotone in the signal")
    per_class: bool = _opt(False, "class-aware mixture fitting (else one global mixture)")
    mining_rule: str = _opt("absolute", "accept a class distribution when its diagonal >= t "
                            "(absolute) or is the row's largest entry (relative)",
                            choices=("absolute", "relative"))
    l1_normalize: str = _opt("weights", "L1 = sum w CE / sum w (weights) or mean w CE (batch, "
                             "paper)", choices=("weights", "batch"))
    seed: int = _opt(0, "the one seed (noise, init, order, augmentation)")
    device: str | None = _opt(None, "cuda, cuda:1, cpu (unset: CUDA when present)")
    amp: bool = _opt(True, "mixed precision on CUDA")
    channels_last: bool = _opt(True, "channels_last memory format on CUDA")
    eval_batch_size: int = _opt(256, "batch size of the evaluation and statistics passes")
    resume: bool = _opt(False, "continue the run in RUN_DIR (else --out, else the newest "
                        "numbered default folder) from its checkpoint.pt "
                        "and with its own options (same final result as uninterrupted); options "
                        "given as well must agree, except " + ", ".join(
                            f"--{name.replace('_', '-')}" for name in sorted(RESUME_MAY_CHANGE)),
                        "RUN_DIR")
    overwrite: bool = _opt(False, "replace a run already in --out (its checkpoint, metrics, "
                           "model files and plots; --out left out: the newest numbered "
                           "default folder); without it such a folder is refused")
    tensorboard: bool = _opt(True, "TensorBoard event files (needs: pip install tensorboard; "
                             "without it the run says so and config.json records false)")
    plots: bool = _opt(True, "PNG plots at the end")
    progress: bool = _opt(True, "progress bar during each epoch")
    quiet: bool = _opt(False, "print only the first line and the final table (train.log in "
                       "the run folder keeps every line)")
    num_threads: int | None = _opt(None, "torch CPU threads (unset: torch's default)")

    def __post_init__(self) -> None:
        _check_choices(self)
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise={self.noise}: the noise rate must be in [0, 1)")
        for name in ("epochs", "batch_size", "image_size", "eval_batch_size"):
            _check_int(self, name, low=1)
        _check_int(self, "num_threads", low=1, optional=True)
        _check_int(self, "warmup", low=0, optional=True)
        _check_int(self, "num_classes", low=2)
        _check_batch_size(self)
        _warn_noise_past_random(self)
        _check_schedule(self)
        _check_float(self, "weight_decay", low=0.0)
        _check_float(self, "t", low=0.0, high=1.0)
        _check_float(self, "beta", low=0.0, low_open=True)
        if self.lr > 1.0:
            warnings.warn(f"lr={self.lr:g} is far above Adam's usual range (1e-5 to 1e-2); "
                          "training will likely diverge", UserWarning, stacklevel=3)
        if self.vote_rule == "soft" and (self.variant == "full" or self.noise > 0
                                         or self.noise_file or self.train_labels):
            raise ValueError("vote_rule='soft' trains baseline or aea on the vote distribution "
                             "itself: it takes no noise, noise file, train labels or noise "
                             "model (variant 'full')")

    def check_paths(self) -> None:
        """The run's files are where they must be, before any work starts: ``data`` a folder,
        ``noise_file``, ``train_labels`` and ``pretrained`` files, ``out`` a folder or not yet
        there, holding a run exactly when ``resume`` asks for one
        ([`decide`][noisylabel.apps.fer.run_folder.decide]). Nothing is created.

        Raises
        ------
        FileNotFoundError
            A file or folder to read is missing.
        ValueError
            A folder where a file is expected, or the reverse (the message names the option);
            a run folder that does not fit ``resume`` and ``overwrite``.
        """
        if self.data:
            _check_path("data", self.data, folder=True)
        for name in ("noise_file", "train_labels", "pretrained"):
            if getattr(self, name):
                _check_path(name, getattr(self, name), folder=False)
        check_output_path("out", self.out, folder=True)
        decide(self.out, self.resume, self.overwrite)

    def resolved(self) -> TrainConfig:
        """The options actually used: ``warmup`` filled in, paper-exact switches applied."""
        cfg = dataclasses.replace(self)
        if cfg.paper_exact:
            cfg.warmup, cfg.gate, cfg.monotone = 0, False, False
            cfg.per_class, cfg.mining_rule, cfg.l1_normalize = False, "absolute", "batch"
            cfg.stats_pass, cfg.target_loss = "eval", "kl"
            cfg.class_targets, cfg.q_from, cfg.aux_decay = "mined", "aux", True
            cfg.signal = "cosine"
        elif cfg.warmup is None:
            cfg.warmup = math.ceil(cfg.beta)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of [`to_dict`][noisylabel.apps.fer.config.TrainConfig.to_dict]; unknown keys
        raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig options: {unknown}")
        return cls(**d)


@dataclass
class PretrainConfig:
    """Options of a backbone pretraining run ([`pretrain`][noisylabel.apps.fer.pretrain]).

    Parameters
    ----------
    data : str
        Data root: RAF-DB layout (for ``task="identity"`` it needs ``EmoLabel/identities.csv``)
        or class folders ``train/<class>/*.jpg`` (optional ``test/<class>/``); see
        [`pretrain`][noisylabel.apps.fer.pretrain].
    task : {"identity", "expression"}
        What the network learns to recognise. The defaults (expressions, 10 epochs, 32 px,
        flip) are those of the backbone ``noisylabel-fer train`` builds for the built-in data
        ([`SYNTHETIC_BACKBONE`][noisylabel.apps.fer.config.SYNTHETIC_BACKBONE]), so
        ``noisylabel-fer pretrain`` alone makes that backbone.
    out : str
        Checkpoint file to write (plus ``.sha256`` and ``.json`` beside it).
    image_size, epochs, batch_size, lr, lr_gamma : training settings
        Adam(lr) with lr finite and > 0, ExponentialLR(lr_gamma) per epoch with lr_gamma in
        (0, 1], cross-entropy; ``batch_size`` 1 is refused at ``image_size`` 32 and below (as
        in [`TrainConfig`][noisylabel.apps.fer.config.TrainConfig]).
    augment : {"randaugment", "flip", "none"}
        As [`TrainConfig.augment`][noisylabel.apps.fer.config.TrainConfig].
    seed : int
        Initialisation, data order and augmentation.
    device : str or None
        None = CUDA when present, else CPU.
    progress : bool
        tqdm progress bar during each epoch.
    quiet : bool
        No per-epoch lines.
    """

    data: str = _opt("", "data root, RAF-DB layout (EmoLabel/, Image/aligned/) or class folders "
                     "(train/<class>/*.jpg|*.jpeg|*.png, optional test/<class>/, else 10% of "
                     "train/ is held out; the folders are the identities or expressions); empty: "
                     "a synthetic set whose identities are disjoint from the built-in training "
                     "set's", "PATH")
    task: str = _opt("expression", "recognise expressions (the backbone train builds for the "
                     "built-in data) or identities (MS-Celeb-like; in RAF-DB layout needs "
                     "EmoLabel/identities.csv)", choices=("expression", "identity"))
    out: str = _opt("pretrained/resnet18_faces.pth", "checkpoint to write; FILE.sha256 and "
                    "FILE.json are written beside", "FILE", short="-o")
    image_size: int = _opt(32, "input side in pixels", "PX")
    epochs: int = _opt(10, "epochs")
    batch_size: int = _opt(32, "batch size")
    lr: float = _opt(1e-3, "Adam learning rate")
    lr_gamma: float = _opt(0.9, "ExponentialLR decay per epoch")
    augment: str = _opt("flip", "training augmentation (flip: flip + random erasing)",
                        choices=_AUGMENTS)
    seed: int = _opt(0, "seed")
    device: str | None = _opt(None, "cuda or cpu (unset: CUDA when present)")
    progress: bool = _opt(True, "progress bar during each epoch")
    quiet: bool = _opt(False, "no per-epoch lines")

    def __post_init__(self) -> None:
        if self.augment not in _AUGMENTS:
            raise ValueError(f"augment={self.augment!r}; choose randaugment, flip or none")
        if self.task not in ("identity", "expression"):
            raise ValueError(f"task={self.task!r}; choose 'identity' or 'expression'")
        for name in ("epochs", "batch_size", "image_size"):
            _check_int(self, name, low=1)
        _check_batch_size(self)
        _check_schedule(self)


def _check_path(name: str, path: str, folder: bool) -> None:
    """``path`` (option ``name``) exists and is a folder (``folder``) or a file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{name}={path}: no such {'folder' if folder else 'file'}")
    if folder and not p.is_dir():
        raise ValueError(f"{name}={path}: a file, not a folder")
    if not folder and p.is_dir():
        raise ValueError(f"{name}={path}: a folder, not a file")


def check_output_path(name: str, path: str | Path, folder: bool) -> None:
    """Output ``path`` (option ``name``) can be written: an existing folder (``folder``) or
    file of the right kind, or a new one whose nearest existing parent is a writable folder.
    Nothing is created.

    Raises
    ------
    ValueError
        The path is of the wrong kind, or its folder is not writable (the message names the
        option, the path and the reason).
    """
    p = Path(path).expanduser()
    if p.exists():
        if folder and not p.is_dir():
            raise ValueError(f"{name}={path}: a file, not a folder; give a folder for the "
                             "run's outputs")
        if not folder and p.is_dir():
            raise ValueError(f"{name}={path}: a folder; give a file name (e.g. "
                             f"{p / 'FILE'})")
        target = p if p.is_dir() else p.parent
    else:
        target = p.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise ValueError(f"{name}={path}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={path}: cannot write in {target} (permission denied)")


def _check_int(config: Any, name: str, low: int, optional: bool = False) -> None:
    """``config.<name>`` is an integer >= ``low`` (or None when ``optional``)."""
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r}: must be an integer >= {low}")
    if value < low:
        raise ValueError(f"{name}={value}: must be >= {low}")


def _check_float(config: Any, name: str, low: float, high: float = math.inf,
                 low_open: bool = False) -> None:
    """``config.<name>`` is a finite number in [low, high] ((low, high] when ``low_open``)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r}: must be a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value}: must be a finite number")
    if value < low or (low_open and value == low) or value > high:
        lower = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and <= {high:g}" if high != math.inf else ""
        raise ValueError(f"{name}={value:g}: must be {lower}{upper}")


BATCHNORM_MAX_1X1 = 32
"""The largest input side at which ResNet18's last feature map is 1 x 1 (five halvings): there
BatchNorm sees one value per channel in a batch of one image, and cannot train on it."""


def _check_batch_size(config: Any) -> None:
    """``config.batch_size`` 1 is refused where BatchNorm cannot train on one image
    (``image_size`` up to [`BATCHNORM_MAX_1X1`][noisylabel.apps.fer.config.BATCHNORM_MAX_1X1];
    a last batch of one is joined to the one before it, see ``engine.batch_slices``)."""
    if config.batch_size == 1 and config.image_size <= BATCHNORM_MAX_1X1:
        raise ValueError(f"batch_size=1: BatchNorm cannot train on batches of one image at "
                         f"{config.image_size} px (ResNet18's last feature map is then 1x1); "
                         "use a batch size of 2 or more")


def _warn_noise_past_random(config: TrainConfig) -> None:
    """Warn when symmetric noise at ``config.noise`` leaves the true class no more likely than
    any other label: a rate at or above ``(K - 1) / K``, K = ``config.num_classes``."""
    k = config.num_classes
    limit = (k - 1) / k
    if config.noise >= limit:
        warnings.warn(f"noise={config.noise:g} is at or above (K-1)/K = {limit:.3f} for K = {k} "
                      "classes: with symmetric noise that high a label is no more likely to be "
                      "the true class than any other class (above it, less likely), so the "
                      "labels are no better than random (worse above it)", UserWarning,
                      stacklevel=4)


def _check_schedule(config: Any) -> None:
    """Adam's learning rate is finite and > 0; ExponentialLR's factor is in (0, 1]."""
    _check_float(config, "lr", low=0.0, low_open=True)
    _check_float(config, "lr_gamma", low=0.0, high=1.0, low_open=True)


def _check_choices(config: Any) -> None:
    """Every field with ``choices`` in its metadata holds one of them."""
    for f in dataclasses.fields(config):
        allowed = f.metadata.get("choices")
        if allowed and getattr(config, f.name) not in allowed:
            raise ValueError(f"{f.name}={getattr(config, f.name)!r}; choose one of {allowed}")


# ----------------------------------------------------------------------------- presets

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "n_train": 1000,
    "n_test": 500,
    "image_size": 32,
    "n_identities": 200,
    "seed": 0,
}
"""Settings of the built-in synthetic data set used when ``train`` gets no ``--data``."""

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "rafdb-paper": {},  # the dataclass defaults: 100 px, batch 32, Adam 1e-3, 75 epochs
    "rafdb-224": {"image_size": 224},  # the input size of most public code
    "synthetic-cpu": {"image_size": SYNTHETIC_DEFAULTS["image_size"], "epochs": 10,
                      "noise": 0.3, "augment": "flip"},
}
"""Named training presets: overrides of the [`TrainConfig`][noisylabel.apps.fer.config.TrainConfig]
defaults. ``noisylabel-fer train`` uses ``synthetic-cpu`` without ``--data`` and ``rafdb-paper``
with it, unless ``--preset`` names another."""

PRETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "synthetic-backbone": {},  # the dataclass defaults: expressions, 10 epochs
    "identity": {"task": "identity", "epochs": 6},  # MS-Celeb-like identity recognition
}
"""Named pretraining presets: overrides of the
[`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig] defaults. ``synthetic-backbone``
(the defaults) is the backbone ``noisylabel-fer train`` pretrains once for the built-in data:
expressions of faces whose identities are disjoint from the training set's (the identity task
transfers worse on these faces; see benchmarks/README.md, "Ablation")."""

SYNTHETIC_BACKBONE: dict[str, Any] = {"task": PretrainConfig.task,
                                      "epochs": PretrainConfig.epochs, "n_faces": 2000}
"""The built-in data's pretrained backbone (made once, then cached): task and epochs are the
[`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig] defaults; ``n_faces`` is the
size of its source set, faces whose identities are disjoint from the training set's (twice the
training set: with batch 64 and 10 epochs, a backbone pretrained on 1000 faces held out 42% of
expressions, on 2000 faces 58%; with batch 32, 65%)."""


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The [`TrainConfig`][noisylabel.apps.fer.config.TrainConfig] of preset ``name``, with
    ``overrides`` on top.

    Raises
    ------
    ValueError
        ``name`` is not in [`TRAIN_PRESETS`][noisylabel.apps.fer.config.TRAIN_PRESETS].
    """
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
    return TrainConfig(**{**TRAIN_PRESETS[name], **overrides})


def pretrain_preset(name: str, **overrides: Any) -> PretrainConfig:
    """The [`PretrainConfig`][noisylabel.apps.fer.config.PretrainConfig] of preset ``name``,
    with ``overrides`` on top.

    Raises
    ------
    ValueError
        ``name`` is not in [`PRETRAIN_PRESETS`][noisylabel.apps.fer.config.PRETRAIN_PRESETS].
    """
    if name not in PRETRAIN_PRESETS:
        raise ValueError(f"unknown pretraining preset {name!r}; choose one of "
                         f"{sorted(PRETRAIN_PRESETS)}")
    return PretrainConfig(**{**PRETRAIN_PRESETS[name], **overrides})


def cache_home() -> Path:
    """The one cache folder: ``$NOISYLABEL_HOME``, else ``$XDG_CACHE_HOME/noisylabel``, else
    ``~/.cache/noisylabel``. Generated data sets, pretrained backbones and (when the data folder
    is read-only) image caches go here."""
    if os.environ.get("NOISYLABEL_HOME"):
        return Path(os.environ["NOISYLABEL_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "noisylabel"
