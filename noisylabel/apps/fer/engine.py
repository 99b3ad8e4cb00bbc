"""The loop shared by training and pretraining: runtime, one epoch of optimiser steps,
prediction and accuracy, random-number state, checkpoint files.

A [`Runtime`][noisylabel.apps.fer.engine.Runtime] holds what the hardware decides: the device,
the process's rank and the world size (under ``torchrun``), the one autocast context and the
gradient scaler. [`train_one_epoch`][noisylabel.apps.fer.engine.train_one_epoch] runs the
optimiser steps of one epoch for any model and loss (the caller's ``step`` function);
[`predict_probs`][noisylabel.apps.fer.engine.predict_probs] and
[`evaluate`][noisylabel.apps.fer.engine.evaluate] are the eval-mode passes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from noisylabel.apps.fer import distributed
from noisylabel.apps.fer.augment import BatchAugment, normalize
from noisylabel.apps.fer.run_folder import atomic_torch_save, load_error_cause

__all__ = ["Runtime", "resolve_device", "epoch_permutation", "batch_slices", "train_one_epoch",
           "predict_probs", "evaluate", "seed_everything", "make_generators", "rng_state",
           "set_rng_state", "save_checkpoint", "load_checkpoint", "check_finite", "NonFiniteError",
           "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "noisylabel-fer-checkpoint/1"


class NonFiniteError(ValueError):
    """Training produced a non-finite loss, weight or metric; the run stops before it writes a
    checkpoint, so the last good one stays."""


def resolve_device(device: str | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU.

    Raises
    ------
    ValueError
        ``device`` is not a device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...), or names
        CUDA (MPS) where torch has none, or a CUDA index this machine lacks.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps"
                         ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else \
                f"built with CUDA {torch.version.cuda}, but no GPU or driver is visible"
            raise ValueError(f"--device {device}: CUDA is not available (torch {torch.__version__}"
                             f" {built}); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), "
                             f"numbered 0 to {count - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS (Apple GPU) is not available; use --device cpu")
    return dev


@dataclass
class Runtime:
    """Where and how a run computes: device, ranks, mixed precision, memory format.

    Attributes
    ----------
    device : torch.device
    rank, world : int
        This process's rank and the number of processes (0 and 1 outside ``torchrun``).
    main : bool
        Rank 0: the process that prints and writes files.
    amp_dtype : torch.dtype or None
        Autocast dtype (bf16 when supported, else fp16) on CUDA with ``amp``; None = float32.
    channels_last : bool
        channels_last memory format (CUDA only).
    scaler : torch.amp.GradScaler
        Enabled for fp16 only.
    """

    device: torch.device
    rank: int
    world: int
    main: bool
    amp_dtype: torch.dtype | None
    channels_last: bool
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, device: str | None, amp: bool = False, channels_last: bool = False,
               join: bool = True) -> Runtime:
        """The runtime of ``device`` (None = CUDA when present); with ``join`` the process
        joins ``torchrun``'s group, if any."""
        dev = resolve_device(device)
        if join:
            dev = distributed.setup(dev)
        on_cuda = dev.type == "cuda"
        amp_dtype = None
        if amp and on_cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        rank, world = (distributed.get_rank(), distributed.get_world_size()) if join else (0, 1)
        return cls(dev, rank, world, rank == 0, amp_dtype, channels_last and on_cuda, scaler)

    def autocast(self) -> AbstractContextManager:
        """The one autocast context of the run (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the run's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def epoch_permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """The order of the training samples for one epoch (the one place a sampler would go)."""
    return torch.randperm(n, generator=generator)


def batch_slices(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split an epoch's sample order into consecutive batches of ``batch_size``.

    A last batch of a single sample joins the one before it: BatchNorm cannot train on one
    sample once ResNet18's feature map is 1 x 1, as it is at 32 px and below.

    Parameters
    ----------
    order : torch.Tensor of shape (N,)
        Sample indices in the epoch's order.
    batch_size : int

    Returns
    -------
    list of torch.Tensor
        The batches; their concatenation is ``order``.
    """
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


