"""Procedural facial-expression data set in RAF-DB's layout.

A stand-in for RAF-DB that needs no download and no licence: cartoon faces drawn with PIL
(supersampled, then downsampled with an antialiasing filter), seven expressions in RAF-DB's class
order, many identities. It exists so that the FER pipeline, the label-noise experiments and the
tests run anywhere, and it is built to share the two properties of real FER data that the method
cares about:

* **Expressions are made of facial action cues** (after FACS action units): mouth curvature (AU12 /
  AU15), mouth opening and width (AU25-27, AU20), brow height (AU1+2 / AU4), brow slant (inner
  brow raiser AU1 against brow lowerer AU4), brows drawn together, eye opening (AU5 / AU7),
  nose wrinkle and raised upper lip (AU9 / AU10), raised cheeks (AU6), pressed lips (AU24).
  Each class is a prototype vector of these cues; an image shows
  ``cues = identity_rest + s * prototype + cue_noise * eps`` with a per-image intensity
  ``s ~ U(intensity_range)`` and ``eps ~ N(0, 1)`` per cue, so weak expressions of different
  classes overlap. Three pairs are close by construction, as in real data:
  fear / surprise (raised brows, wide eyes, open mouth), disgust / anger (lowered brows,
  narrowed eyes) and sadness / neutral (small cues).
* **Identity dominates pixel variance.** Every identity has its own face shape, skin tone, hair
  colour and style, clothes, background colour, feature positions and sizes, optional glasses, and
  a resting expression (``identity_rest``: a slight natural smile or frown, slanted brows). A
  linear probe (``benchmarks/probe_synthetic.py``) measures the share of pixel variance explained
  by identity and by expression.

Per image: a small rotation, shift and scale, a lighting gain and gradient, Gaussian pixel noise,
then JPEG compression.

Everything is deterministic from the seeds. Identity ``k`` (an integer id) draws its parameters
from a random stream keyed by ``(identity_seed, k)``; an image draws from a stream keyed by
``(seed, split, index)``. Identity ids are ``identity_offset + 0 .. n_identities - 1``, so a
source set built with ``disjoint_config`` (ids after the target's ids) has no identity in
common with its target (for expression pretraining on other faces).

Layout written by [`generate_dataset`][noisylabel.apps.fer.synthetic.generate_dataset] (RAF-DB's, plus two extra files)::

    root/EmoLabel/list_patition_label.txt   train_00001.jpg 5   (1-based labels, train_* then test_*)
    root/EmoLabel/identities.csv            name,identity
    root/Image/aligned/train_00001_aligned.jpg
    root/synthetic.json                     {"config": ..., "hash": "...", "version": ...}

Command line: ``python -m noisylabel.apps.fer.synthetic OUT_DIR [--n-train N --n-test N ...]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from noisylabel.apps.fer.classes import CLASS_NAMES

GENERATOR_VERSION = 1
"""Bumped whenever a change to the drawing code changes the pixels for a given config."""


CUES: tuple[str, ...] = (
    "curve",  # mouth-corner lift, + smile (AU12) / - frown (AU15)
    "open",  # mouth opening, 0 closed .. 1 wide open (AU25-27)
    "width",  # mouth width change, + stretched (AU20) / - rounded (AU18)
    "teeth",  # how much of the teeth show when the mouth is open
    "brow_raise",  # + raised (AU1+2) / - lowered (AU4)
    "brow_slant",  # + inner ends up (AU1, sad/fear) / - inner ends down (AU4, anger)
    "brow_pull",  # brows drawn together (AU4)
    "eye_open",  # + widened (AU5) / - narrowed (AU7)
    "wrinkle",  # nose wrinkle and nasolabial folds (AU9)
    "upper_lip",  # upper lip raised (AU10)
    "cheek",  # cheeks raised (AU6)
    "press",  # lips pressed thin (AU24)
)

# One prototype per class, in RAF-DB order; cues not named are 0.
PROTOTYPES: tuple[dict[str, float], ...] = (
    # 0 surprise: brows high and arched, eyes wide, mouth a tall O
    {"brow_raise": 1.0, "eye_open": 0.9, "open": 0.9, "width": -0.5, "teeth": 0.2},
    # 1 fear: brows raised AND pulled together with inner ends up, eyes wide, mouth stretched
    {"brow_raise": 0.6, "brow_slant": 0.6, "brow_pull": 0.6, "eye_open": 0.75, "open": 0.4,
     "width": 0.45, "curve": -0.25, "teeth": 0.6},
    # 2 disgust: nose wrinkle, upper lip raised, brows lowered, eyes narrowed, corners down
    {"wrinkle": 1.0, "upper_lip": 0.9, "brow_raise": -0.45, "brow_pull": 0.35, "eye_open": -0.45,
     "curve": -0.45, "open": 0.1, "teeth": 0.5},
    # 3 happiness: corners up, open smile with teeth, cheeks raised, eyes a little narrowed
    {"curve": 1.0, "open": 0.35, "teeth": 0.9, "width": 0.35, "cheek": 1.0, "eye_open": -0.3,
     "brow_raise": 0.1},
    # 4 sadness: inner brows up, corners down, eyes a little closed
    {"brow_slant": 0.75, "brow_pull": 0.3, "brow_raise": 0.1, "eye_open": -0.35, "curve": -0.65,
     "width": -0.1},
    # 5 anger: brows low, inner ends down, drawn together, lips pressed
    {"brow_raise": -0.85, "brow_slant": -0.85, "brow_pull": 0.9, "eye_open": -0.15, "press": 1.0,
     "curve": -0.2, "width": -0.2, "wrinkle": 0.25},
    # 6 neutral
    {},
)

RAFDB_PRIORS: tuple[float, ...] = (0.105, 0.023, 0.058, 0.388, 0.162, 0.057, 0.207)
"""RAF-DB's training-set class frequencies (1290, 281, 717, 4772, 1982, 705, 2524 of 12,271)."""

