"""Real posed faces with injected label noise: CK+48, split by subject, from a face start.

CK+48 (981 grayscale 48x48 peak frames of the Extended Cohn-Kanade sequences, 118 subjects) is
small enough for a CPU and easy enough that the network is strong on it, so it shows what the
noise model's near-perfect detection is worth downstream. Contempt (54 images) is left out: RAF-DB
has no such class, leaving 6. Every image of a subject is on one side of every split (the three
frames of a sequence are near-copies; a random split would leak test copies into training).

Protocols (``--protocols``) on the subjects of ``--split`` (``ckplus48_split.csv``: path,
label, subject, split, sha256):

- ``valid``: a seeded fifth of the 80 training subjects is held out; every choice of a default
  is made on this protocol (the test subjects are never looked at for a choice);
- ``fold1`` .. ``fold4``: the other four fifths of the same seeded order held out in turn, so
  that with ``valid`` (fold 0) every training image is evaluated once (``cv`` names all five):
  5-fold cross-validation over the training subjects, whose pooled accuracy (each fold
  weighted by its images) is a tighter check than one fifth, still without the test subjects;
- ``test``: all 80 training subjects against the 26 test subjects: the figures we report.

Start (``--starts``): ``faces``, a ResNet18 pretrained once by this script on FER2013's own
labels of the FER+ training images (FER2013Train, 48 px, a few epochs, plain cross-entropy; its
FER2013Test accuracy is printed and kept in ``FILE.json``), or ``scratch``. Injected symmetric
noise: ``--noises`` (0 / 10 / 20 / 30 / 40%). Variants: see ``VARIANTS``. Columns: final / last-5
/ best (optimistic) test accuracy of the target branch, the AUC of the last w, the mean w on
clean / flipped labels, and the share of the noise cost recovered,
``(variant - baseline) / (clean ceiling - baseline)`` with the ceiling = ``baseline`` on clean
labels (last-5 means over seeds).

Every finished run is appended to ``<work>/runs.jsonl`` and skipped by a rerun (resumable); a
run folder without its row is an interrupted (or untabulated) run and is resumed from its
checkpoint, which gives the same result as an uninterrupted run. A run that fails is named at
the end and does not stop the others. Runs go to a process pool,
one torch thread each. Nothing is downloaded: give local copies.

Examples
--------
CPU profile (what benchmarks/README.md reports)::

    python benchmarks/ckplus.py --ckplus DATA/CK+48 --split DATA/ckplus48_split.csv \
        --ferplus DATA/ferplus --fer2013-labels DATA/fer2013_original_labels.csv

5-fold cross-validation over the training subjects (for choices, beside ``valid``)::

    python benchmarks/ckplus.py ... --protocols cv --noises 0.1 0.2 --names baseline full

Well-formedness check without data (CI; tiny fake faces)::

    python benchmarks/ckplus.py --quick --work /tmp/ckplus
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 20251  # which training subjects are the validation fifth
FOLDS = 5  # valid is fold 0 of the seeded order; fold1 .. fold4 hold out the other fifths
CV_PROTOCOLS = ("valid",) + tuple(f"fold{k}" for k in range(1, FOLDS))
CLASSES = ("anger", "disgust", "fear", "happy", "sadness", "surprise")  # contempt left out
FER2013_FOLDERS = {"FER2013Train": "train", "FER2013Test": "test"}


# ----------------------------------------------------------------------------- data views


def read_split(path: Path) -> list[dict[str, str]]:
    """Rows of ``ckplus48_split.csv`` (path, label, subject, split, sha256), contempt dropped."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"path", "label", "subject", "split", "sha256"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns {sorted(need)}")
    return [r for r in rows if r["split"] != "excluded" and r["label"] in CLASSES]


def _check_sha(image: Path, expected: str) -> None:
    got = hashlib.sha256(image.read_bytes()).hexdigest()
    if got != expected:
        raise ValueError(f"{image}: sha256 {got[:12]}... differs from the split file's "
                         f"{expected[:12]}... (another copy of CK+48?)")


