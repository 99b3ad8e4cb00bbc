"""Tests of the FER training loop: one epoch per variant, checkpoints, resume equivalence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from noisylabel.apps.fer.train import TrainConfig, load_checkpoint, train


def _config(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(root), out=str(out), image_size=16, batch_size=16, epochs=1,
                noise=0.3, device="cpu", progress=False, tensorboard=False, plots=False,
                eval_batch_size=32, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_a_lone_last_sample_joins_the_previous_batch(tiny_faces: Path, tmp_path: Path) -> None:
    # 40 images, batch 13: 3 x 13 + 1. A one-sample batch would crash BatchNorm at 16 px.
    result = train(_config(tiny_faces, tmp_path, variant="full", batch_size=13))
    assert math.isfinite(result["history"][0]["loss"])


@pytest.mark.parametrize("variant", ["baseline", "aea", "full"])
def test_one_epoch_each_variant(tiny_faces: Path, tmp_path: Path, variant: str) -> None:
    result = train(_config(tiny_faces, tmp_path, variant=variant))
    (row,) = result["history"]
    assert row["epoch"] == 1
    assert math.isfinite(row["loss"]) and row["loss"] > 0
    assert 0.0 <= row["test_acc"] <= 1.0
    assert result["final"] == row["test_acc"] == result["best"]
    assert result["regime"].startswith("from scratch")
    if variant == "full":
        for key in ("l1", "lkld", "mu1", "mu2", "w_mean_clean", "w_mean_noisy", "noise_auc",
                    "signal_auc", "gate", "miner_accepted", "bmm_alpha1", "agreement",
                    "fit_clean_share"):
            assert key in row, key
        assert 0.0 <= row["agreement"] <= 1.0 and 0.0 <= row["fit_clean_share"] <= 1.0
        assert row["mu1"] == 1.0  # epoch 1 <= beta
        assert row["gate"] == "warmup" and row["w_mean_clean"] == row["w_mean_noisy"] == 1.0
    else:
        assert "ce" in row and "l1" not in row
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1
    assert ckpt["config"]["variant"] == variant
    assert (ckpt["noise_model"] is not None) == (variant == "full")
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["warmup"] == 3 and config["l1_normalize"] == "weights"
    assert abs(config["actual_noise_rate"] - 12 / 40) < 1e-9  # exact mode: round(0.3 * 40)


@pytest.mark.parametrize("stats_pass", ["train", "eval"])
def test_both_statistics_passes_feed_the_noise_model(tiny_faces: Path, tmp_path: Path,
                                                     stats_pass: str) -> None:
    result = train(_config(tiny_faces, tmp_path, variant="full", epochs=2, warmup=0,
                           stats_pass=stats_pass))
    for row in result["history"]:  # a fit on every sample's signal after each epoch
        assert 0.0 <= row["signal_auc"] <= 1.0 and row["bmm_n_iter"] >= 1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["stats_pass"] == stats_pass


def test_paper_exact_restores_the_literal_method() -> None:
    cfg = TrainConfig(data="x", paper_exact=True, warmup=7, per_class=True,
                      class_targets="onehot", q_from="target", aux_decay=False,
                      signal="calibrated").resolved()
    assert (cfg.class_targets, cfg.q_from, cfg.aux_decay) == ("mined", "aux", True)
    assert cfg.signal == "cosine"
    assert (cfg.warmup, cfg.gate, cfg.monotone, cfg.per_class) == (0, False, False, False)
    assert (cfg.mining_rule, cfg.l1_normalize, cfg.stats_pass) == ("absolute", "batch", "eval")
    default = TrainConfig(data="x").resolved()
    assert (default.warmup, default.gate, default.monotone) == (3, True, True)
    assert (default.signal, default.class_targets, default.q_from) == (
        "calibrated", "onehot", "soft")
    assert default.stats_pass == "eval"  # separates real faces' wrong labels better (FER+)
    assert (default.image_size, default.batch_size, default.lr, default.epochs) == (100, 32, 1e-3, 75)
    with pytest.raises(ValueError, match="stats_pass='both'"):
        TrainConfig(data="x", stats_pass="both")
    with pytest.raises(ValueError, match="augment='strong'"):
        TrainConfig(data="x", augment="strong")


def test_resume_reaches_the_same_result(tiny_faces: Path, tmp_path: Path) -> None:
    # warm-up 1 and no gate so that the mixture's w and the mined D shape epochs 2 and 3
    kw = dict(variant="full", warmup=1, gate=False, epochs=3)
    straight = train(_config(tiny_faces, tmp_path / "straight", **kw))
    train(_config(tiny_faces, tmp_path / "resumed", **{**kw, "epochs": 2}))
    resumed = train(_config(tiny_faces, tmp_path / "resumed", **kw, resume=True))
    assert len(resumed["history"]) == 3
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        for key in ("loss", "l1", "lkld", "test_acc", "train_acc", "w_mean_clean"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    sa = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    sb = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key, value in sa["model"].items():
        torch.testing.assert_close(sb["model"][key], value, atol=1e-6, rtol=0, msg=key)


def test_resume_refuses_changed_options(tiny_faces: Path, tmp_path: Path) -> None:
    train(_config(tiny_faces, tmp_path, variant="baseline"))
    with pytest.raises(ValueError, match=r"options changed \(lr: 0.001 -> 0.01\)"):
        train(_config(tiny_faces, tmp_path, variant="baseline", lr=1e-2, resume=True, epochs=2))


def test_noise_file_replaces_the_labels(tiny_faces: Path, tmp_path: Path) -> None:
    from noisylabel.apps.fer.layouts import load_split
    from noisylabel.noise import write_noise_file

    split = load_split(tiny_faces, "train", image_size=16)
    noisy = (split.labels + 1) % 7  # every label flipped
    noise_file = tmp_path / "noise.txt"
    write_noise_file(noise_file, split.names, noisy.numpy())
    train(_config(tiny_faces, tmp_path / "run", variant="baseline", noise_file=str(noise_file)))
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert torch.equal(ckpt["noisy_labels"], noisy)


def test_epoch_line_shows_a_dash_for_an_empty_group() -> None:
    from noisylabel.apps.fer.train import _epoch_line

    row = {"epoch": 3, "loss": 0.5, "train_acc": 0.7, "test_acc": 0.69, "img_per_s": 30.0,
           "w_mean_clean": 0.91, "w_mean_noisy": math.nan, "noise_auc": math.nan}
    line = _epoch_line(row)
    assert "w clean/noisy 0.91/-" in line and "nan" not in line and "AUC(w)" not in line
    assert "w clean/noisy 0.91/0.20" in _epoch_line({**row, "w_mean_noisy": 0.2})


def _loss_inputs(n: int = 6, c: int = 3):
    from noisylabel.apps.fer.model import FEROutput
    from noisylabel.noise_model import NoiseModel

    g = torch.Generator().manual_seed(0)
    out = FEROutput(target=torch.randn(n, c, generator=g), aux=torch.randn(n, c, generator=g))
    y = torch.arange(n) % c
    nm = NoiseModel(n, c)
    nm._w.copy_(torch.linspace(0.0, 1.0, n))
    return out, y, torch.arange(n), nm


@pytest.mark.parametrize("class_targets", ["mined", "smoothed", "onehot"])
def test_class_targets_choose_the_d_of_q(class_targets: str) -> None:
    from noisylabel.apps.fer.train import class_targets as pick
    from noisylabel.apps.fer.train import compute_loss
    from noisylabel.correction import correct_labels
    from noisylabel.losses import soft_target_kl

    out, y, idx, nm = _loss_inputs()
    cfg = TrainConfig(data="x", num_classes=3, class_targets=class_targets, t=0.6, q_from="aux")
    d = pick(cfg, nm)
    expected_d = {"mined": nm.class_distributions, "onehot": torch.eye(3),
                  "smoothed": torch.full((3, 3), 0.2) + 0.4 * torch.eye(3)}[class_targets]
    assert torch.allclose(d, expected_d)
    _, _, lkld, p = compute_loss(out, y, idx, nm, 1.0, 1.0, cfg)
    q = correct_labels(y, p, nm.weights(idx), expected_d)
    assert torch.allclose(lkld, soft_target_kl(out.target, q))


def test_wce_and_q_from_target_change_the_target_loss() -> None:
    from noisylabel.apps.fer.train import compute_loss
    from noisylabel.correction import correct_labels
    from noisylabel.losses import soft_target_kl, weighted_cross_entropy

    out, y, idx, nm = _loss_inputs()
    w = nm.weights(idx)
    _, _, lkld, _ = compute_loss(out, y, idx, nm, 1.0, 1.0,
                                 TrainConfig(data="x", num_classes=3, target_loss="wce"))
    assert torch.allclose(lkld, weighted_cross_entropy(out.target, y, w))  # no q at all
    _, _, lkld, _ = compute_loss(out, y, idx, nm, 1.0, 1.0, TrainConfig(
        data="x", num_classes=3, q_from="target", class_targets="mined"))
    q = correct_labels(y, out.target.softmax(1), w, nm.class_distributions)
    assert torch.allclose(lkld, soft_target_kl(out.target, q))


@pytest.mark.filterwarnings("ignore::noisylabel.mixture.MixtureNotSeparatedWarning")
@pytest.mark.parametrize("q_from", ["pseudo", "soft"])
def test_q_from_pseudo_and_soft_use_the_last_fits_prediction(q_from: str) -> None:
    from noisylabel.apps.fer.train import compute_loss
    from noisylabel.correction import correct_labels
    from noisylabel.losses import soft_target_kl

    out, y, idx, nm = _loss_inputs()
    last = torch.softmax(torch.randn(len(y), 3, generator=torch.Generator().manual_seed(1)), 1)
    nm.record(idx, last, y)
    nm.fit(1)
    cfg = TrainConfig(data="x", num_classes=3, q_from=q_from, class_targets="onehot")
    _, _, lkld, p = compute_loss(out, y, idx, nm, 1.0, 1.0, cfg)
    pseudo = torch.nn.functional.one_hot(last.argmax(1), 3).float() if q_from == "pseudo" \
        else last
    q = correct_labels(y, pseudo, nm.weights(idx), torch.eye(3))
    assert torch.allclose(lkld, soft_target_kl(out.target, q))
    q_aux = correct_labels(y, p, nm.weights(idx), torch.eye(3))
    assert not torch.allclose(lkld, soft_target_kl(out.target, q_aux))  # not the batch's p


def test_aux_decay_off_keeps_mu1_at_one(tiny_faces: Path, tmp_path: Path) -> None:
    # beta 0.5: epoch 1 is past beta, where mu1 decays
    decayed = train(_config(tiny_faces, tmp_path / "a", variant="full", beta=0.5))
    kept = train(_config(tiny_faces, tmp_path / "b", variant="full", beta=0.5, aux_decay=False))
    assert decayed["history"][0]["mu1"] < 1.0 == kept["history"][0]["mu1"]
    assert 0.0 <= kept["history"][0]["aux_test_acc"] <= 1.0
