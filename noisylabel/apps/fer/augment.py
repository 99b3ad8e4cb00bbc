"""Training augmentation on the device: the eval normalisation and a batch RandAugment.

[`BatchAugment`][noisylabel.apps.fer.augment.BatchAugment] runs on uint8 batches on any device;
see its docstring for how it follows and where it departs from timm's ``rand-m5-n3-mstd0.5``.
[`make_augment`][noisylabel.apps.fer.augment.make_augment] builds the one that
``TrainConfig.augment`` names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RAND_OPS", "AugmentParams", "BatchAugment",
           "make_augment", "normalize"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- normalisation


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Eval transform: ``(images / 255 - mean) / std`` as float32 on the images' device.

    Parameters
    ----------
    images : torch.Tensor
        uint8 (N, 3, H, W) (or float in [0, 255]).

    Returns
    -------
    torch.Tensor float32 (N, 3, H, W)
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s



# --------------------------------------------------------------------------- augmentation

RAND_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
"""timm's ``_RAND_TRANSFORMS`` (the op set of ``rand-m*-n*``)."""

_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_GRAY = (0.299, 0.587, 0.114)  # PIL's "L" conversion weights


@dataclass
class AugmentParams:
    """Per-sample random draws of one [`BatchAugment`][noisylabel.apps.fer.augment.BatchAugment] call (all tensors have length N).

    ``ops`` (N, n) op indices into ``BatchAugment.ops``, ``applied`` (N, n) bool, ``magnitude``
    (N, n) in [0, 10], ``sign`` (N, n) +-1, ``flip`` (N,) bool, ``erase`` (N,) bool and the erase
    boxes ``erase_box`` (N, 4) = (top, left, height, width) in pixels.
    """

    ops: torch.Tensor
    applied: torch.Tensor
    magnitude: torch.Tensor
    sign: torch.Tensor
    flip: torch.Tensor
    erase: torch.Tensor
    erase_box: torch.Tensor


