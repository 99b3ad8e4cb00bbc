"""Real label noise on real faces: FER2013's labels against the FER+ votes.

Two protocols on the same images (a fixed, seeded subset of FER2013Train; see ``--profile``):

- **real noise** (``labels=fer2013``): train on FER2013's original labels, which disagree with
  the FER+ majority of ten annotators on about a third of the images; test on the FER+ majority
  of (a seeded subset of) FER2013Test.
- **injected noise** (``labels=ferplus``): train on the FER+ majority labels themselves, with
  0% or 30% symmetric flips injected by ``--noise``; ``baseline`` at 0% is the clean-label
  ceiling of the real-noise protocol.

Two starts: random weights (``scratch``) and a ResNet18 pretrained on the FER+ majority labels
of the *other half* of FER2013Train (``faces``), so no training image of the runs is seen in
pretraining. Variants: ``baseline``, ``aea``, ``full`` (the defaults), ``full`` with one option
changed (``full-trainstats``: the training pass's statistics, the default before the eval pass
came back; ``full-perclass``: one mixture per class; ``full-klce``: ``target_loss="kl+ce"``;
``full-paper-route``: the defaults before 0.2, cosine signal and the paper's q;
``full-cosine-pseudo`` / ``full-calib-aux``: one of the two 0.2 changes each;
``full-calib-pseudo`` / ``full-calib-soft``: both, with the one-hot or the un-rounded
prediction in q; the latter are the defaults since 0.2),
and ``cleanlab`` (cross-validated probabilities of ``baseline`` ->
``cleanlab.filter.find_label_issues`` -> ``baseline`` retrained on the kept images).

Every finished run is appended to ``<work>/runs.jsonl`` and skipped by a rerun (resumable).
Runs go to a process pool, one torch thread each.

Examples
--------
CPU profile (what benchmarks/README.md reports)::

    python benchmarks/ferplus.py --ferplus DATA/ferplus --train-labels DATA/fer2013_train_labels.csv

Well-formedness check without data (CI; writes a tiny FER+ layout from synthetic faces with
``prepare-ferplus`` first)::

    python benchmarks/ferplus.py --quick --work /tmp/ferplus
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 20250  # the image subsets are fixed across seeds and variants

VARIANTS: dict[str, dict[str, Any]] = {  # benchmark name -> TrainConfig overrides
    "baseline": {"variant": "baseline"},
    "aea": {"variant": "aea"},
    "full": {"variant": "full"},
    "full-trainstats": {"variant": "full", "stats_pass": "train"},
    "full-perclass": {"variant": "full", "per_class": True},
    "full-klce": {"variant": "full", "target_loss": "kl+ce"},
    "full-exact": {"variant": "full", "paper_exact": True},
    # the two defaults of 0.2 one at a time (as in benchmarks/ckplus.py)
    "full-paper-route": {"variant": "full", "signal": "cosine", "class_targets": "mined",
                         "q_from": "aux"},
    "full-cosine-pseudo": {"variant": "full", "signal": "cosine"},
    "full-calib-aux": {"variant": "full", "class_targets": "mined", "q_from": "aux"},
    "full-calib-pseudo": {"variant": "full", "signal": "calibrated", "class_targets": "onehot",
                          "q_from": "pseudo"},
    "full-calib-soft": {"variant": "full", "signal": "calibrated", "class_targets": "onehot",
                        "q_from": "soft"},  # the defaults since 0.2, spelled out
}

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"n_train": 1200, "n_valid": 500, "n_test": 1000, "n_pretrain": 6000,
            "image_size": 32, "epochs": 10, "pretrain_epochs": 6, "pretrain_batch_size": 64,
            "batch_size": 32},
    "gpu": {"n_train": None, "n_valid": None, "n_test": None, "n_pretrain": None,
            "image_size": 96, "epochs": 40, "pretrain_epochs": 15, "pretrain_batch_size": 64,
            "batch_size": 64},
    "quick": {"n_train": 40, "n_valid": 12, "n_test": 16, "n_pretrain": 40,
              "image_size": 16, "epochs": 2, "pretrain_epochs": 1, "pretrain_batch_size": 16,
              "batch_size": 16},
}


def job_key(job: dict[str, Any]) -> str:
    return (f"{job['start']}/{job['labels']}/noise{job['noise']:.2f}/{job['name']}/"
            f"seed{job['seed']}")


# ----------------------------------------------------------------------------- data views


def _subset(rows: list[str], n: int | None, rng: np.random.Generator) -> list[str]:
    return rows if n is None or n >= len(rows) else [rows[i] for i in
                                                      sorted(rng.choice(len(rows), n, False))]


def _write_view(view: Path, source: Path, rows_by_folder: dict[str, list[str]]) -> None:
    """A FER+ layout under ``view`` whose label.csv files hold only ``rows_by_folder``; the
    images are symbolic links into ``source``."""
    for folder, rows in rows_by_folder.items():
        d = view / folder
        d.mkdir(parents=True, exist_ok=True)
        for row in rows:
            name = row.split(",", 1)[0]
            link = d / name
            if not link.exists():
                link.symlink_to((source / folder / name).resolve())
        _write_if_changed(d / "label.csv", "".join(r + "\n" for r in rows))


def _write_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically, and only when its text changes: a benchmark started beside a
    running one (other ``--only`` jobs) never shows that one's runs a truncated label file."""
    from noisylabel.apps.fer.run_folder import atomic_write_text

    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)


