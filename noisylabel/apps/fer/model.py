"""The networks of the paper's Table I, built on timm's ResNet18, and backbone checkpoint loading.

Variants (``create_model(variant, ...)``):

* ``baseline``: plain ResNet18, one branch, cross-entropy. No AEA.
* ``aea``: ResNet18 with Average Expression Anchoring on the pooled feature, one branch.
* ``full``: the dual-branch network. A shared trunk (``conv1, bn1, act1, maxpool, layer1``) feeds
  two branches, the auxiliary and the target one, each a deep copy of ``layer2-4`` followed by
  global average pooling, an [`AverageAnchor`][noisylabel.layers.AverageAnchor] and its own linear head.

Both branches are deep copies of the same ``layer2-4`` (the pretrained ones when a checkpoint is
given), so they start from identical weights; the two linear heads are initialised independently
(docs/method.md, "The per-epoch noise model and its safeguards"). The trunk is frozen when a pretrained checkpoint is loaded (as in Ada-DF; a frozen
trunk also keeps its BatchNorm statistics fixed) and trained from random initialisation otherwise
(docs/method.md): a frozen random stem would cripple the network.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from torch import Tensor, nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from noisylabel.apps.fer.run_folder import load_error_cause
from noisylabel.layers import AverageAnchor

__all__ = [
    "VARIANTS",
    "FEROutput",
    "FERBranch",
    "FERNet",
    "create_model",
    "load_backbone_checkpoint",
    "backbone_reference_shapes",
]

TRUNK_MODULES = ("conv1", "bn1", "act1", "maxpool", "layer1")
BRANCH_MODULES = ("layer2", "layer3", "layer4")


class FEROutput(NamedTuple):
    """Logits of one forward pass.

    Attributes
    ----------
    target : Tensor
        (B, C) logits of the target branch (the one used for prediction and evaluation).
    aux : Tensor or None
        (B, C) logits of the auxiliary branch (``full`` only; None for single-branch variants).
    """

    target: Tensor
    aux: Tensor | None = None


class FERBranch(nn.Module):
    """``layer2-4`` -> global average pool -> optional AEA -> linear head.

    Parameters
    ----------
    layers : nn.Module
        The residual stages (``layer2``, ``layer3``, ``layer4`` in a Sequential).
    num_features : int
        Width of the pooled feature (512 for ResNet18).
    num_classes : int
        Number of output classes.
    anchor : bool
        Apply Average Expression Anchoring ``f' = f + a * mean_batch(f)`` on the pooled feature.
    anchor_inference : {"running", "batch"}
        Anchor used in eval mode (see [`AverageAnchor`][noisylabel.layers.AverageAnchor]).
    """

    def __init__(
        self,
        layers: nn.Module,
        num_features: int,
        num_classes: int,
        anchor: bool,
        anchor_inference: str = "running",
    ) -> None:
        super().__init__()
        self.layers = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.anchor = (
            AverageAnchor(num_features, inference=anchor_inference) if anchor else nn.Identity()
        )
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return (B, C) logits of feature maps ``x`` (B, 64, H/4, W/4)."""
        f = self.pool(self.layers(x)).flatten(1)
        return self.head(self.anchor(f))


class FERNet(nn.Module):
    """Shared trunk plus one (target) or two (auxiliary + target) branches.

    Parameters
    ----------
    trunk : nn.Module
        Stem and ``layer1``.
    target : FERBranch
        The branch used for prediction and evaluation.
    aux : FERBranch or None
        The auxiliary branch that supervises the noise model (``full`` only).
    variant : str
        Name of the variant, kept for checkpoints and reports.
    """

    def __init__(
        self, trunk: nn.Module, target: FERBranch, aux: FERBranch | None, variant: str
    ) -> None:
        super().__init__()
        self.variant = variant
        self.trunk = trunk
        self.aux = aux
        self.target = target
        self.trunk_frozen = False

    def freeze_trunk(self, frozen: bool = True) -> None:
        """Stop (or restart) training the shared trunk: no gradients, fixed BatchNorm statistics."""
        self.trunk_frozen = frozen
        for p in self.trunk.parameters():
            p.requires_grad_(not frozen)
        self.trunk.train(self.training and not frozen)

    def train(self, mode: bool = True) -> FERNet:
        """Set train/eval mode; a frozen trunk always stays in eval mode."""
        super().train(mode)
        if self.trunk_frozen:
            self.trunk.eval()
        return self

    def forward(self, x: Tensor) -> FEROutput:
        """Return ``FEROutput`` logits for images ``x`` (B, 3, H, W), normalised floats."""
        h = self.trunk(x)
        aux = self.aux(h) if self.aux is not None else None
        return FEROutput(target=self.target(h), aux=aux)


def _resnet18() -> nn.Module:
    # Never downloads: weights come only from a local checkpoint (load_backbone_checkpoint).
    return timm.create_model("resnet18", pretrained=False)


