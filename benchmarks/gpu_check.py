"""The GPU check, in one go: does the FER application keep one GPU busy, and how fast is it?

Four parts, each timed, each printing one summary line and writing ``gpu_check.json``
(``--parts`` picks some of them):

1. **Paper size on synthetic faces**: RAF-DB-sized built-in data (12,271 train / 3,068 test at
   100 px), ``full``, the paper's 75 epochs, AMP: wall time, training images per second, and
   the GPU's utilisation sampled by ``nvidia-smi`` every second during training (a busy GPU
   is one that is not waiting on the input pipeline). Target: under 5 minutes.
2. **FER+ GPU profile** (with ``--ferplus``): ``baseline`` and ``full`` trained on FER2013's
   labels, one seed, through ``benchmarks/ferplus.py --profile gpu``.
3. **torchrun with one process**: the same trainer launched by ``torchrun --nproc_per_node 1``
   (a short run), checking that the distributed path works on the device.
4. **CIFAR-10N GPU profile** (with ``--cifar10n-index`` and ``--cifar10n-images``): plain
   cross-entropy against the ``NoiseModel`` hook on the ``worse`` labels, seeds 0-2, through
   ``benchmarks/cifar10n.py --profile gpu`` (all 50,000 images, a pre-activation ResNet-18);
   resumable, so a second call finishes what a first one ran out of time for.

Run it on a GPU machine::

    python benchmarks/gpu_check.py --out gpu_check [--ferplus DATA/ferplus --train-labels F]
        [--cifar10n-index DATA/cifar10n_train_index.csv.gz --cifar10n-images DATA/cifar10]

``--quick`` runs every part at toy size on the CPU (CI keeps the script working)::

    python benchmarks/gpu_check.py --quick --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PARTS = ("paper", "ferplus", "torchrun", "cifar10n")
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"n_train": 12271, "n_test": 3068, "image_size": 100, "epochs": 75,
            "batch_size": 64, "torchrun_epochs": 2},
    "quick": {"n_train": 48, "n_test": 16, "image_size": 16, "epochs": 1, "batch_size": 16,
              "torchrun_epochs": 1},
}


class UtilisationSampler:
    """Samples ``nvidia-smi``'s GPU utilisation (%) once a second in a background thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5, check=True).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return  # no nvidia-smi (CPU run): no samples

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> str:
        if not self.samples:
            return "no nvidia-smi samples"
        s = sorted(self.samples)
        return f"median {s[len(s) // 2]:.0f}%, mean {sum(s) / len(s):.0f}% over {len(s)} s"


def synthetic_data(size: dict[str, Any], out: Path) -> Path:
    """The RAF-DB-sized synthetic faces of parts 1 and 3 (generated once under ``out``)."""
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset

    config = SyntheticFaceConfig(n_train=size["n_train"], n_test=size["n_test"],
                                 image_size=size["image_size"], seed=0)
    return generate_dataset(out / f"synthetic-{config.hash()}", config)


