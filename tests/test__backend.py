from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from noisylabel._backend import is_tensor, like


def test_is_tensor():
    assert is_tensor(torch.zeros(2))
    assert is_tensor(torch.nn.Parameter(torch.zeros(2)))
    assert not is_tensor(np.zeros(2))
    assert not is_tensor([1.0])


def test_like_preserves_type():
    t = like(np.ones(2), torch.zeros(1))
    assert isinstance(t, torch.Tensor)
    assert isinstance(like(torch.ones(2), np.zeros(1)), np.ndarray)


def test_numpy_path_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from noisylabel.detect import clean_probability\n"
        "from noisylabel.distribution import ClassDistributionMiner\n"
        "from noisylabel.correction import correct_labels\n"
        "from noisylabel.schedule import loss_weights\n"
        "rng = np.random.default_rng(0)\n"
        "p = rng.dirichlet(np.ones(3), 200); y = p.argmax(1)\n"
        "w = clean_probability(y, p)\n"
        "m = ClassDistributionMiner(3).update(y, p)\n"
        "correct_labels(y, p, w, m.distributions_)\n"
        "loss_weights(2)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
