from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from noisylabel.mixture import BetaMixture, MixtureNotSeparatedWarning

# (alpha0, beta0), (alpha1, beta1), weight of component 0 (the lower-mean one)
CASES = [
    ((2.0, 6.0), (8.0, 2.0), 0.3),
    ((1.5, 8.0), (6.0, 1.5), 0.5),
    ((2.0, 5.0), (10.0, 1.5), 0.7),
]


def sample(case, n, seed):
    (a0, b0), (a1, b1), w0 = case
    rng = np.random.default_rng(seed)
    z = rng.random(n) < w0
    x = np.where(z, stats.beta(a0, b0).rvs(n, random_state=rng), stats.beta(a1, b1).rvs(n, random_state=rng))
    return x, z


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_em_recovers_known_mixture(case, seed):
    # Tolerance (n = 20,000): mixing weights within 0.03 absolute, component means within
    # 0.02 absolute, alphas and betas within 20% relative.
    x, _ = sample(case, 20_000, seed)
    m = BetaMixture().fit(x)
    (a0, b0), (a1, b1), w0 = case
    assert m.converged_
    np.testing.assert_allclose(m.weights_, [w0, 1 - w0], atol=0.03)
    np.testing.assert_allclose(m.means_, [a0 / (a0 + b0), a1 / (a1 + b1)], atol=0.02)
    np.testing.assert_allclose(m.alphas_, [a0, a1], rtol=0.2)
    np.testing.assert_allclose(m.betas_, [b0, b1], rtol=0.2)
    assert m.separated_
    assert m.weights_.sum() == pytest.approx(1.0)
    assert np.all(np.diff(m.means_) > 0)


def test_fixed_init_also_converges():
    x, _ = sample(CASES[0], 20_000, 3)
    m = BetaMixture(init="fixed", max_iter=500).fit(x)
    np.testing.assert_allclose(m.weights_, [0.3, 0.7], atol=0.05)


def test_score_samples_matches_scipy():
    x, _ = sample(CASES[0], 5_000, 0)
    m = BetaMixture().fit(x)
    grid = np.linspace(0.01, 0.99, 99)
    pdf = sum(w * stats.beta(a, b).pdf(grid) for w, a, b in zip(m.weights_, m.alphas_, m.betas_, strict=True))
    np.testing.assert_allclose(m.score_samples(grid), np.log(pdf), rtol=1e-10, atol=1e-10)
    # lower_bound_ is the mean log-likelihood of the (clamped) data
    assert m.lower_bound_ == pytest.approx(m.score_samples(x).mean(), abs=1e-9)


def test_posteriors_are_probabilities():
    x, _ = sample(CASES[1], 5_000, 0)
    m = BetaMixture().fit(x)
    r = m.predict_proba(x)
    assert r.shape == (5_000, 2)
    assert np.all((r >= 0) & (r <= 1))
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)
    w = m.clean_probability(x)
    assert np.all((w >= 0) & (w <= 1))


@pytest.mark.parametrize("flip", [False, True])
def test_clean_component_found_by_mean_whatever_the_orientation(flip):
    # the 30% low-mean component plays the noisy samples, the 70% high-mean one the clean;
    # flipping x -> 1 - x moves the clean samples to the low side (like a loss signal)
    x, noisy = sample(CASES[0], 10_000, 0)
    side = "high"
    if flip:
        x, side = 1 - x, "low"
    m = BetaMixture(clean_side=side).fit(x)
    assert m.clean_component_ == (0 if flip else 1)
    assert m.weights_[m.clean_component_] == pytest.approx(0.7, abs=0.03)
    w = m.clean_probability(x)
    assert w[~noisy].mean() > 0.9
    assert w[noisy].mean() < 0.1
    # the wrong orientation gives the opposite answer
    wrong = BetaMixture(clean_side="low" if side == "high" else "high").fit(x).clean_probability(x)
    assert wrong[~noisy].mean() < 0.1


