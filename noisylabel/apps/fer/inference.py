"""A trained FER model as a product: load it, predict with it, and describe it in its run folder.

[`load_model`][noisylabel.apps.fer.inference.load_model] reads a training checkpoint
(``checkpoint.pt``), a weights-only file (``model_last.pt``, ``model_best.pt``) or a run folder
and returns a [`FERModel`][noisylabel.apps.fer.inference.FERModel]: the target branch of the
network in eval mode, with its class names, input size and normalisation.

At every checkpoint the trainer calls
[`write_model_files`][noisylabel.apps.fer.inference.write_model_files], which puts beside
``checkpoint.pt``:

* ``model_last.pt``: the weights of the last epoch that prediction needs (the shared trunk and
  the target branch; not the auxiliary branch, which only supervises the noise model, nor the
  optimiser state) and the few settings that rebuild the network;
* ``model_best.pt``: the same for the epoch with the best accuracy on the validation split, when
  the data has one (FER+); never selected on the test split;
* ``model_card.json``: what the weights are (classes, input, normalisation, data, label noise,
  start, accuracies, the selected epoch) and the SHA-256 of each weights file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from noisylabel.apps.fer.augment import IMAGENET_MEAN, IMAGENET_STD
from noisylabel.apps.fer.classes import CLASS_NAMES
from noisylabel.apps.fer.image_cache import decode_image, stack_images
from noisylabel.apps.fer.model import FERNet, _sha256, create_model
from noisylabel.apps.fer.report import summarize_accuracy
from noisylabel.apps.fer.run_folder import (
    MODEL_BEST,
    MODEL_CARD,
    MODEL_FILES,
    MODEL_LAST,
    WEIGHT_FILES,
    atomic_torch_save,
    load_error_cause,
    write_json,
)

__all__ = ["FERModel", "load_model", "load_images", "write_model_files", "WEIGHTS_FORMAT"]

WEIGHTS_FORMAT = "noisylabel-fer-weights/1"
"""``format`` of the weights-only files (``model_last.pt``, ``model_best.pt``)."""
CARD_FORMAT = "noisylabel-fer-model-card/1"


class FERModel(nn.Module):
    """The target branch of a trained network, ready for inference.

    Calling the model maps pixel values to logits: ``model(images)`` takes (N, 3, S, S) RGB
    images with values 0-255 (uint8 or float), normalises them as training did, and returns the
    (N, C) logits of the target branch. This is the function that
    ``noisylabel-fer export`` writes to TorchScript or ONNX.

    Parameters
    ----------
    net : FERNet
        The trained network; its auxiliary branch (training only) is dropped.
    class_names : sequence of str
        Name of each output class, in output order.
    image_size : int
        Side S of the square input the network was trained at.
    mean, std : sequence of float
        Per-channel normalisation of the training: ``(x / 255 - mean) / std``.
    variant : str
        The network's variant (``baseline``, ``aea`` or ``full``).
    anchor_inference : str
        AEA's anchor at evaluation (``running`` or ``batch``; with ``batch`` a prediction
        depends on the rest of its batch).
    """

    def __init__(self, net: FERNet, class_names: Sequence[str], image_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, variant: str = "full",
                 anchor_inference: str = "running") -> None:
        super().__init__()
        net.aux = None
        self.net = net
        self.class_names = tuple(class_names)
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.variant = variant
        self.anchor_inference = anchor_inference
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, S, S) pixel values 0-255 -> (N, C) logits of the target branch."""
        x = (images.float() / 255.0 - self.pixel_mean) / self.pixel_std
        return self.net(x).target

    def spec(self) -> dict[str, Any]:
        """The settings that rebuild this model (stored in the weights files)."""
        return {"variant": self.variant, "num_classes": len(self.class_names),
                "image_size": self.image_size, "class_names": list(self.class_names),
                "mean": list(self.mean), "std": list(self.std),
                "anchor_inference": self.anchor_inference}

    @torch.no_grad()
    def predict_proba(self, images: Tensor | np.ndarray | Sequence[str | Path],
                      batch_size: int = 256) -> np.ndarray:
        """Class probabilities of images given as uint8 (N, 3, S, S) or as image files.

        Parameters
        ----------
        images : Tensor, ndarray or sequence of paths
            Pixel values 0-255 at the model's input size, or image files (any size: decoded
            to RGB and resized as training did, see
            [`load_images`][noisylabel.apps.fer.inference.load_images]).
        batch_size : int
            Images per forward pass.

        Returns
        -------
        numpy.ndarray
            (N, C) float32 softmax probabilities, columns in ``class_names`` order.
        """
        x = self._as_batch(images)
        device = self.pixel_mean.device
        out = [torch.softmax(self(x[i : i + batch_size].to(device)).float(), dim=1).cpu()
               for i in range(0, x.shape[0], batch_size)]
        return torch.cat(out).numpy()

    def predict(self, images: Tensor | np.ndarray | Sequence[str | Path],
                batch_size: int = 256) -> list[str]:
        """The most probable class name of each image (inputs as in `predict_proba`)."""
        probs = self.predict_proba(images, batch_size)
        return [self.class_names[int(k)] for k in probs.argmax(axis=1)]

    def _as_batch(self, images: Tensor | np.ndarray | Sequence[str | Path]) -> Tensor:
        if isinstance(images, (str, Path)):
            images = [images]
        if not isinstance(images, (Tensor, np.ndarray)):
            return load_images(images, self.image_size)
        x = torch.as_tensor(images)
        size = (3, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != size:
            raise ValueError(f"images: expected shape (N, {size[0]}, {size[1]}, {size[2]}) "
                             f"with values 0-255, got {tuple(x.shape)}; pass image files to "
                             "have them resized")
        return x


def load_images(paths: Sequence[str | Path], image_size: int) -> Tensor:
    """Decode image files to RGB and resize them to the model's input, as training did.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files (anything Pillow reads).
    image_size : int
        Side of the square output (bicubic resize when the file's size differs).

    Returns
    -------
    Tensor
        uint8 (N, 3, image_size, image_size).
    """
    from PIL import UnidentifiedImageError

    arrays = []
    for path in paths:
        try:
            arrays.append(decode_image(Path(path), image_size))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from None
    if not arrays:
        raise ValueError("no image given")
    return stack_images(arrays)


def load_model(path: str | Path, device: str | torch.device | None = None) -> FERModel:
    """Load a trained FER model for inference.

    Parameters
    ----------
    path : str or Path
        A training checkpoint (``checkpoint.pt``), a weights-only file (``model_last.pt``,
        ``model_best.pt``) or a run folder (then the first of ``model_best.pt``,
        ``model_last.pt``, ``checkpoint.pt`` that it holds). Read with
        ``torch.load(..., weights_only=True)``.
    device : str, torch.device or None
        Where the model runs; None = CUDA when present, else the CPU.

    Returns
    -------
    FERModel
        The target branch in eval mode, with ``class_names``, ``image_size``, ``mean``, ``std``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is a folder without any of the files above.
    ValueError
        ``path`` is not a noisylabel-fer checkpoint or weights file, or its weights do not fit
        the network it describes; the message names the file.
    """
    from noisylabel.apps.fer.engine import resolve_device

    path = _resolve_run_file(Path(path))
    blob = _read(path)
    spec = dict(blob["spec"]) if blob["format"] == WEIGHTS_FORMAT else _spec_from_checkpoint(blob)
    net = create_model(spec["variant"], num_classes=int(spec["num_classes"]),
                       anchor_inference=spec["anchor_inference"])
    net.aux = None
    try:
        net.load_state_dict(_inference_state(blob["model"]))
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit a {spec['variant']} network with "
                         f"{spec['num_classes']} classes ({exc})") from None
    model = FERModel(net, spec["class_names"], spec["image_size"], spec["mean"], spec["std"],
                     spec["variant"], spec["anchor_inference"])
    return model.to(resolve_device(device))