RAFDB_LABEL = {"surprise": 1, "fear": 2, "disgust": 3, "happy": 4, "sadness": 5, "anger": 6}
"""CK+48 class -> RAF-DB label number (RAF-DB's 7th class, Neutral, is not in CK+48)."""


def _write_rafdb_view(view: Path, source: Path, parts: dict[str, list[dict[str, str]]]) -> None:
    """A RAF-DB layout under ``view`` (``EmoLabel/list_patition_label.txt``, images in
    ``Image/aligned/`` as symbolic links into ``source``), written once."""
    from noisylabel.apps.fer.layouts import IMAGE_DIR, LABEL_FILE

    if (view / LABEL_FILE).is_file():
        return
    lines = []
    for part, rows in parts.items():
        for r in rows:
            stem = Path(r["path"]).stem
            link = view / IMAGE_DIR / f"{part}_{stem}_aligned.png"
            link.parent.mkdir(parents=True, exist_ok=True)
            target = (source / r["path"]).resolve()
            _check_sha(target, r["sha256"])
            link.symlink_to(target)
            lines.append(f"{part}_{stem}.png {RAFDB_LABEL[r['label']]}\n")
    (view / LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (view / LABEL_FILE).write_text("".join(lines))


def subject_folds(subjects: list[str], folds: int = FOLDS,
                  seed: int = SPLIT_SEED) -> list[set[str]]:
    """The subjects in a seeded order, cut into ``folds`` parts of ``len // folds`` (the last
    takes the rest); part 0 is the ``valid`` protocol's held-out fifth."""
    unique = sorted(set(subjects))
    order = np.asarray(unique)[np.random.default_rng(seed).permutation(len(unique))]
    size = len(unique) // folds
    return [set(order[k * size:(k + 1) * size if k < folds - 1 else None])
            for k in range(folds)]


def make_views(ckplus: Path, split_file: Path, work: Path) -> dict[str, str]:
    """The protocols as RAF-DB-layout views under ``work``: ``test`` (training subjects / test
    subjects), ``valid`` and ``fold1`` .. ``fold4`` (the training subjects but one fold / that
    fold)."""
    rows = read_split(split_file)
    train = [r for r in rows if r["split"] == "train"]
    views = {"test": work / "view-test"}
    _write_rafdb_view(views["test"], ckplus, {
        "train": train, "test": [r for r in rows if r["split"] == "test"]})
    for protocol, held in zip(CV_PROTOCOLS, subject_folds([r["subject"] for r in train]),
                              strict=True):
        views[protocol] = work / f"view-{protocol}"
        _write_rafdb_view(views[protocol], ckplus, {
            "train": [r for r in train if r["subject"] not in held],
            "test": [r for r in train if r["subject"] in held]})
    return {k: str(v) for k, v in views.items()}


def make_fer2013_view(ferplus: Path, labels_file: Path, work: Path,
                      n_train: int | None = None) -> Path:
    """FER+'s FER2013Train / FER2013Test images in class folders by their FER2013 label
    (images whose original label is ambiguous left out)."""
    view = work / "view-fer2013"
    with labels_file.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in FER2013_FOLDERS
                and r["ambiguous"] == "0"]
    if n_train is not None:  # --quick: a few images per split
        rows = [r for r in rows if r["split"] == "FER2013Train"][:n_train] + \
               [r for r in rows if r["split"] == "FER2013Test"][:n_train // 4]
    for r in rows:
        link = view / FER2013_FOLDERS[r["split"]] / r["fer2013_label"] / r["image"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((ferplus / r["split"] / r["image"]).resolve())
    return view


def pretrain_faces(view: Path, work: Path, profile: dict[str, Any]) -> str:
    """The face start: ResNet18 on FER2013's labels (built once; kept in ``work/pretrained``)."""
    from noisylabel.apps.fer.pretrain import PretrainConfig, pretrain

    out = work / "pretrained" / "resnet18_fer2013.pth"
    if not Path(f"{out}.json").is_file():
        result = pretrain(PretrainConfig(
            data=str(view), task="expression", out=str(out), image_size=profile["image_size"],
            epochs=profile["pretrain_epochs"], batch_size=64, augment="flip", progress=False))
        print(f"pretrained on FER2013Train (FER2013 labels): FER2013Test accuracy "
              f"{100 * result['test_acc']:.1f}%", flush=True)
    return str(out)


# ----------------------------------------------------------------------------- variants

PAPER_ROUTE: dict[str, Any] = {"variant": "full", "signal": "cosine", "class_targets": "mined",
                               "q_from": "aux"}
"""The paper's w and q (cosine signal, mined D, the auxiliary branch's batch prediction as p);
the ablation changes one piece of it at a time."""

CALIB_SOFT: dict[str, Any] = {**PAPER_ROUTE, "signal": "calibrated", "class_targets": "onehot",
                              "q_from": "soft"}
"""The defaults since 0.2, spelled out so that their rows keep their meaning: the calibrated
signal, the given label's one-hot as the class target, the un-rounded prediction in q."""

VARIANTS: dict[str, dict[str, Any]] = {  # benchmark name -> TrainConfig overrides
    "baseline": {"variant": "baseline"},
    "aea": {"variant": "aea"},
    "full": {"variant": "full"},  # the defaults of this version
    "full-paper-route": PAPER_ROUTE,  # the defaults before 0.2
    "full-exact": {"variant": "full", "paper_exact": True},
    # where the gain is lost: one piece of the paper's route changed
    "full-oracle": PAPER_ROUTE,  # w = 1 on the truly clean labels, 0 on the flipped
    "full-onehot": {**PAPER_ROUTE, "class_targets": "onehot"},
    "full-nominer": {**PAPER_ROUTE, "class_targets": "smoothed"},
    "full-qtarget": {**PAPER_ROUTE, "q_from": "target"},
    "full-nomu1": {**PAPER_ROUTE, "aux_decay": False},
    "full-klce": {**PAPER_ROUTE, "target_loss": "kl+ce"},
    "full-wce": {**PAPER_ROUTE, "target_loss": "wce"},
    "full-batchanchor": {**PAPER_ROUTE, "anchor_inference": "batch"},
    "full-perclass": {**PAPER_ROUTE, "per_class": True},
    "full-calib": {**PAPER_ROUTE, "signal": "calibrated"},
    "full-pseudo": {**PAPER_ROUTE, "class_targets": "onehot", "q_from": "pseudo"},
    "full-oracle-pseudo": {**PAPER_ROUTE, "class_targets": "onehot", "q_from": "pseudo"},
    # both changes, with the one-hot pseudo-label in q
    "full-calib-pseudo": {**PAPER_ROUTE, "signal": "calibrated", "class_targets": "onehot",
                          "q_from": "pseudo"},
    "full-calib-soft": CALIB_SOFT,
    # where the defaults stand: one piece of them changed
    "full-oracle-soft": CALIB_SOFT,  # w = 1 on the truly clean labels, 0 on the flipped
    "full-mined-soft": {**CALIB_SOFT, "class_targets": "mined"},  # the miner's D in q again
    "full-batchanchor-soft": {**CALIB_SOFT, "anchor_inference": "batch"},  # AEA at inference
    "full-wce-soft": {**CALIB_SOFT, "target_loss": "wce"},  # the target drops flagged labels
    "clean-only": {"variant": "baseline"},  # baseline on the unflipped labels only
}
ORACLES = ("full-oracle", "full-oracle-pseudo", "full-oracle-soft", "clean-only")

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"image_size": 48, "epochs": 30, "batch_size": 32, "pretrain_epochs": 4},
    "quick": {"image_size": 16, "epochs": 2, "batch_size": 16, "pretrain_epochs": 1},
}


