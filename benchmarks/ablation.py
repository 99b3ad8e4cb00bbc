"""The ablation of the paper's Tables I-IV on the built-in synthetic faces, in several regimes.

Runs ``baseline``, ``aea``, ``full`` (with the noise model's safeguards, docs/method.md, and the references'
eval-mode statistics pass), ``full-exact`` (``--paper-exact``) and, on request,
``full-trainstats`` (``full`` with the statistics from the training pass, the trainer's default)
at several symmetric noise rates and seeds, in up to three regimes: from
scratch, and from a ResNet18 trunk pretrained on the identities (the MS-Celeb-1M analogue) or on
the expressions of synthetic faces whose identities are disjoint from the target's. It prints
and writes (next to this script, in ``results/``) a markdown table of the clean-test accuracy of
the target branch (final epoch and mean of the last 5 epochs, mean +- std over seeds), the noise
model's detection AUC and mean w on truly clean vs truly noisy samples, and a PNG plot.

Every finished run is appended to ``<work>/runs.jsonl``; a rerun skips what is done, so an
interrupted benchmark resumes. Runs go to a process pool, one torch thread each.

Examples
--------
CPU-sized (what benchmarks/README.md reports)::

    python benchmarks/ablation.py --jobs 2

The paper's settings on a GPU (100 px, 75 epochs, RAF-DB-sized synthetic data)::

    python benchmarks/ablation.py --full --jobs 1

Well-formedness check (CI)::

    python benchmarks/ablation.py --quick
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from noisylabel.apps.fer.config import (  # torch-free: the built-in run's settings
    SYNTHETIC_BACKBONE,
    SYNTHETIC_DEFAULTS,
    TRAIN_PRESETS,
    TrainConfig,
)

HERE = Path(__file__).resolve().parent
VARIANTS = {  # benchmark name -> TrainConfig overrides
    "baseline": {"variant": "baseline"},
    "aea": {"variant": "aea"},
    "full": {"variant": "full", "stats_pass": "eval"},  # the references' extra eval pass
    "full-exact": {"variant": "full", "paper_exact": True},
    "full-trainstats": {"variant": "full", "stats_pass": "train"},  # the training pass's own
    # the paper's route in q (cosine signal, mined D, the aux's batch prediction as p)
    "full-paper-route": {"variant": "full", "signal": "cosine", "class_targets": "mined",
                         "q_from": "aux"},
    # ours: class-calibrated signal, q = w onehot(y) + (1 - w) onehot(pseudo-label)
    "full-calib-pseudo": {"variant": "full", "signal": "calibrated", "class_targets": "onehot",
                          "q_from": "pseudo"},
    # the defaults since 0.2: the same with the un-rounded prediction in q
    "full-calib-soft": {"variant": "full", "signal": "calibrated", "class_targets": "onehot",
                        "q_from": "soft"},
}
REGIMES = ("scratch", "identity", "expression")

# Sizes: CPU default, --quick (CI: only checks the outputs are well-formed), --full (GPU).
PROFILES: dict[str, dict[str, Any]] = {
    # cpu = the settings of `noisylabel-fer train` on the built-in data, read from the config
    "cpu": {**{k: SYNTHETIC_DEFAULTS[k] for k in ("n_train", "n_test", "n_identities",
                                                  "image_size")},
            "epochs": TRAIN_PRESETS["synthetic-cpu"]["epochs"], "batch_size": TrainConfig.batch_size,
            "pretrain_epochs": {"identity": 4, "expression": SYNTHETIC_BACKBONE["epochs"]},
            "pretrain_faces": SYNTHETIC_BACKBONE["n_faces"],
            "augment": TRAIN_PRESETS["synthetic-cpu"]["augment"]},
    "quick": {"n_train": 48, "n_test": 24, "n_identities": 12, "image_size": 16, "epochs": 2,
              "batch_size": 16, "pretrain_epochs": {"identity": 1, "expression": 1},
              "pretrain_faces": 48,
              "augment": "flip"},
    "full": {"n_train": 12271, "n_test": 3068, "n_identities": 1000, "image_size": 100,
             "epochs": 75, "batch_size": 32, "pretrain_epochs": {"identity": 6, "expression": 15},
             "pretrain_faces": 12271,
             "augment": "randaugment"},
}


def job_key(job: dict[str, Any]) -> str:
    return f"{job['regime']}/{job['name']}/noise{job['noise']:.2f}/seed{job['seed']}"


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training run in a worker process; returns the row appended to runs.jsonl."""
    import torch

    from noisylabel.apps.fer.train import TrainConfig, train

    torch.set_num_threads(job["threads"])
    cfg = TrainConfig(
        data=job["data"], out=job["out"], noise=job["noise"], seed=job["seed"],
        image_size=job["image_size"], epochs=job["epochs"], batch_size=job["batch_size"],
        pretrained=job["pretrained"], device=job["device"], augment=job["augment"],
        tensorboard=False, plots=False, progress=False, num_threads=job["threads"],
        overwrite=True,  # a run folder without a runs.jsonl row is an interrupted run
        **VARIANTS[job["name"]],
    )
    t0 = time.perf_counter()
    result = train(cfg)
    last = result["history"][-1]
    return {
        "key": job_key(job), "regime": job["regime"], "name": job["name"], "noise": job["noise"],
        "seed": job["seed"], "final": result["final"], "last5_mean": result["last5_mean"],
        "best": result["best"], "wall_s": time.perf_counter() - t0,
        "noise_auc": last.get("noise_auc"), "w_mean_clean": last.get("w_mean_clean"),
        "w_mean_noisy": last.get("w_mean_noisy"),
    }


