"""Train a Table I variant on an RAF-DB-layout data set with injected label noise.

Read :func:`train` top to bottom: seed, data, model, optimiser, then per epoch

1. a training pass over an in-memory permutation of (index, uint8 image, noisy label) batches,
   augmented on the device. For ``full``: ``p = softmax(aux).detach()``, ``w = w[index]`` from the
   last fit, ``q = w D[y] + (1 - w) p`` with D from the last mining, and
   ``loss = mu1(e) * L1(aux, y, w) + mu2(e) * KL(q || softmax(target))``; otherwise plain CE.
2. (``full``) a statistics pass: the auxiliary branch's predictions for every training sample
   (those recorded during the training pass, ``stats_pass="train"``, the default; or an extra
   eval-mode pass, ``"eval"``, as the references and ``paper_exact`` do) go to the
   :class:`~noisylabel.NoiseModel`, which fits the Beta mixture and mines the class
   distributions: new w and D for the next epoch.
3. evaluation of the target branch on the clean test set; metrics; atomic checkpoint.

Under ``torchrun`` (see docs/distributed.md) the same function trains with
DistributedDataParallel: every rank draws the same epoch permutation and takes its
DistributedSampler shard of it (:mod:`~noisylabel.apps.fer.distributed`), ``batch_size`` is the
global batch split evenly over the ranks, the statistics and evaluation passes split the samples
over the ranks and sum (the noise model all-reduces what the ranks record, so every rank holds
the same w and D), and only rank 0 prints and writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from noisylabel.apps.fer import data as fer_data
from noisylabel.apps.fer import distributed, ferplus
from noisylabel.apps.fer.inference import write_model_files
from noisylabel.apps.fer.model import FERNet, create_model
from noisylabel.apps.fer.report import (
    RunReporter,
    atomic_torch_save,
    confusion_matrix,
    format_accuracy_table,
    noise_detection_auc,
    plot_confusion,
    plot_curves,
    plot_similarity,
    summarize_accuracy,
    write_json,
)
from noisylabel.correction import correct_labels
from noisylabel.layers import AverageAnchor
from noisylabel.losses import soft_target_kl, weighted_cross_entropy
from noisylabel.noise import read_noise_file, symmetric_noise
from noisylabel.noise_model import NoiseModel
from noisylabel.schedule import loss_weights

__all__ = ["TrainConfig", "train", "epoch_permutation", "predict_probs", "load_checkpoint",
           "make_augment", "build_model", "resolve_device"]

CHECKPOINT_FORMAT = "noisylabel-fer-checkpoint/1"

# Options that may differ between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"resume", "epochs", "progress", "device", "tensorboard", "plots", "num_threads"}


@dataclass
class TrainConfig:
    """Every option of a training run. Defaults are the paper's RAF-DB settings (SPEC 7) and the
    safeguards of SPEC 9; ``paper_exact=True`` restores SPEC 3-6 literally.

    Parameters
    ----------
    data : str
        Root of an RAF-DB-layout data set (``EmoLabel/list_patition_label.txt``, ``Image/aligned``).
    out : str
        Run folder: checkpoint, metrics.csv, config.json, summary.json, plots, TensorBoard.
    noise : float
        Rate of symmetric label noise injected into the training labels (each flipped label
        goes to a uniformly random other class), seeded by ``seed``. Ignored with ``noise_file``.
    noise_file : str or None
        EAC-format noisy label file (``train_00001.jpg 5``, 1-based) replacing the train labels.
    train_labels : str or None
        FER+ layout only: a train-labels CSV (``image,label``) whose labels replace the vote
        labels for training (e.g. FER2013's original labels); the vote labels stay the
        reference that the label noise and the noise model's detection are measured against.
        Images it does not list are left out of training. ``noise`` is injected on top of it.
    vote_rule : {"majority", "plurality", "soft"}
        FER+ layout only: how the votes become labels (:mod:`noisylabel.annotators`);
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
        Adam with learning rate ``lr``, ExponentialLR(``lr_gamma``) stepped once per epoch.
        ``batch_size`` is the global batch of one optimiser step: under torchrun each of the
        R ranks takes ``batch_size / R`` samples (R must divide it).
    augment : {"randaugment", "flip", "none"}
        Training augmentation on the device: ``randaugment`` = horizontal flip, RandAugment
        ``m5-n3-mstd0.5`` and random erasing (the paper); ``flip`` = flip and random erasing only;
        ``none``.
    t : float
        Class-distribution mining threshold (SPEC 4).
    beta : float
        Loss-weight schedule parameter (SPEC 6).
    signal : {"cosine", "loss"}
        Per-sample signal the Beta mixture is fitted to.
    target_loss : {"kl", "kl+ce"}
        The target branch's loss: ``kl`` = KL(q || target) (the paper); ``kl+ce`` (ours) adds
        the w-weighted cross-entropy of the target branch on the given labels, normalised as
        L1 (``docs/method.md``, "Our additions").
    stats_pass : {"train", "eval"}
        Where the end-of-epoch predictions for the noise model come from: the training pass
        itself (default: free, and as accurate in the ablation; see benchmarks/README.md) or an
        extra eval-mode pass over the training set (as the references do; ``paper_exact``).
    paper_exact : bool
        Restore SPEC 3-6 literally: no warm-up gate, plain-mean L1, non-monotone posterior,
        one global fit, absolute t rule. Overrides the five safeguard options below.
    warmup : int or None
        Warm-up gate (SPEC 9.1): the fits after epochs 1..warmup are logged but not used, so
        w = 1 during epochs 1..warmup+1 (epoch 1 never has a fit). None = ``ceil(beta)``.
    gate : bool
        Use a fit's w only when the mixture is separated; otherwise keep the last accepted w.
    monotone : bool
        Monotone posterior in the signal (SPEC 9.2).
    per_class : bool
        Class-aware fitting (SPEC 9.3) instead of one global mixture.
    mining_rule : {"absolute", "relative"}
        Acceptance rule of the class-distribution miner (SPEC 9.5).
    l1_normalize : {"weights", "batch"}
        ``weights``: L1 = sum w CE / sum w (SPEC 9.4); ``batch``: mean_i w_i CE_i (paper).
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
        Continue from ``out/checkpoint.pt`` when it exists (same final result as uninterrupted).
    tensorboard, plots, progress : bool
        TensorBoard event files, PNG plots, tqdm progress bar.
    num_threads : int or None
        ``torch.set_num_threads`` for CPU runs (None = leave torch's default).
    """

    data: str = ""
    out: str = "runs/fer"
    noise: float = 0.0
    noise_file: str | None = None
    train_labels: str | None = None
    vote_rule: str = "majority"
    noise_mode: str = "exact"
    image_size: int = 100
    variant: str = "full"
    num_classes: int = 7
    pretrained: str | None = None
    freeze_trunk: bool | None = None
    anchor_inference: str = "running"
    sync_anchor: bool = False
    epochs: int = 75
    batch_size: int = 32
    lr: float = 1e-3
    lr_gamma: float = 0.9
    weight_decay: float = 0.0
    augment: str = "randaugment"
    t: float = 0.7
    beta: float = 3.0
    signal: str = "cosine"
    target_loss: str = "kl"
    stats_pass: str = "train"
    paper_exact: bool = False
    warmup: int | None = None
    gate: bool = True
    monotone: bool = True
    per_class: bool = False
    mining_rule: str = "absolute"
    l1_normalize: str = "weights"
    seed: int = 0
    device: str | None = None
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 256
    resume: bool = False
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        choices = {
            "variant": ("baseline", "aea", "full"),
            "anchor_inference": ("running", "batch"),
            "stats_pass": ("eval", "train"),
            "mining_rule": ("absolute", "relative"),
            "l1_normalize": ("weights", "batch"),
            "signal": ("cosine", "loss"),
            "target_loss": ("kl", "kl+ce"),
            "noise_mode": ("exact", "bernoulli"),
            "vote_rule": ("majority", "plurality", "soft"),
            "augment": ("randaugment", "flip", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {allowed}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise={self.noise}: the noise rate must be in [0, 1)")
        for name in ("epochs", "batch_size", "image_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.vote_rule == "soft" and (self.variant == "full" or self.noise > 0
                                         or self.noise_file or self.train_labels):
            raise ValueError("vote_rule='soft' trains baseline or aea on the vote distribution "
                             "itself: it takes no noise, noise file, train labels or noise "
                             "model (variant 'full')")

    def resolved(self) -> TrainConfig:
        """The options actually used: ``warmup`` filled in, paper-exact switches applied."""
        cfg = dataclasses.replace(self)
        if cfg.paper_exact:
            cfg.warmup, cfg.gate, cfg.monotone = 0, False, False
            cfg.per_class, cfg.mining_rule, cfg.l1_normalize = False, "absolute", "batch"
            cfg.stats_pass, cfg.target_loss = "eval", "kl"
        elif cfg.warmup is None:
            cfg.warmup = math.ceil(cfg.beta)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig options: {unknown}")
        return cls(**d)


# ----------------------------------------------------------------------------- helpers


def resolve_device(device: str | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def epoch_permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """The order of the training samples for one epoch (the one place a sampler would go)."""
    return torch.randperm(n, generator=generator)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from it)
    torch.manual_seed(seed)


def _make_generators(seed: int, device: torch.device, rank: int = 0) -> dict[str, torch.Generator]:
    """Independent streams derived from the one seed: data order (CPU, the same on every rank),
    augmentation (device, one stream per rank)."""
    order_seed, aug_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    if rank:
        aug_seed = np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1, np.uint64)[0]
    order = torch.Generator().manual_seed(int(order_seed) >> 1)
    augment = torch.Generator(device=device).manual_seed(int(aug_seed) >> 1)
    return {"order": order, "augment": augment}


def _rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    version, keys, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": [version, list(keys), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss,
                  np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        **{name: g.get_state() for name, g in generators.items()},
    }


def _set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator], rank: int = 0,
                   world: int = 1) -> None:
    """Restore :func:`_rng_state`'s streams; each rank's augmentation stream comes from
    ``state["augment_ranks"]`` when the run is resumed with as many processes as it had (with
    another count, rank 0 continues its stream and the others start theirs afresh)."""
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np_keys = np_keys.numpy().astype(np.uint32)
    np.random.set_state((np_name, np_keys, np_pos, np_has_gauss, np_gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        if name != "augment" or rank == 0:
            g.set_state(state[name])
    per_rank = state.get("augment_ranks", [])
    if rank and len(per_rank) == world:
        generators["augment"].set_state(per_rank[rank])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint written by :func:`train` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") \
            from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a noisylabel-fer training checkpoint")
    return ckpt


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
    return model


def make_augment(name: str) -> fer_data.BatchAugment | None:
    """The training augmentation named by ``TrainConfig.augment`` (None = normalise only)."""
    if name == "randaugment":
        return fer_data.BatchAugment()  # flip, RandAugment m5-n3-mstd0.5, random erasing
    if name == "flip":
        return fer_data.BatchAugment(ops=())  # flip and random erasing
    return None


def load_data(cfg: TrainConfig) -> dict[str, fer_data.FERSplit]:
    """The run's splits by layout: ``train`` and ``test``, and ``valid`` where the layout has
    one (FER+). RAF-DB layout: :func:`~noisylabel.apps.fer.data.load_split`; FER+ layout:
    :func:`~noisylabel.apps.fer.ferplus.load_ferplus` with ``cfg.vote_rule`` and
    ``cfg.train_labels``."""
    if ferplus.is_ferplus(cfg.data):
        return {split: ferplus.load_ferplus(
                    cfg.data, split, cfg.image_size, cfg.vote_rule,
                    cfg.train_labels if split == "train" else None)
                for split in ("train", "valid", "test")}
    if cfg.train_labels or cfg.vote_rule != "majority":
        raise ValueError(f"train_labels and vote_rule need the FER+ layout; {cfg.data} holds "
                         "none (use noise_file for an EAC-format label file on RAF-DB)")
    return {split: fer_data.load_split(cfg.data, split, image_size=cfg.image_size)
            for split in ("train", "test")}


def describe_data(split: fer_data.FERSplit, cfg: TrainConfig) -> str:
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


def _noisy_labels(cfg: TrainConfig, split: fer_data.FERSplit) -> torch.Tensor:
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


def _prepare(images_u8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = fer_data.normalize(images_u8.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_probs(
    model: FERNet,
    images: torch.Tensor,
    branch: str = "target",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax of one branch over uint8 ``images`` (N, 3, H, W), in eval mode, no augmentation.

    Returns
    -------
    Tensor
        (N, C) float32 probabilities on ``device``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = _prepare(images[start : start + batch_size], device, channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = getattr(model(x), branch)
        out.append(torch.softmax(logits.float(), dim=1))
    model.train(was_training)
    return torch.cat(out)


def _noise_model_row(report: Any, noise_model: Any, true_noisy: torch.Tensor) -> dict[str, Any]:
    """Per-epoch numbers of the noise model: BMM parameters, gate, miner, w against true flips.

    ``noise_auc`` is the AUC of w as a score separating truly clean from truly flipped samples
    (known here because the noise was injected by us); ``signal_auc`` the same for the signal S
    the mixture was fitted to (informative during the warm-up, when w is held at 1).
    """
    mix = noise_model.mixture_
    row: dict[str, Any] = {}
    for name, values in (("bmm_alpha", mix.alphas_), ("bmm_beta", mix.betas_),
                         ("bmm_weight", mix.weights_), ("bmm_mean", mix.means_)):
        for k, v in enumerate(np.asarray(values, dtype=np.float64).ravel()):
            row[f"{name}{k}"] = float(v)
    row.update({
        "bmm_converged": report.converged,
        "bmm_n_iter": report.n_iter,
        "bmm_separated": report.separated,
        "w_updated": report.accepted,
        "gate": report.reason,
        "miner_accepted": int(sum(report.classes_accepted)),
        "mean_w": report.mean_w,
        "frac_w_below_half": report.frac_noisy,
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


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one run; return its summary (accuracy table, regime, paths, history).

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
    """
    cfg = config.resolved()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = distributed.setup(resolve_device(cfg.device))  # joins torchrun's group, if any
    main, rank, world = (distributed.is_main_process(), distributed.get_rank(),
                         distributed.get_world_size())
    batch_size = distributed.per_rank_batch_size(cfg.batch_size)  # of the global batch
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if cfg.resume and ckpt_path.is_file() else None
    found = distributed.all_reduce_sum(torch.tensor([float(ckpt is not None)], device=device))
    if 0 < found.item() < world:
        raise ValueError(f"{ckpt_path} exists for some ranks only: --out must be on a file "
                         "system that every node sees")
    if ckpt is not None:
        _check_resumable(ckpt["config"], cfg, ckpt_path)

    # --- seed, data, labels --------------------------------------------------------------
    _seed_everything(cfg.seed)
    generators = _make_generators(cfg.seed, device, rank)
    with distributed.main_process_first():  # rank 0 fills the image cache, the others read it
        splits = load_data(cfg)
    train_set, test_set, val_set = splits["train"], splits["test"], splits.get("valid")
    true_labels = train_set.labels.to(torch.int64)
    noisy_labels = _noisy_labels(cfg, train_set)
    true_noisy = noisy_labels != true_labels
    n_train = len(true_labels)
    noise_rate = int(true_noisy.sum()) / n_train
    on_cuda = device.type == "cuda"
    images = train_set.images.to(device)  # uint8, kept on the device for the whole run
    labels_dev = noisy_labels.to(device)
    test_images, test_labels = test_set.images.to(device), test_set.labels.to(device)
    soft_dev = None if train_set.soft_targets is None else train_set.soft_targets.to(device)
    data_line = describe_data(train_set, cfg)

    # --- model, optimiser, noise model ---------------------------------------------------
    model = build_model(cfg, load_pretrained=ckpt is None).to(device)
    channels_last = cfg.channels_last and on_cuda
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    sha = ckpt["backbone_sha256"] if ckpt is not None else model.backbone_sha256
    regime = describe_start(cfg.pretrained, sha)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    amp_dtype = None
    if cfg.amp and on_cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    augment = make_augment(cfg.augment)
    noise_model = None
    if cfg.variant == "full":
        noise_model = NoiseModel(
            n_train, cfg.num_classes, signal=cfg.signal, t=cfg.t, mining_rule=cfg.mining_rule,
            warmup=cfg.warmup, gate=cfg.gate, per_class=cfg.per_class, monotone=cfg.monotone,
            device=device,
        )

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt is not None:  # everything that evolves during training comes back from the file
        if not torch.equal(ckpt["noisy_labels"], noisy_labels):
            raise ValueError(f"{ckpt_path}: the noisy labels differ from this run's (data changed?)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if noise_model is not None:
            noise_model.load_state_dict(ckpt["noise_model"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"])
        _set_rng_state(ckpt["rng"], generators, rank, world)
        distributed.barrier()  # every rank has read the file before rank 0 may replace it
    # DDP: gradients averaged over the ranks; parameters and buffers broadcast from rank 0
    ddp = model if world == 1 else DistributedDataParallel(
        model, device_ids=[device] if on_cuda else None)

    reporter = None
    if main:
        reporter = RunReporter(out, tensorboard=cfg.tensorboard, start_epoch=start_epoch)
        reporter.save_config({**cfg.to_dict(), "regime": regime, "backbone_sha256": sha,
                              "device_used": str(device), "world_size": world,
                              "per_rank_batch_size": batch_size, "n_train": n_train,
                              "n_test": len(test_labels),
                              "n_valid": len(val_set) if val_set is not None else 0,
                              "data_description": data_line,
                              "actual_noise_rate": noise_rate})
        print(f"noisylabel-fer: variant {cfg.variant}, {regime}, device {device}, "
              f"{n_train} train / {len(test_labels)} test images at {cfg.image_size} px, "
              f"label noise {100 * noise_rate:.1f}%"
              + (f", {world} processes x batch {batch_size}" if world > 1 else "")
              + (f", resuming after epoch {start_epoch}" if start_epoch else "")
              + (f"; {data_line}" if data_line else ""))

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        # --- 1. training pass --------------------------------------------------------------
        model.train()
        mu1, mu2 = loss_weights(epoch, beta=cfg.beta) if noise_model is not None else (1.0, 0.0)
        order = distributed.shard(epoch_permutation(n_train, generators["order"]))  # this rank's
        sums = torch.zeros(4, device=device)  # loss, L1 (or CE), Lkld, correct
        batches = fer_data.batch_slices(order, batch_size)
        n_batches = len(batches)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and main), dynamic_ncols=True)
        t0 = time.perf_counter()
        for b, idx in enumerate(batches):
            idx = idx.to(device)
            x = augment(images[idx], generator=generators["augment"]) if augment is not None \
                else fer_data.normalize(images[idx])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels_dev[idx]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                out_logits = ddp(x)
            target = out_logits.target.float()
            if noise_model is not None:
                aux = out_logits.aux.float()
                p = torch.softmax(aux, dim=1).detach()
                w = noise_model.weights(idx).to(device=device, dtype=p.dtype)
                q = correct_labels(y, p, w, noise_model.class_distributions.to(device, p.dtype),
                                   validate=False)
                l1 = weighted_cross_entropy(aux, y, w, normalize=cfg.l1_normalize)
                lkld = soft_target_kl(target, q)
                if cfg.target_loss == "kl+ce":
                    lkld = lkld + weighted_cross_entropy(target, y, w, normalize=cfg.l1_normalize)
                loss = mu1 * l1 + mu2 * lkld
                if cfg.stats_pass == "train":
                    noise_model.record(idx, p, y)
            else:
                l1 = F.cross_entropy(target, y if soft_dev is None else soft_dev[idx])
                lkld = torch.zeros((), device=device)
                loss = l1
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            batch_sums = torch.stack([loss.detach() * len(y), l1.detach() * len(y),
                                      lkld.detach() * len(y),
                                      (target.argmax(1) == y).sum().float()])
            sums += batch_sums
            bar.update(1)
            if b % 10 == 9 or b == n_batches - 1:
                seen = min((b + 1) * batch_size, len(order))  # by this rank
                bar.set_postfix(loss=f"{sums[0].item() / seen:.3f}",
                                img_s=f"{world * seen / (time.perf_counter() - t0):.0f}")
        bar.close()
        train_time = time.perf_counter() - t0
        n_seen = world * len(order)  # n_train plus DistributedSampler's padding
        loss_sum, l1_sum, lkld_sum, correct = (distributed.all_reduce_sum(sums) / n_seen).tolist()
        row: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                               "loss": loss_sum}
        if noise_model is not None:
            row.update({"l1": l1_sum, "lkld": lkld_sum, "mu1": mu1, "mu2": mu2})
        else:
            row["ce"] = l1_sum
        row["train_acc"] = correct
        row["img_per_s"] = n_seen / train_time
        distributed.broadcast_buffers(model)  # every rank evaluates rank 0's BN/AEA statistics

        # --- 2. statistics pass -> noise model fit (new w and D for the next epoch) ---------
        if noise_model is not None:
            if cfg.stats_pass == "eval":  # each rank predicts its block of the training set
                part = distributed.block(n_train)
                noise_model.record(
                    torch.arange(n_train, device=device)[part],
                    predict_probs(model, images[part], "aux", cfg.eval_batch_size, device,
                                  channels_last, amp_dtype),
                    labels_dev[part])
            fit_report = noise_model.fit(epoch)  # all-reduces the ranks' records first
            row.update(_noise_model_row(fit_report, noise_model, true_noisy))

        # --- 3. evaluation of the target branch on the clean test set ----------------------
        part = distributed.block(len(test_labels))  # each rank its block; counts summed
        test_probs = predict_probs(model, test_images[part], "target", cfg.eval_batch_size,
                                   device, channels_last, amp_dtype)
        hits = (test_probs.argmax(1) == test_labels[part]).sum().float()
        hits, total = distributed.all_reduce_sum(torch.stack([hits, hits.new_tensor(
            float(test_probs.shape[0]))])).tolist()
        row["test_acc"] = hits / total
        if val_set is not None:  # model selection uses this split, never the test split
            row["val_acc"] = _accuracy(model, val_set, cfg, device, channels_last, amp_dtype)
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)
        scheduler.step()

        # --- 4. checkpoint and log (rank 0) ---------------------------------------------------
        rng = _rng_state(generators)
        rng["augment_ranks"] = distributed.all_gather_object(generators["augment"].get_state())
        if main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "noise_model": noise_model.state_dict() if noise_model is not None else None,
                "history": history,
                "rng": rng,
                "noisy_labels": noisy_labels,
                "class_names": list(fer_data.CLASS_NAMES[: cfg.num_classes]),
                "backbone_sha256": sha,
                "regime": regime,
            }
            atomic_torch_save(state, ckpt_path)
            write_model_files(out, state, actual_noise_rate=noise_rate)  # model_*.pt, card
            reporter.log_epoch(history)
            if cfg.progress:
                tqdm.write(_epoch_line(row))

    # --- final report (rank 0) ---------------------------------------------------------------
    summary = summarize_accuracy([r["test_acc"] for r in history])
    table = format_accuracy_table(summary)
    result = {**summary, "regime": regime, "backbone_sha256": sha, "variant": cfg.variant,
              "out": str(out), "history": history, "table": table}
    if main:
        reporter.close()
        if cfg.plots and history:
            _final_plots(out, model, cfg, history, test_images, test_labels, noise_model,
                         true_noisy, device, channels_last, amp_dtype)
        write_json(out / "summary.json", {k: v for k, v in result.items() if k != "history"})
        print(f"regime: {regime}\n{table}")
    distributed.barrier()  # no rank returns before rank 0's files are complete
    return result