_SPLIT_CODE = {"train": 1, "test": 2}
_IDENTITY_STREAM = 0x1D
_HAIR_COLOURS = np.array(
    [[25, 20, 18], [60, 40, 28], [100, 70, 45], [150, 110, 70], [200, 170, 110], [140, 60, 30],
     [120, 120, 120], [200, 200, 200]], dtype=np.float64
)
_HAIR_PRIORS = np.array([0.25, 0.2, 0.15, 0.1, 0.1, 0.08, 0.07, 0.05])
_SKIN_LIGHT = np.array([246.0, 210.0, 185.0])
_SKIN_DARK = np.array([88.0, 56.0, 40.0])


@dataclass(frozen=True)
class SyntheticFaceConfig:
    """Everything that determines a generated data set (its hash names caches).

    Parameters
    ----------
    n_train, n_test : int
        Number of training and test images.
    image_size : int
        Side of the written square JPEGs (RAF-DB's aligned images are 100x100).
    n_identities : int
        Size of the identity pool; every image draws its identity uniformly from it (train and test
        draw independently, so they share identities unless the pool is split by hand).
    seed : int
        Seed of the per-image streams (class, identity, intensity, pose, lighting, noise).
    identity_seed : int or None
        Seed of the identity streams; None uses ``seed``.
    identity_offset : int
        Identity ids are ``identity_offset + 0 .. n_identities - 1``; identities with different
        ids have parameters from different streams. See ``disjoint_config``.
    class_priors : "uniform", "rafdb" or a sequence of 7 floats
        Class frequencies. "uniform" gives exactly balanced splits (counts differ by at most one),
        "rafdb" RAF-DB's training frequencies (``RAFDB_PRIORS``).
    intensity_range : (float, float)
        Per-image expression intensity ``s`` is uniform on this interval.
    cue_noise : float
        Standard deviation of the per-image, per-cue Gaussian jitter.
    rest_scale : float
        Scale of the identity's resting expression (std of its per-cue offsets).
    zoom : float
        Face crop factor (1 shows the whole head and shoulders; the default crops to the face,
        like RAF-DB's aligned images).
    rotation_deg, shift, scale_jitter : float
        Pose: rotation uniform in +-rotation_deg, shift uniform in +-shift (fraction of the image
        side), scale uniform in 1 +- scale_jitter.
    light_gain : float
        Brightness gain uniform in 1 +- light_gain, plus a linear gradient of up to the same size.
    pixel_noise : float
        Maximum standard deviation (grey levels) of the Gaussian pixel noise; per image uniform
        in [0, pixel_noise].
    jpeg_quality : int
        JPEG quality of the written images.
    supersample : int
        The face is drawn at ``supersample * image_size`` and downsampled (antialiasing).
    """

    n_train: int = 2400
    n_test: int = 600
    image_size: int = 100
    n_identities: int = 300
    seed: int = 0
    identity_seed: int | None = None
    identity_offset: int = 0
    class_priors: str | tuple[float, ...] = "uniform"
    intensity_range: tuple[float, float] = (0.5, 1.0)
    cue_noise: float = 0.1
    rest_scale: float = 0.15
    zoom: float = 1.5
    rotation_deg: float = 8.0
    shift: float = 0.05
    scale_jitter: float = 0.06
    light_gain: float = 0.2
    pixel_noise: float = 6.0
    jpeg_quality: int = 90
    supersample: int = 2

    def __post_init__(self) -> None:
        if self.n_train < 0 or self.n_test < 0 or self.n_train + self.n_test == 0:
            raise ValueError(f"n_train={self.n_train}, n_test={self.n_test}: need >= 0, not both 0")
        if self.image_size < 8:
            raise ValueError(f"image_size={self.image_size}: must be >= 8")
        if self.n_identities < 1:
            raise ValueError(f"n_identities={self.n_identities}: must be >= 1")
        if self.identity_offset < 0:
            raise ValueError(f"identity_offset={self.identity_offset}: must be >= 0")
        lo, hi = self.intensity_range
        if not 0.0 <= lo <= hi:
            raise ValueError(f"intensity_range={self.intensity_range}: need 0 <= low <= high")
        if self.zoom <= 0:
            raise ValueError(f"zoom={self.zoom}: must be > 0")
        if self.supersample < 1:
            raise ValueError(f"supersample={self.supersample}: must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality}: must be in 1..100")
        priors = self.priors()
        if priors.shape != (7,) or np.any(priors < 0) or not np.isclose(priors.sum(), 1.0):
            raise ValueError(f"class_priors={self.class_priors!r}: need 7 non-negative values "
                             "summing to 1, 'uniform' or 'rafdb'")
        # tuples survive a JSON round trip as lists; normalise them for hashing and equality
        object.__setattr__(self, "intensity_range", (float(lo), float(hi)))
        if not isinstance(self.class_priors, str):
            object.__setattr__(self, "class_priors", tuple(float(p) for p in self.class_priors))

    def priors(self) -> np.ndarray:
        """Class frequencies as a (7,) float array."""
        if self.class_priors == "uniform":
            return np.full(7, 1.0 / 7.0)
        if self.class_priors == "rafdb":
            return np.asarray(RAFDB_PRIORS) / np.sum(RAFDB_PRIORS)
        if isinstance(self.class_priors, str):
            raise ValueError(f"class_priors={self.class_priors!r}: unknown name")
        return np.asarray(self.class_priors, dtype=np.float64)

    @property
    def identity_ids(self) -> np.ndarray:
        """The identity ids this config draws from."""
        return np.arange(self.identity_offset, self.identity_offset + self.n_identities)

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        d = asdict(self)
        d["intensity_range"] = list(self.intensity_range)
        if not isinstance(self.class_priors, str):
            d["class_priors"] = list(self.class_priors)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticFaceConfig:
        """Inverse of [`to_dict`][noisylabel.apps.fer.synthetic.SyntheticFaceConfig.to_dict]; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SyntheticFaceConfig fields: {sorted(unknown)}")
        d = dict(d)
        if "intensity_range" in d:
            d["intensity_range"] = tuple(d["intensity_range"])
        if "class_priors" in d and not isinstance(d["class_priors"], str):
            d["class_priors"] = tuple(d["class_priors"])
        return cls(**d)

    def hash(self) -> str:
        """Short content hash of the config and generator version (12 hex digits)."""
        payload = json.dumps({"config": self.to_dict(), "version": GENERATOR_VERSION},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def disjoint_config(target: SyntheticFaceConfig, **changes) -> SyntheticFaceConfig:
    """A config whose identities are disjoint from ``target``'s (for expression pretraining).

    The identity ids become ``target.identity_offset + target.n_identities + ...`` (after the
    target's), and the per-image seed changes unless given, so no image is shared either.

    Parameters
    ----------
    target : SyntheticFaceConfig
        The data set the source must not share identities with.
    **changes
        Further field overrides (e.g. ``n_train=5000``).

    Returns
    -------
    SyntheticFaceConfig
    """
    base_seed = target.identity_seed if target.identity_seed is not None else target.seed
    defaults = {
        "identity_offset": target.identity_offset + target.n_identities,
        "identity_seed": base_seed,
        "seed": target.seed + 1_000_003,
    }
    defaults.update(changes)
    return replace(target, **defaults)


@dataclass(frozen=True)
class FaceIdentity:
    """Appearance of one person (all lengths are fractions of the image side)."""

    identity: int
    face_w: float  # half-width of the face ellipse
    face_h: float  # half-height
    chin: float  # how pointed the jaw is (0 round .. 1 pointed)
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int  # 0 short, 1 long, 2 bald, 3 fringe
    hair_volume: float
    background: tuple[int, int, int]
    clothes: tuple[int, int, int]
    eye_y: float  # offset of the eye line from the face centre (negative = up)
    eye_dx: float  # half distance between the eyes
    eye_w: float
    eye_h: float
    iris: tuple[int, int, int]
    brow_gap: float  # brow height above the eye line
    brow_len: float
    brow_thick: float
    nose_y: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip: tuple[int, int, int]
    lip_thick: float
    glasses: bool
    rest: tuple[float, ...]  # resting expression, one offset per cue in CUES


def _colour(x: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.round(x), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def make_identity(identity: int, identity_seed: int, rest_scale: float = 0.15) -> FaceIdentity:
    """Draw the appearance of identity ``identity`` from the stream ``(identity_seed, identity)``.

    Parameters
    ----------
    identity : int
        Identity id (>= 0).
    identity_seed : int
        Seed of the identity streams.
    rest_scale : float
        Std of the resting-expression offsets (clipped to +-2.5 std).

    Returns
    -------
    FaceIdentity
    """
    rng = np.random.default_rng([identity_seed, _IDENTITY_STREAM, identity])
    tone = rng.beta(1.6, 1.6)
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 8, 3) * [1.0, 0.8, 0.8]
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_PRIORS)] + rng.normal(0, 10, 3)
    background = rng.uniform(30, 230, 3)
    clothes = rng.uniform(20, 235, 3)
    lip = skin * np.array([0.82, 0.55, 0.55]) + np.array([25.0, 0.0, 0.0])
    iris = np.array([[70, 45, 25], [40, 90, 140], [60, 110, 60], [30, 25, 20]])[rng.integers(4)]
    rest = np.clip(rng.normal(0, 1, len(CUES)), -2.5, 2.5) * rest_scale
    rest[[CUES.index("open"), CUES.index("teeth"), CUES.index("wrinkle"), CUES.index("press"),
          CUES.index("cheek"), CUES.index("upper_lip")]] *= 0.3
    return FaceIdentity(
        identity=int(identity),
        face_w=rng.uniform(0.25, 0.33),
        face_h=rng.uniform(0.33, 0.40),
        chin=rng.uniform(0.0, 1.0),
        skin=_colour(skin),
        hair=_colour(hair),
        hair_style=int(rng.choice(4, p=[0.4, 0.3, 0.1, 0.2])),
        hair_volume=rng.uniform(0.02, 0.07),
        background=_colour(background),
        clothes=_colour(clothes),
        eye_y=rng.uniform(-0.09, -0.04),
        eye_dx=rng.uniform(0.095, 0.125),
        eye_w=rng.uniform(0.045, 0.062),
        eye_h=rng.uniform(0.022, 0.032),
        iris=_colour(iris),
        brow_gap=rng.uniform(0.045, 0.065),
        brow_len=rng.uniform(0.065, 0.09),
        brow_thick=rng.uniform(0.02, 0.03),
        nose_y=rng.uniform(0.04, 0.08),
        nose_len=rng.uniform(0.06, 0.10),
        nose_w=rng.uniform(0.025, 0.04),
        mouth_y=rng.uniform(0.16, 0.21),
        mouth_w=rng.uniform(0.07, 0.10),
        lip=_colour(lip),
        lip_thick=rng.uniform(0.011, 0.018),
        glasses=bool(rng.random() < 0.15),
        rest=tuple(float(r) for r in rest),
    )


def expression_cues(
    label: int,
    intensity: float,
    rest: Sequence[float] | None = None,
    noise: Sequence[float] | None = None,
) -> dict[str, float]:
    """Cue values of one image: ``rest + intensity * prototype[label] + noise``.

    Parameters
    ----------
    label : int
        Class index 0..6 (RAF-DB order).
    intensity : float
        Expression intensity ``s`` (1 = the prototype).
    rest, noise : sequence of float, optional
        Per-cue offsets (identity's resting expression, per-image jitter), in [`CUES`][noisylabel.apps.fer.synthetic.CUES] order.

    Returns
    -------
    dict mapping cue name to value
    """
    if not 0 <= label < len(PROTOTYPES):
        raise ValueError(f"label={label}: must be in 0..{len(PROTOTYPES) - 1}")
    proto = PROTOTYPES[label]
    rest = rest if rest is not None else [0.0] * len(CUES)
    noise = noise if noise is not None else [0.0] * len(CUES)
    return {c: rest[i] + intensity * proto.get(c, 0.0) + noise[i] for i, c in enumerate(CUES)}


@dataclass(frozen=True)
class Conditions:
    """Per-image capture conditions (pose, lighting, noise)."""

    angle: float = 0.0  # degrees, counter-clockwise
    shift_x: float = 0.0  # fraction of the image side
    shift_y: float = 0.0
    scale: float = 1.0
    gain: float = 1.0
    gradient: float = 0.0  # lighting gradient amplitude (fraction of the gain)
    gradient_dir: float = 0.0  # radians
    noise_std: float = 0.0  # grey levels
    noise_seed: int = 0


def _bezier(p0, p1, p2, n: int = 16) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)
    return [(float(x), float(y)) for x, y in pts]


def _darker(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return _colour(np.asarray(c, dtype=np.float64) * f)


def _box(x: float, y: float, rx: float, ry: float) -> list[float]:
    return [x - rx, y - ry, x + rx, y + ry]


def _draw_face(draw: ImageDraw.ImageDraw, ident: FaceIdentity, cues: dict[str, float],
               size: float) -> None:
    """Draw the face (no background) on a canvas of side ``size``; face centred at (0.5, 0.52):
    head and hair, then cheeks and eyes, brows, nose, mouth, each from its cues."""
    cx, cy = 0.5 * size, 0.52 * size
    _draw_head(draw, ident, size, cx, cy)
    ey = cy + ident.eye_y * size
    _draw_eyes(draw, ident, cues, size, cx, ey)
    _draw_brows(draw, ident, cues, size, cx, ey)
    _draw_nose(draw, ident, cues, size, cx, cy)
    _draw_mouth(draw, ident, cues, size, cx, cy)


def _draw_head(draw: ImageDraw.ImageDraw, ident: FaceIdentity, S: float, cx: float,
               cy: float) -> None:
    """Shoulders, neck, hair, ears, the face with its chin, and the hairline."""
    fw, fh = ident.face_w * S, ident.face_h * S
    draw.ellipse(_box(cx, cy + fh + 0.33 * S, 0.48 * S, 0.36 * S), fill=ident.clothes)
    draw.rectangle([cx - 0.07 * S, cy + 0.6 * fh, cx + 0.07 * S, cy + fh + 0.06 * S],
                   fill=_darker(ident.skin, 0.9))  # neck
    hv = ident.hair_volume * S
    if ident.hair_style == 1:  # long hair behind the head
        draw.rounded_rectangle([cx - fw - hv, cy - fh - hv, cx + fw + hv, cy + 1.05 * fh],
                               radius=fw * 0.8, fill=ident.hair)
    if ident.hair_style != 2:
        draw.ellipse(_box(cx, cy - 0.12 * fh, fw + hv, fh * 0.92 + hv), fill=ident.hair)
    # ears
    for sx in (-1, 1):
        draw.ellipse(_box(cx + sx * fw * 0.98, cy + ident.eye_y * S + 0.03 * S, 0.035 * S,
                          0.055 * S), fill=_darker(ident.skin, 0.93))
    # face: upper ellipse + jaw polygon for a chin
    draw.ellipse(_box(cx, cy, fw, fh), fill=ident.skin)
    jaw = _bezier((cx - fw * 0.92, cy + 0.25 * fh), (cx, cy + fh * (1.05 + 0.25 * ident.chin)),
                  (cx + fw * 0.92, cy + 0.25 * fh), 20)
    draw.polygon([(cx - fw * 0.92, cy), *jaw, (cx + fw * 0.92, cy)], fill=ident.skin)
    if ident.hair_style in (0, 1):  # hairline cap
        draw.chord(_box(cx, cy - 0.45 * fh, fw * 0.98, fh * 0.62), 180, 360, fill=ident.hair)
    elif ident.hair_style == 3:  # fringe
        draw.chord(_box(cx, cy - 0.35 * fh, fw * 1.0, fh * 0.68), 180, 360, fill=ident.hair)


def _draw_eyes(draw: ImageDraw.ImageDraw, ident: FaceIdentity, cues: dict[str, float],
               S: float, cx: float, ey: float) -> None:
    """Cheeks (AU6: rounded, slightly flushed patches that rise with the cue), the eyes (AU5
    widens, AU7 narrows) and glasses."""
    cheek = max(cues["cheek"], 0.0)
    if cheek > 0.05:
        col = _colour(np.asarray(ident.skin) * (1 - 0.12 * min(cheek, 1.5))
                      + np.array([220.0, 90.0, 90.0]) * 0.12 * min(cheek, 1.5))
        for sx in (-1, 1):
            draw.ellipse(_box(cx + sx * (ident.eye_dx + 0.02) * S,
                              ey + (0.09 - 0.02 * cheek) * S, 0.045 * S, 0.03 * S), fill=col)
    eo = float(np.clip(1.0 + 0.7 * cues["eye_open"], 0.15, 1.9))
    ew, eh = ident.eye_w * S, ident.eye_h * S * eo
    for sx in (-1, 1):
        ex = cx + sx * ident.eye_dx * S
        draw.ellipse(_box(ex, ey, ew, eh), fill=(245, 245, 240), outline=(40, 30, 30),
                     width=max(1, round(0.006 * S)))
        r = ident.eye_h * S * 0.9
        draw.ellipse(_box(ex, ey, r, min(r, eh * 0.95)), fill=ident.iris)
        draw.ellipse(_box(ex, ey, r * 0.45, min(r * 0.45, eh * 0.6)), fill=(10, 10, 10))
        # upper lid line, heavier when narrowed
        lid_w = max(1, round((0.006 + 0.006 * max(-cues["eye_open"], 0.0)) * S))
        draw.arc(_box(ex, ey, ew, eh), 190, 350, fill=(30, 20, 20), width=lid_w)
        if ident.glasses:
            draw.ellipse(_box(ex, ey, ew * 1.6, ident.eye_h * S * 2.1), outline=(35, 35, 35),
                         width=max(1, round(0.008 * S)))
    if ident.glasses:
        draw.line([(cx - ident.eye_dx * S + ew * 1.6, ey), (cx + ident.eye_dx * S - ew * 1.6, ey)],
                  fill=(35, 35, 35), width=max(1, round(0.008 * S)))


def _draw_brows(draw: ImageDraw.ImageDraw, ident: FaceIdentity, cues: dict[str, float],
                S: float, cx: float, ey: float) -> None:
    """Brows: height (AU1+2 / AU4), slant (inner end up / down), pulled together (AU4); frown
    and forehead lines."""
    skin_shadow = _darker(ident.skin, 0.78)
    raise_ = cues["brow_raise"] * 0.05 * S
    slant = cues["brow_slant"] * 0.035 * S
    pull = max(cues["brow_pull"], -0.5) * 0.022 * S
    bt = ident.brow_thick * S
    brow_col = _darker(ident.hair, 0.6) if ident.hair_style != 2 else _darker(ident.skin, 0.45)
    for sx in (-1, 1):
        inner_x = cx + sx * (ident.eye_dx * S - ident.brow_len * S * 0.45 - pull)
        outer_x = cx + sx * (ident.eye_dx * S + ident.brow_len * S * 0.55)
        base = ey - ident.brow_gap * S - raise_
        inner = (inner_x, base - slant)
        outer = (outer_x, base + slant * 0.6)
        arch = (0.5 * (inner_x + outer_x), base - 0.012 * S - 0.5 * max(raise_, 0.0) * 0.5
                - (slant * 0.2))
        top = _bezier(inner, (arch[0], arch[1] - bt * 0.5), outer, 10)
        bottom = _bezier(outer, (arch[0], arch[1] + bt * 1.5), inner, 10)
        draw.polygon(top + bottom, fill=brow_col)
        if cues["brow_pull"] > 0.4:  # vertical frown lines between the brows
            x = cx + sx * 0.012 * S
            draw.line([(x, base - 0.01 * S), (x, base + 0.02 * S)], fill=skin_shadow,
                      width=max(1, round(0.006 * S * min(cues["brow_pull"], 1.5))))
    if cues["brow_raise"] > 0.5:  # forehead lines
        for k in range(2):
            y = ey - ident.brow_gap * S - raise_ - (0.045 + 0.025 * k) * S
            draw.arc(_box(cx, y + 0.04 * S, 0.09 * S, 0.04 * S), 230, 310, fill=skin_shadow,
                     width=max(1, round(0.005 * S)))


def _draw_nose(draw: ImageDraw.ImageDraw, ident: FaceIdentity, cues: dict[str, float],
               S: float, cx: float, cy: float) -> None:
    """The nose; AU9 wrinkles the bridge and, with the cheek cue, deepens the folds."""
    skin_shadow = _darker(ident.skin, 0.78)
    ny, nl, nw = cy + ident.nose_y * S, ident.nose_len * S, ident.nose_w * S
    draw.line([(cx, ny - nl), (cx + nw * 0.4, ny)], fill=skin_shadow, width=max(1, round(0.006 * S)))
    draw.arc(_box(cx, ny, nw, nw * 0.5), 10, 170, fill=_darker(ident.skin, 0.6),
             width=max(1, round(0.007 * S)))
    wr = max(cues["wrinkle"], 0.0)
    if wr > 0.15:
        w = max(1, round(0.005 * S * min(wr, 1.5) + 0.5))
        for k in range(3):
            y = ny - nl * (0.85 - 0.15 * k)
            draw.line([(cx - nw * 0.7, y), (cx + nw * 0.7, y - 0.004 * S)], fill=skin_shadow, width=w)
    fold = max(wr, max(cues["cheek"], 0.0) * 0.8)
    if fold > 0.15:  # nasolabial folds
        my = cy + ident.mouth_y * S
        for sx in (-1, 1):
            draw.line([(cx + sx * nw * 1.3, ny - 0.005 * S),
                       (cx + sx * (ident.mouth_w * S + 0.02 * S), my - 0.01 * S)],
                      fill=skin_shadow, width=max(1, round(0.006 * S * min(fold, 1.5))))


def _draw_mouth(draw: ImageDraw.ImageDraw, ident: FaceIdentity, cues: dict[str, float],
                S: float, cx: float, cy: float) -> None:
    """The mouth: corners lift with "curve", opening, width, raised upper lip, pressed lips."""
    mx, my = cx, cy + ident.mouth_y * S
    half_w = ident.mouth_w * S * float(np.clip(1.0 + 0.35 * cues["width"], 0.5, 1.6))
    curve = cues["curve"] * 0.06 * S  # corner height above the middle
    opening = max(cues["open"], 0.0) * 0.1 * S
    up = max(cues["upper_lip"], 0.0) * 0.02 * S
    lip_t = ident.lip_thick * S * float(np.clip(1.0 - 0.7 * max(cues["press"], 0.0), 0.2, 1.5))
    left, right = (mx - half_w, my - curve), (mx + half_w, my - curve)
    upper_mid = (mx, my - opening * 0.35 - up)
    lower_mid = (mx, my + opening * 0.65 + curve * 0.6)
    upper = _bezier(left, (upper_mid[0], 2 * upper_mid[1] - 0.5 * (left[1] + right[1])), right)
    lower = _bezier(right, (lower_mid[0], 2 * lower_mid[1] - 0.5 * (left[1] + right[1])), left)
    if opening + up > 0.012 * S:
        draw.polygon(upper + lower, fill=(60, 20, 25))
        teeth = float(np.clip(cues["teeth"], 0.0, 1.0))
        if teeth > 0.1:
            depth = (opening * 0.5 + up) * teeth
            tooth = _bezier((left[0] + half_w * 0.2, left[1]),
                            (mx, upper_mid[1] + depth * 1.2 - (left[1] - upper_mid[1]) * 0.2),
                            (right[0] - half_w * 0.2, right[1]))
            draw.polygon(upper[2:-2] + tooth[::-1], fill=(235, 235, 225))
        draw.line(upper, fill=ident.lip, width=max(1, round(lip_t)), joint="curve")
        draw.line(lower, fill=ident.lip, width=max(1, round(lip_t * 1.3)), joint="curve")
    else:
        mid = (mx, my + curve * 0.9)
        line = _bezier(left, (mid[0], 2 * mid[1] - 0.5 * (left[1] + right[1])), right)
        draw.line(line, fill=ident.lip, width=max(1, round(lip_t * 1.6)), joint="curve")
        draw.line(line, fill=_darker(ident.lip, 0.55), width=max(1, round(0.005 * S)),
                  joint="curve")


def render_face(
    identity: FaceIdentity,
    cues: dict[str, float],
    conditions: Conditions | None = None,
    image_size: int = 100,
    supersample: int = 2,
    zoom: float = 1.0,
) -> np.ndarray:
    """Render one face as an (image_size, image_size, 3) uint8 array.

    The face is drawn at ``supersample * image_size`` on the identity's background, rotated /
    scaled (by ``conditions.scale * zoom``) / shifted about the point (0.5, 0.56) of the image
    (one affine resampling; ``zoom > 1`` crops to the face like RAF-DB's aligned images),
    downsampled with a box
    filter, then lit: ``out = clip(img * gain * (1 + gradient * <u, d>) + noise)``, where ``u``
    is the pixel position relative to the centre (in [-1, 1]) and ``d`` the gradient direction.

    Parameters
    ----------
    identity : FaceIdentity
        From [`make_identity`][noisylabel.apps.fer.synthetic.make_identity].
    cues : dict
        From [`expression_cues`][noisylabel.apps.fer.synthetic.expression_cues].
    conditions : Conditions, optional
        Pose, lighting and noise; default none.
    image_size : int
        Output side.
    supersample : int
        Drawing resolution factor.
    zoom : float
        Crop factor applied with the pose (1 shows head, hair and shoulders).

    Returns
    -------
    np.ndarray of uint8, shape (image_size, image_size, 3)
    """
    cond = conditions if conditions is not None else Conditions()
    S = image_size * supersample
    im = Image.new("RGB", (S, S), identity.background)
    _draw_face(ImageDraw.Draw(im), identity, cues, float(S))
    scale = cond.scale * zoom
    if cond.angle or cond.shift_x or cond.shift_y or scale != 1.0:
        # inverse map (output -> input) about the zoom centre c = (0.5, 0.56) S:
        # p_in = c + R^-1 (p_out - c - t) / scale
        a = math.radians(cond.angle)
        cos, sin = math.cos(a) / scale, math.sin(a) / scale
        cx, cy = 0.5 * S, 0.56 * S
        tx, ty = cond.shift_x * S, cond.shift_y * S
        m = (cos, -sin, cx - cos * (cx + tx) + sin * (cy + ty),
             sin, cos, cy - sin * (cx + tx) - cos * (cy + ty))
        im = im.transform((S, S), Image.Transform.AFFINE, m, resample=Image.Resampling.BILINEAR,
                          fillcolor=identity.background)
    if supersample > 1:
        im = im.resize((image_size, image_size), Image.Resampling.BOX)
    else:
        im = im.filter(ImageFilter.SMOOTH)
    x = np.asarray(im, dtype=np.float32)
    u = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
    ramp = math.cos(cond.gradient_dir) * u[None, :] + math.sin(cond.gradient_dir) * u[:, None]
    x = x * (cond.gain * (1.0 + cond.gradient * ramp))[:, :, None]
    if cond.noise_std > 0:
        x += np.random.default_rng(cond.noise_seed).normal(0.0, cond.noise_std, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _split_labels(n: int, priors: np.ndarray, uniform: bool, rng: np.random.Generator
                  ) -> np.ndarray:
    if uniform:
        return rng.permutation(np.arange(n) % len(priors))
    return rng.choice(len(priors), size=n, p=priors)


def sample_split(config: SyntheticFaceConfig, split: str) -> dict[str, np.ndarray]:
    """Per-image labels, identity ids and intensities of one split (no rendering).

    Returns
    -------
    dict with "labels" (0-based), "identities", "intensities" arrays of length n_<split>
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split={split!r}: must be 'train' or 'test'")
    n = config.n_train if split == "train" else config.n_test
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], 0])
    labels = _split_labels(n, config.priors(), config.class_priors == "uniform", rng)
    identities = config.identity_ids[rng.integers(config.n_identities, size=n)]
    lo, hi = config.intensity_range
    intensities = rng.uniform(lo, hi, size=n)
    return {"labels": labels, "identities": identities, "intensities": intensities}


