import numpy as np
import pytest

from noisylabel.noise import (
    read_noise_file,
    symmetric_matrix,
    symmetric_noise,
    transition_noise,
    write_noise_file,
)

C = 7


def _labels(n=2000, seed=0):
    return np.random.default_rng(seed).integers(0, C, n)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3, 1.0])
def test_exact_mode_flips_exactly_round_rate_n(rate):
    y = _labels(1001)
    z = symmetric_noise(y, rate, C, mode="exact", seed=1)
    assert z.dtype == np.int64 and z.shape == y.shape
    assert int((z != y).sum()) == int(np.floor(rate * y.size + 0.5))
    assert z.min() >= 0 and z.max() < C


@pytest.mark.parametrize("mode", ["exact", "bernoulli"])
def test_flipped_labels_always_change_and_cover_other_classes(mode):
    y = np.full(7000, 3)
    z = symmetric_noise(y, 0.5, C, mode=mode, seed=2)
    flipped = z[z != y]
    assert flipped.size > 0 and np.all(flipped != 3)
    counts = np.bincount(flipped, minlength=C)
    assert counts[3] == 0
    others = counts[np.arange(C) != 3]
    # uniform over the 6 other classes: each ~ 1/6 of the flips (5 sigma)
    expected = flipped.size / 6
    assert np.all(np.abs(others - expected) < 5 * np.sqrt(expected))


def test_bernoulli_rate_within_binomial_tolerance():
    y = _labels(5000)
    rate = 0.3
    z = symmetric_noise(y, rate, C, mode="bernoulli", seed=3)
    k = int((z != y).sum())
    sd = np.sqrt(y.size * rate * (1 - rate))
    assert abs(k - rate * y.size) < 5 * sd
    # bernoulli counts vary with the seed, exact ones do not
    ks = {int((symmetric_noise(y, rate, C, mode="bernoulli", seed=s) != y).sum()) for s in range(5)}
    assert len(ks) > 1


def test_reproducible_by_seed_and_input_untouched():
    y = _labels()
    y0 = y.copy()
    a = symmetric_noise(y, 0.2, C, seed=7)
    b = symmetric_noise(y, 0.2, C, seed=7)
    c = symmetric_noise(y, 0.2, C, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(y, y0)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(symmetric_noise(y, 0.2, C, seed=g1),
                                  symmetric_noise(y, 0.2, C, seed=g2))


def test_accepts_torch_tensor_and_returns_numpy():
    torch = pytest.importorskip("torch")
    y = torch.arange(70) % C
    z = symmetric_noise(y, 0.5, C, seed=0)
    assert isinstance(z, np.ndarray) and int((z != y.numpy()).sum()) == 35


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"mode": "uniform"}, "mode"),
        ({"n_classes": 1}, "n_classes"),
    ],
)
def test_symmetric_noise_bad_arguments(kwargs, match):
    args = {"labels": _labels(10), "rate": 0.2, "n_classes": C, **kwargs}
    with pytest.raises(ValueError, match=match):
        symmetric_noise(**args)


def test_symmetric_noise_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"labels\[2\] = 7"):
        symmetric_noise([0, 1, 7], 0.2, C)
    with pytest.raises(ValueError, match="integers"):
        symmetric_noise([0.5, 1.0], 0.2, C)


