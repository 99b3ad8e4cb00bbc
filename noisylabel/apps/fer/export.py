"""``noisylabel-fer export``: a trained model as a TorchScript or ONNX file, checked against it.

The exported function is [`FERModel`][noisylabel.apps.fer.inference.FERModel]'s forward: float32
(N, 3, S, S) RGB pixel values 0-255 in, (N, C) target-branch logits out, normalisation inside.
The file carries the model's settings (class names, input size, normalisation) as JSON: in
TorchScript as the extra file ``model.json``, in ONNX as the metadata entry ``noisylabel``.
Before a file is kept, its outputs on a seeded random batch are compared with the model's own;
beyond ``tolerance`` the file is not written.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from noisylabel.apps.fer.config import check_output_path
from noisylabel.apps.fer.inference import FERModel, load_model
from noisylabel.apps.fer.run_folder import atomic_output

__all__ = ["export_model", "FORMATS", "SUFFIX_FORMATS", "output_format", "run"]

FORMATS = ("torchscript", "onnx")
SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript"}
"""The format a file name's suffix (any case) says: ``export`` writes it when ``--format`` is
left out, and refuses a ``--format`` that disagrees."""
ONNX_HINT = "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript"


def export_model(path: str | Path, out: str | Path, format: str = "torchscript",
                 batch_size: int = 4, tolerance: float = 1e-5, seed: int = 0) -> float:
    """Export a trained model and check the file reproduces the model's outputs.

    Parameters
    ----------
    path : str or Path
        What [`load_model`][noisylabel.apps.fer.inference.load_model] reads: a checkpoint, a
        weights file or a run folder.
    out : str or Path
        The file to write (replaced atomically once the check passes).
    format : {"torchscript", "onnx"}
        Output format; ONNX needs the ``onnx`` and ``onnxscript`` packages.
    batch_size : int
        Images in the check batch (seeded random pixel values).
    tolerance : float
        Largest absolute difference of logits between the file and the model that passes.
    seed : int
        Seed of the check batch.

    Returns
    -------
    float
        The largest absolute logit difference on the check batch.

    Raises
    ------
    ModuleNotFoundError
        ONNX requested and ``onnx`` (or ``onnxscript``) is not installed.
    ValueError
        Unknown format, or the exported file's outputs differ by more than ``tolerance``
        (nothing is written then).
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; choose one of {FORMATS}")
    if format == "onnx":
        _require_onnx()
    model = load_model(path, device="cpu")
    size = model.image_size
    gen = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, 256, (batch_size, 3, size, size), generator=gen).float()
    with torch.no_grad():
        expected = model(batch).numpy()
    with atomic_output(out) as tmp:  # replaces out only when the check passes
        got = _EXPORTERS[format](model, batch, tmp)
        diff = float(np.abs(got - expected).max())
        if not diff <= tolerance:
            raise ValueError(f"the exported {format} model's logits differ from the model's by "
                             f"{diff:.3g} > {tolerance:g} on a batch of {batch_size}: "
                             f"{out} not written")
    return diff


def _metadata(model: FERModel) -> str:
    return json.dumps({**model.spec(), "input": "float32 (N, 3, S, S) RGB values 0-255",
                       "output": "(N, C) logits of the target branch"})


def _torchscript(model: FERModel, batch: torch.Tensor, path: Path) -> np.ndarray:
    # torch.jit warns that it is deprecated (a FutureWarning), yet TorchScript is the format
    # asked for; the tracer warns about AverageAnchor's input check, which every input passes
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, batch)
        torch.jit.save(traced, str(path), _extra_files={"model.json": _metadata(model)})
        return torch.jit.load(str(path))(batch).numpy()


def _onnx(model: FERModel, batch: torch.Tensor, path: Path) -> np.ndarray:
    import onnx

    batch_dim = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (batch,), dynamo=True, verbose=False,
                                input_names=["images"],
                                output_names=["logits"],
                                dynamic_shapes={"images": {0: batch_dim}})
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"noisylabel": _metadata(model)})
    onnx.save(proto, str(path))
    return _run_onnx(path, batch.numpy())


def _run_onnx(path: Path, batch: np.ndarray) -> np.ndarray:
    """The file's outputs, with onnxruntime when installed, else onnx's reference evaluator."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"images": batch})[0]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": batch})[0]


_EXPORTERS: dict[str, Callable[[FERModel, torch.Tensor, Path], np.ndarray]] = {
    "torchscript": _torchscript,
    "onnx": _onnx,
}


def _require_onnx() -> None:
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            raise ModuleNotFoundError(ONNX_HINT, name=name) from None


# ----------------------------------------------------------------------------- command


def output_format(format: str | None, out: str | None) -> str:  # noqa: A002 (the option's name)
    """The format ``export`` writes: ``format`` when given, else the one ``out``'s suffix says
    ([`SUFFIX_FORMATS`][noisylabel.apps.fer.export.SUFFIX_FORMATS]), else TorchScript.

    Parameters
    ----------
    format : {"torchscript", "onnx"} or None
        ``--format``; None when left out.
    out : str or None
        ``--out``; None when left out.

    Returns
    -------
    str
        One of [`FORMATS`][noisylabel.apps.fer.export.FORMATS].

    Raises
    ------
    ValueError
        ``format`` and ``out``'s suffix disagree (``--format torchscript --out x.onnx``).
    """
    suffix = Path(out).suffix.lower() if out else ""
    said = SUFFIX_FORMATS.get(suffix)
    if format is not None and said is not None and format != said:
        raise ValueError(f"--format {format} and --out {out} disagree: a {suffix} file holds "
                         f"{said}; change the file name or leave out --format")
    return format or said or "torchscript"


def run(args: argparse.Namespace) -> int:
    """Run ``noisylabel-fer export``; returns the exit status."""
    fmt = output_format(args.format, args.out)
    if args.out:  # before any work
        check_output_path("--out", args.out, folder=False)
    source = Path(args.checkpoint)
    folder = source if source.is_dir() else source.parent
    out = Path(args.out) if args.out else folder / (
        "model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    try:
        diff = export_model(source, out, fmt, batch_size=args.batch_size)
    except ModuleNotFoundError as exc:
        if str(exc) != ONNX_HINT:
            raise
        print(f"noisylabel-fer export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({fmt}): float32 (N, 3, S, S) pixel values 0-255 -> logits; "
          f"max abs difference from the model on {args.batch_size} images: {diff:.3g}")
    return 0