def _accuracy(model: FERNet, split: fer_data.FERSplit, cfg: TrainConfig, device: torch.device,
              channels_last: bool, amp_dtype: torch.dtype | None) -> float:
    """Target-branch accuracy on ``split`` (each rank its block, counts summed)."""
    part = distributed.block(len(split))
    probs = predict_probs(model, split.images[part], "target", cfg.eval_batch_size, device,
                          channels_last, amp_dtype)
    hits = (probs.argmax(1).cpu() == split.labels[part]).sum().float()
    hits, total = distributed.all_reduce_sum(torch.stack(
        [hits, hits.new_tensor(float(probs.shape[0]))]).to(device)).tolist()
    return hits / total


def _epoch_line(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"loss {row['loss']:.3f}",
             f"train {100 * row['train_acc']:.1f}%", f"test {100 * row['test_acc']:.2f}%"]
    if "val_acc" in row:
        parts.append(f"val {100 * row['val_acc']:.2f}%")
    if "w_mean_clean" in row:
        parts.append(f"w clean/noisy {row['w_mean_clean']:.2f}/{row['w_mean_noisy']:.2f}")
    for key, name in (("noise_auc", "AUC(w)"), ("signal_auc", "AUC(S)")):
        if key in row and not math.isnan(row[key]):
            parts.append(f"{name} {row[key]:.3f}")
    parts.append(f"{row['img_per_s']:.0f} img/s")
    return "  ".join(parts)


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    diff = sorted(k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k])
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(f"cannot resume from {path}: options changed ({changes})")