def test_numpy_and_torch_agree():
    x, _ = sample(CASES[2], 20_000, 5)
    m_np = BetaMixture().fit(x)
    xt = torch.from_numpy(x).float()
    m_t = BetaMixture().fit(xt)
    np.testing.assert_allclose(m_t.alphas_, m_np.alphas_, rtol=1e-4)
    np.testing.assert_allclose(m_t.betas_, m_np.betas_, rtol=1e-4)
    np.testing.assert_allclose(m_t.weights_, m_np.weights_, atol=1e-5)
    w_t = m_t.clean_probability(xt)
    assert isinstance(w_t, torch.Tensor) and w_t.dtype == torch.float32
    np.testing.assert_allclose(w_t.numpy(), m_np.clean_probability(x.astype(np.float32)), atol=1e-4)
    r_t = m_t.predict_proba(xt)
    assert isinstance(r_t, torch.Tensor) and r_t.shape == (20_000, 2)
    s_t = m_t.score_samples(torch.from_numpy(x))
    np.testing.assert_allclose(s_t.numpy(), m_t.score_samples(x), rtol=1e-10)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([0.1, np.nan, 0.3], r"x\[1\] = nan is not finite"),
        ([0.1, 0.2, np.inf], r"x\[2\] = inf is not finite"),
        ([], "empty"),
        ([0.2, 1.5, 0.3], r"x\[1\] = 1.5 is outside \[0, 1\]"),
        ([-0.1, 0.5], r"x\[0\] = -0.1 is outside"),
        ([0.4], "at least 2"),
        (np.ones((3, 2)) * 0.5, "1-d"),
    ],
)
def test_bad_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        BetaMixture().fit(np.asarray(bad, dtype=float))


def test_bad_tensor_input_raises():
    with pytest.raises(ValueError, match=r"x\[1\] = nan"):
        BetaMixture().fit(torch.tensor([0.1, float("nan"), 0.3]))


def test_bad_parameters_and_unfitted():
    with pytest.raises(ValueError, match="clean_side"):
        BetaMixture(clean_side="up").fit([0.1, 0.9])
    with pytest.raises(ValueError, match="init"):
        BetaMixture(init="kmeans").fit([0.1, 0.9])
    with pytest.raises(ValueError, match="not fitted"):
        BetaMixture().predict_proba([0.5])


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_data_does_not_crash(value):
    x = np.full(1000, value)
    with pytest.warns(MixtureNotSeparatedWarning):
        m = BetaMixture().fit(x)
    assert not m.separated_
    assert np.all(np.isfinite(m.alphas_)) and np.all(m.alphas_ > 0)
    np.testing.assert_array_equal(m.clean_probability(x), np.ones(1000))


def test_unimodal_data_fallback():
    x = stats.beta(5, 5).rvs(5000, random_state=np.random.default_rng(0))
    with pytest.warns(MixtureNotSeparatedWarning, match="unimodal"):
        m = BetaMixture().fit(x)
    assert not m.separated_
    np.testing.assert_array_equal(m.clean_probability(x), 1.0)
    r = m.predict_proba(x)  # the raw posterior is still available
    np.testing.assert_allclose(r.sum(1), 1.0)


def test_two_values_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixtureNotSeparatedWarning)
        m = BetaMixture().fit([0.2, 0.8])
    assert np.all(np.isfinite(m.weights_))


def _u_shaped_fit(side):
    # a broad noisy component and a tight clean one: the noisy density dominates again at
    # the clean extreme, so the raw posterior is not monotone there
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.beta(1.2, 1.2, 3000), rng.beta(30, 8, 7000)])
    if side == "low":
        x = 1 - x
    return x, BetaMixture(clean_side=side, monotone=True).fit(x)