def _conditions(config: SyntheticFaceConfig, rng: np.random.Generator) -> Conditions:
    return Conditions(
        angle=float(rng.uniform(-config.rotation_deg, config.rotation_deg)),
        shift_x=float(rng.uniform(-config.shift, config.shift)),
        shift_y=float(rng.uniform(-config.shift, config.shift)),
        scale=float(rng.uniform(1 - config.scale_jitter, 1 + config.scale_jitter)),
        gain=float(rng.uniform(1 - config.light_gain, 1 + config.light_gain)),
        gradient=float(rng.uniform(0, config.light_gain)),
        gradient_dir=float(rng.uniform(0, 2 * math.pi)),
        noise_std=float(rng.uniform(0, config.pixel_noise)),
        noise_seed=int(rng.integers(2**31)),
    )


@dataclass
class _IdentityPool:
    config: SyntheticFaceConfig
    cache: dict[int, FaceIdentity] = field(default_factory=dict)

    def __getitem__(self, identity: int) -> FaceIdentity:
        if identity not in self.cache:
            seed = self.config.identity_seed
            self.cache[identity] = make_identity(
                identity, self.config.seed if seed is None else seed, self.config.rest_scale)
        return self.cache[identity]


def render_split(config: SyntheticFaceConfig, split: str
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one split in memory (for probes and tests; [`generate_dataset`][noisylabel.apps.fer.synthetic.generate_dataset] writes JPEGs).

    Returns
    -------
    images : np.ndarray uint8 (N, H, W, 3)
    meta : dict from [`sample_split`][noisylabel.apps.fer.synthetic.sample_split]
    """
    meta = sample_split(config, split)
    pool = _IdentityPool(config)
    images = np.stack([
        _render_index(config, split, i, meta, pool) for i in range(len(meta["labels"]))
    ]) if len(meta["labels"]) else np.zeros((0, config.image_size, config.image_size, 3), np.uint8)
    return images, meta


def _render_index(config: SyntheticFaceConfig, split: str, i: int, meta: dict,
                  pool: _IdentityPool) -> np.ndarray:
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], 1, i])
    ident = pool[int(meta["identities"][i])]
    noise = rng.normal(0.0, config.cue_noise, len(CUES))
    cues = expression_cues(int(meta["labels"][i]), float(meta["intensities"][i]), ident.rest, noise)
    return render_face(ident, cues, _conditions(config, rng), config.image_size, config.supersample,
                       config.zoom)


def _is_complete(root: Path, config: SyntheticFaceConfig) -> bool:
    meta_path = root / "synthetic.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("hash") == config.hash()


def generate_dataset(root: str | os.PathLike, config: SyntheticFaceConfig | None = None,
                     force: bool = False) -> Path:
    """Write a synthetic data set in RAF-DB's layout under ``root``.

    If ``root/synthetic.json`` already records the same config hash (it is written last, so it
    marks a complete data set), nothing is regenerated unless ``force``.

    Parameters
    ----------
    root : path
        Output folder (created).
    config : SyntheticFaceConfig, optional
        Default: ``SyntheticFaceConfig()``.
    force : bool
        Regenerate even when a matching data set is present.

    Returns
    -------
    Path
        ``root``.
    """
    config = config if config is not None else SyntheticFaceConfig()
    root = Path(root)
    if not force and _is_complete(root, config):
        return root
    (root / "synthetic.json").unlink(missing_ok=True)
    label_dir, image_dir = root / "EmoLabel", root / "Image" / "aligned"
    label_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    pool = _IdentityPool(config)
    lines, id_rows, counts = [], [], {}
    start = time.perf_counter()
    for split in ("train", "test"):
        meta = sample_split(config, split)
        counts[split] = np.bincount(meta["labels"], minlength=7).tolist()
        for i in range(len(meta["labels"])):
            name = f"{split}_{i + 1:05d}.jpg"
            img = _render_index(config, split, i, meta, pool)
            Image.fromarray(img).save(image_dir / f"{split}_{i + 1:05d}_aligned.jpg",
                                      quality=config.jpeg_quality)
            lines.append(f"{name} {int(meta['labels'][i]) + 1}")
            id_rows.append((name, int(meta["identities"][i])))
    (label_dir / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    with open(label_dir / "identities.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "identity"])
        writer.writerows(id_rows)
    info = {
        "config": config.to_dict(),
        "hash": config.hash(),
        "version": GENERATOR_VERSION,
        "class_names": list(CLASS_NAMES),
        "class_counts": counts,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (root / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")
    return root


def read_config(root: str | os.PathLike) -> SyntheticFaceConfig:
    """The config recorded in ``root/synthetic.json``."""
    path = Path(root) / "synthetic.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no synthetic.json (not a generated data set?)") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return SyntheticFaceConfig.from_dict(meta["config"])


def contact_sheet(path: str | os.PathLike, config: SyntheticFaceConfig | None = None,
                  n_identities: int = 8, intensity: float = 0.9) -> Path:
    """Save a grid of faces (one row per class, one column per identity) with matplotlib.

    Columns use the first ``n_identities`` identities of ``config`` at a fixed ``intensity``
    with the config's per-image pose, lighting and jitter, so the sheet shows both the class
    cues and the identity variation. Written as a 256-colour PNG.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = config if config is not None else SyntheticFaceConfig()
    pool = _IdentityPool(config)
    fig, axes = plt.subplots(7, n_identities, figsize=(1.1 * n_identities + 0.9, 7.9))
    for c in range(7):
        for j in range(n_identities):
            ident = pool[int(config.identity_ids[j % config.n_identities])]
            rng = np.random.default_rng([config.seed, 99, c, j])
            noise = rng.normal(0.0, config.cue_noise, len(CUES))
            cues = expression_cues(c, intensity, ident.rest, noise)
            img = render_face(ident, cues, _conditions(config, rng), config.image_size,
                              config.supersample, config.zoom)
            ax = axes[c, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{c} {CLASS_NAMES[c]}", fontsize=9)
    fig.suptitle(f"synthetic faces (intensity {intensity}, config hash {config.hash()})",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    plt.close(fig)
    # a 256-colour palette keeps the sheet small (docs) at no visible cost
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m noisylabel.apps.fer.synthetic OUT_DIR [options]``."""
    d = SyntheticFaceConfig()
    p = argparse.ArgumentParser(prog="python -m noisylabel.apps.fer.synthetic",
                                description="Generate synthetic faces in RAF-DB's layout.")
    p.add_argument("out_dir")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-test", type=int, default=d.n_test)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--n-identities", type=int, default=d.n_identities)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--identity-seed", type=int, default=None)
    p.add_argument("--identity-offset", type=int, default=d.identity_offset)
    p.add_argument("--class-priors", default="uniform", choices=["uniform", "rafdb"])
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    p.add_argument("--contact-sheet", default=None, help="also save a contact sheet PNG here")
    a = p.parse_args(argv)
    config = SyntheticFaceConfig(
        n_train=a.n_train, n_test=a.n_test, image_size=a.image_size, n_identities=a.n_identities,
        seed=a.seed, identity_seed=a.identity_seed, identity_offset=a.identity_offset,
        class_priors=a.class_priors,
    )
    start = time.perf_counter()
    root = generate_dataset(a.out_dir, config, force=a.force)
    print(f"{root}: {config.n_train} train + {config.n_test} test images, hash {config.hash()}, "
          f"{time.perf_counter() - start:.1f} s")
    if a.contact_sheet:
        print(f"contact sheet: {contact_sheet(a.contact_sheet, config)}")


if __name__ == "__main__":
    main()
