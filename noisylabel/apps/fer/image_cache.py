"""Image files: the suffixes, one decoder, and the on-disk cache of decoded splits.

[`decode_image`][noisylabel.apps.fer.image_cache.decode_image] reads one file (PIL, RGB) and
optionally resizes it (bicubic, antialiased); every loader and ``noisylabel-fer predict`` use it.
Resizing an image of an odd size (more than
[`MAX_STRETCH`][noisylabel.apps.fer.image_cache.MAX_STRETCH]:1, or enlarged more than
[`MAX_UPSCALE`][noisylabel.apps.fer.image_cache.MAX_UPSCALE] times) distorts it: a
[`SplitDecoder`][noisylabel.apps.fer.image_cache.SplitDecoder] notes those, to warn once per
split. A decoded split is one uint8 tensor ``(N, 3, H, W)``, cached on disk with ``torch.save``
(loaded with ``weights_only=True``). The cache key is the SHA-256 of the label file's bytes, the
split, the image size, the error mode and every image's size and mtime, so any change of the
data invalidates it. The cache lives in ``root/.noisylabel_cache/`` or, when the data folder is
not writable, in [`cache_home`][noisylabel.apps.fer.config.cache_home] (``$NOISYLABEL_HOME``).
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from noisylabel.apps.fer.config import cache_home
from noisylabel.apps.fer.run_folder import atomic_torch_save

__all__ = ["IMAGE_SUFFIXES", "MAX_STRETCH", "MAX_UPSCALE", "decode_image", "decode_images",
           "SplitDecoder", "odd_size", "warn_resized", "name_list", "stack_images",
           "check_image_size", "check_same_size", "cache_key", "cache_candidates", "load_cache",
           "save_cache"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
"""File name endings (any case) read as images by the class-folder loader and ``predict``."""
_CACHE_VERSION = 1
MAX_STRETCH = 2.0
"""An image whose longer side is more than this many times its shorter one is squashed by the
resize to a square: warned (docs/troubleshooting.md)."""
MAX_UPSCALE = 8.0
"""An image whose shorter side the resize enlarges more than this many times is mostly
interpolation: warned (docs/troubleshooting.md)."""


def check_image_size(image_size: int | None) -> None:
    if image_size is not None and (int(image_size) != image_size or image_size < 1):
        raise ValueError(f"image_size={image_size!r}: must be a positive integer or None")


def decode_image(path: Path, image_size: int | None) -> np.ndarray:
    """One image file as uint8 (H, W, 3): RGB, resized (bicubic, antialiased) to
    ``image_size x image_size`` unless None or already that size.

    16-bit (and 32-bit integer) grayscale images are scaled to 8 bits (``value / 257``, so
    65535 becomes 255), not clipped as Pillow's RGB conversion would.

    Raises
    ------
    ValueError
        The image is over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``
        pixels; raise it for a trusted file), or an integer image holds values outside 16 bits.
        The message does not repeat ``path``: the callers name the file.
    """
    return _decode(path, image_size)[0]


def _decode(path: Path, image_size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """[`decode_image`][noisylabel.apps.fer.image_cache.decode_image], and the file's own
    (width, height)."""
    with warnings.catch_warnings():  # over the limit: Pillow only warns; refuse it here
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                stored = im.size
                im = _to_rgb(im)
                if image_size is not None and im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
                return np.asarray(im, dtype=np.uint8), stored
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"refused as a possible decompression bomb ({exc}); raise "
                             "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted") from None


def odd_size(width: int, height: int, image_size: int | None) -> bool:
    """Whether resizing a ``width x height`` image to ``image_size x image_size`` distorts it:
    its longer side is more than [`MAX_STRETCH`][noisylabel.apps.fer.image_cache.MAX_STRETCH]
    times its shorter one, or its shorter side is enlarged more than
    [`MAX_UPSCALE`][noisylabel.apps.fer.image_cache.MAX_UPSCALE] times.

    Parameters
    ----------
    width, height : int
        The stored size, in pixels.
    image_size : int or None
        The side it is resized to; None (no resize) is never odd.

    Returns
    -------
    bool
    """
    if image_size is None or (width, height) == (image_size, image_size):
        return False
    short, long = sorted((width, height))
    return long > MAX_STRETCH * short or image_size > MAX_UPSCALE * short


def name_list(names: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` of ``names``, comma-separated, with `` ...`` when there are more."""
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def warn_resized(resized: Sequence[str], where: str, image_size: int | None) -> None:
    """One warning for a split's images that were resized from an odd size
    ([`odd_size`][noisylabel.apps.fer.image_cache.odd_size]); none when there are none.

    Parameters
    ----------
    resized : sequence of str
        Their names.
    where : str
        The split, as the message names it (``<root>, split 'train'``).
    image_size : int or None
        The side they were resized to.
    """
    if resized:
        warnings.warn(f"{where}: {len(resized)} image(s) resized to {image_size}x{image_size} px "
                      f"from an odd size (more than {MAX_STRETCH:g}:1, or enlarged more than "
                      f"{MAX_UPSCALE:g}x), which distorts them: {name_list(resized)}",
                      stacklevel=3)