def make_views(ferplus: Path, train_labels: Path, work: Path, profile: dict[str, Any]
               ) -> dict[str, Any]:
    """Split FER2013Train in two seeded halves: ``pretrain`` (FER+ majority labels, for the
    face-pretrained start) and the pool the runs train on; write both views and the two label
    files of the training subset. Only images with a FER+ majority among the 7 classes and an
    unambiguous FER2013 label take part."""
    from noisylabel.apps.fer.classes import CLASS_NAMES
    from noisylabel.apps.fer.ferplus import FERPLUS_SPLITS, read_train_labels

    rng = np.random.default_rng(SPLIT_SEED)
    fer2013 = read_train_labels(train_labels)
    lines = {split: [r for r in (ferplus / folder / "label.csv").read_text().splitlines()
                     if r.strip()] for split, folder in FERPLUS_SPLITS.items()}
    majority = {split: _majority_names(ferplus, split) for split in FERPLUS_SPLITS}
    train_rows = [r for r in lines["train"] if r.split(",", 1)[0] in majority["train"]
                  and r.split(",", 1)[0] in fer2013]
    order = rng.permutation(len(train_rows))
    half = len(train_rows) // 2
    pre_rows = [train_rows[i] for i in sorted(order[:half])]
    pool = [train_rows[i] for i in sorted(order[half:])]
    valid = [r for r in lines["valid"] if r.split(",", 1)[0] in majority["valid"]]
    test = [r for r in lines["test"] if r.split(",", 1)[0] in majority["test"]]
    views = {"pretrain": work / "view-pretrain", "train": work / "view-train"}
    _write_view(views["pretrain"], ferplus, {
        FERPLUS_SPLITS["train"]: _subset(pre_rows, profile["n_pretrain"], rng),
        FERPLUS_SPLITS["valid"]: _subset(valid, profile["n_valid"], rng),
        FERPLUS_SPLITS["test"]: _subset(test, 2, rng)})
    train_subset = _subset(pool, profile["n_train"], rng)
    _write_view(views["train"], ferplus, {
        FERPLUS_SPLITS["train"]: train_subset,
        FERPLUS_SPLITS["valid"]: _subset(valid, profile["n_valid"], rng),
        FERPLUS_SPLITS["test"]: _subset(test, profile["n_test"], rng)})
    names = [r.split(",", 1)[0] for r in train_subset]
    files = {"fer2013": work / "labels-fer2013.csv", "ferplus": work / "labels-ferplus.csv"}
    _write_if_changed(files["fer2013"], "image,label\n" + "".join(
        f"{n},{CLASS_NAMES[fer2013[n][0]]}\n" for n in names))
    _write_if_changed(files["ferplus"], "image,label\n" + "".join(
        f"{n},{CLASS_NAMES[majority['train'][n]]}\n" for n in names))
    return {"views": {k: str(v) for k, v in views.items()},
            "labels": {k: str(v) for k, v in files.items()}}


