"""Pure parts of benchmarks/ckplus.py: the variant spelled out for the defaults, the job grid,
and the recovered-share and per-seed columns of its tables."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

BENCHMARK = "ckplus"  # the `bench` fixture (conftest.py) imports benchmarks/ckplus.py


def _job(name: str, **over) -> dict:
    job = {"protocol": "test", "start": "faces", "noise": 0.3, "name": name, "seed": 0,
           "epochs": 30, "image_size": 48, "batch_size": 32, "pretrained": None, "threads": 1}
    return {**job, **over}


def _fields(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def test_full_calib_soft_is_the_default_full(bench, tmp_path):
    # the rows named full-calib-soft are reported as "the defaults": they must stay so
    full = _fields(bench._config(_job("full"), str(tmp_path / "a"), "data"))
    spelled = _fields(bench._config(_job("full-calib-soft"), str(tmp_path / "a"), "data"))
    assert full == spelled


def test_paper_route_differs_from_the_defaults_in_the_three_options(bench, tmp_path):
    full = _fields(bench._config(_job("full"), str(tmp_path / "a"), "data"))
    paper = _fields(bench._config(_job("full-paper-route"), str(tmp_path / "a"), "data"))
    assert {k for k in full if full[k] != paper[k]} == {"signal", "class_targets", "q_from"}


@pytest.mark.parametrize("name,changed", [
    ("full-oracle-soft", set()),  # the same options: only w is replaced
    ("full-mined-soft", {"class_targets"}),
    ("full-batchanchor-soft", {"anchor_inference"}),
    ("full-wce-soft", {"target_loss"}),
])
def test_ablations_of_the_defaults_change_one_option(bench, tmp_path, name, changed):
    full = _fields(bench._config(_job("full"), str(tmp_path / "a"), "data"))
    other = _fields(bench._config(_job(name), str(tmp_path / "a"), "data"))
    assert {k for k in full if full[k] != other[k]} == changed
    assert (name in bench.ORACLES) == ("oracle" in name)


def test_make_jobs_skips_oracles_without_noise_and_filters_by_key(bench, tmp_path):
    args = argparse.Namespace(protocols=["test"], starts=["faces"], noises=[0.0, 0.3],
                              names=["baseline", "clean-only"], seeds=[0, 1], threads=1,
                              epochs=None, only=None)
    profile = bench.PROFILES["quick"]
    jobs = bench.make_jobs(args, profile, {"test": "view"}, "start.pth", tmp_path)
    keys = [bench.job_key(j) for j in jobs]
    assert "test/faces/e2/noise0.00/clean-only/seed0" not in keys
    assert "test/faces/e2/noise0.30/clean-only/seed1" in keys
    assert len(keys) == 2 + 2 + 2  # baseline at both rates, clean-only at 30%
    args.only = ["noise0.30/baseline/"]
    assert [bench.job_key(j) for j in bench.make_jobs(args, profile, {"test": "view"},
                                                       "start.pth", tmp_path)] == [
        "test/faces/e2/noise0.30/baseline/seed0", "test/faces/e2/noise0.30/baseline/seed1"]


def _row(name: str, noise: float, seed: int, last5: float) -> dict:
    return {"protocol": "test", "start": "faces", "epochs": 30, "noise": noise, "name": name,
            "seed": seed, "last5_mean": last5}


def test_recovered_is_the_share_of_the_noise_cost(bench):
    rows = [_row("baseline", 0.0, 0, 0.92), _row("baseline", 0.3, 0, 0.84),
            _row("baseline", 0.3, 1, 0.86), _row("full", 0.3, 0, 0.89),
            _row("full", 0.3, 1, 0.89)]
    # (0.89 - 0.85) / (0.92 - 0.85) = 57%
    assert bench.recovered(rows, "full", 0.3) == "+57%"
    assert bench.recovered(rows, "full", 0.0) == "-"  # no cost at 0%
    assert bench.recovered(rows[1:], "full", 0.3) == "-"  # no ceiling measured
    # a cost under a point (here 0.5) gives no share, only the cost
    small = [_row("baseline", 0.0, 0, 0.92), _row("baseline", 0.2, 0, 0.915),
             _row("full", 0.2, 0, 0.905)]
    assert bench.recovered(small, "full", 0.2) == "- (cost 0.5)"


def test_per_seed_gain_pairs_seeds(bench):
    rows = [_row("baseline", 0.3, 0, 0.84), _row("baseline", 0.3, 1, 0.86),
            _row("full", 0.3, 1, 0.85), _row("full", 0.3, 0, 0.89),
            _row("full", 0.3, 2, 0.99)]  # seed 2 has no baseline: left out
    assert bench.per_seed_gain(rows, "full", 0.3) == "+5.0 / -1.0"
    assert bench.per_seed_gain(rows, "baseline", 0.3) == "-"


def test_subject_folds_partition_the_subjects_with_valid_as_fold_zero(bench):
    subjects = [f"S{i:03d}" for i in range(83)] * 3  # one entry per image: repeats
    folds = bench.subject_folds(subjects)
    assert len(folds) == bench.FOLDS
    assert set().union(*folds) == set(subjects)
    assert sum(len(f) for f in folds) == 83  # disjoint
    assert [len(f) for f in folds] == [16, 16, 16, 16, 19]  # the last takes the rest
    # fold 0 is the validation fifth the valid protocol has always held out
    order = sorted(set(subjects))
    perm = np.random.default_rng(bench.SPLIT_SEED).permutation(len(order))
    assert folds[0] == {order[i] for i in perm[:83 // 5]}


def test_pooled_cv_weights_folds_by_their_images_and_needs_every_fold(bench):
    def row(protocol: str, n: int, acc: float, seed: int = 0, name: str = "full") -> dict:
        return {**_row(name, 0.2, seed, acc), "protocol": protocol, "n_test": n}

    rows = [row(p, n, acc) for p, n, acc in zip(
        bench.CV_PROTOCOLS, (100, 100, 100, 100, 200), (0.9, 0.9, 0.9, 0.9, 0.6), strict=True)]
    rows += [row(p, 100, 0.8, name="baseline") for p in bench.CV_PROTOCOLS]
    rows += [row(p, 100, 0.5, seed=1) for p in bench.CV_PROTOCOLS[:4]]  # fold4 missing
    got = bench.pooled_cv(rows, name="full", noise=0.2)
    assert got == {0: pytest.approx((4 * 90 + 2 * 60) / 600)}  # 0.8, not the plain mean 0.84
    assert "| faces | 30 | 20% | full | 1 | 80.0 | +0.0: +0.0 |" in bench.cv_table(rows)


def test_cv_expands_to_the_five_training_subject_protocols_once(bench):
    assert bench.expand_protocols(["cv", "test", "valid"]) == [
        "valid", "fold1", "fold2", "fold3", "fold4", "test"]
    assert bench.expand_protocols(["test"]) == ["test"]