class BatchAugment:
    """Training augmentation of a uint8 batch, vectorised, on the batch's device.

    ``out = erase(normalize(randaugment(flip(x))))`` with, per sample:

    * horizontal flip with probability ``flip_p``;
    * RandAugment like timm's ``rand-m{magnitude}-n{num_ops}-mstd{magnitude_std}``: ``num_ops``
      ops drawn uniformly *with replacement* from [`RAND_OPS`][noisylabel.apps.fer.augment.RAND_OPS], each applied with probability
      ``op_p`` (timm: 0.5) at magnitude ``m ~ N(magnitude, magnitude_std)`` clipped to [0, 10],
      and timm's level-to-argument maps: rotate ``30 m/10`` degrees, shear ``0.3 m/10``,
      translate ``0.45 m/10`` of the image side (so it scales with the image), each with a random
      sign; colour / contrast / brightness / sharpness factor ``1.8 m/10 + 0.1``; posterize to
      ``int(4 m/10)`` bits; solarize above ``256 m/10``; solarize-add ``int(110 m/10)`` below 128;
      autocontrast, equalize and invert take no magnitude;
    * random erasing with probability ``erase_p`` of a box of area ``U(erase_scale)`` of the
      image and aspect ratio log-uniform in ``erase_ratio``, set to 0 after normalisation (the
      mean colour), as the FER code bases built on SCN / EAC do with torchvision's
      ``RandomErasing(scale=(0.02, 0.25))`` (its default p = 0.5); torchvision retries a box that
      does not fit, here the box sides are clipped to the image.

    Differences from timm's PIL implementation (documented, deliberate):

    * Geometric ops of a sample are composed into one affine matrix (about the image centre)
      and applied with one ``affine_grid`` + ``grid_sample`` (bilinear) per batch, before the
      colour ops; timm resamples once per op, in the drawn order, with a random bilinear or
      bicubic filter. Pixel-wise colour ops commute with the geometry, so only the out-of-image
      fill and the statistics of autocontrast / equalize (computed on the warped image) differ.
    * Shear is about the image centre; timm shears about the top-left corner, which adds a
      translation of up to ``shear * side``.
    * The fill colour of uncovered pixels is timm's ``img_mean`` (ImageNet mean), as in timm.
    * Colour ops run in float32 on the 0..255 scale and are rounded to integers after each op
      (PIL works in uint8); equalize follows PIL's look-up-table formula per channel.
    * Sharpness blends with PIL's 3x3 SMOOTH kernel applied to the whole image (PIL keeps the
      one-pixel border unchanged).

    Parameters
    ----------
    num_ops, magnitude, magnitude_std, op_p : RandAugment settings (timm defaults for ``m5-n3``).
    flip_p : float
        Horizontal flip probability.
    erase_p, erase_scale, erase_ratio : random erasing settings.
    mean, std : normalisation (ImageNet).
    ops : sequence of str
        Op names, a subset of [`RAND_OPS`][noisylabel.apps.fer.augment.RAND_OPS]. An empty sequence disables RandAugment.
    """

    def __init__(
        self,
        num_ops: int = 3,
        magnitude: float = 5.0,
        magnitude_std: float = 0.5,
        op_p: float = 0.5,
        flip_p: float = 0.5,
        erase_p: float = 0.5,
        erase_scale: tuple[float, float] = (0.02, 0.25),
        erase_ratio: tuple[float, float] = (0.3, 3.3),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ops: Sequence[str] = RAND_OPS,
    ) -> None:
        unknown = [o for o in ops if o not in RAND_OPS]
        if unknown:
            raise ValueError(f"unknown augmentation ops {unknown}; choose from {RAND_OPS}")
        for name, p in (("op_p", op_p), ("flip_p", flip_p), ("erase_p", erase_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p}: must be in [0, 1]")
        if num_ops < 0:
            raise ValueError(f"num_ops={num_ops}: must be >= 0")
        if not 0.0 < erase_scale[0] <= erase_scale[1] < 1.0:
            raise ValueError(f"erase_scale={erase_scale}: need 0 < low <= high < 1")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.op_p = float(op_p)
        self.flip_p = float(flip_p)
        self.erase_p = float(erase_p)
        self.erase_scale = (float(erase_scale[0]), float(erase_scale[1]))
        self.erase_ratio = (float(erase_ratio[0]), float(erase_ratio[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.ops = tuple(ops)

    def __repr__(self) -> str:
        return (f"BatchAugment(rand-m{self.magnitude:g}-n{self.num_ops}-mstd"
                f"{self.magnitude_std:g}, op_p={self.op_p}, flip_p={self.flip_p}, "
                f"erase_p={self.erase_p}, erase_scale={self.erase_scale})")

    # -- random draws ------------------------------------------------------------------------
    def sample_params(self, n: int, height: int, width: int,
                      generator: torch.Generator | None = None) -> AugmentParams:
        """Draw every per-sample random choice for a batch of ``n`` images (on the CPU or on the
        generator's device)."""
        dev = generator.device if generator is not None else torch.device("cpu")

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        k = max(self.num_ops, 0)
        n_ops = max(len(self.ops), 1)
        ops = torch.randint(0, n_ops, (n, k), generator=generator, device=dev)
        applied = (rand(n, k) < self.op_p) & (len(self.ops) > 0)
        mag = self.magnitude + self.magnitude_std * torch.randn(n, k, generator=generator,
                                                                device=dev)
        mag = mag.clamp(0.0, 10.0)
        sign = torch.where(rand(n, k) < 0.5, -1.0, 1.0)
        flip = rand(n) < self.flip_p
        erase = rand(n) < self.erase_p
        area = (self.erase_scale[0] + (self.erase_scale[1] - self.erase_scale[0]) * rand(n)) \
            * height * width
        lo, hi = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        ratio = torch.exp(lo + (hi - lo) * rand(n))
        eh = torch.sqrt(area * ratio).round().clamp(1, height - 1 if height > 1 else 1)
        ew = torch.sqrt(area / ratio).round().clamp(1, width - 1 if width > 1 else 1)
        top = (rand(n) * (height - eh + 1)).floor()
        left = (rand(n) * (width - ew + 1)).floor()
        box = torch.stack([top, left, eh, ew], dim=1).long()
        return AugmentParams(ops, applied, mag, sign, flip, erase, box)

    # -- application -------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None,
                 params: AugmentParams | None = None) -> torch.Tensor:
        """Augment and normalise a batch.

        Parameters
        ----------
        images : torch.Tensor
            uint8 (N, 3, H, W), on any device.
        generator : torch.Generator, optional
            Source of all randomness (CPU or on the images' device).
        params : AugmentParams, optional
            Use these draws instead of sampling (for tests and replay).

        Returns
        -------
        torch.Tensor
            float32 (N, 3, H, W), normalised, on the images' device.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images: expected dtype uint8, got {images.dtype}")
        n, _, h, w = images.shape
        dev = images.device
        p = params if params is not None else self.sample_params(n, h, w, generator)
        ops, applied = p.ops.to(dev), p.applied.to(dev)
        mag, sign = p.magnitude.to(dev), p.sign.to(dev)
        x = images.float()
        if n == 0:
            return normalize(images, self.mean, self.std)
        x = self._geometric(x, ops, applied, mag, sign, p.flip.to(dev))
        for j in range(ops.shape[1]):
            for k, name in enumerate(self.ops):
                if name in _GEOMETRIC:
                    continue
                sel = applied[:, j] & (ops[:, j] == k)
                if bool(sel.any()):
                    x[sel] = _COLOUR_OPS[name](x[sel], mag[sel, j]).round().clamp(0.0, 255.0)
        out = normalize(x, self.mean, self.std)
        if self.erase_p > 0:
            box = p.erase_box.to(dev)
            rows = torch.arange(h, device=dev).view(1, h, 1)
            cols = torch.arange(w, device=dev).view(1, 1, w)
            top, left, eh, ew = (box[:, i].view(n, 1, 1) for i in range(4))
            mask = ((rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
                    & p.erase.to(dev).view(n, 1, 1))
            out = out.masked_fill(mask.unsqueeze(1), 0.0)
        return out

    def _geometric(self, x: torch.Tensor, ops: torch.Tensor, applied: torch.Tensor,
                   mag: torch.Tensor, sign: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Flip + every geometric op of each sample as one inverse affine map, one grid_sample.

        In normalised coordinates ``u in [-1, 1]^2`` (output -> input), ops applied in the order
        flip, op_1, ..., op_n compose to ``theta = F A_1 ... A_n``.
        """
        n, _, h, w = x.shape
        dev = x.device
        theta = torch.eye(3, device=dev).repeat(n, 1, 1)
        theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        any_geo = bool(flip.any())
        for j in range(ops.shape[1]):
            level = mag[:, j] / 10.0 * sign[:, j]
            a = torch.eye(3, device=dev).repeat(n, 1, 1)
            for k, name in enumerate(self.ops):
                if name not in _GEOMETRIC:
                    continue
                sel = applied[:, j] & (ops[:, j] == k)
                if not bool(sel.any()):
                    continue
                any_geo = True
                v = level[sel]
                m = torch.eye(3, device=dev).repeat(int(sel.sum()), 1, 1)
                if name == "Rotate":  # PIL rotates counter-clockwise by +deg
                    t = torch.deg2rad(30.0 * v)
                    c, s = torch.cos(t), torch.sin(t)
                    # inverse map in pixel-aspect-corrected normalised coordinates
                    m[:, 0, 0], m[:, 0, 1] = c, -s * (h / w)
                    m[:, 1, 0], m[:, 1, 1] = s * (w / h), c
                elif name == "ShearX":  # x_in = x + f y (pixels) -> u_in = u + f (h/w) v
                    m[:, 0, 1] = 0.3 * v * (h / w)
                elif name == "ShearY":
                    m[:, 1, 0] = 0.3 * v * (w / h)
                elif name == "TranslateXRel":  # x_in = x + f * w -> u_in = u + 2 f
                    m[:, 0, 2] = 2.0 * 0.45 * v
                else:  # TranslateYRel
                    m[:, 1, 2] = 2.0 * 0.45 * v
                a[sel] = m
            theta = theta @ a
        if not any_geo:
            return x
        grid = F.affine_grid(theta[:, :2, :], [n, 4, h, w], align_corners=False)
        ones = torch.ones(n, 1, h, w, device=dev, dtype=x.dtype)
        warped = F.grid_sample(torch.cat([x, ones], 1), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        fill = torch.tensor([255.0 * m for m in IMAGENET_MEAN], device=dev).view(1, 3, 1, 1)
        cover = warped[:, 3:4]
        return (warped[:, :3] + (1.0 - cover) * fill.round()).clamp(0.0, 255.0)


# colour ops on float (k, 3, H, W) in [0, 255] with per-sample magnitude (k,) in [0, 10]
def _gray(x: torch.Tensor) -> torch.Tensor:
    wts = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def _factor(m: torch.Tensor) -> torch.Tensor:
    return (m / 10.0 * 1.8 + 0.1).view(-1, 1, 1, 1)


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    off = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return (x - off) * scale


def _equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # PIL: step = (count - count of the last non-empty bin) // 255; lut[v] = (cum[v] + step//2)
    # // step with cum the exclusive cumulative histogram; identity when step == 0.
    k, c, h, w = x.shape
    flat = x.round().long().clamp(0, 255).view(k * c, h * w)
    hist = torch.zeros(k * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - torch.argmax((hist.flip(1) > 0).long(), dim=1)
    step = (h * w - hist.gather(1, last.view(-1, 1)).squeeze(1)) // 255
    cum = torch.cumsum(hist, 1) - hist
    safe = step.clamp_min(1).view(-1, 1)
    lut = ((cum + safe // 2) // safe).clamp(0, 255)
    out = torch.gather(lut, 1, flat).to(x.dtype)
    out = torch.where((step > 0).view(-1, 1), out, flat.to(x.dtype))
    return out.view(k, c, h, w)


def _invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return 255.0 - x


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    bits = (m / 10.0 * 4).floor().clamp(0, 8)
    q = torch.pow(2.0, 8 - bits).view(-1, 1, 1, 1)
    return torch.floor(x / q) * q


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    thresh = torch.clamp((m / 10.0 * 256).floor(), max=256).view(-1, 1, 1, 1)
    return torch.where(x >= thresh, 255.0 - x, x)


def _solarize_add(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    add = torch.clamp((m / 10.0 * 110).floor(), max=128).view(-1, 1, 1, 1)
    return torch.where(x < 128, (x + add).clamp(max=255.0), x)


def _color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    g = _gray(x)
    return g + _factor(m) * (x - g)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).round().mean(dim=(1, 2, 3), keepdim=True)
    return mean + _factor(m) * (x - mean)


def _brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x * _factor(m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device,
                          dtype=x.dtype) / 13.0
    weight = kernel.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=3)
    return blurred + _factor(m) * (x - blurred)


_COLOUR_OPS = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "SolarizeAdd": _solarize_add,
    "Color": _color,
    "Contrast": _contrast,
    "Brightness": _brightness,
    "Sharpness": _sharpness,
}


def make_augment(name: str) -> BatchAugment | None:
    """The training augmentation named by ``TrainConfig.augment`` (None = normalise only)."""
    if name == "randaugment":
        return BatchAugment()  # flip, RandAugment m5-n3-mstd0.5, random erasing
    if name == "flip":
        return BatchAugment(ops=())  # flip and random erasing
    return None