def _majority_names(root: Path, split: str) -> dict[str, int]:
    """Image name -> FER+ majority class (CLASS_NAMES index) of the images that have one."""
    from noisylabel.annotators import vote_labels
    from noisylabel.apps.fer.ferplus import FERPLUS_SPLITS, read_vote_file, vote_classes

    names, counts = read_vote_file(root / FERPLUS_SPLITS[split] / "label.csv")
    labels, _ = vote_classes(vote_labels(counts, "majority"), "majority")
    return {n: int(y) for n, y in zip(names, labels, strict=True) if y >= 0}


def pretrain_faces(view: str, work: Path, profile: dict[str, Any]) -> str:
    """The face-pretrained start: ResNet18 on the FER+ majority labels of the other half."""
    from noisylabel.apps.fer.pretrain import PretrainConfig, pretrain

    out = work / "pretrained" / "resnet18_ferplus_half.pth"
    if not Path(f"{out}.json").is_file():
        import torch

        torch.set_num_threads(1)
        result = pretrain(PretrainConfig(
            data=view, task="expression", out=str(out), image_size=profile["image_size"],
            epochs=profile["pretrain_epochs"], batch_size=profile["pretrain_batch_size"],
            augment="randaugment", progress=False))
        print(f"pretrained on FER+ half: held-out (FER2013Valid) accuracy "
              f"{100 * result['test_acc']:.1f}%", flush=True)
    return str(out)


# ----------------------------------------------------------------------------- one run


def _config(job: dict[str, Any], out: str, train_labels: str, variant: str = "") -> Any:
    from noisylabel.apps.fer.train import TrainConfig

    overrides = VARIANTS[variant or job["name"]]
    return TrainConfig(
        data=job["data"], out=out, train_labels=train_labels, noise=job["noise"],
        seed=job["seed"], image_size=job["image_size"], epochs=job["epochs"],
        batch_size=job["batch_size"], pretrained=job["pretrained"], augment="randaugment",
        device="cpu" if job["threads"] else None, tensorboard=False, plots=False,
        progress=False, num_threads=job["threads"] or None,
        overwrite=True,  # a run folder without a runs.jsonl row is an interrupted run
        **overrides)