def job_key(job: dict[str, Any]) -> str:
    return (f"{job['protocol']}/{job['start']}/e{job['epochs']}/noise{job['noise']:.2f}/"
            f"{job['name']}/seed{job['seed']}")


# ----------------------------------------------------------------------------- one run


def _config(job: dict[str, Any], out: str, data: str) -> Any:
    from noisylabel.apps.fer.train import TrainConfig

    resume = (Path(out) / "checkpoint.pt").is_file()  # an interrupted or untabulated run
    return TrainConfig(resume=resume, overwrite=not resume,
        data=data, out=out, noise=job["noise"], seed=job["seed"], num_classes=len(CLASSES),
        image_size=job["image_size"], epochs=job["epochs"], batch_size=job["batch_size"],
        pretrained=job["pretrained"], device="cpu", tensorboard=False, plots=False,
        progress=False, num_threads=job["threads"], quiet=True, **VARIANTS[job["name"]])


def flipped_mask(cfg: Any) -> tuple[Any, Any]:
    """(train split, flipped mask) exactly as ``train`` injects the noise of ``cfg``."""
    from noisylabel.apps.fer.train import _noisy_labels, load_data

    split = load_data(cfg)["train"]
    return split, (_noisy_labels(cfg, split) != split.labels).numpy()


