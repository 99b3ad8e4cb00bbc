"""Train a Table I variant on a FER data set with injected (or given) label noise.

Read [`train`][noisylabel.apps.fer.train.train] top to bottom: runtime, the run folder's lock
([`run_folder`][noisylabel.apps.fer.run_folder]), seed, data, the
[`TrainingState`][noisylabel.apps.fer.train.TrainingState] (model, optimiser, noise model, ...;
new or restored from the checkpoint), then per epoch
([`run_epoch`][noisylabel.apps.fer.train.run_epoch])

1. a training pass ([`train_one_epoch`][noisylabel.apps.fer.engine.train_one_epoch]) over an
   in-memory permutation of (index, uint8 image, noisy label) batches, augmented on the device;
   the loss is [`compute_loss`][noisylabel.apps.fer.train.compute_loss]. For ``full``:
   ``p = softmax(aux).detach()``, ``w = w[index]`` from the last fit, ``q = w D[y] + (1 - w) p``
   with D from the last mining (``NoiseModel.targets``), and
   ``loss = mu1(e) * L1(aux, y, w) + mu2(e) * KL(q || softmax(target))``; otherwise plain CE.
2. (``full``) [`fit_noise_model`][noisylabel.apps.fer.train.fit_noise_model]: the auxiliary
   branch's predictions for every training sample (from an extra eval-mode pass,
   ``stats_pass="eval"``, the default, as the references do; or those recorded during the
   training pass, ``"train"``) go to the [`NoiseModel`][noisylabel.NoiseModel], which
   fits the Beta mixture and mines the class distributions: new w and D for the next epoch.
3. [`evaluate`][noisylabel.apps.fer.engine.evaluate]: the target branch on the clean test set
   (and the validation split where the layout has one); metrics; atomic checkpoint
   ([`save_checkpoint`][noisylabel.apps.fer.engine.save_checkpoint]).

Under ``torchrun`` (see docs/distributed.md) the same function trains with
DistributedDataParallel: every rank draws the same epoch permutation and takes its
DistributedSampler shard of it (``distributed``),
``batch_size`` is the global batch split evenly over the ranks, the statistics and evaluation
passes split the samples over the ranks and sum (the noise model all-reduces what the ranks
record, so every rank holds the same w and D), and only rank 0 prints and writes files.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.nn.parallel import DistributedDataParallel

from noisylabel.apps.fer import distributed, run_folder
from noisylabel.apps.fer.augment import BatchAugment, make_augment
from noisylabel.apps.fer.config import RESUME_MAY_CHANGE, TrainConfig
from noisylabel.apps.fer.datasets import EXPRESSION_LAYOUTS, data_splits, load_data_split
from noisylabel.apps.fer.engine import (
    NonFiniteError,
    Runtime,
    batch_slices,
    check_finite,
    epoch_permutation,
    evaluate,
    load_checkpoint,
    make_generators,
    predict_probs,
    resolve_device,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    train_one_epoch,
)
from noisylabel.apps.fer.inference import write_model_files
from noisylabel.apps.fer.layouts import CLASS_NAMES, FERSplit
from noisylabel.apps.fer.model import FERNet, FEROutput, create_model
from noisylabel.apps.fer.report import (
    RunReporter,
    confusion_matrix,
    format_accuracy_table,
    format_time_estimate,
    noise_detection_auc,
    plot_confusion,
    plot_curves,
    plot_similarity,
    summarize_accuracy,
)
from noisylabel.apps.fer.run_folder import (
    CHECKPOINT,
    CONFUSION,
    CURVES,
    SIMILARITY,
    SUMMARY,
    RunFolderInUse,
    decide,
    remove_run_files,
    remove_stale_temp_files,
    write_json,
)
from noisylabel.correction import correct_labels
from noisylabel.distribution import smoothed_onehot
from noisylabel.layers import AverageAnchor
from noisylabel.losses import soft_target_kl, weighted_cross_entropy
from noisylabel.noise import read_noise_file, symmetric_noise
from noisylabel.noise_model import FitReport, NoiseModel
from noisylabel.schedule import loss_weights

# TrainConfig, load_checkpoint, predict_probs, epoch_permutation, make_augment and
# resolve_device are re-exported: their import paths from this module stay valid.
__all__ = ["TrainConfig", "train", "run_epoch", "compute_loss", "fit_noise_model", "TrainData",
           "TrainingState", "prepare_data", "load_data", "describe_data",
           "missing_classes_warning", "describe_start",
           "build_model", "epoch_permutation", "predict_probs", "load_checkpoint",
           "make_augment", "resolve_device"]

# Options never compared on resume: where the run folder is now, and how it was asked for.
_NOT_COMPARED = {"out", "resume", "overwrite"}
# Options holding a path, compared as resolved paths on resume.
_PATH_OPTIONS = ("data", "noise_file", "train_labels", "pretrained")


# ----------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, load_pretrained: bool = True) -> FERNet:
    """The variant of ``cfg``; the backbone file is read only when ``load_pretrained``
    (a resumed or evaluated model gets its weights from the training checkpoint instead)."""
    freeze = cfg.freeze_trunk if cfg.freeze_trunk is not None else cfg.pretrained is not None
    model = create_model(
        cfg.variant,
        num_classes=cfg.num_classes,
        pretrained=cfg.pretrained if load_pretrained else None,
        anchor_inference=cfg.anchor_inference,
        freeze_trunk=freeze,
    )
    for module in model.modules():
        if isinstance(module, AverageAnchor):
            module.sync = cfg.sync_anchor
    if load_pretrained and cfg.pretrained is not None:
        check_finite(model, f"pretrained backbone {cfg.pretrained}",
                     hint="the file is damaged or was saved from a diverged run")
    return model


def describe_start(pretrained: str | None, sha: str | None) -> str:
    """The run's regime in words: from scratch, or pretrained (with the task that made the
    checkpoint when ``noisylabel-fer pretrain`` wrote a JSON sidecar next to it)."""
    if not pretrained:
        return "from scratch (random initialisation)"
    sidecar = Path(f"{pretrained}.json")
    how = ""
    try:
        info = json.loads(sidecar.read_text())
        how = (f" on {info['task']} ({info['num_classes']} classes, held-out accuracy "
               f"{100 * info['test_acc']:.1f}%)")
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no sidecar (e.g. the MS-Celeb file) or not one of ours: the path says enough
    return f"pretrained{how} from {pretrained} (sha256 {sha})"


# ----------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """A run's data, the images kept on the device as uint8 for the whole run.

    Attributes
    ----------
    images, labels : torch.Tensor
        Training images (N, 3, H, W) and the noisy labels trained on (N,), on the device.
    noisy_labels, true_noisy : torch.Tensor
        The noisy labels and which of them differ from the true ones, on the CPU.
    soft_targets : torch.Tensor or None
        (N, C) vote distribution (FER+ ``soft`` rule), on the device.
    test_images, test_labels : torch.Tensor
        The clean test split, on the device.
    valid : FERSplit or None
        The validation split, where the layout has one (FER+).
    description : str
        The layout's part of the run's first line ([`describe_data`][noisylabel.apps.fer.train.describe_data]).
    """

    images: torch.Tensor
    labels: torch.Tensor
    noisy_labels: torch.Tensor
    true_noisy: torch.Tensor
    soft_targets: torch.Tensor | None
    test_images: torch.Tensor
    test_labels: torch.Tensor
    valid: FERSplit | None
    description: str

    @property
    def n_train(self) -> int:
        return len(self.noisy_labels)


def prepare_data(cfg: TrainConfig, device: torch.device) -> TrainData:
    """Load the splits ([`load_data`][noisylabel.apps.fer.train.load_data]; rank 0 fills the
    image cache first), make the training labels and move the images to ``device``. Rank 0
    warns when classes of the test split are absent from the training labels
    ([`missing_classes_warning`][noisylabel.apps.fer.train.missing_classes_warning])."""
    with distributed.main_process_first():
        splits = load_data(cfg)
    train_set, test_set = splits["train"], splits["test"]
    missing = missing_classes_warning(train_set, test_set)
    if missing and distributed.is_main_process():
        warnings.warn(missing, UserWarning, stacklevel=2)
    noisy_labels = _noisy_labels(cfg, train_set)
    soft = train_set.soft_targets
    return TrainData(
        images=train_set.images.to(device), labels=noisy_labels.to(device),
        noisy_labels=noisy_labels, true_noisy=noisy_labels != train_set.labels.to(torch.int64),
        soft_targets=None if soft is None else soft.to(device),
        test_images=test_set.images.to(device), test_labels=test_set.labels.to(device),
        valid=splits.get("valid"), description=describe_data(train_set, cfg))


def load_data(cfg: TrainConfig) -> dict[str, FERSplit]:
    """The run's splits ([`load_data_split`][noisylabel.apps.fer.datasets.load_data_split],
    RAF-DB or FER+ layout): ``train`` and ``test``, and ``valid`` where the layout has one
    (FER+, whose labels follow ``cfg.vote_rule`` and, for training, ``cfg.train_labels``)."""
    return {split: load_data_split(cfg.data, split, cfg.image_size, cfg.vote_rule,
                                   cfg.train_labels if split == "train" else None,
                                   layouts=EXPRESSION_LAYOUTS)
            for split in data_splits(cfg.data, EXPRESSION_LAYOUTS)}


def describe_data(split: FERSplit, cfg: TrainConfig) -> str:
    """The FER+ part of the run's first line: vote rule, exclusions, and how often the
    training labels disagree with the vote labels (empty for other layouts)."""
    if split.agreement is None:
        return ""
    left_out = ", ".join(f"{n} {why}" for why, n in sorted(split.excluded.items())) or "none"
    text = f"FER+ layout, {cfg.vote_rule} vote; left out of train: {left_out}"
    if split.given_labels is not None:
        differ = float((split.given_labels != split.labels).float().mean())
        text += (f"; train labels from {cfg.train_labels} differ from the votes on "
                 f"{100 * differ:.1f}%")
    return text


def missing_classes_warning(train: FERSplit, test: FERSplit) -> str | None:
    """What to warn when classes of the test split never occur in the training split's labels
    (the train-labels file's where one is given; before any noise is injected): a model cannot
    learn a class it never sees, and a training split of one class learns nothing.

    Parameters
    ----------
    train, test : FERSplit
        The run's training and test splits.

    Returns
    -------
    str or None
        The message, naming the classes trained on and those missing; None when every class
        of the test split is in training.
    """
    labels = train.labels if train.given_labels is None else train.given_labels
    trained = sorted(set(labels.tolist()))
    missing = sorted(set(test.labels.tolist()) - set(trained))
    if not missing:
        return None
    names = train.class_names
    return (f"{train.root}: the training labels hold {len(trained)} of the {len(names)} classes "
            f"({', '.join(names[c] for c in trained)}); "
            f"{', '.join(names[c] for c in missing)} occur in the test split but never in "
            "training, so the model cannot learn to predict them")


def _noisy_labels(cfg: TrainConfig, split: FERSplit) -> torch.Tensor:
    """Training labels: the split's (or the train-labels file's), then the noise file or the
    injected symmetric noise."""
    base = split.labels if split.given_labels is None else split.given_labels
    if cfg.noise_file:
        noisy = read_noise_file(cfg.noise_file, list(split.names))
    elif cfg.noise > 0:
        noisy = symmetric_noise(base.numpy(), cfg.noise, cfg.num_classes,
                                mode=cfg.noise_mode, seed=cfg.seed)
    else:
        noisy = base.numpy()
    return torch.as_tensor(np.asarray(noisy), dtype=torch.int64)


# ----------------------------------------------------------------------------- training state


@dataclass
class TrainingState:
    """What a run trains, and everything about it that changes as it trains: what a checkpoint
    saves ([`checkpoint`][noisylabel.apps.fer.train.TrainingState.checkpoint]) and a resumed run
    restores ([`restore`][noisylabel.apps.fer.train.TrainingState.restore]).

    Attributes
    ----------
    model : FERNet
        The network, on the device.
    ddp : torch.nn.Module
        What the training pass calls: ``model``, or under torchrun its DistributedDataParallel
        wrapper.
    optimizer : torch.optim.Optimizer
        Adam over the trainable parameters.
    scheduler : torch.optim.lr_scheduler.LRScheduler
        The exponential learning-rate schedule, stepped once per epoch.
    scaler : torch.amp.GradScaler
        The runtime's gradient scaler (enabled for fp16 only).
    noise_model : NoiseModel or None
        The Beta-mixture noise model (``full`` only).
    generators : dict of str to torch.Generator
        The data-order and augmentation streams.
    augment : BatchAugment or None
        The training augmentation (draws from ``generators["augment"]``).
    history : list of dict
        One metrics row per epoch done.
    """

    model: FERNet
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    noise_model: NoiseModel | None
    generators: dict[str, torch.Generator]
    augment: BatchAugment | None
    history: list[dict[str, Any]]

    @property
    def epoch(self) -> int:
        """The epochs done."""
        return len(self.history)

    def checkpoint(self, cfg: TrainConfig, rng: dict[str, Any], data: TrainData,
                   sha: str | None, regime: str) -> dict[str, Any]:
        """What a checkpoint holds after the last epoch done.

        Parameters
        ----------
        cfg : TrainConfig
            The run's options.
        rng : dict
            Every random stream's state ([`rng_state`][noisylabel.apps.fer.engine.rng_state],
            with each rank's augmentation stream).
        data : TrainData
            The run's data (its noisy labels are saved, to be checked on resume).
        sha, regime : str
            The backbone's SHA-256 and the start in words.

        Returns
        -------
        dict
            What [`save_checkpoint`][noisylabel.apps.fer.engine.save_checkpoint] writes.
        """
        return {
            "epoch": self.epoch,
            "config": cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "noise_model": self.noise_model.state_dict() if self.noise_model is not None
            else None,
            "history": self.history,
            "rng": rng,
            "noisy_labels": data.noisy_labels,
            "class_names": list(CLASS_NAMES[: cfg.num_classes]),
            "backbone_sha256": sha,
            "regime": regime,
        }

    def restore(self, ckpt: dict[str, Any], path: Path, data: TrainData, rt: Runtime) -> None:
        """Load what [`checkpoint`][noisylabel.apps.fer.train.TrainingState.checkpoint] saved.

        Parameters
        ----------
        ckpt : dict
            The checkpoint read from ``path``.
        path : Path
            Its file (for the message).
        data : TrainData
            This run's data, whose noisy labels must be the checkpoint's.
        rt : Runtime
            This process's rank and the number of ranks.

        Raises
        ------
        ValueError
            The noisy labels differ from the checkpoint's (the data changed).
        """
        if not torch.equal(ckpt["noisy_labels"], data.noisy_labels):
            raise ValueError(f"{path}: the noisy labels differ from this run's (data changed?)")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.noise_model is not None:
            self.noise_model.load_state_dict(ckpt["noise_model"])
        set_rng_state(ckpt["rng"], self.generators, rt.rank, rt.world)
        self.history = list(ckpt["history"])
        distributed.barrier()  # every rank has read the file before rank 0 may replace it


# ----------------------------------------------------------------------------- one epoch


def compute_loss(outputs: FEROutput, y: torch.Tensor, idx: torch.Tensor,
                 noise_model: NoiseModel | None, mu1: float, mu2: float, cfg: TrainConfig,
                 soft_targets: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch loss of the network's two branches.

    With a noise model (``full``): ``loss = mu1 * L1(aux, y, w) + mu2 * KL(q || target)`` with
    ``q = w D[y] + (1 - w) p`` (``NoiseModel.targets``), plus ``mu2 * L1(target, y, w)`` when
    ``cfg.target_loss == "kl+ce"``;
    otherwise cross-entropy of the target branch against ``y`` (or ``soft_targets[idx]``).

    Returns
    -------
    loss, l1, lkld : torch.Tensor
        The loss and its two terms (``l1`` is the CE without a noise model, ``lkld`` 0).
    p : torch.Tensor or None
        ``softmax(aux)``, detached (what the noise model records); None without a noise model.
    """
    target = outputs.target.float()
    if noise_model is None:
        ce = F.cross_entropy(target, y if soft_targets is None else soft_targets[idx])
        return ce, ce, torch.zeros((), device=y.device), None
    aux = outputs.aux.float()
    p = torch.softmax(aux, dim=1).detach()
    w = noise_model.weights(idx).to(device=p.device, dtype=p.dtype)
    # w and q come from the noise model, valid by construction: no per-batch host sync
    l1 = weighted_cross_entropy(aux, y, w, normalize=cfg.l1_normalize, validate=False)
    lkld = torch.zeros((), device=y.device)
    if cfg.target_loss != "wce":
        q = correct_labels(y, q_source(cfg, noise_model, idx, p, target), w,
                           class_targets(cfg, noise_model).to(p), validate=False)
        lkld = soft_target_kl(target, q, validate=False)
    if cfg.target_loss != "kl":  # ours: the target also fits the labels the model trusts
        lkld = lkld + weighted_cross_entropy(target, y, w, normalize=cfg.l1_normalize,
                                             validate=False)
    return mu1 * l1 + mu2 * lkld, l1, lkld, p


