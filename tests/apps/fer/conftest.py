"""A tiny synthetic RAF-DB-layout data set shared by the FER app tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from noisylabel.apps.fer.synthetic import SyntheticFaceConfig, generate_dataset


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 train / 20 test cartoon faces at 16 px, 7 classes."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faces")
    config = SyntheticFaceConfig(n_train=40, n_test=20, image_size=16, n_identities=6, seed=3)
    return generate_dataset(root, config)