def test_transition_noise_matches_matrix():
    T = np.array([[0.8, 0.2, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    y = np.repeat([0, 1, 2], 4000)
    z = transition_noise(y, T, seed=0)
    np.testing.assert_array_equal(z[y == 1], 1)  # identity row never flips
    assert not np.any(z[y == 0] == 2)  # zero entries are never drawn
    emp = np.array([np.bincount(z[y == c], minlength=3) / 4000 for c in range(3)])
    assert np.abs(emp - T).max() < 0.03
    np.testing.assert_array_equal(z, transition_noise(y, T, seed=0))


def test_symmetric_matrix_rows_and_noise_rate():
    T = symmetric_matrix(C, 0.3)
    np.testing.assert_allclose(T.sum(1), 1.0)
    np.testing.assert_allclose(np.diag(T), 0.7)
    y = _labels(20000)
    rate = (transition_noise(y, T, seed=1) != y).mean()
    assert abs(rate - 0.3) < 0.02


@pytest.mark.parametrize(
    ("T", "match"),
    [
        (np.ones((2, 3)) / 3, "square"),
        (np.array([[0.5, 0.4], [0.0, 1.0]]), "row 0 sums to 0.9"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), r"T\[0, 1\] = -0.2 is negative"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "not finite"),
    ],
)
def test_transition_matrix_validation(T, match):
    with pytest.raises(ValueError, match=match):
        transition_noise([0, 1], T)


def test_transition_noise_label_outside_matrix():
    with pytest.raises(ValueError, match="outside 0..1"):
        transition_noise([0, 2], np.eye(2))


# ---------------------------------------------------------------- EAC-format files

NAMES = [f"train_{i:05d}.jpg" for i in range(1, 9)]


def test_eac_round_trip(tmp_path):
    y = symmetric_noise(np.arange(8) % C, 0.5, C, seed=0)
    path = write_noise_file(tmp_path / "sub" / "noise01.txt", NAMES, y)
    lines = path.read_text().splitlines()
    assert lines[0] == f"train_00001.jpg {y[0] + 1}" and len(lines) == 8
    np.testing.assert_array_equal(read_noise_file(path, NAMES), y)
    # aligned with the names given, not with the file's order
    np.testing.assert_array_equal(read_noise_file(path, NAMES[::-1]), y[::-1])


def test_eac_tolerates_crlf_blank_lines_and_no_final_newline(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(b"train_00002.jpg 7\r\n\r\ntrain_00001.jpg 1  \r\ntrain_00003.jpg 4")
    np.testing.assert_array_equal(read_noise_file(path, NAMES[:3]), [0, 6, 3])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train_00001.jpg 1\ntrain_00002.jpg\n", r"noise\.txt, line 2: expected"),
        ("train_00001.jpg 1\ntrain_00002.jpg x\n", r"line 2: label 'x' is not an integer"),
        ("train_00001.jpg 8\ntrain_00002.jpg 1\n", r"line 1: label 8 outside 1\.\.7"),
        ("train_00001.jpg 0\ntrain_00002.jpg 1\n", r"line 1: label 0 outside"),
        ("train_00001.jpg 1\ntrain_00001.jpg 2\n", r"line 2: duplicated name .* line 1"),
        ("train_00001.jpg 1\ntest_00001.jpg 2\n", r"line 2: 'test_00001.jpg' is not in the split"),
        ("train_00001.jpg 1\n", r"noise\.txt: 1 name\(s\) of the split missing.*train_00002"),
    ],
)
def test_eac_reader_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "noise.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_noise_file(path, NAMES[:2])


def test_eac_reader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="noise01.txt"):
        read_noise_file(tmp_path / "noise01.txt", NAMES)


def test_eac_writer_validates(tmp_path):
    with pytest.raises(ValueError, match="8 entries"):
        write_noise_file(tmp_path / "n.txt", NAMES[:2], np.zeros(8, int))
    with pytest.raises(ValueError, match="outside 0..6"):
        write_noise_file(tmp_path / "n.txt", NAMES[:2], [0, 7])
    with pytest.raises(ValueError, match="duplicated"):
        write_noise_file(tmp_path / "n.txt", [NAMES[0], NAMES[0]], [0, 1])


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, noisylabel.noise; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"n_classes": 2.5}, ValueError, r"n_classes=2\.5: symmetric noise needs an integer >= 2"),
    ({"n_classes": 1}, ValueError, r"n_classes=1"),
    ({"rate": "0.3"}, TypeError, r"rate must be a number in \[0, 1\], got '0\.3'"),
    ({"rate": float("nan")}, ValueError, r"rate=nan: must be in \[0, 1\]"),
    ({"seed": -1}, ValueError, r"seed=-1: must be None, a non-negative integer"),
    ({"seed": 1.5}, ValueError, r"seed=1\.5"),
])
def test_symmetric_noise_names_the_bad_argument(kwargs: dict, error: type, pattern: str) -> None:
    args = {"rate": 0.3, "n_classes": 2, "seed": 0, **kwargs}
    with pytest.raises(error, match=pattern):
        symmetric_noise(np.array([0, 1, 0, 1]), **args)


def test_a_noise_file_label_with_an_underscore_is_refused(tmp_path) -> None:
    path = tmp_path / "noise.txt"
    path.write_text("a.jpg 0_5\n")
    with pytest.raises(ValueError, match=r"line 1: label '0_5' is not an integer"):
        read_noise_file(path, ["a.jpg"])