def _final_plots(out, model, cfg, history, test_images, test_labels, noise_model, true_noisy,
                 device, channels_last, amp_dtype) -> None:
    plot_curves(history, out / "curves.png", title=f"{cfg.variant}, run {out.name}",
                warmup=cfg.warmup if noise_model is not None else None)
    probs = predict_probs(model, test_images, "target", cfg.eval_batch_size, device,
                          channels_last, amp_dtype)
    cm = confusion_matrix(test_labels.cpu().numpy(), probs.argmax(1).cpu().numpy(),
                          cfg.num_classes)
    plot_confusion(cm, list(fer_data.CLASS_NAMES[: cfg.num_classes]), out / "confusion.png",
                   title=f"test split, epoch {history[-1]['epoch']}")
    if noise_model is not None and noise_model.signal_ is not None:
        signal = noise_model.signal_.float().cpu().numpy()  # of the last fit, NaN if unrecorded
        seen = ~np.isnan(signal)
        last = history[-1]
        fitted = all(f"bmm_{p}{k}" in last for p in ("alpha", "beta", "weight") for k in (0, 1))
        plot_similarity(
            signal[seen], out / "similarity.png",
            alphas=[last["bmm_alpha0"], last["bmm_alpha1"]] if fitted else None,
            betas=[last["bmm_beta0"], last["bmm_beta1"]] if fitted else None,
            weights=[last["bmm_weight0"], last["bmm_weight1"]] if fitted else None,
            is_noisy=true_noisy.numpy()[seen], title=f"{cfg.signal} signal after epoch {last['epoch']}",
            clean_component=1 if noise_model.signal.clean_side == "high" else 0,
        )
