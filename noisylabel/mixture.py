"""Two-component Beta mixture fitted by EM (paper eq. 4-6; Arazo et al., ICML'19).

The model is ``p(x) = sum_k pi_k Beta(x; alpha_k, beta_k)`` on values in [0, 1] (a
per-sample signal such as the cosine similarity of ``noisylabel.signals``). The
posterior of the *clean* component, chosen by its mean (never by its index), is the
per-sample clean probability w.

Implementation notes
--------------------
* The data enter the log-density only through ``log x`` and ``log(1 - x)``; both are
  computed once. The Beta normalisers are scalars (``math.lgamma``), so an E-step is a
  few fused vector passes: the log-odds ``d = l_1 - l_0`` is affine in the two log
  arrays, ``r_1 = sigmoid(d)``, and the log-likelihood is ``l_0 + softplus(d)``.
* M-step: weighted method of moments from three weighted sums (``sum r``, ``sum r x``,
  ``sum r x^2``); the second component's sums are the totals minus the first's.
* A torch tensor is fitted with torch ops on its own device (float64; float32 on MPS);
  only the four per-iteration sums come back to the host as Python floats.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np

from noisylabel._backend import compute_dtype, is_tensor, sigmoid
from noisylabel._validation import check_unit_interval

__all__ = ["BetaMixture", "MixtureNotSeparatedWarning"]

_FIXED_INIT = ((1.0, 2.0), (2.0, 1.0))  # Arazo's BetaMixture1D start: alphas, betas
_INIT_SAMPLE = 65_536  # strided subsample used for the quantile initialisation
_MIN_RESP = 1e-10  # a component with less total responsibility than this keeps its params


class MixtureNotSeparatedWarning(UserWarning):
    """The fitted mixture failed the separation check (effectively one component)."""


class BetaMixture:
    """Two-component Beta mixture model fitted by EM, scikit-learn style.

    ``p(x) = pi_0 Beta(x; a_0, b_0) + pi_1 Beta(x; a_1, b_1)``, components sorted by mean
    ``a_k / (a_k + b_k)`` ascending after the fit.

    E-step (log space): ``log r_ik = log pi_k + log Beta(x_i; a_k, b_k) - log p(x_i)``,
    ``log Beta(x; a, b) = (a-1) log x + (b-1) log(1-x) - [lgamma(a) + lgamma(b) - lgamma(a+b)]``.

    M-step (weighted method of moments):
    ``m_k = sum_i r_ik x_i / sum_i r_ik``, ``v_k = sum_i r_ik (x_i - m_k)^2 / sum_i r_ik``,
    ``a_k = m_k (m_k (1-m_k) / v_k - 1)``, ``b_k = a_k (1-m_k) / m_k``, ``pi_k = mean_i r_ik``.
    ``v_k`` is kept inside ``[1e-6 m_k(1-m_k), (1 - 1e-6) m_k(1-m_k)]`` (so ``a_k, b_k > 0``,
    fixing Arazo's reference, which can return non-positive parameters when
    ``v_k >= m_k (1-m_k)``), then ``a_k, b_k`` are floored at ``min_param``.

    Iterates until the mean log-likelihood changes by less than ``tol`` or ``max_iter``
    M-steps have run.

    Parameters
    ----------
    max_iter : int
        Maximum number of EM iterations (M-steps).
    tol : float
        Convergence threshold on the change of the mean log-likelihood per sample.
    eps : float
        Values are clamped to ``[eps, 1 - eps]`` before fitting and scoring.
    min_param : float
        Floor on every alpha and beta.
    init : {"quantile", "fixed"}
        "quantile" (default): on a strided subsample of at most 65,536 values, split
        the data at their median, move the split to the midpoint of the two parts' means
        until it is stable (1-d two-means started from the median), and start each
        component from the moments of its part, weighted by its share. When N > 65,536, EM
        is first run to convergence on that subsample and then continued on all the data
        (a warm start; it cuts the full-data iterations to a few). "fixed": Arazo's start,
        alphas (1, 2), betas (2, 1), weights (0.5, 0.5), on all the data.
    clean_side : {"high", "low"}
        Where clean samples lie: "high" makes the higher-mean component the clean one
        (cosine similarity), "low" the lower-mean one (normalised loss).
    monotone : bool
        Make [`clean_probability`][noisylabel.mixture.BetaMixture.clean_probability] monotone in
        x (Arazo's fix, [Monotone posterior][monotone-posterior]): w never decreases as x moves
        toward ``clean_side``. Computed in closed form (see
        [`clean_probability`][noisylabel.mixture.BetaMixture.clean_probability]), exactly and
        independently of the other values passed.
    min_weight : float
        Separation check: both mixing weights must be at least this.
    separation_margin : float
        Separation check: the two component means must differ by at least this.
    min_gain : float
        Separation check: the mixture's mean log-likelihood per sample must exceed that of a
        single Beta (fitted by moments) by at least this many nats. A two-component fit
        to unimodal data splits it into two overlapping components whose means can differ
        by more than ``separation_margin`` (uniform data: ~0.37) but gain nothing
        (|gain| < 1e-3 on 5,000 samples), while bimodal noisy-label signals gain > 0.1.

    Attributes
    ----------
    alphas_, betas_, weights_, means_ : numpy.ndarray of float64, shape (2,)
        Fitted parameters, components sorted by mean ascending.
    clean_component_ : int
        Index of the clean component (1 for ``clean_side="high"``, 0 for "low").
    converged_ : bool
        Whether the tolerance was reached before ``max_iter``.
    n_iter_ : int
        Number of EM iterations run.
    lower_bound_ : float
        Mean log-likelihood per sample of the clamped data under the fitted model.
    ll_gain_ : float
        ``lower_bound_`` minus the mean log-likelihood of one Beta fitted by moments.
    n_iter_subsample_ : int
        EM iterations of the warm start on the strided subsample (0 when N <= 65,536).
    separated_ : bool
        Both weights ``>= min_weight``, means differing by ``>= separation_margin`` and
        ``ll_gain_ >= min_gain``.
        When False a [`MixtureNotSeparatedWarning`][noisylabel.mixture.MixtureNotSeparatedWarning]
        is emitted by [`fit`][noisylabel.mixture.BetaMixture.fit] and
        [`clean_probability`][noisylabel.mixture.BetaMixture.clean_probability] returns all ones
        (see there).

    Examples
    --------
    A 30/70 mixture of a low (noisy) and a high (clean) population:

    >>> import numpy as np
    >>> from noisylabel import BetaMixture
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.beta(2, 6, 300), rng.beta(8, 2, 700)])
    >>> bmm = BetaMixture().fit(x)
    >>> print(bmm.weights_.round(2), bmm.means_.round(2), bmm.separated_)
    [0.3 0.7] [0.26 0.81] True
    >>> print(bmm.clean_probability(np.array([0.1, 0.5, 0.9])).round(2))
    [0.   0.45 1.  ]
    """

    def __init__(
        self,
        max_iter: int = 100,
        tol: float = 1e-5,
        eps: float = 1e-4,
        min_param: float = 1e-2,
        init: Literal["quantile", "fixed"] = "quantile",
        clean_side: Literal["high", "low"] = "high",
        monotone: bool = True,
        min_weight: float = 0.05,
        separation_margin: float = 0.1,
        min_gain: float = 0.01,
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.eps = eps
        self.min_param = min_param
        self.init = init
        self.clean_side = clean_side
        self.monotone = monotone
        self.min_weight = min_weight
        self.separation_margin = separation_margin
        self.min_gain = min_gain

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if self.init not in ("quantile", "fixed"):
            raise ValueError(f"init must be 'quantile' or 'fixed', got {self.init!r}")
        if self.clean_side not in ("high", "low"):
            raise ValueError(f"clean_side must be 'high' or 'low', got {self.clean_side!r}")
        if not 0 < self.eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {self.eps}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.min_param <= 0:
            raise ValueError(f"min_param must be > 0, got {self.min_param}")
        for name in ("tol", "min_weight", "separation_margin", "min_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0 or (name == "tol" and value == 0):
                raise ValueError(f"{name} must be a finite number "
                                 f"{'> 0' if name == 'tol' else '>= 0'}, got {value!r}")
        if self.min_weight >= 0.5:
            raise ValueError(f"min_weight must be < 0.5, got {self.min_weight!r}")

    def _prepare(self, x: Any) -> Any:
        """Validate and clamp to [eps, 1-eps]; float64 numpy or a float tensor on x's device."""
        x = check_unit_interval(x, "x")
        if is_tensor(x):
            return x.detach().to(compute_dtype(x)).clamp(self.eps, 1 - self.eps)
        return np.clip(x, self.eps, 1 - self.eps)

    @staticmethod
    def _logs(x: Any) -> tuple[Any, Any]:
        if is_tensor(x):
            return x.log(), (-x).log1p()
        return np.log(x), np.log1p(-x)

    def _moments_to_params(self, m: float, v: float) -> tuple[float, float]:
        m = min(max(m, self.eps), 1 - self.eps)
        cap = m * (1 - m)
        v = min(max(v, 1e-6 * cap), (1 - 1e-6) * cap)
        a = m * (cap / v - 1)
        b = a * (1 - m) / m
        return max(a, self.min_param), max(b, self.min_param)

    def _subsample(self, x: Any) -> Any:
        """Strided (deterministic) subsample of at most ``_INIT_SAMPLE`` values."""
        step = -(-x.shape[0] // _INIT_SAMPLE)
        return x[::step]

    def _init_params(self, x_sub: Any) -> tuple[list[float], list[float], list[float]]:
        """Starting parameters from a small subsample (numpy, or a tensor on its device)."""
        if self.init == "fixed":
            return list(_FIXED_INIT[0]), list(_FIXED_INIT[1]), [0.5, 0.5]
        if is_tensor(x_sub):
            import torch

            sub = torch.sort(x_sub).values
            cum = torch.cat([sub.new_zeros(1), torch.cumsum(sub, 0)])
        else:
            sub = np.sort(x_sub)
            cum = np.concatenate([[0.0], np.cumsum(sub)])
        n = sub.shape[0]
        total = float(cum[n])
        # quantile start: split at the median, then move the split to the midpoint of the two
        # parts' means until it is stable (1-d two-means on sorted data; scalar syncs only)
        split = n // 2
        for _ in range(100):
            if split <= 0 or split >= n:
                split = n // 2
                break
            lo_sum = float(cum[split])
            mid = 0.5 * (lo_sum / split + (total - lo_sum) / (n - split))
            if is_tensor(sub):
                new = int(torch.searchsorted(sub, sub.new_tensor([mid]), right=True).item())
            else:
                new = int(np.searchsorted(sub, mid, side="right"))
            if new == split:
                break
            split = new
        parts = (sub[:split], sub[split:]) if 0 < split < n else (sub, sub)
        alphas, betas = [], []
        for part in parts:
            mean = float(part.mean())
            var = float(((part - mean) ** 2).mean())
            a, b = self._moments_to_params(mean, var)
            alphas.append(a)
            betas.append(b)
        w0 = min(max(split / n, 0.05), 0.95) if 0 < split < n else 0.5
        return alphas, betas, [w0, 1 - w0]

    @staticmethod
    def _lbeta(a: float, b: float) -> float:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    def _log_odds_coef(
        self, alphas: Any, betas: Any, weights: Any, num: int, den: int
    ) -> tuple[float, float, float]:
        """(c, A, B) with log[pi_num p_num(x)] - log[pi_den p_den(x)] = c + A log x + B log(1-x)."""
        c = (
            math.log(max(weights[num], 1e-300))
            - math.log(max(weights[den], 1e-300))
            - self._lbeta(alphas[num], betas[num])
            + self._lbeta(alphas[den], betas[den])
        )
        return c, alphas[num] - alphas[den], betas[num] - betas[den]

    def _em(
        self, x: Any, params: tuple[list[float], list[float], list[float]]
    ) -> tuple[tuple[list[float], list[float], list[float]], float, int, bool, float]:
        """Run EM on clamped data ``x`` from ``params``; return (params, mean ll, n_iter,
        converged, mean ll of one Beta fitted by moments)."""
        n = x.shape[0]
        torch_path = is_tensor(x)
        logx, log1mx = self._logs(x)
        x2 = x * x
        sum_x, sum_x2, sum_logx, sum_log1mx = (float(v.sum()) for v in (x, x2, logx, log1mx))
        mean_logx, mean_log1mx = sum_logx / n, sum_log1mx / n
        if not torch_path:  # work buffers reused by every numpy E-step
            d_buf = np.empty_like(x)
            sp_buf = np.empty_like(x)

        def e_step(alphas: list[float], betas: list[float], weights: list[float]):
            """Return (mean log-lik, sum r1, sum r1 x, sum r1 x^2) for the given parameters."""
            c, a_coef, b_coef = self._log_odds_coef(alphas, betas, weights, 1, 0)
            # mean_i l_0(x_i), l_0 = log pi_0 + log Beta(x; a_0, b_0): affine in the log means
            mean_l0 = (
                math.log(max(weights[0], 1e-300))
                - self._lbeta(alphas[0], betas[0])
                + (alphas[0] - 1) * mean_logx
                + (betas[0] - 1) * mean_log1mx
            )
            if torch_path:
                import torch

                d = logx * a_coef
                d.add_(log1mx, alpha=b_coef).add_(c)
                sum_sp = torch.nn.functional.softplus(d, threshold=30).sum()
                r = torch.sigmoid_(d)
                stats = torch.stack([sum_sp, r.sum(), torch.dot(r, x), torch.dot(r, x2)]).tolist()
            else:
                np.multiply(logx, a_coef, out=d_buf)
                np.multiply(log1mx, b_coef, out=sp_buf)
                np.add(d_buf, sp_buf, out=d_buf)
                np.add(d_buf, c, out=d_buf)
                np.logaddexp(0.0, d_buf, out=sp_buf)  # softplus(d)
                sum_sp = float(sp_buf.sum())
                np.subtract(d_buf, sp_buf, out=d_buf)
                np.exp(d_buf, out=d_buf)  # r1 = exp(d - softplus(d)) = sigmoid(d)
                stats = [sum_sp, float(d_buf.sum()), float(d_buf @ x), float(d_buf @ x2)]
            sum_sp, s0, s1, s2 = stats
            return mean_l0 + sum_sp / n, s0, s1, s2

        def m_step(alphas, betas, s0, s1, s2):
            comp = ((n - s0, sum_x - s1, sum_x2 - s2), (s0, s1, s2))
            new_a, new_b, new_w = list(alphas), list(betas), [0.0, 0.0]
            for k, (r, rx, rx2) in enumerate(comp):
                new_w[k] = min(max(r / n, 0.0), 1.0)
                if r > _MIN_RESP * n:
                    m = rx / r
                    v = max(rx2 / r - m * m, 0.0)
                    new_a[k], new_b[k] = self._moments_to_params(m, v)
            return new_a, new_b, new_w

        alphas, betas, weights = params
        ll, s0, s1, s2 = e_step(alphas, betas, weights)
        converged = False
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 (n_iter is read after the loop)
            alphas, betas, weights = m_step(alphas, betas, s0, s1, s2)
            new_ll, s0, s1, s2 = e_step(alphas, betas, weights)
            change = new_ll - ll
            ll = new_ll
            if abs(change) < self.tol:
                converged = True
                break
        # mean log-likelihood of one Beta fitted by moments, for the separation check
        mean_x = sum_x / n
        a1, b1 = self._moments_to_params(mean_x, max(sum_x2 / n - mean_x * mean_x, 0.0))
        ll_one = (a1 - 1) * mean_logx + (b1 - 1) * mean_log1mx - self._lbeta(a1, b1)
        return (alphas, betas, weights), ll, n_iter, converged, ll_one

    # ------------------------------------------------------------------ fitting
    def fit(self, x: Any) -> BetaMixture:
        """Fit the mixture to ``x`` by EM.

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1] (clamped to ``[eps, 1-eps]``); N >= 2. A tensor is fitted on
            its own device without a host copy of the data.

        Returns
        -------
        BetaMixture
            self, fitted.

        Raises
        ------
        ValueError
            Empty input, a single value, NaN/inf, values outside [0, 1], bad parameters.
        """
        self._check_params()
        x = self._prepare(x)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"x has {n} value; fitting a two-component mixture needs at least 2")
        x_sub = self._subsample(x)  # <= 65,536 values, on x's device
        x_sub = x_sub.contiguous() if is_tensor(x_sub) else np.ascontiguousarray(x_sub)
        params = self._init_params(x_sub)
        n_iter_sub = 0
        if self.init == "quantile" and x_sub.shape[0] < n:
            # warm start: converge on the subsample first (cheap), then refine on all data
            params, _, n_iter_sub, _, _ = self._em(x_sub, params)
        (alphas, betas, weights), ll, n_iter, converged, ll_one = self._em(x, params)

        alphas_ = np.asarray(alphas, dtype=np.float64)
        betas_ = np.asarray(betas, dtype=np.float64)
        weights_ = np.asarray(weights, dtype=np.float64)
        means_ = alphas_ / (alphas_ + betas_)
        order = np.argsort(means_, kind="stable")
        self.alphas_ = alphas_[order]
        self.betas_ = betas_[order]
        self.weights_ = weights_[order]
        self.means_ = means_[order]
        self.clean_component_ = 1 if self.clean_side == "high" else 0
        self.converged_ = converged
        self.n_iter_ = n_iter
        self.lower_bound_ = float(ll)
        self.n_samples_ = int(n)
        self.n_iter_subsample_ = int(n_iter_sub)
        self.ll_gain_ = float(ll - ll_one)
        self.separated_ = bool(
            self.means_[1] - self.means_[0] >= self.separation_margin
            and self.weights_.min() >= self.min_weight
            and self.ll_gain_ >= self.min_gain
        )
        if not self.separated_:
            warnings.warn(
                "BetaMixture: the fit is not separated (means "
                f"{self.means_[0]:.3f} / {self.means_[1]:.3f}, weights "
                f"{self.weights_[0]:.3f} / {self.weights_[1]:.3f}, log-likelihood gain over one "
                f"Beta {self.ll_gain_:.4f}; need a mean gap >= {self.separation_margin}, "
                f"weights >= {self.min_weight} and a gain >= {self.min_gain}): the data look "
                "unimodal; clean_probability() returns ones",
                MixtureNotSeparatedWarning,
                stacklevel=2,
            )
        return self

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "alphas_"):
            raise ValueError("this BetaMixture is not fitted yet; call fit(x) first")

    def _component_logpdf(self, k: int, logx: Any, log1mx: Any) -> Any:
        a, b = float(self.alphas_[k]), float(self.betas_[k])
        return (a - 1) * logx + (b - 1) * log1mx - self._lbeta(a, b)

    def _log_odds(self, x: Any, num: int, den: int) -> Any:
        c, a_coef, b_coef = self._log_odds_coef(self.alphas_, self.betas_, self.weights_, num, den)
        logx, log1mx = self._logs(x)
        return c + a_coef * logx + b_coef * log1mx

    def score_samples(self, x: Any) -> Any:
        """Per-sample log density of the mixture, ``log sum_k pi_k Beta(x_i; a_k, b_k)``.

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1], clamped to ``[eps, 1-eps]`` first.

        Returns
        -------
        numpy.ndarray or torch.Tensor of shape (N,)
            Same array type and device as ``x``.
        """
        self._check_fitted()
        xc = self._prepare(x)
        logx, log1mx = self._logs(xc)
        terms = [
            math.log(max(float(self.weights_[k]), 1e-300)) + self._component_logpdf(k, logx, log1mx)
            for k in (0, 1)
        ]
        if is_tensor(xc):
            import torch

            return torch.logaddexp(*terms).to(x.dtype if x.dtype.is_floating_point else xc.dtype)
        return np.logaddexp(*terms)

    def predict_proba(self, x: Any) -> Any:
        """Posterior of each component, ``r_ik = pi_k p_k(x_i) / sum_j pi_j p_j(x_i)``.

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1], clamped to ``[eps, 1-eps]`` first.

        Returns
        -------
        numpy.ndarray or torch.Tensor of shape (N, 2)
            Columns in component order (mean ascending); rows sum to 1. Not made monotone.
        """
        self._check_fitted()
        xc = self._prepare(x)
        r1 = sigmoid(self._log_odds(xc, 1, 0))
        if is_tensor(xc):
            import torch

            out = torch.stack([1 - r1, r1], dim=1)
            return out.to(x.dtype) if x.dtype.is_floating_point else out
        return np.stack([1 - r1, r1], axis=1)

    def _monotone_clip(self) -> tuple[float, float]:
        """Interval [lo, hi] to clamp x into so that the clean log-odds become monotone.

        The clean-vs-noisy log-odds ``d(x) = c + A log x + B log(1-x)`` has
        ``d'(x) = A/x - B/(1-x)``: at most one critical point, ``x* = A / (A + B)``, a maximum
        when A, B > 0 and a minimum when A, B < 0. Only the part of d beyond x* that runs
        against ``clean_side`` is replaced by ``d(x*)``.
        """
        lo, hi = self.eps, 1 - self.eps
        clean, noisy = self.clean_component_, 1 - self.clean_component_
        _, a_coef, b_coef = self._log_odds_coef(self.alphas_, self.betas_, self.weights_, clean, noisy)
        if a_coef * b_coef <= 0:  # monotone already (A, B of opposite sign or one is 0)
            return lo, hi
        x_star = min(max(a_coef / (a_coef + b_coef), lo), hi)
        is_max = a_coef > 0
        if self.clean_side == "high":
            # maximum: d falls after x* (toward the clean end) -> hold d(x*) above x*;
            # minimum: d falls before x* (toward the noisy end) -> hold d(x*) below x*.
            return (lo, x_star) if is_max else (x_star, hi)
        return (x_star, hi) if is_max else (lo, x_star)

    def clean_probability(self, x: Any) -> Any:
        """Posterior probability of the clean component, ``w_i = p(clean | x_i)``.

        The clean component is the higher-mean one for ``clean_side="high"`` and the
        lower-mean one for "low" (``clean_component_``).

        With ``monotone=True`` ([Monotone posterior][monotone-posterior]), w is made
        monotone: non-decreasing in x for "high", non-increasing for "low". The clean log-odds
        ``d(x) = log[pi_c p_c(x)] - log[pi_n p_n(x)] = c + A log x + B log(1-x)`` has at most
        one critical point ``x* = A/(A+B)``; where d runs against the clean side beyond x*
        (the tail where the other component's density dominates again), it is replaced by
        ``d(x*)``: ``w(x) = sigmoid(d(clip(x, lo, hi)))`` with one of lo, hi equal to x*. This
        equals a running maximum of the posterior from the noisy end when d has an interior
        maximum, and a running minimum from the clean end (Arazo's lookup-table fix) when d
        has an interior minimum; it is exact (no grid) and the value for one sample does not
        depend on the other values passed.

        Unseparated fit (``separated_`` False, e.g. unimodal or constant data): returns an
        array of ones (every sample treated as clean, i.e. no reweighting), of the same type,
        dtype and device as the posterior would have. The raw posteriors remain available
        from [`predict_proba`][noisylabel.mixture.BetaMixture.predict_proba].

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1], clamped to ``[eps, 1-eps]`` first.

        Returns
        -------
        numpy.ndarray or torch.Tensor of shape (N,)
            w in [0, 1], same array type and device as ``x``.
        """
        self._check_fitted()
        if not self.separated_:
            xc = self._prepare(x)
            ones = xc * 0 + 1
            return ones.to(x.dtype) if is_tensor(x) and x.dtype.is_floating_point else ones
        return self.posterior(x)

    def _posterior_input(self, x: Any) -> tuple[Any, Any]:
        """``x`` prepared for the posterior (clamped to ``[eps, 1-eps]``, then to the monotone
        clip when ``monotone=True``) and the float dtype to return (None: keep the computed)."""
        self._check_fitted()
        xc = self._prepare(x)
        out_dtype = x.dtype if is_tensor(x) and x.dtype.is_floating_point else None
        if self.monotone:
            lo, hi = self._monotone_clip()
            xc = xc.clamp(lo, hi) if is_tensor(xc) else np.clip(xc, lo, hi)
        return xc, out_dtype

    def posterior(self, x: Any) -> Any:
        """Clean-component posterior as ``clean_probability``, without the fallback.

        The same value (monotone when ``monotone=True``) whether or not the fit is
        separated; for the paper-exact setting, which uses every fit.

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1], clamped to ``[eps, 1-eps]`` first.

        Returns
        -------
        numpy.ndarray or torch.Tensor of shape (N,)
            Same array type and device as ``x``.
        """
        xc, out_dtype = self._posterior_input(x)
        clean = self.clean_component_
        w = sigmoid(self._log_odds(xc, clean, 1 - clean))
        return w.to(out_dtype) if out_dtype is not None else w

    def log_likelihood_ratio(self, x: Any) -> Any:
        """Clean-versus-noisy log density ratio, without the mixing weights.

        ``lr(x) = log Beta(x; a_c, b_c) - log Beta(x; a_n, b_n)`` (c the clean component, n the
        other), so that ``posterior(x) = sigmoid(log(pi_c / pi_n) + lr(x))``. With
        ``monotone=True`` x is first clamped as in
        [`posterior`][noisylabel.mixture.BetaMixture.posterior] (the clamp does not depend on
        the weights), so that any prior ``pi`` put in place of ``pi_c`` gives a monotone
        posterior; [`detect`][noisylabel.pipeline.detect] uses it to swap the global prior for
        one per (given label, runner-up class).

        Parameters
        ----------
        x : array-like or torch.Tensor of shape (N,)
            Values in [0, 1], clamped to ``[eps, 1-eps]`` first.

        Returns
        -------
        numpy.ndarray or torch.Tensor of shape (N,)
            Same array type and device as ``x``.
        """
        xc, out_dtype = self._posterior_input(x)
        clean = self.clean_component_
        pi_c, pi_n = float(self.weights_[clean]), float(self.weights_[1 - clean])
        lr = self._log_odds(xc, clean, 1 - clean) - (
            math.log(max(pi_c, 1e-300)) - math.log(max(pi_n, 1e-300))
        )
        return lr.to(out_dtype) if out_dtype is not None else lr

    def __repr__(self) -> str:
        return (
            f"BetaMixture(max_iter={self.max_iter}, tol={self.tol}, eps={self.eps}, "
            f"min_param={self.min_param}, init={self.init!r}, clean_side={self.clean_side!r}, "
            f"monotone={self.monotone}, min_weight={self.min_weight}, "
            f"separation_margin={self.separation_margin}, min_gain={self.min_gain})"
        )