def _clean_view(cfg: Any, dest: Path) -> str:
    """A RAF-DB-layout view of ``cfg.data`` without the training images whose label ``cfg``
    flips (the test split unchanged): the drop-the-flips oracle."""
    from noisylabel.apps.fer.layouts import IMAGE_DIR, LABEL_FILE

    split, flipped = flipped_mask(cfg)
    dropped = {n for n, bad in zip(split.names, flipped, strict=True) if bad}
    root = Path(cfg.data)
    lines = [line for line in (root / LABEL_FILE).read_text().splitlines(keepends=True)
             if line.split()[0] not in dropped]
    (dest / LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (dest / LABEL_FILE).write_text("".join(lines))
    if not (dest / IMAGE_DIR).exists():
        (dest / IMAGE_DIR).parent.mkdir(parents=True, exist_ok=True)
        (dest / IMAGE_DIR).symlink_to((root / IMAGE_DIR).resolve())
    return str(dest)


def _install_oracle(cfg: Any) -> None:
    """Make ``train``'s noise model serve w = 1 on the truly clean labels and 0 on the flipped
    ones once its warm-up is over (detection taken out of the question; its use kept)."""
    import torch

    from noisylabel.apps.fer import train as train_module

    clean = torch.as_tensor(~flipped_mask(cfg)[1], dtype=torch.float32)

    class OracleNoiseModel(train_module.NoiseModel):
        def fit(self, epoch: int):  # noqa: ANN202 (the parent's FitReport)
            report = super().fit(epoch)
            if epoch > self.warmup:
                self._w.copy_(clean)
            return report

    train_module.NoiseModel = OracleNoiseModel


def _detection(out: Path, flipped: np.ndarray) -> dict[str, Any]:
    """The last w as a detector of the flipped labels: AUC, precision / recall / F1 of
    ``find_noisy_labels``' rule (flagged: w < 0.5)."""
    import torch

    from noisylabel.apps.fer.report import noise_detection_auc

    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    if ckpt.get("noise_model") is None or not flipped.any():
        return {}
    w = ckpt["noise_model"]["w"].numpy()
    flagged = w < 0.5
    tp = float((flagged & flipped).sum())
    prec, rec = tp / max(flagged.sum(), 1), tp / flipped.sum()
    return {"det_auc": noise_detection_auc(w, flipped), "det_precision": prec,
            "det_recall": rec, "det_f1": 2 * prec * rec / max(prec + rec, 1e-12)}


def _test_size(view: str) -> int:
    """Number of test images in a RAF-DB-layout view (weights a fold in the pooled accuracy)."""
    from noisylabel.apps.fer.layouts import LABEL_FILE

    return sum(line.startswith("test_") for line in (Path(view) / LABEL_FILE).read_text()
               .splitlines())


TRACE_KEYS = ("test_acc", "aux_test_acc", "noise_auc", "w_mean_clean", "w_mean_noisy",
              "miner_accepted")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One benchmark run in a worker process; returns the row appended to runs.jsonl."""
    import torch

    from noisylabel.apps.fer.train import train

    torch.set_num_threads(job["threads"])
    out = Path(job["out"])
    t0 = time.perf_counter()
    cfg = _config(job, str(out / "run"), job["data"])
    _, flipped = flipped_mask(cfg)
    if job["name"] == "clean-only":
        cfg = _config(job, str(out / "run"), _clean_view(cfg, out / "view"))
        cfg.noise = 0.0
    elif job["name"].startswith("full-oracle"):
        _install_oracle(cfg)
    result = train(cfg)
    hist = result["history"]
    row = {k: job[k] for k in ("protocol", "start", "epochs", "noise", "name", "seed")}
    row.update({"key": job_key(job), "n_test": _test_size(job["data"]),
                "final": result["final"],
                "last5_mean": result["last5_mean"], "best": result["best"],
                "wall_s": time.perf_counter() - t0,
                "trace": {k: [r.get(k) for r in hist] for k in TRACE_KEYS if k in hist[-1]}})
    for k in ("noise_auc", "w_mean_clean", "w_mean_noisy", "aux_test_acc"):
        row[k] = hist[-1].get(k)
    if job["name"] != "clean-only":
        row.update(_detection(out / "run", flipped))
    return row


# ----------------------------------------------------------------------------- grid and tables


def make_jobs(args: argparse.Namespace, profile: dict[str, Any], views: dict[str, str],
              backbone: str | None, work: Path) -> list[dict[str, Any]]:
    jobs = []
    for protocol in args.protocols:
        for start in args.starts:
            for noise in args.noises:
                for name in args.names:
                    if name in ORACLES and noise == 0:
                        continue  # nothing to take out
                    for seed in args.seeds:
                        job = {"protocol": protocol, "start": start, "noise": noise,
                               "name": name, "seed": seed, "data": views[protocol],
                               "pretrained": backbone if start == "faces" else None,
                               "threads": args.threads, "epochs": args.epochs or
                               profile["epochs"], **{k: profile[k] for k in (
                                   "image_size", "batch_size")}}
                        job["out"] = str(work / "runs" / job_key(job))
                        jobs.append(job)
    return [j for j in jobs if not args.only or any(p in job_key(j) for p in args.only)]


def mean_std(values: list[Any], scale: float = 100.0, digits: int = 1) -> str:
    a = scale * np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return "-"
    return f"{a.mean():.{digits}f}" + (f" ± {a.std(ddof=1):.{digits}f}" if a.size > 1 else "")


def _select(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(abs(r[k] - v) < 1e-9 if k == "noise" else r[k] == v
                                   for k, v in match.items())]


MIN_NOISE_COST = 0.01
"""Below this noise cost (ceiling - baseline, 1 point: 2-3 test images) no share is shown."""


def recovered(rows: list[dict[str, Any]], name: str, noise: float, **where: Any) -> str:
    """Share of the noise cost recovered, ``(name - baseline) / (ceiling - baseline)`` on the
    last-5 means over seeds; the ceiling is ``baseline`` on clean labels. Where the cost is
    under ``MIN_NOISE_COST`` the ratio means nothing: the cost is shown instead."""
    def mean(n: str, rate: float) -> float | None:
        sel = _select(rows, name=n, noise=rate, **where)
        return float(np.mean([r["last5_mean"] for r in sel])) if sel else None

    base, ceiling, got = mean("baseline", noise), mean("baseline", 0.0), mean(name, noise)
    if None in (base, ceiling, got) or noise == 0:
        return "-"
    if ceiling - base < MIN_NOISE_COST:
        return f"- (cost {100 * (ceiling - base):.1f})"
    return f"{100 * (got - base) / (ceiling - base):+.0f}%"


def per_seed_gain(rows: list[dict[str, Any]], name: str, noise: float, **where: Any) -> str:
    """``name``'s last-5 minus ``baseline``'s, seed by seed (points), for the seeds both have."""
    base = {r["seed"]: r["last5_mean"] for r in _select(rows, name="baseline", noise=noise,
                                                         **where)}
    got = sorted((r["seed"], r["last5_mean"]) for r in _select(rows, name=name, noise=noise,
                                                              **where))
    gains = [f"{100 * (v - base[seed]):+.1f}" for seed, v in got if seed in base]
    return " / ".join(gains) if gains and name != "baseline" else "-"


def tables(rows: list[dict[str, Any]], profile_name: str, profile: dict[str, Any]) -> str:
    """Markdown: accuracy by protocol x start x epochs x noise x variant; per-epoch traces."""
    out = [f"Profile `{profile_name}`: CK+48 without contempt (6 classes), split by subject, "
           f"{profile['image_size']} px, RandAugment. Test accuracy of the target branch (%), "
           "mean ± std over seeds: final epoch / mean of the last 5 / best epoch (optimistic: "
           "chosen on the evaluated split). AUC, w and F1: the last epoch's w against the "
           "flipped labels (F1 of w < 0.5). Recovered: share of the noise cost won back, "
           "(variant - baseline) / (clean ceiling - baseline), last-5 means (under a cost of "
           "1 point the cost is shown instead); by seed: the "
           "variant's last-5 minus baseline's on the same seed (points).\n"]
    groups = sorted({(r["protocol"], r["start"], r["epochs"]) for r in rows})
    for protocol, start, epochs in groups:
        where = {"protocol": protocol, "start": start, "epochs": epochs}
        sel_g = _select(rows, **where)
        split = {"test": "26 test subjects", "valid": "validation fifth of the training "
                 "subjects"}.get(protocol, f"training subjects, {protocol} of the "
                                 "cross-validation")
        out += [f"\n#### {split}, start: {start}, {epochs} epochs\n",
                "| noise | variant | n | final | last-5 | best (optimistic) | AUC of w | "
                "w clean / flipped | F1 of w < 0.5 | aux branch (last) | recovered | "
                "last-5 - baseline, by seed |",
                "|---" * 12 + "|"]
        for noise in sorted({r["noise"] for r in sel_g}):
            for name in VARIANTS:
                sel = _select(sel_g, noise=noise, name=name)
                if not sel:
                    continue
                w = (f"{mean_std([r['w_mean_clean'] for r in sel], 1, 2)} / "
                     f"{mean_std([r['w_mean_noisy'] for r in sel], 1, 2)}"
                     if sel[0].get("w_mean_clean") is not None else "-")
                out.append(
                    f"| {100 * noise:.0f}% | {name} | {len(sel)} | "
                    f"{mean_std([r['final'] for r in sel])} | "
                    f"{mean_std([r['last5_mean'] for r in sel])} | "
                    f"{mean_std([r['best'] for r in sel])} | "
                    f"{mean_std([r.get('noise_auc') for r in sel], 1, 3)} | {w} | "
                    f"{mean_std([r.get('det_f1') for r in sel], 1, 3)} | "
                    f"{mean_std([r.get('aux_test_acc') for r in sel])} | "
                    f"{recovered(sel_g, name, noise) if name != 'baseline' else '-'} | "
                    f"{per_seed_gain(sel_g, name, noise)} |")
    return "\n".join(out) + "\n" + cv_table(rows) + trace_table(rows)


def pooled_cv(rows: list[dict[str, Any]], **where: Any) -> dict[int, float]:
    """Seed -> last-5 accuracy pooled over the five cross-validation folds,
    ``sum_k n_k acc_k / sum_k n_k`` (``n_k`` test images of fold k), for the seeds with a row
    in every fold."""
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in _select(rows, **where):
        if r["protocol"] in CV_PROTOCOLS and "n_test" in r:
            by_seed.setdefault(r["seed"], {})[r["protocol"]] = r
    return {seed: sum(r["n_test"] * r["last5_mean"] for r in folds.values())
            / sum(r["n_test"] for r in folds.values())
            for seed, folds in sorted(by_seed.items()) if len(folds) == len(CV_PROTOCOLS)}


def cv_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the pooled cross-validation accuracy per (start, epochs, noise, variant), and
    its difference to ``baseline`` seed by seed with the mean and its standard error."""
    groups = sorted({(r["start"], r["epochs"], r["noise"], r["name"]) for r in rows
                     if r["protocol"] in CV_PROTOCOLS and "n_test" in r})
    out = []
    for start, epochs, noise, name in groups:
        got = pooled_cv(rows, start=start, epochs=epochs, noise=noise, name=name)
        if not got:
            continue
        base = pooled_cv(rows, start=start, epochs=epochs, noise=noise, name="baseline")
        diff = [100 * (v - base[seed]) for seed, v in got.items() if seed in base]
        gain = "-" if name == "baseline" or not diff else (
            f"{np.mean(diff):+.1f}" + (f" ({np.std(diff, ddof=1) / np.sqrt(len(diff)):.1f})"
                                       if len(diff) > 1 else "")
            + ": " + " / ".join(f"{d:+.1f}" for d in diff))
        out.append(f"| {start} | {epochs} | {100 * noise:.0f}% | {name} | {len(got)} | "
                   f"{mean_std(list(got.values()))} | {gain} |")
    if not out:
        return ""
    return ("\n#### 5-fold cross-validation over the 80 training subjects (every training image "
            "evaluated once)\n\nLast-5 accuracy pooled over the folds (each weighted by its test "
            "images), mean ± std over seeds; minus `baseline`: mean (its standard error): by "
            "seed.\n\n| start | epochs | noise | variant | seeds | pooled last-5 | minus "
            "baseline |\n" + "|---" * 7 + "|\n" + "\n".join(out) + "\n")


TRACE_EPOCHS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 50, 75)


