"""noisylabel: train classifiers on data whose labels are partly wrong.

The public API is re-exported here lazily (PEP 562): ``import noisylabel`` does not
import torch, so a scikit-learn user who never touches a tensor does not pay for it.
Torch is imported on first use of a torch-facing name (``NoiseModel``, the losses,
``AverageAnchor``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from noisylabel._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # mixture model (paper eq. 4-6)
    "BetaMixture": "noisylabel.mixture",
    "MixtureNotSeparatedWarning": "noisylabel.mixture",
    # per-sample signals (paper eq. 3)
    "cosine_similarity": "noisylabel.signals",
    "normalized_loss": "noisylabel.signals",
    "bounded_loss": "noisylabel.signals",
    "calibrated_cosine": "noisylabel.signals",
    "class_thresholds": "noisylabel.signals",
    "spread_ties": "noisylabel.signals",
    "confident_joint": "noisylabel.confident",
    "get_signal": "noisylabel.signals",
    "Signal": "noisylabel.signals",
    # one-call detection
    "clean_probability": "noisylabel.detect",
    "find_noisy_labels": "noisylabel.detect",
    "rank_noisy_labels": "noisylabel.detect",
    # noise matrices
    "NoiseMatrix": "noisylabel.noise_matrix",
    "estimate_noise_matrix": "noisylabel.noise_matrix",
    "empirical_noise_matrix": "noisylabel.noise_matrix",
    # annotator votes
    "majority_vote": "noisylabel.annotators",
    "plurality_vote": "noisylabel.annotators",
    "soft_vote_targets": "noisylabel.annotators",
    "vote_agreement": "noisylabel.annotators",
    "vote_labels": "noisylabel.annotators",
    "check_vote_counts": "noisylabel.annotators",
    # class-distribution mining (paper eq. 7-8)
    "ClassDistributionMiner": "noisylabel.distribution",
    "class_mean_distributions": "noisylabel.distribution",
    "smoothed_onehot": "noisylabel.distribution",
    # label-distribution correction (paper eq. 9)
    "correct_labels": "noisylabel.correction",
    # loss-weight schedule (paper eq. 12-13)
    "loss_weights": "noisylabel.schedule",
    # losses (paper eq. 10-11)
    "weighted_cross_entropy": "noisylabel.losses",
    "soft_target_kl": "noisylabel.losses",
    "forward_cross_entropy": "noisylabel.losses",
    # label-noise injection and EAC-format noise files
    "symmetric_noise": "noisylabel.noise",
    "transition_noise": "noisylabel.noise",
    "pair_noise": "noisylabel.noise",
    "instance_noise": "noisylabel.noise",
    "read_noise_file": "noisylabel.noise",
    "write_noise_file": "noisylabel.noise",
    # integrations
    "NoiseModel": "noisylabel.noise_model",
    "FitReport": "noisylabel.noise_model",
    "BMMWeightedClassifier": "noisylabel.sklearn",
    "AverageAnchor": "noisylabel.layers",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'noisylabel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from noisylabel.annotators import (
        check_vote_counts,
        majority_vote,
        plurality_vote,
        soft_vote_targets,
        vote_agreement,
        vote_labels,
    )
    from noisylabel.confident import confident_joint
    from noisylabel.correction import correct_labels
    from noisylabel.detect import clean_probability, find_noisy_labels, rank_noisy_labels
    from noisylabel.distribution import (
        ClassDistributionMiner,
        class_mean_distributions,
        smoothed_onehot,
    )
    from noisylabel.layers import AverageAnchor
    from noisylabel.losses import forward_cross_entropy, soft_target_kl, weighted_cross_entropy
    from noisylabel.mixture import BetaMixture, MixtureNotSeparatedWarning
    from noisylabel.noise import (
        instance_noise,
        pair_noise,
        read_noise_file,
        symmetric_noise,
        transition_noise,
        write_noise_file,
    )
    from noisylabel.noise_matrix import NoiseMatrix, empirical_noise_matrix, estimate_noise_matrix
    from noisylabel.noise_model import FitReport, NoiseModel
    from noisylabel.schedule import loss_weights
    from noisylabel.signals import (
        Signal,
        bounded_loss,
        calibrated_cosine,
        class_thresholds,
        cosine_similarity,
        get_signal,
        normalized_loss,
        spread_ties,
    )
    from noisylabel.sklearn import BMMWeightedClassifier
