"""Tests of the batch augmentation and the eval normalisation (apps/fer/augment.py)."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from noisylabel.apps.fer.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAND_OPS,
    BatchAugment,
    make_augment,
    normalize,
)

SIZE = 16


def _batch(n=8, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _to_uint8(y):
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((y * s + m) * 255).round().clamp(0, 255).to(torch.uint8)


def test_normalize_eval_transform():
    x = _batch()
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(_to_uint8(y), x)
    with pytest.raises(ValueError, match="shape"):
        normalize(x[:, :2])


def test_augment_shapes_dtypes_and_range():
    x = _batch(16)
    y = BatchAugment()(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    lo = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    hi = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.all(y >= lo.view(1, 3, 1, 1) - 1e-5) and torch.all(y <= hi.view(1, 3, 1, 1) + 1e-5)
    assert torch.isfinite(y).all()


def test_augment_reproducible_with_same_generator_seed():
    x = _batch(12)
    aug = BatchAugment()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_per_sample_randomness():
    x = _batch(1).repeat(32, 1, 1, 1)  # 32 copies of the same image
    aug = BatchAugment()
    params = aug.sample_params(32, SIZE, SIZE, torch.Generator().manual_seed(0))
    assert len({tuple(r) for r in params.ops.tolist()}) > 16  # different ops per sample
    assert 0 < int(params.flip.sum()) < 32 and 0 < int(params.erase.sum()) < 32
    y = aug(x, params=params)
    distinct = {tuple(v) for v in y.flatten(1).numpy().round(4).tolist()}
    assert len(distinct) > 16


def test_augment_identity_when_disabled():
    x = _batch()
    aug = BatchAugment(ops=(), flip_p=0.0, erase_p=0.0)
    torch.testing.assert_close(aug(x, torch.Generator().manual_seed(0)), normalize(x))
    with pytest.raises(ValueError, match="uint8"):
        aug(x.float())
    with pytest.raises(ValueError, match="unknown augmentation ops"):
        BatchAugment(ops=("Blur",))


def test_flip_and_erase():
    x = _batch(4)
    flip = BatchAugment(ops=(), flip_p=1.0, erase_p=0.0)
    torch.testing.assert_close(flip(x, torch.Generator().manual_seed(0)), normalize(x.flip(3)))
    erase = BatchAugment(ops=(), flip_p=0.0, erase_p=1.0, erase_scale=(0.1, 0.1))
    p = erase.sample_params(4, SIZE, SIZE, torch.Generator().manual_seed(0))
    y = erase(x, params=p)
    zero = (y == 0).all(1)  # erased pixels are exactly 0 (the mean colour) in every channel
    for i in range(4):
        top, left, h, w = p.erase_box[i].tolist()
        assert zero[i, top:top + h, left:left + w].all()
        assert int(zero[i].sum()) == h * w
        assert abs(h * w - 0.1 * SIZE * SIZE) <= SIZE  # area ~ scale * HW up to rounding


def _pil_reference(name, img, level):
    fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
    s = img.size[0]
    return {
        "Rotate": lambda: img.rotate(30 * level, resample=Image.Resampling.BILINEAR,
                                     fillcolor=fill),
        "TranslateXRel": lambda: img.transform(img.size, Image.Transform.AFFINE,
                                               (1, 0, 0.45 * level * s, 0, 1, 0),
                                               resample=Image.Resampling.BILINEAR, fillcolor=fill),
        "Equalize": lambda: ImageOps.equalize(img),
        "AutoContrast": lambda: ImageOps.autocontrast(img),
        "Posterize": lambda: ImageOps.posterize(img, int(4 * level)),
        "Solarize": lambda: ImageOps.solarize(img, int(256 * level)),
        "Invert": lambda: ImageOps.invert(img),
        "Contrast": lambda: ImageEnhance.Contrast(img).enhance(1.8 * level + 0.1),
        "Color": lambda: ImageEnhance.Color(img).enhance(1.8 * level + 0.1),
        "Brightness": lambda: ImageEnhance.Brightness(img).enhance(1.8 * level + 0.1),
    }[name]()


@pytest.mark.parametrize(
    ("name", "tol"),
    [("Rotate", 2.5), ("TranslateXRel", 1.5), ("Equalize", 0.01), ("AutoContrast", 1.0),
     ("Posterize", 0.01), ("Solarize", 0.01), ("Invert", 0.01), ("Contrast", 1.0),
     ("Color", 1.0), ("Brightness", 1.0)],
)
def test_ops_follow_pil(name, tol):
    """Each op at magnitude 7 agrees with timm's PIL op (mean absolute difference in grey levels).

    A smooth image keeps the bilinear-resampling differences small."""
    yy, xx = np.mgrid[0:24, 0:24]
    arr = np.stack([xx * 9, yy * 7 + 40, (xx + yy) * 4 + 20], -1).clip(0, 255).astype(np.uint8)
    aug = BatchAugment(ops=(name,), num_ops=1, op_p=1.0, flip_p=0.0, erase_p=0.0)
    p = aug.sample_params(1, 24, 24, torch.Generator().manual_seed(0))
    p.magnitude[:] = 7.0
    p.sign[:] = 1.0
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()
    mine = _to_uint8(aug(x, params=p))[0].permute(1, 2, 0).numpy().astype(float)
    ref = np.asarray(_pil_reference(name, Image.fromarray(arr), 0.7)).astype(float)
    assert np.abs(mine - ref).mean() <= tol
    if name not in ("Contrast", "Color", "Brightness"):
        assert np.abs(mine - arr).mean() > 1.0  # the op did something


def test_every_op_runs():
    x = _batch(4)
    for name in RAND_OPS:
        aug = BatchAugment(ops=(name,), num_ops=2, op_p=1.0)
        assert aug(x, torch.Generator().manual_seed(0)).shape == x.shape


def test_augmentations() -> None:
    assert make_augment("none") is None
    assert make_augment("flip").ops == ()
    assert len(make_augment("randaugment").ops) > 0