class SplitDecoder:
    """Decodes the images of one split
    ([`decode_image`][noisylabel.apps.fer.image_cache.decode_image]) and notes those resized
    from an odd size ([`odd_size`][noisylabel.apps.fer.image_cache.odd_size]), to warn once
    for the split ([`warn_resized`][noisylabel.apps.fer.image_cache.warn_resized]).

    Parameters
    ----------
    image_size : int or None
        As [`decode_image`][noisylabel.apps.fer.image_cache.decode_image]'s.

    Attributes
    ----------
    resized : list of str
        The names of the images resized from an odd size, in decoding order.
    """

    def __init__(self, image_size: int | None) -> None:
        self.image_size = image_size
        self.resized: list[str] = []

    def __call__(self, path: Path, name: str | None = None) -> np.ndarray:
        """``path`` decoded as [`decode_image`][noisylabel.apps.fer.image_cache.decode_image]
        decodes it; ``name`` (default: the file's name) is what ``resized`` notes."""
        array, (width, height) = _decode(path, self.image_size)
        if odd_size(width, height, self.image_size):
            self.resized.append(name or path.name)
        return array


_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def _to_rgb(im: Image.Image) -> Image.Image:
    """``im`` in RGB, 16-bit grayscale scaled to 8 bits (Pillow's ``convert`` clips it)."""
    if im.mode not in _INTEGER_MODES:
        return im.convert("RGB")
    values = np.asarray(im).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{im.mode} image with values {values.min()}..{values.max()}: only "
                         "8- and 16-bit images are read")
    gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def check_same_size(arr: np.ndarray, path: Path, first: np.ndarray, first_name: object) -> None:
    """Without ``image_size`` every image must share the first one's size; name both."""
    if arr.shape != first.shape:
        raise ValueError(f"image {path} has size {arr.shape[1]}x{arr.shape[0]}, "
                         f"{first_name} has {first.shape[1]}x{first.shape[0]}: "
                         "pass image_size to resize")


def stack_images(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> one contiguous (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _why_not_writable(path: Path) -> str:
    """Why the folder ``path`` cannot take the cache: a file on its way (``NOISYLABEL_HOME``
    set to a file, say) is not a folder; else it is not writable."""
    existing = next((p for p in (path, *path.parents) if p.exists()), path)
    if not existing.is_dir():
        return f"{existing}: a file, not a folder"
    return f"{path}: not writable"


def cache_key(label_bytes: bytes, split: str, image_size: int | None, on_error: str,
               paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"v{_CACHE_VERSION}|{split}|{image_size}|{on_error}|".encode())
    h.update(hashlib.sha256(label_bytes).digest())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{p.name}:missing;".encode())
    return h.hexdigest()


def cache_candidates(root: Path, split: str, image_size: int | None) -> list[Path]:
    fname = f"{split}_{image_size or 'orig'}.pt"
    local = root / ".noisylabel_cache" / fname
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [local, cache_home() / tag / fname]


def load_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file is a cache miss, never an error
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob


def save_cache(candidates: Sequence[Path], blob: dict) -> Path | None:
    """Write ``blob`` to the first candidate that takes it; the cache is optional, so a failed
    write (full disk, no permission, torch's RuntimeError) only warns, and leaves no temp file.

    Returns
    -------
    Path or None
        The file written, or None when none could be.
    """
    failures = []
    for path in candidates:
        if not _writable_dir(path.parent):
            failures.append(_why_not_writable(path.parent))
            continue
        try:
            atomic_torch_save(blob, path)
            return path
        except (OSError, RuntimeError) as exc:  # atomic_torch_save removed its temp file
            failures.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
    warnings.warn(f"could not write the image cache ({'; '.join(failures)}); going on without "
                  "it (the images are decoded again next time)", stacklevel=3)
    return None


def decode_images(paths: Sequence[Path], label_path: Path, tag: str, image_size: int | None,
                  cache: bool = True) -> torch.Tensor:
    """Decode ``paths`` into one uint8 tensor (N, 3, H, W), through the on-disk cache.

    The cache file is named by ``tag`` and keyed like [`load_split`][noisylabel.apps.fer.layouts.load_split]'s (the label file's
    bytes, the image size, every image's size and mtime). Images resized from an odd size are
    warned about once, from the cache too
    ([`warn_resized`][noisylabel.apps.fer.image_cache.warn_resized], naming the label file's
    folder).

    Raises
    ------
    FileNotFoundError
        A missing image (named, with the label file that lists it).
    ValueError
        A corrupt image, or images of different sizes without ``image_size``.
    """
    check_image_size(image_size)
    root = label_path.parent
    candidates = cache_candidates(root, tag, image_size)
    key = cache_key(label_path.read_bytes(), tag, image_size, "raise", paths) if cache else ""
    for c in candidates if cache else ():
        blob = load_cache(c, key)
        if blob is not None:
            warn_resized(blob.get("resized", []), str(root), image_size)
            return blob["images"]
    decode = SplitDecoder(image_size)
    arrays = []
    for path in paths:
        try:
            arr = decode(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {path} (listed in {label_path})"
                                    ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot decode image {path}: {e}") from None
        if arrays:
            check_same_size(arr, path, arrays[0], paths[0].name)
        arrays.append(arr)
    images = stack_images(arrays)
    warn_resized(decode.resized, str(root), image_size)
    if cache:
        save_cache(candidates, {"key": key, "images": images, "resized": decode.resized})
    return images
