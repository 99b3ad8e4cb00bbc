from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from noisylabel._backend import compute_dtype, is_tensor


def test_is_tensor():
    assert is_tensor(torch.zeros(2))
    assert is_tensor(torch.nn.Parameter(torch.zeros(2)))
    assert not is_tensor(np.zeros(2))
    assert not is_tensor([1.0])


def test_compute_dtype():
    assert compute_dtype(torch.zeros(1)) == torch.float64


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