def _resolve_run_file(path: Path) -> Path:
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path
    for name in MODEL_FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds no model file ({', '.join(MODEL_FILES)})")


def _read(path: Path) -> dict[str, Any]:
    """The file's dict, checked to be one of ours (training checkpoint or weights file)."""
    from noisylabel.apps.fer.engine import CHECKPOINT_FORMAT

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not one of ours"
        raise ValueError(f"{path} is not a readable PyTorch file ({load_error_cause(exc)})"
                         ) from None
    kind = blob.get("format") if isinstance(blob, Mapping) else None
    if kind not in (WEIGHTS_FORMAT, CHECKPOINT_FORMAT):
        found = f"format {kind!r}" if kind else f"a {type(blob).__name__} without a 'format' key"
        raise ValueError(f"{path} is not a noisylabel-fer checkpoint or model file ({found}; "
                         "a backbone for --pretrained is not a trained model)")
    return dict(blob)


def _spec_from_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """Model settings from a training checkpoint's ``config`` (read key by key, so that options
    unrelated to the network never stop a model from loading)."""
    cfg = ckpt["config"]
    names = ckpt.get("class_names") or CLASS_NAMES[: cfg["num_classes"]]
    return {"variant": cfg["variant"], "num_classes": int(cfg["num_classes"]),
            "image_size": int(cfg["image_size"]), "class_names": list(names),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "anchor_inference": cfg.get("anchor_inference", "running")}