def _evaluate(out: str, data: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) test labels of the run's last checkpoint."""
    from noisylabel.apps.fer.ferplus import load_ferplus
    from noisylabel.apps.fer.run_folder import CHECKPOINT
    from noisylabel.apps.fer.train import TrainConfig, build_model, load_checkpoint, predict_probs

    ckpt = load_checkpoint(Path(out) / CHECKPOINT)
    model = build_model(TrainConfig.from_dict(ckpt["config"]), load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    test = load_ferplus(data, "test", image_size)
    pred = predict_probs(model, test.images, "target").argmax(1).numpy()
    return test.labels.numpy(), pred


def _detection(out: str, job: dict[str, Any]) -> dict[str, float]:
    """Quality of the last w as a detector of 'training label != FER+ majority': AUC, and the
    precision / recall / F1 of the flagged set (w < 0.5), overall and on images with >= 7 of 10
    votes on the majority class."""
    import torch

    from noisylabel.apps.fer.classes import CLASS_NAMES
    from noisylabel.apps.fer.ferplus import load_ferplus
    from noisylabel.apps.fer.report import detection_by_class, noise_detection_auc
    from noisylabel.apps.fer.run_folder import CHECKPOINT

    ckpt = torch.load(Path(out) / CHECKPOINT, map_location="cpu", weights_only=True)
    if ckpt.get("noise_model") is None:
        return {}
    w = ckpt["noise_model"]["w"].numpy()
    split = load_ferplus(job["data"], "train", job["image_size"], train_labels=job["labels_file"])
    wrong = (ckpt["noisy_labels"] != split.labels).numpy()
    confident = split.agreement.numpy() >= 0.7
    row = {}
    for tag, m in (("", np.ones_like(wrong)), ("_agree7", confident)):
        flagged, truth = w[m] < 0.5, wrong[m]
        tp = float((flagged & truth).sum())
        prec = tp / max(flagged.sum(), 1)
        rec = tp / max(truth.sum(), 1)
        row.update({f"det_auc{tag}": noise_detection_auc(w[m], truth),
                    f"det_precision{tag}": prec, f"det_recall{tag}": rec,
                    f"det_f1{tag}": 2 * prec * rec / max(prec + rec, 1e-12)})
    row["det_by_class"] = detection_by_class(w, wrong, ckpt["noisy_labels"].numpy(),
                                             len(CLASS_NAMES))
    return row


def _cleanlab_labels(job: dict[str, Any], work: Path) -> str:
    """Prune-and-retrain's label file: 2-fold cross-validated probabilities of ``baseline`` ->
    ``cleanlab.filter.find_label_issues`` -> the images it does not flag."""
    from cleanlab.filter import find_label_issues

    from noisylabel.apps.fer.ferplus import read_train_labels
    from noisylabel.apps.fer.train import train

    work.mkdir(parents=True, exist_ok=True)
    table = read_train_labels(job["labels_file"])
    names = sorted(table)
    fold = np.random.default_rng(job["seed"]).permutation(len(names)) % 2
    header = Path(job["labels_file"]).read_text().splitlines()[0]
    lines = dict(line.split(",", 1) for line in Path(job["labels_file"]).read_text().splitlines()[1:])
    probs = np.zeros((len(names), 7))
    for k in (0, 1):
        fit_file = work / f"fold{k}.csv"
        fit_file.write_text(header + "\n" + "".join(
            f"{n},{lines[n]}\n" for n, f in zip(names, fold, strict=True) if f != k))
        out = str(work / f"fold{k}")
        train(_config(job, out, str(fit_file), "baseline"))
        probs[fold == k] = _fold_probs(out, job, [n for n, f in zip(names, fold, strict=True)
                                                   if f == k])
    labels = np.array([table[n][0] for n in names])
    issues = find_label_issues(labels, probs, n_jobs=1)  # its worker pool breaks under spawn
    kept = work / "kept.csv"
    kept.write_text(header + "\n" + "".join(
        f"{n},{lines[n]}\n" for n, bad in zip(names, issues, strict=True) if not bad))
    return str(kept)


def _fold_probs(out: str, job: dict[str, Any], names: list[str]) -> np.ndarray:
    """Held-out probabilities of a fold model on the training images ``names``."""
    import torch

    from noisylabel.apps.fer.ferplus import load_ferplus
    from noisylabel.apps.fer.run_folder import CHECKPOINT
    from noisylabel.apps.fer.train import TrainConfig, build_model, load_checkpoint, predict_probs

    ckpt = load_checkpoint(Path(out) / CHECKPOINT)
    model = build_model(TrainConfig.from_dict(ckpt["config"]), load_pretrained=False)
    model.load_state_dict(ckpt["model"])
    split = load_ferplus(job["data"], "train", job["image_size"])
    index = {n: i for i, n in enumerate(split.names)}
    images = split.images[torch.tensor([index[n] for n in names])]
    return predict_probs(model, images, "target").numpy()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One benchmark run in a worker process; returns the row appended to runs.jsonl."""
    import torch

    from noisylabel.apps.fer.train import train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    out = Path(job["out"])
    t0 = time.perf_counter()
    labels_file = job["labels_file"]
    if job["name"] == "cleanlab":
        labels_file = _cleanlab_labels(job, out / "cv")
    result = train(_config(job, str(out / "run"), labels_file,
                           "baseline" if job["name"] == "cleanlab" else ""))
    true, pred = _evaluate(str(out / "run"), job["data"], job["image_size"])
    last = result["history"][-1]
    row = {k: job[k] for k in ("start", "labels", "noise", "name", "seed")}
    row.update({
        "key": job_key(job), "final": result["final"], "last5_mean": result["last5_mean"],
        "best": result["best"], "wall_s": time.perf_counter() - t0,
        "val_final": last.get("val_acc"), "noise_auc": last.get("noise_auc"),
        "w_mean_clean": last.get("w_mean_clean"), "w_mean_noisy": last.get("w_mean_noisy"),
        "per_class": [float((pred[true == c] == c).mean()) if (true == c).any() else None
                      for c in range(7)],
        "n_train": result["history"][0].get("n_train"),
    })
    if job["name"] == "cleanlab":
        row["n_kept"] = len(Path(labels_file).read_text().splitlines()) - 1
    row.update(_detection(str(out / "run"), {**job, "labels_file": labels_file}))
    return row


# ----------------------------------------------------------------------------- grid and tables

PROTOCOLS: list[tuple[str, float]] = [("fer2013", 0.0), ("ferplus", 0.3), ("ferplus", 0.0)]
"""(training labels, injected symmetric noise) of the table's column groups."""
GRID_NAMES: dict[tuple[str, float], tuple[str, ...]] = {
    ("fer2013", 0.0): ("baseline", "aea", "full", "full-paper-route", "full-cosine-pseudo",
                       "full-calib-aux", "full-calib-pseudo", "full-calib-soft", "full-perclass",
                       "cleanlab"),
    ("ferplus", 0.3): ("baseline", "aea", "full", "full-paper-route", "full-cosine-pseudo",
                       "full-calib-aux", "full-calib-pseudo", "full-calib-soft", "full-trainstats",
                       "full-perclass", "full-klce"),
    ("ferplus", 0.0): ("baseline", "full"),
}


def make_jobs(args: argparse.Namespace, profile: dict[str, Any], data: dict[str, Any],
              backbone: str | None, work: Path) -> list[dict[str, Any]]:
    jobs = []
    for start in args.starts:
        for (labels, noise), names in GRID_NAMES.items():
            for name in names:
                for seed in args.seeds:
                    job = {"start": start, "labels": labels, "noise": noise, "name": name,
                           "seed": seed, "data": data["views"]["train"],
                           "labels_file": data["labels"][labels],
                           "pretrained": backbone if start == "faces" else None,
                           "threads": args.threads, **{k: profile[k] for k in (
                               "image_size", "epochs", "batch_size")}}
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
    return [r for r in rows if all(r[k] == v if k != "noise" else abs(r[k] - v) < 1e-9
                                   for k, v in match.items())]


def tables(rows: list[dict[str, Any]], profile_name: str, profile: dict[str, Any]) -> str:
    """Markdown: accuracy by start x protocol x variant; detection of the real noise; per-class
    accuracy under the real noise."""
    from noisylabel.apps.fer.classes import CLASS_NAMES

    out = [f"Profile `{profile_name}`: {profile['n_train'] or 'all'} training images (seeded "
           f"subset of one half of FER2013Train), {profile['n_test'] or 'all'} test images "
           f"(FER+ majority of FER2013Test), {profile['image_size']} px, {profile['epochs']} "
           "epochs, RandAugment. Test accuracy of the target branch (%), mean ± std over seeds: "
           "final epoch / mean of the last 5 / best epoch (optimistic: chosen on the test "
           "split). AUC and w: the last epoch's w against the flipped labels.\n"]
    for start in ("faces", "scratch"):
        if not _select(rows, start=start):
            continue
        out += [f"\n#### Start: {start}\n", "| training labels | variant | n | final | last-5 | "
                "best (optimistic) | AUC of w | w clean / flipped |", "|---" * 8 + "|"]
        for labels, noise in PROTOCOLS:
            for name in GRID_NAMES[(labels, noise)]:
                sel = _select(rows, start=start, labels=labels, noise=noise, name=name)
                if not sel:
                    continue
                tag = "FER2013 (real noise)" if labels == "fer2013" else \
                    f"FER+ majority + {100 * noise:.0f}% flips"
                w = (f"{mean_std([r['w_mean_clean'] for r in sel], 1, 2)} / "
                     f"{mean_std([r['w_mean_noisy'] for r in sel], 1, 2)}"
                     if sel[0].get("w_mean_clean") is not None else "-")
                out.append(f"| {tag} | {name} | {len(sel)} | "
                           f"{mean_std([r['final'] for r in sel])} | "
                           f"{mean_std([r['last5_mean'] for r in sel])} | "
                           f"{mean_std([r['best'] for r in sel])} | "
                           f"{mean_std([r.get('noise_auc') for r in sel], 1, 3)} | {w} |")
    real = [r for r in rows if r["labels"] == "fer2013" and "det_auc" in r]
    if real:
        out += ["\nDetection of 'FER2013 label != FER+ majority' by the last w (flagged: "
                "w < 0.5); all images / images with >= 7 of 10 votes on the majority.\n",
                "| start | variant | AUC | precision | recall | F1 | AUC (>= 7 votes) | "
                "F1 (>= 7 votes) |", "|---" * 8 + "|"]
        for start in ("faces", "scratch"):
            for name in GRID_NAMES[("fer2013", 0.0)]:
                sel = _select(real, start=start, name=name)
                if sel:
                    cells = [mean_std([r[k] for r in sel], 1, 3) for k in (
                        "det_auc", "det_precision", "det_recall", "det_f1", "det_auc_agree7",
                        "det_f1_agree7")]
                    out.append(f"| {start} | {name} | " + " | ".join(cells) + " |")
    out += _w_by_class_table([r for r in rows if "det_by_class" in r], CLASS_NAMES)
    per = [r for r in rows if r["labels"] == "fer2013" or (r["labels"] == "ferplus"
                                                           and r["noise"] == 0)]
    if per:
        out += ["\nPer-class test accuracy (%) at the last epoch, mean over seeds.\n",
                "| start | training labels | variant | " + " | ".join(CLASS_NAMES) + " |",
                "|---" * (3 + len(CLASS_NAMES)) + "|"]
        for start in ("faces", "scratch"):
            for labels, noise in (("fer2013", 0.0), ("ferplus", 0.0)):
                for name in GRID_NAMES[(labels, noise)]:
                    sel = _select(per, start=start, labels=labels, noise=noise, name=name)
                    if sel:
                        cells = [mean_std([r["per_class"][c] for r in sel], 100, 0)
                                 for c in range(len(CLASS_NAMES))]
                        out.append(f"| {start} | {labels} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _w_by_class_table(rows: list[dict[str, Any]], class_names: list[str]) -> list[str]:
    """Markdown lines: per start, training labels and variant, for each given class the share
    of its labels flagged (w < 0.5), the share that is wrong and the AUC of w within the class,
    mean over seeds."""
    if not rows:
        return []
    out = ["\nThe last w per given class, mean over seeds: % of the class's labels flagged "
           "(w < 0.5) / % wrong, and the AUC of w within the class.\n",
           "| start | training labels | variant | n | " + " | ".join(class_names) + " |",
           "|---" * (4 + len(class_names)) + "|"]
    for start in ("faces", "scratch"):
        for labels, noise in PROTOCOLS[:2]:
            for name in GRID_NAMES[(labels, noise)]:
                sel = _select(rows, start=start, labels=labels, noise=noise, name=name)
                if sel:
                    tag = "FER2013" if labels == "fer2013" else f"FER+ + {100 * noise:.0f}% flips"
                    cells = [_class_cell([r["det_by_class"][c] for r in sel])
                             for c in range(len(class_names))]
                    out.append(f"| {start} | {tag} | {name} | {len(sel)} | "
                               + " | ".join(cells) + " |")
    return out


def _class_cell(per_seed: list[dict[str, float]]) -> str:
    """'flagged / wrong, AUC' of one class, mean over seeds ('-' where never defined)."""
    with warnings.catch_warnings():  # a class without wrong labels: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        m = {k: np.nanmean([d[k] for d in per_seed]) for k in ("flagged", "wrong", "auc")}
    if np.isnan(m["flagged"]):  # no label of the class in the training set
        return "-"
    auc = "-" if np.isnan(m["auc"]) else f"{m['auc']:.2f}"
    return f"{100 * m['flagged']:.0f} / {100 * m['wrong']:.0f}, {auc}"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Last-5 accuracy per variant and protocol, one panel per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = [s for s in ("faces", "scratch") if _select(rows, start=s)]
    fig, axes = plt.subplots(1, max(len(starts), 1), figsize=(6 * max(len(starts), 1), 3.8),
                             squeeze=False)
    for ax, start in zip(axes[0], starts, strict=False):
        labels, means, errs = [], [], []
        for proto in PROTOCOLS:
            for name in GRID_NAMES[proto]:
                a = [100 * r["last5_mean"] for r in _select(rows, start=start, labels=proto[0],
                                                             noise=proto[1], name=name)]
                if a:
                    tag = "FER2013" if proto[0] == "fer2013" else f"FER+{100 * proto[1]:.0f}%"
                    labels.append(f"{tag}\n{name}")
                    means.append(np.mean(a))
                    errs.append(np.std(a, ddof=1) if len(a) > 1 else 0.0)
        ax.bar(range(len(means)), means, yerr=errs, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(means)), labels, rotation=60, fontsize=7, ha="right")
        ax.set_ylabel("test accuracy, last-5 mean (%)")
        ax.set_title(f"FER2013 vs FER+ votes, start: {start}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fake_ferplus(work: Path, n: int = 150, seed: int = 0) -> tuple[Path, Path]:
    """A tiny FER+ layout for --quick without data: ``fer2013.csv`` and ``fer2013new.csv`` with
    class-coloured random faces and votes, turned into the layout by ``prepare_ferplus``."""
    from noisylabel.apps.fer.ferplus import (
        FER2013_CLASSES,
        FER2013_TRAIN_LABELS,
        VOTE_COLUMNS,
        class_index,
        prepare_ferplus,
    )

    rng = np.random.default_rng(seed)
    usage = np.where(np.arange(n) < 0.7 * n, "Training",
                     np.where(np.arange(n) < 0.85 * n, "PublicTest", "PrivateTest"))
    fer, new = ["emotion,pixels,Usage"], ["Usage,Image name," + ",".join(VOTE_COLUMNS)]
    for i in range(n):
        column = int(rng.integers(0, 7))  # a vote column of a shared class
        votes = rng.multinomial(10, np.eye(10)[column] * 0.8 + 0.02)
        pixels = np.clip(rng.normal(30 * column + 40, 25, 48 * 48), 0, 255).astype(int)
        emotion = next(k for k, c in enumerate(FER2013_CLASSES)
                       if class_index(c) == class_index(VOTE_COLUMNS[column]))
        if rng.random() < 0.3:
            emotion = int(rng.integers(0, 7))
        fer.append(f'{emotion},{" ".join(map(str, pixels))},{usage[i]}')
        new.append(f"{usage[i]},fer{i:07d}.png," + ",".join(map(str, votes)))
    (work / "fer2013.csv").write_text("\n".join(fer) + "\n")
    (work / "fer2013new.csv").write_text("\n".join(new) + "\n")
    root = work / "fake-ferplus"
    prepare_ferplus(work / "fer2013.csv", work / "fer2013new.csv", root, overwrite=True)
    return root, root / FER2013_TRAIN_LABELS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferplus", type=Path, help="FER+ layout root (FER2013Train|Valid|Test)")
    p.add_argument("--train-labels", type=Path,
                   help="FER2013's original labels of the training images (image,label)")
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny well-formedness check (CI); without --ferplus on a fake layout")
    p.add_argument("--work", type=Path, default=HERE / "_work" / "ferplus")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run; 0 = the device's default (GPU) (default 1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--starts", nargs="+", choices=("faces", "scratch"),
                   default=["faces", "scratch"])
    p.add_argument("--only", nargs="+", help="run only jobs whose key contains one of these")
    p.add_argument("--table-only", action="store_true", help="tabulate runs.jsonl, run nothing")
    args = p.parse_args(argv)
    name = "quick" if args.quick else args.profile
    profile = PROFILES[name]
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.seeds, args.jobs, args.starts = args.seeds[:1], 1, ["faces"]
        args.only = args.only or ["fer2013/noise0.00/baseline/", "fer2013/noise0.00/full/",
                                  "cleanlab/", "ferplus/noise0.30/full/"]
        if args.ferplus is None:
            args.ferplus, args.train_labels = fake_ferplus(work)
    if args.ferplus is None or args.train_labels is None:
        p.error("--ferplus and --train-labels are required (or --quick)")
    runs = work / "runs.jsonl"
    done = [json.loads(line) for line in runs.read_text().splitlines()] if runs.is_file() else []
    if not args.table_only:
        data = make_views(args.ferplus, args.train_labels, work, profile)
        backbone = pretrain_faces(data["views"]["pretrain"], work, profile) \
            if "faces" in args.starts else None
        finished = {r["key"] for r in done}
        jobs = [j for j in make_jobs(args, profile, data, backbone, work)
                if job_key(j) not in finished]
        print(f"{len(jobs)} run(s) to do, {len(finished)} done; {args.jobs} at a time",
              flush=True)
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            for future in cf.as_completed([pool.submit(run_job, j) for j in jobs]):
                row = future.result()
                done.append(row)
                with runs.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{row['key']}: final {100 * row['final']:.1f}, last-5 "
                      f"{100 * row['last5_mean']:.1f} ({row['wall_s']:.0f} s)", flush=True)
    dest = work if args.quick else HERE / "results"
    dest.mkdir(exist_ok=True)
    text = tables(done, name, profile)
    (dest / f"ferplus_{name}.md").write_text(text)
    plot(done, dest / f"ferplus_{name}.png")
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