def backbone_reference_shapes() -> dict[str, tuple[int, ...]]:
    """Return ``{key: shape}`` of timm ResNet18's state_dict without ``fc.*`` (the keys we load)."""
    sd = _resnet18().state_dict()
    return {k: tuple(v.shape) for k, v in sd.items() if not k.startswith("fc.")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_backbone_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """Read a ResNet18 backbone checkpoint and check it against timm's ``resnet18`` keys.

    Accepted layouts: ``{'state_dict': {...}}`` (the MS-Celeb-1M ``resnet18_msceleb.pth``, with
    un-prefixed keys and a 1000-way ``fc``), the same with every key prefixed by ``module.``
    (saved from ``DataParallel``), and a bare state_dict (torchvision / timm). ``fc.*`` is dropped.
    ``num_batches_tracked`` buffers may be absent (older files); they are then set to 0.

    Parameters
    ----------
    path : str or Path
        The checkpoint file, read with ``torch.load(..., weights_only=True)``.

    Returns
    -------
    state_dict : dict[str, Tensor]
        Backbone weights with timm ResNet18 keys (no ``fc.*``), on the CPU.
    sha256 : str
        Hex SHA-256 of the file, recorded in the run's outputs.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a PyTorch checkpoint, holds no state_dict, or its backbone keys are
        missing, unexpected or misshapen (the message names the keys and the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not a checkpoint"
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({load_error_cause(exc)})"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, not a state_dict "
            "(expected {'state_dict': {...}} or a mapping of parameter names to tensors)"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: entries that are not named tensors: {_listing(bad)}")
    state = dict(obj)
    consume_prefix_in_state_dict_if_present(state, "module.")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    reference = backbone_reference_shapes()
    for key in reference:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(k for k in reference if k not in state)
    unexpected = sorted(k for k in state if k not in reference)
    misshapen = sorted(
        f"{k} {tuple(state[k].shape)} (expected {reference[k]})"
        for k in reference
        if k in state and tuple(state[k].shape) != reference[k]
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if misshapen:
        problems.append(f"misshapen keys: {_listing(misshapen)}")
    if problems:
        raise ValueError(
            f"{path} is not a ResNet18 backbone checkpoint: " + "; ".join(problems)
        )
    return state, _sha256(path)


def _build(
    num_classes: int,
    two_branches: bool,
    anchor: bool,
    anchor_inference: str,
    backbone_state: Mapping[str, Tensor] | None,
    variant: str,
) -> FERNet:
    resnet = _resnet18()
    if backbone_state is not None:
        result = resnet.load_state_dict(dict(backbone_state), strict=False)
        leftover = [k for k in result.missing_keys if not k.startswith("fc.")]
        if leftover or result.unexpected_keys:  # load_backbone_checkpoint checked; be sure
            raise ValueError(
                f"backbone state_dict does not match resnet18: missing {leftover}, "
                f"unexpected {result.unexpected_keys}"
            )
    trunk = nn.Sequential(*(getattr(resnet, name) for name in TRUNK_MODULES))
    layers = nn.Sequential(*(getattr(resnet, name) for name in BRANCH_MODULES))
    width = resnet.num_features

    def branch() -> FERBranch:
        return FERBranch(copy.deepcopy(layers), width, num_classes, anchor, anchor_inference)

    aux = branch() if two_branches else None
    return FERNet(trunk, target=branch(), aux=aux, variant=variant)


def _baseline(num_classes: int, anchor_inference: str, state: Mapping | None) -> FERNet:
    return _build(num_classes, False, False, anchor_inference, state, "baseline")


def _aea(num_classes: int, anchor_inference: str, state: Mapping | None) -> FERNet:
    return _build(num_classes, False, True, anchor_inference, state, "aea")


def _full(num_classes: int, anchor_inference: str, state: Mapping | None) -> FERNet:
    return _build(num_classes, True, True, anchor_inference, state, "full")


VARIANTS: dict[str, Callable[[int, str, Mapping | None], FERNet]] = {
    "baseline": _baseline,
    "aea": _aea,
    "full": _full,
}


def create_model(
    variant: str,
    num_classes: int = 7,
    pretrained: str | Path | None = None,
    anchor_inference: str = "running",
    freeze_trunk: bool | None = None,
) -> FERNet:
    """Build a Table I variant, optionally from a local backbone checkpoint.

    Parameters
    ----------
    variant : {"baseline", "aea", "full"}
        Which network (see the module docstring).
    num_classes : int
        Number of expression classes (7 for RAF-DB).
    pretrained : str, Path or None
        Local ResNet18 checkpoint (see ``load_backbone_checkpoint``); None = random init.
        Nothing is ever downloaded.
    anchor_inference : {"running", "batch"}
        AEA anchor at eval time: the running mean (default) or the eval batch's mean (SLM-AEA).
    freeze_trunk : bool or None
        Freeze the shared trunk. None = frozen exactly when ``pretrained`` is given.

    Returns
    -------
    FERNet
        The model; ``model.backbone_sha256`` is the checkpoint's SHA-256 (None from scratch).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    if anchor_inference not in ("running", "batch"):
        raise ValueError(f"anchor_inference must be 'running' or 'batch', got {anchor_inference!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    state, sha = (None, None)
    if pretrained is not None:
        state, sha = load_backbone_checkpoint(pretrained)
    model = VARIANTS[variant](num_classes, anchor_inference, state)
    model.backbone_sha256 = sha
    model.freeze_trunk(pretrained is not None if freeze_trunk is None else freeze_trunk)
    return model
