"""Loss-weight schedule (paper eq. 12-13; docs/method.md)."""

from __future__ import annotations

import math

__all__ = ["loss_weights"]


def loss_weights(epoch: int | float, beta: float = 3.0) -> tuple[float, float]:
    """Weights (mu1, mu2) of the joint loss ``L = mu1 L1 + mu2 L_kld`` at ``epoch``.

    ``mu1(e) = 1`` for ``e <= beta``, else ``exp(-(1 - beta/e)^2)``;
    ``mu2(e) = exp(-(1 - e/beta)^2)`` for ``e <= beta``, else 1.

    Both are continuous at ``e = beta`` (value 1); mu1 decays toward ``exp(-1)`` and mu2
    ramps up from ``exp(-(1 - 1/beta)^2)`` at e = 1. The paper's text reads ``beta/e`` in
    mu2's ramp; that is a transcription error (Ada-DF and SLM-AEA use ``e/beta``).

    Parameters
    ----------
    epoch : int or float
        Epoch e, counted from 1.
    beta : float
        Ramp length (> 0; the paper uses 3).

    Returns
    -------
    tuple of float
        (mu1, mu2).

    Examples
    --------
    >>> from noisylabel import loss_weights
    >>> for epoch in (1, 2, 3, 6, 20):
    ...     mu1, mu2 = loss_weights(epoch, beta=3.0)
    ...     print(epoch, round(mu1, 3), round(mu2, 3))
    1 1.0 0.641
    2 1.0 0.895
    3 1.0 1.0
    6 0.779 1.0
    20 0.486 1.0
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if epoch < 1:
        raise ValueError(f"epoch is counted from 1, got {epoch}")
    if epoch <= beta:
        return 1.0, math.exp(-((1.0 - epoch / beta) ** 2))
    return math.exp(-((1.0 - beta / epoch) ** 2)), 1.0