@pytest.mark.parametrize("side", ["high", "low"])
def test_monotone_option_is_monotone(side):
    x, m = _u_shaped_fit(side)
    grid = np.linspace(0, 1, 20001)
    raw = m.predict_proba(grid)[:, m.clean_component_]
    w = m.clean_probability(grid)
    step = np.diff(w) if side == "high" else -np.diff(w)
    raw_step = np.diff(raw) if side == "high" else -np.diff(raw)
    oriented = raw if side == "high" else raw[::-1]
    # the raw posterior really is non-monotone here: it drops by > 0.05 from its peak
    assert (np.maximum.accumulate(oriented) - oriented).max() > 0.05
    assert raw_step.min() < 0
    assert step.min() >= 0  # exactly monotone
    # on data: sorting by x sorts w
    order = np.argsort(x if side == "high" else -x)
    assert np.all(np.diff(m.clean_probability(x)[order]) >= 0)
    # it only changes the tail: where the raw posterior is already monotone up to the
    # critical point, it is unchanged
    brute = np.maximum.accumulate(raw if side == "high" else raw[::-1])
    brute = brute if side == "high" else brute[::-1]
    np.testing.assert_allclose(w, brute, atol=1e-6)
    # and it is per sample: the value does not depend on what else is passed
    np.testing.assert_allclose(m.clean_probability(grid[:50]), w[:50])


def test_monotone_false_gives_raw_posterior():
    x, m = _u_shaped_fit("high")
    m.monotone = False
    np.testing.assert_allclose(m.clean_probability(x), m.predict_proba(x)[:, 1])


def test_monotone_torch_matches_numpy():
    x, m = _u_shaped_fit("high")
    w_t = m.clean_probability(torch.from_numpy(x))
    np.testing.assert_allclose(w_t.numpy(), m.clean_probability(x), rtol=1e-12)


def test_torch_path_makes_no_host_copy(monkeypatch):
    # the torch path may read scalars (.item(), .tolist() of a few sums) but never copies an
    # array to the host: .cpu() and .numpy() are forbidden during fit and inference
    x = torch.from_numpy(sample(CASES[0], 100_000, 0)[0])

    def forbidden(*args, **kwargs):
        raise AssertionError("host copy on the torch path")

    monkeypatch.setattr(torch.Tensor, "cpu", forbidden)
    monkeypatch.setattr(torch.Tensor, "numpy", forbidden)
    m = BetaMixture().fit(x)
    assert m.n_iter_subsample_ > 0  # the warm start ran on the tensor too
    w = m.clean_probability(x)
    r = m.predict_proba(x)
    s = m.score_samples(x)
    assert isinstance(w, torch.Tensor) and isinstance(r, torch.Tensor) and isinstance(s, torch.Tensor)


@pytest.mark.parametrize("x", [np.array(["0.2", "0.8", "0.5"]), np.array([True, False, True]),
                               np.array([0.2 + 0j, 0.8 + 0j, 0.5 + 0j]),
                               np.array([0.2, None, 0.5], dtype=object)])
def test_fit_rejects_values_that_are_not_real_numbers(x: np.ndarray) -> None:
    with pytest.raises(TypeError, match="x must hold real numbers, got dtype"):
        BetaMixture().fit(x)


@pytest.mark.parametrize("name,value", [("tol", -1.0), ("tol", 0.0), ("tol", float("nan")),
                                        ("min_weight", 0.7), ("min_gain", -0.1),
                                        ("separation_margin", "0.1")])
def test_fit_rejects_bad_parameters(name: str, value: object) -> None:
    x = np.linspace(0.05, 0.95, 50)
    with pytest.raises(ValueError, match=f"{name} must be"):
        BetaMixture(**{name: value}).fit(x)


def test_log_likelihood_ratio_plus_prior_log_odds_is_the_posterior():
    x, _ = sample(CASES[0], 2000, 0)
    for monotone in (False, True):
        bmm = BetaMixture(monotone=monotone).fit(x)
        c = bmm.clean_component_
        prior = np.log(bmm.weights_[c] / bmm.weights_[1 - c])
        lr = bmm.log_likelihood_ratio(x)
        np.testing.assert_allclose(1 / (1 + np.exp(-(prior + lr))), bmm.posterior(x), atol=1e-10)
        if monotone:  # any prior keeps it monotone: lr itself is monotone in x
            order = np.argsort(x)
            assert np.all(np.diff(lr[order]) >= -1e-9)
    lr_t = bmm.log_likelihood_ratio(torch.from_numpy(x))
    assert isinstance(lr_t, torch.Tensor)
    np.testing.assert_allclose(lr_t.numpy(), lr, atol=1e-10)