StepFn = Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def train_one_epoch(model: nn.Module, step: StepFn, batches: Sequence[torch.Tensor],
                    images: torch.Tensor, optimizer: torch.optim.Optimizer, rt: Runtime,
                    augment: BatchAugment | None, generator: torch.Generator, desc: str,
                    progress: bool) -> torch.Tensor:
    """One pass of optimiser steps over ``batches`` of uint8 ``images`` (on ``rt.device``).

    Each batch is augmented on the device (or only normalised), put in the run's memory format
    and passed through ``model`` under the run's autocast; ``step(outputs, idx)`` returns the
    loss and a vector of per-batch sums (its first entry the loss times the batch size), which
    this rank adds up and returns (the caller all-reduces).

    The loss is watched: the first batch whose loss is not finite is noted on the device (no
    extra synchronisation) and read every 10 batches and at the end, where a
    [`NonFiniteError`][noisylabel.apps.fer.engine.NonFiniteError] naming ``desc`` and the batch
    stops the run before the caller writes a checkpoint.
    """
    sums: torch.Tensor | None = None
    bad = torch.full((), -1, dtype=torch.int64, device=rt.device)  # first non-finite batch
    bar = tqdm(total=len(batches), desc=desc, leave=False, disable=not progress,
               dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    for b, idx in enumerate(batches):
        idx = idx.to(rt.device)
        x = augment(images[idx], generator=generator) if augment is not None \
            else normalize(images[idx])
        x = rt.to_memory_format(x)
        with rt.autocast():
            outputs = model(x)
        loss, batch_sums = step(outputs, idx)
        optimizer.zero_grad(set_to_none=True)
        rt.scaler.scale(loss).backward()
        rt.scaler.step(optimizer)
        rt.scaler.update()
        sums = batch_sums if sums is None else sums + batch_sums
        seen += len(idx)
        bar.update(1)
        bad = torch.where((bad < 0) & ~torch.isfinite(loss.detach()), b, bad)
        if b % 10 == 9 or b == len(batches) - 1:
            if bad.item() >= 0:
                bar.close()
                raise NonFiniteError(
                    f"{desc}, batch {bad.item() + 1}/{len(batches)}: the loss is not finite "
                    f"(nan or inf); no checkpoint was written for this epoch. Try a lower "
                    f"--lr, and check that the --pretrained weights hold no nan or inf")
            bar.set_postfix(loss=f"{sums[0].item() / seen:.3f}",
                            img_s=f"{rt.world * seen / (time.perf_counter() - t0):.0f}")
    bar.close()
    return sums


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    branch: str | None = "target",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax of one branch (None: a model returning logits) over uint8 ``images``
    (N, 3, H, W), in eval mode, no augmentation.

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
        x = normalize(images[start : start + batch_size].to(device, non_blocking=True))
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = model(x) if branch is None else getattr(model(x), branch)
        out.append(torch.softmax(logits.float(), dim=1))
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, rt: Runtime,
             batch_size: int, branch: str = "target") -> float:
    """Accuracy of ``branch`` on (``images``, ``labels``): each rank predicts its block, the
    counts are summed over the ranks."""
    part = distributed.block(len(labels))
    probs = predict_probs(model, images[part], branch, batch_size, rt.device, rt.channels_last,
                          rt.amp_dtype)
    hits = (probs.argmax(1) == labels[part].to(probs.device)).sum().float()
    hits, total = distributed.all_reduce_sum(torch.stack(
        [hits, hits.new_tensor(float(probs.shape[0]))]).to(rt.device)).tolist()
    return hits / total


# ----------------------------------------------------------------------------- random state


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's legacy and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from it)
    torch.manual_seed(seed)


def make_generators(seed: int, device: torch.device, rank: int = 0) -> dict[str, torch.Generator]:
    """Independent streams derived from the one seed: data order (CPU, the same on every rank),
    augmentation (device, one stream per rank)."""
    order_seed, aug_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    if rank:
        aug_seed = np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1, np.uint64)[0]
    order = torch.Generator().manual_seed(int(order_seed) >> 1)
    augment = torch.Generator(device=device).manual_seed(int(aug_seed) >> 1)
    return {"order": order, "augment": augment}


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random stream's state (global ones and ``generators``), checkpoint-safe."""
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


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator], rank: int = 0,
                  world: int = 1) -> None:
    """Restore [`rng_state`][noisylabel.apps.fer.engine.rng_state]'s streams; each rank's
    augmentation stream comes from ``state["augment_ranks"]`` when the run is resumed with as
    many processes as it had (with another count, rank 0 continues its stream and the others
    start theirs afresh)."""
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


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain values) atomically as a training checkpoint."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, Path(path))


def check_finite(model: nn.Module, where: str,
                 hint: str = "no checkpoint was written for this epoch; try a lower --lr"
                 ) -> None:
    """Every parameter and floating-point buffer of ``model`` is finite (one synchronisation).

    Raises
    ------
    NonFiniteError
        Naming ``where``, the first tensor holding nan or inf, and ``hint``.
    """
    tensors = [(name, t) for name, t in [*model.named_parameters(), *model.named_buffers()]
               if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in tensors])
    if bool(finite.all()):
        return
    first = tensors[int((~finite).nonzero()[0])][0]
    raise NonFiniteError(f"{where}: the model's weights are not finite (nan or inf in {first}); "
                         f"{hint}")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict:
    """Read a training checkpoint written by
    [`save_checkpoint`][noisylabel.apps.fer.engine.save_checkpoint] (``weights_only=True``;
    with ``mmap`` the tensors are mapped, not read, which is quick when only the configuration
    is wanted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint ({load_error_cause(exc)})") \
            from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a noisylabel-fer training checkpoint")
    return ckpt