def q_source(cfg: TrainConfig, noise_model: NoiseModel, idx: torch.Tensor, p: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
    """The ``p`` of ``q = w D[y] + (1 - w) p`` chosen by ``cfg.q_from``: the auxiliary branch's
    prediction on the batch (the paper), the target branch's, or the auxiliary branch's
    prediction for the un-augmented image at the last fit, ``NoiseModel.predictions[i]``:
    as it is (``soft``) or as the one-hot of its class (``pseudo``; docs/method.md, "Our
    additions")."""
    if cfg.q_from == "aux":
        return p
    if cfg.q_from == "target":
        return torch.softmax(target, dim=1).detach()
    last = noise_model.predictions[idx.to(noise_model.device)].to(p.device, p.dtype)
    if cfg.q_from == "soft":
        return last
    return F.one_hot(last.argmax(1), p.shape[1]).to(p.dtype)


def class_targets(cfg: TrainConfig, noise_model: NoiseModel) -> torch.Tensor:
    """The ``D`` of ``q = w D[y] + (1 - w) p`` chosen by ``cfg.class_targets``: the noise
    model's mined class distributions, the smoothed one-hot the miner starts from
    (``t`` on the diagonal), or the identity (the given label's one-hot), shape (C, C)."""
    if cfg.class_targets == "mined":
        return noise_model.class_distributions
    if cfg.class_targets == "smoothed":
        return torch.as_tensor(smoothed_onehot(cfg.num_classes, cfg.t), dtype=torch.float32)
    return torch.eye(cfg.num_classes)


def _train_step(outputs: FEROutput, idx: torch.Tensor, cfg: TrainConfig, data: TrainData,
                noise_model: NoiseModel | None, mu1: float, mu2: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch and its sums: loss, L1 (or CE), Lkld, correct."""
    y = data.labels[idx]
    loss, l1, lkld, p = compute_loss(outputs, y, idx, noise_model, mu1, mu2, cfg,
                                     data.soft_targets)
    if p is not None and cfg.stats_pass == "train":
        noise_model.record(idx, p, y, validate=False)  # our own indices and labels
    n = len(y)
    correct = (outputs.target.float().argmax(1) == y).sum().float()
    return loss, torch.stack([loss.detach() * n, l1.detach() * n, lkld.detach() * n, correct])


def fit_noise_model(noise_model: NoiseModel, epoch: int, model: FERNet, data: TrainData,
                    cfg: TrainConfig, rt: Runtime) -> FitReport:
    """Fit the noise model on this epoch's predictions (new w and D for the next epoch).

    With ``stats_pass="eval"`` each rank first predicts its block of the training set in eval
    mode; with ``"train"`` the training pass has recorded them. The fit all-reduces the ranks'
    records first.
    """
    if cfg.stats_pass == "eval":
        part = distributed.block(data.n_train)
        noise_model.record(
            torch.arange(data.n_train, device=rt.device)[part],
            predict_probs(model, data.images[part], "aux", cfg.eval_batch_size, rt.device,
                          rt.channels_last, rt.amp_dtype),
            data.labels[part])
    return noise_model.fit(epoch)


def run_epoch(epoch: int, cfg: TrainConfig, rt: Runtime, state: TrainingState, data: TrainData
              ) -> tuple[dict[str, Any], FitReport | None]:
    """Train one epoch, fit the noise model, evaluate; return the metrics row and the fit.

    Parameters
    ----------
    epoch : int
        The epoch to train (1-based).
    cfg : TrainConfig
        The run's options.
    rt : Runtime
        Device, precision and process group.
    state : TrainingState
        What is trained; its model, optimiser, noise model and random streams move on.
    data : TrainData
        The run's data.

    Returns
    -------
    row : dict
        The epoch's metrics (a ``metrics.csv`` row).
    fit : FitReport or None
        The noise model's fit after the epoch (None without one).
    """
    noise_model = state.noise_model
    mu1, mu2 = loss_weights(epoch, beta=cfg.beta) if noise_model is not None else (1.0, 0.0)
    if not cfg.aux_decay and noise_model is not None:
        mu1 = 1.0
    order = distributed.shard(epoch_permutation(data.n_train, state.generators["order"]))
    step = functools.partial(_train_step, cfg=cfg, data=data, noise_model=noise_model, mu1=mu1,
                             mu2=mu2)
    t0 = time.perf_counter()
    state.model.train()
    sums = train_one_epoch(
        state.ddp, step, batch_slices(order, distributed.per_rank_batch_size(cfg.batch_size)),
        data.images, state.optimizer, rt, state.augment, state.generators["augment"],
        f"epoch {epoch}/{cfg.epochs}", cfg.progress and rt.main)
    train_time = time.perf_counter() - t0
    n_seen = rt.world * len(order)  # n_train plus DistributedSampler's padding
    loss_sum, l1_sum, lkld_sum, correct = (distributed.all_reduce_sum(sums) / n_seen).tolist()
    row: dict[str, Any] = {"epoch": epoch, "lr": state.optimizer.param_groups[0]["lr"],
                           "loss": loss_sum}
    if noise_model is not None:
        row.update({"l1": l1_sum, "lkld": lkld_sum, "mu1": mu1, "mu2": mu2})
    else:
        row["ce"] = l1_sum
    row["train_acc"] = correct
    row["img_per_s"] = n_seen / train_time
    distributed.broadcast_buffers(state.model)  # every rank evaluates rank 0's BN/AEA statistics
    fit = None
    if noise_model is not None:
        fit = fit_noise_model(noise_model, epoch, state.model, data, cfg, rt)
        row.update(_noise_model_row(fit, noise_model, data.true_noisy))
    row["test_acc"] = evaluate(state.model, data.test_images, data.test_labels, rt,
                               cfg.eval_batch_size)
    if noise_model is not None:  # the branch that the noise model reads, for comparison
        row["aux_test_acc"] = evaluate(state.model, data.test_images, data.test_labels, rt,
                                       cfg.eval_batch_size, branch="aux")
    if data.valid is not None:  # model selection uses this split, never the test split
        row["val_acc"] = evaluate(state.model, data.valid.images, data.valid.labels, rt,
                                  cfg.eval_batch_size)
    row["epoch_time_s"] = time.perf_counter() - t0
    return row, fit


def _noise_model_row(report: FitReport, noise_model: NoiseModel, true_noisy: torch.Tensor
                     ) -> dict[str, Any]:
    """Per-epoch numbers of the noise model: BMM parameters, gate, miner, w against true flips.

    ``noise_auc`` is the AUC of w as a score separating truly clean from truly flipped samples
    (known here because the noise was injected by us); ``signal_auc`` the same for the signal S
    the mixture was fitted to (informative during the warm-up, when w is held at 1).
    """
    row: dict[str, Any] = {}
    for name, values in (("bmm_alpha", report.alphas), ("bmm_beta", report.betas),
                         ("bmm_weight", report.weights), ("bmm_mean", report.means)):
        for k, v in enumerate(values):
            row[f"{name}{k}"] = v
    row.update({
        "bmm_converged": report.converged,
        "bmm_n_iter": report.n_iter,
        "bmm_separated": report.separated,
        "w_updated": report.accepted,
        "gate": report.reason,
        "miner_accepted": int(sum(report.classes_accepted)),
        "mean_w": report.mean_w,
        "frac_w_below_half": report.frac_noisy,
        "agreement": report.agreement,  # against fit_clean_share: is the network memorising?
        "fit_clean_share": report.fit_clean_share,
        "classes_all_flagged": "/".join(CLASS_NAMES[c] for c in report.flagged_classes),
    })
    w = noise_model.clean_probability.float().cpu()
    clean = ~true_noisy
    row["w_mean_clean"] = float(w[clean].mean()) if clean.any() else float("nan")
    row["w_mean_noisy"] = float(w[true_noisy].mean()) if true_noisy.any() else float("nan")
    row["noise_auc"] = noise_detection_auc(w.numpy(), true_noisy.numpy())
    signal = noise_model.signal_.float().cpu().numpy()  # informative even while w is gated
    seen = ~np.isnan(signal)
    oriented = signal if noise_model.signal.clean_side == "high" else -signal
    row["signal_auc"] = noise_detection_auc(oriented[seen], true_noisy.numpy()[seen])
    return row


# ----------------------------------------------------------------------------- training


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one run; return its summary (accuracy table, regime, paths, history).

    The run holds its folder's lock ([`lock`][noisylabel.apps.fer.run_folder.lock]) from before
    it reads the folder until it has written its last file: a second run into the same folder
    meanwhile is refused.

    Parameters
    ----------
    config : TrainConfig
        All options; see the class docstring.

    Returns
    -------
    dict
        ``final``, ``last5_mean``, ``last5_std``, ``best``, ``best_epoch`` (target branch test
        accuracy, fractions), ``regime`` (from scratch / pretrained from FILE sha256),
        ``history`` (per-epoch metric rows), ``out`` (run folder), ``table`` (printable text).

    Raises
    ------
    RunFolderInUse
        Another process is writing a run in ``config.out``.
    """
    started = time.perf_counter()
    cfg = config.resolved()
    cfg.check_paths()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    rt = Runtime.create(cfg.device, cfg.amp, cfg.channels_last)  # joins torchrun's group, if any
    with _hold_run_folder(Path(cfg.out), rt):
        return _train_locked(cfg, rt, started)


def _train_locked(cfg: TrainConfig, rt: Runtime, started: float) -> dict[str, Any]:
    """The run of [`train`][noisylabel.apps.fer.train.train], its folder locked: folder,
    seed, data, state, then the epochs (checkpoint and log after each), then the report."""
    out = Path(cfg.out)
    ckpt = _find_checkpoint(cfg, out / CHECKPOINT, rt)
    if rt.main:
        _clean_run_folder(out, overwrite=cfg.overwrite and ckpt is None)
    distributed.barrier()  # no rank reads the folder while rank 0 cleans it
    seed_everything(cfg.seed)
    generators = make_generators(cfg.seed, rt.device, rt.rank)
    data = prepare_data(cfg, rt.device)
    state = _build_training(cfg, rt, data, generators, ckpt)
    sha = ckpt["backbone_sha256"] if ckpt is not None else state.model.backbone_sha256
    regime = describe_start(cfg.pretrained, sha)
    start_epoch = state.epoch
    reporter = _start_report(cfg, rt, data, regime, sha, start_epoch) if rt.main else None
    fit = None
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        row, fit = run_epoch(epoch, cfg, rt, state, data)
        # checked before the checkpoint is written, so the last good one stays
        _check_finite_epoch(row, state.model, epoch)
        state.history.append(row)
        state.scheduler.step()
        rng = rng_state(state.generators)
        rng["augment_ranks"] = distributed.all_gather_object(
            state.generators["augment"].get_state())
        if rt.main:  # checkpoint and log
            saved = state.checkpoint(cfg, rng, data, sha, regime)
            save_checkpoint(out / CHECKPOINT, saved)
            write_model_files(out, saved, float(data.true_noisy.float().mean()))
            reporter.log_epoch(state.history)
            reporter.log(_epoch_line(row))
            if epoch == start_epoch + 1 and epoch < cfg.epochs:  # once, after the first epoch
                now = time.perf_counter()
                reporter.log(format_time_estimate(epoch, now - epoch_start, cfg.epochs - epoch,
                                                  now - started))
    return _final_report(cfg, rt, state, data, fit, regime, sha, reporter)


def _final_report(cfg: TrainConfig, rt: Runtime, state: TrainingState, data: TrainData,
                  fit: FitReport | None, regime: str, sha: str | None,
                  reporter: RunReporter | None) -> dict[str, Any]:
    """The run's summary; on rank 0 also its plots, ``summary.json`` and final table."""
    out = Path(cfg.out)
    summary = summarize_accuracy([r["test_acc"] for r in state.history])
    result = {**summary, "regime": regime, "backbone_sha256": sha, "variant": cfg.variant,
              "out": str(out), "history": state.history,
              "table": format_accuracy_table(summary)}
    if rt.main:
        if cfg.plots and state.history:
            _final_plots(out, state.model, cfg, state.history, data, state.noise_model, fit, rt)
        write_json(out / SUMMARY, {k: v for k, v in result.items() if k != "history"})
        reporter.log(f"regime: {regime}\n{result['table']}", echo=True)
        reporter.close()
    distributed.barrier()  # no rank returns before rank 0's files are complete
    return result


@contextmanager
def _hold_run_folder(out: Path, rt: Runtime) -> Iterator[None]:
    """Rank 0 holds the run folder's lock for the block; when it cannot take it, every rank
    raises (rank 0 its own error, the others one with its message)."""
    with ExitStack() as stack:
        error = None
        if rt.main:
            try:
                stack.enter_context(run_folder.lock(out))
            except (ValueError, OSError) as exc:
                error = exc
        message = distributed.all_gather_object(None if error is None else str(error))[0]
        if error is not None:
            raise error
        if message is not None:
            raise RunFolderInUse(message)
        yield


def _build_training(cfg: TrainConfig, rt: Runtime, data: TrainData,
                    generators: dict[str, torch.Generator], ckpt: dict[str, Any] | None
                    ) -> TrainingState:
    """What a run trains: the model on ``rt.device``, Adam over its trainable parameters, the
    exponential learning-rate schedule, (``full`` only) the noise model, the augmentation;
    restored from ``ckpt`` when resuming (the backbone file is then not read)."""
    model = build_model(cfg, load_pretrained=ckpt is None).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    noise_model = None if cfg.variant != "full" else NoiseModel(
        data.n_train, cfg.num_classes, signal=cfg.signal, t=cfg.t, mining_rule=cfg.mining_rule,
        warmup=cfg.warmup, gate=cfg.gate, per_class=cfg.per_class, monotone=cfg.monotone,
        device=rt.device)
    state = TrainingState(model, model, optimizer, scheduler, rt.scaler, noise_model,
                          generators, make_augment(cfg.augment), [])
    if ckpt is not None:  # everything that evolves during training comes back from the file
        state.restore(ckpt, Path(cfg.out) / CHECKPOINT, data, rt)
    if rt.world > 1:  # gradients averaged over the ranks; parameters and buffers broadcast
        state.ddp = DistributedDataParallel(  # from rank 0
            model, device_ids=[rt.device] if rt.device.type == "cuda" else None)
    return state


def _find_checkpoint(cfg: TrainConfig, path: Path, rt: Runtime) -> dict[str, Any] | None:
    """The checkpoint to resume from (``cfg.resume``), checked against ``cfg`` and present for
    every rank or none.

    Raises
    ------
    ValueError
        ``resume`` without a checkpoint (a mistyped ``--out`` must not start afresh), a
        checkpoint in ``out`` without ``resume`` or ``overwrite`` (a run is never replaced
        unasked), both flags, or options that differ from the checkpoint's.
    """
    decide(cfg.out, cfg.resume, cfg.overwrite)  # again, now that the folder is locked
    ckpt = load_checkpoint(path) if cfg.resume else None
    found = distributed.all_reduce_sum(torch.tensor([float(ckpt is not None)], device=rt.device))
    if 0 < found.item() < rt.world:
        raise ValueError(f"{path} exists for some ranks only: --out must be on a file "
                         "system that every node sees")
    if ckpt is not None:
        _check_resumable(ckpt, cfg, path)
    return ckpt


def _clean_run_folder(out: Path, overwrite: bool) -> None:
    """Remove the temp files a killed write left in ``out``; with ``overwrite``, the previous
    run's files too (so none of them is mistaken for this run's)."""
    for tmp in remove_stale_temp_files(out):
        print(f"removed {tmp}, left by an interrupted write")
    if not overwrite:
        return
    remove_run_files(out)
    print(f"--overwrite: removed the previous run's files from {out}")


def _check_finite_epoch(row: dict[str, Any], model: FERNet, epoch: int) -> None:
    """The epoch's losses, accuracies and the model's weights are finite.

    Raises
    ------
    NonFiniteError
        Naming the epoch and the metric or weight (the caller has not yet saved a checkpoint).
    """
    for key in ("loss", "l1", "lkld", "ce", "train_acc", "test_acc", "val_acc", "mean_w"):
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            raise NonFiniteError(f"epoch {epoch}: {key} = {value} is not finite; no checkpoint "
                                 "was written for this epoch. Try a lower --lr")
    check_finite(model, f"epoch {epoch}")


def _start_report(cfg: TrainConfig, rt: Runtime, data: TrainData, regime: str,
                  sha: str | None, start_epoch: int) -> RunReporter:
    """Open the run's reporter, write config.json (with the TensorBoard setting actually used)
    and print the run's first line (also the first line of this session in ``train.log``)."""
    reporter = RunReporter(Path(cfg.out), tensorboard=cfg.tensorboard, start_epoch=start_epoch,
                           echo=not cfg.quiet)
    batch_size = distributed.per_rank_batch_size(cfg.batch_size)
    noise_rate = int(data.true_noisy.sum()) / data.n_train
    n_test = len(data.test_labels)
    resumed = {"resumed_after_epoch": start_epoch} if start_epoch else {}
    reporter.save_config({**cfg.to_dict(), **resumed, "regime": regime, "backbone_sha256": sha,
                          "device_used": str(rt.device), "world_size": rt.world,
                          "per_rank_batch_size": batch_size, "n_train": data.n_train,
                          "n_test": n_test,
                          "n_valid": len(data.valid) if data.valid is not None else 0,
                          "data_description": data.description,
                          "actual_noise_rate": noise_rate, "tensorboard": reporter.tensorboard})
    reporter.log(f"noisylabel-fer: variant {cfg.variant}, {regime}, device {rt.device}, "
          f"{data.n_train} train / {n_test} test images at {cfg.image_size} px, "
          f"label noise {100 * noise_rate:.1f}%"
          + (f", {rt.world} processes x batch {batch_size}" if rt.world > 1 else "")
          + (f", resuming after epoch {start_epoch}" if start_epoch else "")
          + (f"; {data.description}" if data.description else ""), echo=True)
    return reporter


def _epoch_line(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"loss {row['loss']:.3f}",
             f"train {100 * row['train_acc']:.1f}%", f"test {100 * row['test_acc']:.2f}%"]
    if "val_acc" in row:
        parts.append(f"val {100 * row['val_acc']:.2f}%")
    if "w_mean_clean" in row:  # "-" for a group with no sample (no noise: no noisy sample)
        clean, noisy = (f"{v:.2f}" if not math.isnan(v) else "-"
                        for v in (row["w_mean_clean"], row["w_mean_noisy"]))
        parts.append(f"w clean/noisy {clean}/{noisy}")
    for key, name in (("noise_auc", "AUC(w)"), ("signal_auc", "AUC(S)")):
        if key in row and not math.isnan(row[key]):
            parts.append(f"{name} {row[key]:.3f}")
    if row.get("classes_all_flagged"):  # docs/method.md, "When w flags whole classes"
        parts.append(f"w < 0.5 on every {row['classes_all_flagged']} label")
    parts.append(f"{row['img_per_s']:.0f} img/s")
    return "  ".join(parts)


def _check_resumable(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """``cfg`` may continue the run of checkpoint ``ckpt``.

    ``out``, ``resume`` and ``overwrite`` are not compared (a moved or differently spelled run
    folder still resumes); path options are compared resolved; the options in
    [`RESUME_MAY_CHANGE`][noisylabel.apps.fer.config.RESUME_MAY_CHANGE] may differ, but
    ``epochs`` may not end before the checkpoint's epoch.

    Raises
    ------
    ValueError
        Naming each option that changed, or the epochs already done.
    """
    saved, now = ckpt["config"], cfg.to_dict()
    diff = sorted(k for k in now if k not in _NOT_COMPARED | RESUME_MAY_CHANGE
                  and not same_option(k, saved.get(k), now[k]))
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"cannot resume from {path}: options changed ({changes}); only "
                         f"{', '.join(sorted(RESUME_MAY_CHANGE))} may")
    done = int(ckpt["epoch"])
    if cfg.epochs < done:
        raise ValueError(f"cannot resume from {path} with epochs={cfg.epochs}: the run has "
                         f"already trained {done} epochs (give epochs >= {done}; more epochs "
                         "continue it)")


def same_option(name: str, saved: Any, now: Any) -> bool:
    """Whether option ``name`` has the same value in a checkpoint (``saved``) and now: equal
    values, or for a path option (``data``, ``noise_file``, ...) the same resolved path."""
    if name in _PATH_OPTIONS and saved and now:
        return Path(saved).expanduser().resolve() == Path(now).expanduser().resolve()
    return saved == now


def _final_plots(out: Path, model: FERNet, cfg: TrainConfig, history: list[dict[str, Any]],
                 data: TrainData, noise_model: NoiseModel | None, fit: FitReport | None,
                 rt: Runtime) -> None:
    """curves.png, confusion.png and (``full``) similarity.png with the last fit's mixture."""
    plot_curves(history, out / CURVES, title=f"{cfg.variant}, run {out.name}",
                warmup=cfg.warmup if noise_model is not None else None)
    probs = predict_probs(model, data.test_images, "target", cfg.eval_batch_size, rt.device,
                          rt.channels_last, rt.amp_dtype)
    cm = confusion_matrix(data.test_labels.cpu().numpy(), probs.argmax(1).cpu().numpy(),
                          cfg.num_classes)
    plot_confusion(cm, list(CLASS_NAMES[: cfg.num_classes]), out / CONFUSION,
                   title=f"test split, epoch {history[-1]['epoch']}")
    if noise_model is not None and noise_model.signal_ is not None:
        signal = noise_model.signal_.float().cpu().numpy()  # of the last fit, NaN if unrecorded
        seen = ~np.isnan(signal)
        plot_similarity(
            signal[seen], out / SIMILARITY,
            alphas=fit.alphas if fit is not None else None,
            betas=fit.betas if fit is not None else None,
            weights=fit.weights if fit is not None else None,
            is_noisy=data.true_noisy.numpy()[seen],
            title=f"{cfg.signal} signal after epoch {history[-1]['epoch']}",
            clean_component=1 if noise_model.signal.clean_side == "high" else 0,
        )