def trace_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per-epoch test accuracy of the target (and auxiliary) branch, mean over the
    seeds of each (protocol, start, epochs, noise, variant) with injected noise."""
    out = ["\nPer-epoch trace (%, mean over seeds): target branch test accuracy, and for the "
           "dual-branch runs `aux` = the auxiliary branch.\n"]
    groups = sorted({(r["protocol"], r["start"], r["epochs"], r["noise"]) for r in rows
                     if r["noise"] > 0})
    for protocol, start, epochs, noise in groups:
        ep = [e for e in TRACE_EPOCHS if e <= epochs]
        out += [f"\n{protocol}, {start}, {epochs} epochs, {100 * noise:.0f}% noise\n",
                "| variant | " + " | ".join(str(e) for e in ep) + " |", "|---" * (len(ep) + 1)
                + "|"]
        for name in VARIANTS:
            sel = _select(rows, protocol=protocol, start=start, epochs=epochs, noise=noise,
                          name=name)
            for key, tag in (("test_acc", name), ("aux_test_acc", f"{name} (aux)")):
                traces = [r["trace"][key] for r in sel if key in r.get("trace", {})]
                if traces:
                    m = 100 * np.mean(np.asarray(traces, dtype=float), axis=0)
                    out.append(f"| {tag} | " + " | ".join(f"{m[e - 1]:.1f}" for e in ep) + " |")
    return "\n".join(out) + "\n"


def fake_ckplus(work: Path, seed: int = 0) -> tuple[Path, Path, Path, Path]:
    """A tiny CK+48-like set (6 classes, 8 subjects, 3 frames), its split file, and a tiny
    FER+ training folder with FER2013 labels, for --quick without data."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root, ferplus = work / "fake-ckplus", work / "fake-ferplus"
    rows = ["path,label,subject,split,sha256"]
    for c, label in enumerate(CLASSES):
        for s in range(8):
            for frame in range(3):
                img = np.clip(rng.normal(35 * c + 40, 20, (48, 48)), 0, 255).astype(np.uint8)
                path = root / label / f"S{s:03d}_{c + 1:03d}_{frame:08d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                rows.append(f"{label}/{path.name},{label},S{s:03d},"
                            f"{'test' if s >= 6 else 'train'},{sha}")
    split = work / "fake_split.csv"
    split.write_text("\n".join(rows) + "\n")
    fer_rows = ["split,image,fer2013_label,ambiguous"]
    for folder in FER2013_FOLDERS:
        for i in range(40):
            name = f"fer{i:07d}.png"
            c = i % 7
            img = np.clip(rng.normal(30 * c + 40, 20, (48, 48)), 0, 255).astype(np.uint8)
            (ferplus / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(ferplus / folder / name)
            fer_rows.append(f"{folder},{name},class{c},0")
    labels = work / "fake_fer2013_labels.csv"
    labels.write_text("\n".join(fer_rows) + "\n")
    return root, split, ferplus, labels


def expand_protocols(protocols: list[str]) -> list[str]:
    """``cv`` replaced by the five cross-validation protocols; each protocol once, in order."""
    return list(dict.fromkeys(q for protocol in protocols for q in (
        CV_PROTOCOLS if protocol == "cv" else (protocol,))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckplus", type=Path, help="CK+48 root (<class>/S010_004_00000017.png)")
    p.add_argument("--split", type=Path, help="ckplus48_split.csv (path,label,subject,split,"
                   "sha256)")
    p.add_argument("--ferplus", type=Path, help="FER+ layout root (FER2013Train, FER2013Test) "
                   "for the face start")
    p.add_argument("--fer2013-labels", type=Path, help="FER2013's labels of the FER+ images "
                   "(split,image,fer2013_label,ambiguous)")
    p.add_argument("--quick", action="store_true", help="tiny well-formedness check (CI)")
    p.add_argument("--work", type=Path, default=HERE / "_work" / "ckplus")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--protocols", nargs="+", choices=("test", "cv", *CV_PROTOCOLS),
                   default=["test"], help="cv: valid and fold1 .. fold4 (default: test)")
    p.add_argument("--starts", nargs="+", choices=("faces", "scratch"), default=["faces"])
    p.add_argument("--noises", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4])
    p.add_argument("--names", nargs="+", choices=sorted(VARIANTS),
                   default=["baseline", "aea", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="epochs (default: the profile's)")
    p.add_argument("--only", nargs="+", help="run only jobs whose key contains one of these")
    p.add_argument("--table-only", action="store_true", help="tabulate runs.jsonl, run nothing")
    p.add_argument("--table", default="ckplus_cpu", help="name of the results file "
                   "(benchmarks/results/NAME.md; default ckplus_cpu)")
    args = p.parse_args(argv)
    args.protocols = expand_protocols(args.protocols)
    name = "quick" if args.quick else "cpu"
    profile = PROFILES[name]
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.seeds, args.jobs, args.noises = args.seeds[:1], 1, [0.0, 0.3]
        args.names = ["baseline", "full", "full-oracle", "clean-only"]
        if args.ckplus is None:
            args.ckplus, args.split, args.ferplus, args.fer2013_labels = fake_ckplus(work)
    runs, failed = work / "runs.jsonl", []
    done = [json.loads(line) for line in runs.read_text().splitlines()] if runs.is_file() else []
    if not args.table_only:
        if None in (args.ckplus, args.split) or ("faces" in args.starts and None in (
                args.ferplus, args.fer2013_labels)):
            p.error("--ckplus and --split are required, and --ferplus and --fer2013-labels "
                    "for the faces start (or --quick)")
        views = make_views(args.ckplus, args.split, work)
        backbone = pretrain_faces(make_fer2013_view(
            args.ferplus, args.fer2013_labels, work), work, profile) \
            if "faces" in args.starts else None
        finished = {r["key"] for r in done}
        jobs = [j for j in make_jobs(args, profile, views, backbone, work)
                if job_key(j) not in finished]
        print(f"{len(jobs)} run(s) to do, {len(finished)} done; {args.jobs} at a time",
              flush=True)
        ctx = mp.get_context("spawn")
        # one run per worker process: the oracle replaces train.NoiseModel in its process
        with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
            futures = {pool.submit(run_job, j): job_key(j) for j in jobs}
            for future in cf.as_completed(futures):
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 (one failed run must not lose the rest)
                    failed.append(futures[future])
                    print(f"{futures[future]}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                    continue
                done.append(row)
                with runs.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{row['key']}: final {100 * row['final']:.1f}, last-5 "
                      f"{100 * row['last5_mean']:.1f} ({row['wall_s']:.0f} s)", flush=True)
        if failed:
            print(f"{len(failed)} run(s) failed (rerun to retry them): {', '.join(failed)}")
    dest = work if args.quick else HERE / "results"
    dest.mkdir(exist_ok=True)
    text = tables(done, name, profile)
    (dest / (f"ckplus_{name}.md" if args.quick else f"{args.table}.md")).write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