def _inference_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The weights prediction needs: all but the auxiliary branch, on the CPU, contiguous."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()
            if not k.startswith("aux.")}


# ----------------------------------------------------------------------------- run folder


def val_selected_epoch(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The epoch with the highest ``val_acc`` (the earliest on ties); None without one."""
    scored = [(r["val_acc"], -r["epoch"]) for r in history
              if isinstance(r.get("val_acc"), float) and not math.isnan(r["val_acc"])]
    return -max(scored)[1] if scored else None


def write_model_files(out: str | Path, checkpoint: Mapping[str, Any],
                      actual_noise_rate: float | None = None) -> dict[str, Any]:
    """Write ``model_last.pt``, ``model_best.pt`` and ``model_card.json`` into a run folder.

    Called by the trainer after each checkpoint, with the dict it saved. ``model_best.pt`` is
    (re)written when this epoch has the best validation accuracy so far, and removed when the
    run has no validation split (it must not be a leftover of another run).

    Parameters
    ----------
    out : str or Path
        The run folder.
    checkpoint : mapping
        The training checkpoint of this epoch (``config``, ``model``, ``epoch``, ``history``,
        ``class_names``, ``regime``, ``backbone_sha256``).
    actual_noise_rate : float or None
        Fraction of training labels that differ from the reference labels.

    Returns
    -------
    dict
        The model card, as written to ``model_card.json``.
    """
    out = Path(out)
    weights = {"format": WEIGHTS_FORMAT, "spec": _spec_from_checkpoint(checkpoint),
               "epoch": int(checkpoint["epoch"]), "model": _inference_state(checkpoint["model"])}
    atomic_torch_save(weights, out / MODEL_LAST)
    best = val_selected_epoch(checkpoint["history"])
    if best is None:
        (out / MODEL_BEST).unlink(missing_ok=True)
    elif best == checkpoint["epoch"]:
        atomic_torch_save(weights, out / MODEL_BEST)
    card = model_card(out, checkpoint, best, actual_noise_rate)
    write_json(out / MODEL_CARD, card)
    return card


def model_card(out: Path, checkpoint: Mapping[str, Any], best_epoch: int | None,
               actual_noise_rate: float | None) -> dict[str, Any]:
    """The content of ``model_card.json`` (see `write_model_files`)."""
    cfg, history = checkpoint["config"], checkpoint["history"]
    spec = _spec_from_checkpoint(checkpoint)
    acc = summarize_accuracy([r["test_acc"] for r in history])
    rows = {r["epoch"]: r for r in history}
    selection: dict[str, Any] = {"by": "val_acc", "epoch": best_epoch}
    if best_epoch is None:
        selection["note"] = ("no validation split: model_best.pt is not written (selecting an "
                             "epoch on the test split would make its accuracy optimistic)")
    else:
        selection.update(val_acc=rows[best_epoch]["val_acc"],
                         test_acc=rows[best_epoch]["test_acc"], file=MODEL_BEST)
    return {
        "format": CARD_FORMAT,
        "variant": spec["variant"],
        "classes": spec["class_names"],
        "input": {"shape": [3, spec["image_size"], spec["image_size"]], "channels": "RGB",
                  "values": "0-255 (uint8 or float)",
                  "normalization": {"mean": spec["mean"], "std": spec["std"],
                                    "formula": "(x / 255 - mean) / std, done by the model"}},
        "data": {"root": cfg["data"], "layout": _layout(cfg["data"]),
                 "noise": cfg.get("noise"), "noise_file": cfg.get("noise_file"),
                 "train_labels": cfg.get("train_labels"), "vote_rule": cfg.get("vote_rule"),
                 "actual_noise_rate": actual_noise_rate},
        "start": {"regime": checkpoint.get("regime"), "pretrained": cfg.get("pretrained"),
                  "backbone_sha256": checkpoint.get("backbone_sha256")},
        "training": {"epochs_done": int(checkpoint["epoch"]), "epochs": cfg.get("epochs"),
                     "seed": cfg.get("seed")},
        "test_accuracy": {"final": acc["final"], "last5_mean": acc["last5_mean"],
                          "last5_std": acc["last5_std"], "best_optimistic": acc["best"],
                          "best_epoch_optimistic": acc["best_epoch"],
                          "note": "best_optimistic is selected on the test split itself"},
        "selection": selection,
        "sha256": {name: _sha256(out / name) for name in WEIGHT_FILES if (out / name).is_file()},
    }


def _layout(root: str) -> str:
    try:
        from noisylabel.apps.fer.layouts import detect_layout

        return detect_layout(root)
    except (FileNotFoundError, OSError):
        return "unknown (not found)"