def paper_size_run(size: dict[str, Any], out: Path, device: str) -> dict[str, Any]:
    """Part 1: ``full`` on RAF-DB-sized synthetic faces at the paper's settings."""
    from noisylabel.apps.fer.train import TrainConfig, train

    t0 = time.perf_counter()
    root = synthetic_data(size, out)
    generate_s = time.perf_counter() - t0
    cfg = TrainConfig(data=str(root), out=str(out / "paper_size"), noise=0.3, variant="full",
                      image_size=size["image_size"], epochs=size["epochs"],
                      batch_size=size["batch_size"], device=device, progress=False,
                      plots=False, tensorboard=False)
    t0 = time.perf_counter()
    with UtilisationSampler() as gpu:
        result = train(cfg)
    wall = time.perf_counter() - t0
    img_s = [r["img_per_s"] for r in result["history"]]
    return {"part": "paper-size synthetic", "wall_s": wall, "generate_s": generate_s,
            "img_per_s_median": sorted(img_s)[len(img_s) // 2], "gpu_utilisation": gpu.summary(),
            "final": result["final"], "last5_mean": result["last5_mean"], "best": result["best"]}


def ferplus_runs(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Part 2: the FER+ GPU profile (baseline and full on FER2013's labels, one seed)."""
    cmd = [sys.executable, str(HERE / "ferplus.py"), "--ferplus", str(args.ferplus),
           "--train-labels", str(args.train_labels), "--work", str(out / "ferplus"),
           "--profile", "gpu", "--threads", "0", "--jobs", "1", "--seeds", "0",
           "--starts", "scratch", "--only", "scratch/fer2013/noise0.00/baseline/",
           "scratch/fer2013/noise0.00/full/"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return {"part": "FER+ gpu profile", "wall_s": time.perf_counter() - t0,
            "table": str(HERE / "results" / "ferplus_gpu.md")}


def torchrun_run(size: dict[str, Any], out: Path, device: str) -> dict[str, Any]:
    """Part 3: ``noisylabel-fer train`` under ``torchrun --nproc_per_node 1``."""
    from noisylabel.apps.fer.run_folder import SUMMARY

    data = synthetic_data(size, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "noisylabel.apps.fer.cli", "train", "--data", str(data), "--noise", "0.3",
           "--image-size", str(size["image_size"]), "--epochs", str(size["torchrun_epochs"]),
           "--pretrained", "none", "--device", device, "--out", str(out / "torchrun"),
           "--no-plots", "--no-progress", "--no-tensorboard"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    summary = json.loads((out / "torchrun" / SUMMARY).read_text())
    return {"part": "torchrun 1 process", "wall_s": time.perf_counter() - t0,
            "final": summary["final"]}


def cifar10n_runs(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Part 4: the CIFAR-10N GPU profile (``ce`` and the hook on ``worse``, seeds 0-2); with
    ``--quick``, that profile's network at toy size on the script's own fake images."""
    cmd = [sys.executable, str(HERE / "cifar10n.py"), "--profile", "gpu", "--labels", "worse",
           "--methods", "ce", "hook", "--work", str(out / "cifar10n")]
    if args.quick:
        cmd += ["--quick", "--device", "cpu"]
    else:
        cmd += ["--index", str(args.cifar10n_index), "--images", str(args.cifar10n_images),
                "--seeds", "0", "1", "2", "--device", "cuda"]
    t0 = time.perf_counter()
    with UtilisationSampler() as gpu:
        subprocess.run(cmd, check=True)
    name = "quick-gpu" if args.quick else "gpu"
    table = (out / "cifar10n" / name if args.quick else HERE / "results") / f"cifar10n_{name}.md"
    return {"part": "CIFAR-10N gpu profile", "wall_s": time.perf_counter() - t0,
            "gpu_utilisation": gpu.summary(), "table": str(table)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "_work" / "gpu_check")
    p.add_argument("--quick", action="store_true", help="toy sizes on the CPU (CI)")
    p.add_argument("--ferplus", type=Path, help="FER+ layout root (part 2 runs only with it)")
    p.add_argument("--train-labels", type=Path, help="FER2013's labels of the training images")
    p.add_argument("--cifar10n-index", type=Path,
                   help="cifar10n_train_index.csv.gz (part 4 runs only with it and the images)")
    p.add_argument("--cifar10n-images", type=Path, help="CIFAR-10 JPEGs (train/<class>/...)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="which parts to run, in this order")
    args = p.parse_args(argv)
    size = SIZES["quick" if args.quick else "gpu"]
    device = "cpu" if args.quick else "cuda"
    if not args.quick:
        import torch

        if not torch.cuda.is_available():
            p.error("no CUDA device: run with --quick on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {
        "paper": lambda: paper_size_run(size, args.out, device),
        "ferplus": (lambda: ferplus_runs(args, args.out))
        if args.ferplus is not None and not args.quick else None,
        "torchrun": lambda: torchrun_run(size, args.out, device),
        "cifar10n": (lambda: cifar10n_runs(args, args.out))
        if args.quick or None not in (args.cifar10n_index, args.cifar10n_images) else None,
    }
    results = []
    for name in args.parts:  # a part whose data was not given is skipped
        if parts[name] is not None:
            results.append(parts[name]())
            print(json.dumps(results[-1]), flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