def prepare_data(work: Path, profile: dict[str, Any], regimes: list[str]) -> tuple[str, dict]:
    """Generate the target data set and, per pretrained regime, the cached backbone."""
    from noisylabel.apps.fer.pretrain import synthetic_backbone
    from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset

    settings = {"n_train": profile["n_train"], "n_test": profile["n_test"],
                "n_identities": profile["n_identities"], "image_size": profile["image_size"],
                "seed": 0}
    target = SyntheticFaceConfig(**settings)
    root = generate_dataset(work / f"synthetic-{target.hash()}", target)
    backbones: dict[str, str | None] = {"scratch": None}
    for regime in regimes:
        if regime != "scratch":
            path = synthetic_backbone(dataclasses.asdict(target), work, task=regime,
                                      epochs=profile["pretrain_epochs"][regime],
                                      n_faces=profile["pretrain_faces"], progress=False)
            backbones[regime] = str(path)
    return str(root), backbones


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` (sample std over seeds) of the non-missing values, times ``scale``."""
    a = scale * np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return "-"
    if a.size == 1:
        return f"{a.mean():.{digits}f}"
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


def tables(rows: list[dict[str, Any]], regimes: list[str], names: list[str],
           noises: list[float]) -> str:
    """Markdown: per regime, accuracy (final / last-5) by variant x noise; then the noise model."""
    out = []
    for regime in regimes:
        out.append(f"\n### Regime: {regime}\n")
        out.append("Clean-test accuracy of the target branch (%), final epoch / mean of the last 5 "
                   "epochs, mean ± std over seeds.\n")
        header = "| variant | " + " | ".join(f"{100 * n:.0f}% noise" for n in noises) + " |"
        out += [header, "|---" * (len(noises) + 1) + "|"]
        for name in names:
            cells = []
            for noise in noises:
                sel = [r for r in rows if r["regime"] == regime and r["name"] == name
                       and abs(r["noise"] - noise) < 1e-9]
                cells.append(f"{mean_std([r['final'] for r in sel])} / "
                             f"{mean_std([r['last5_mean'] for r in sel])} (n={len(sel)})"
                             if sel else "-")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        noisy = [n for n in noises if n > 0]
        full_names = [n for n in names if n.startswith("full")]
        if noisy and full_names:
            out.append("\nNoise model at the last epoch: detection AUC of w against the true flips, "
                       "mean w on truly clean / truly noisy samples.\n")
            out += ["| variant | noise | AUC | w clean | w noisy |", "|---|---|---|---|---|"]
            for name in full_names:
                for noise in noisy:
                    sel = [r for r in rows if r["regime"] == regime and r["name"] == name
                           and abs(r["noise"] - noise) < 1e-9]
                    if sel:
                        out.append(f"| {name} | {100 * noise:.0f}% | "
                                   f"{mean_std([r['noise_auc'] for r in sel], 1, 3)} | "
                                   f"{mean_std([r['w_mean_clean'] for r in sel], 1, 2)} | "
                                   f"{mean_std([r['w_mean_noisy'] for r in sel], 1, 2)} |")
    return "\n".join(out) + "\n"


def plot(rows: list[dict[str, Any]], regimes: list[str], names: list[str], noises: list[float],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(regimes), figsize=(4.2 * len(regimes), 3.4), sharey=True,
                             squeeze=False)
    for ax, regime in zip(axes[0], regimes, strict=True):
        for name in names:
            means, stds, xs = [], [], []
            for noise in noises:
                a = [100 * r["last5_mean"] for r in rows if r["regime"] == regime
                     and r["name"] == name and abs(r["noise"] - noise) < 1e-9]
                if a:
                    xs.append(100 * noise)
                    means.append(np.mean(a))
                    stds.append(np.std(a, ddof=1) if len(a) > 1 else 0.0)
            if xs:
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
        ax.set_title(f"regime: {regime}")
        ax.set_xlabel("symmetric label noise (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("clean-test accuracy, last-5 mean (%)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny runs that check the outputs")
    size.add_argument("--full", action="store_true", help="the paper's settings (GPU)")
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    p.add_argument("--variants", nargs="+", default=["baseline", "aea", "full", "full-exact"],
                   choices=list(VARIANTS))
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.3])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="override the profile's epochs")
    p.add_argument("--randaugment", action="store_true",
                   help="the profile with RandAugment (what --data runs use) instead of its "
                        "augmentation; runs go to <profile>-randaugment")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: CUDA when present)")
    p.add_argument("--work", type=Path, default=HERE / "_work" / "ablation",
                   help="data, checkpoints and runs.jsonl (resumable)")
    p.add_argument("--results", type=Path, default=None,
                   help="where ablation.md and ablation.png are written (default: results/ next "
                        "to this script; with --quick: the work folder)")
    p.add_argument("--name", default="ablation", help="file stem of the outputs")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: write the tables and plot of the finished runs")
    args = p.parse_args(argv)

    profile_name = "quick" if args.quick else "full" if args.full else "cpu"
    profile = dict(PROFILES[profile_name])
    if args.epochs:
        profile["epochs"] = args.epochs
    if args.randaugment:
        profile["augment"] = "randaugment"
        profile_name += "-randaugment"
    if args.quick:  # one seed, two regimes: enough to exercise every code path and table
        args.seeds, args.noise = args.seeds[:1], [0.0, 0.3]
        args.regimes = [r for r in args.regimes if r != "expression"]
    work = args.work / profile_name
    work.mkdir(parents=True, exist_ok=True)
    if args.randaugment and args.name == "ablation":
        args.name = "ablation_randaugment"
    if args.results is None:
        args.results = work if args.quick else HERE / "results"
    args.results.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data, backbones = prepare_data(work, profile, args.regimes)
    print(f"data {data}; backbones {backbones}; prepared in {time.perf_counter() - t0:.0f} s",
          flush=True)

    runs_path = work / "runs.jsonl"
    done = {}
    if runs_path.is_file():
        for line in runs_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row
    jobs = []
    for regime in args.regimes:
        for noise in args.noise:
            for name in args.variants:
                for seed in args.seeds:
                    job = {"regime": regime, "name": name, "noise": noise, "seed": seed,
                           "data": data, "pretrained": backbones[regime], "threads": 1,
                           "device": args.device, **{k: profile[k] for k in
                                                     ("image_size", "epochs", "batch_size",
                                                                "augment")}}
                    job["out"] = str(work / "runs" / job_key(job))
                    if job_key(job) not in done and not args.table_only:
                        jobs.append(job)
    print(f"{len(jobs)} runs to do, {len(done)} already done", flush=True)
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool, \
            runs_path.open("a") as log:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for i, fut in enumerate(cf.as_completed(futures), 1):
            row = fut.result()
            done[row["key"]] = row
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"[{i}/{len(jobs)}] {row['key']}: final {100 * row['final']:.1f}% "
                  f"last-5 {100 * row['last5_mean']:.1f}% ({row['wall_s']:.0f} s)", flush=True)

    # The tables hold every finished run of these regimes (earlier invocations included), so a
    # grid can be filled in several calls, e.g. all variants at 30% and the baseline at 0%.
    rows = [r for r in done.values() if r["regime"] in args.regimes]
    names = [n for n in VARIANTS if any(r["name"] == n for r in rows)]
    noises = sorted({r["noise"] for r in rows})
    md = tables(rows, args.regimes, names, noises)
    seeds = sorted({r["seed"] for r in rows})
    wall = sum(r["wall_s"] for r in rows)
    header = (f"Profile `{profile_name}`: {profile['n_train']} train / {profile['n_test']} test "
              f"synthetic faces, {profile['image_size']} px, {profile['epochs']} epochs, batch "
              f"{profile['batch_size']}, seeds {seeds}; pretraining epochs "
              f"{profile['pretrain_epochs']} on {profile['pretrain_faces']} other faces. Total "
              f"wall time of the runs: {wall:.0f} s (sum over runs).\n")
    (args.results / f"{args.name}.md").write_text(header + md)
    plot(rows, args.regimes, names, noises, args.results / f"{args.name}.png")
    print(header + md)
    print(f"wrote {args.results / (args.name + '.md')} and {args.name}.png "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
