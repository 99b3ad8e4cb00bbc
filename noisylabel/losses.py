"""Losses of the joint objective (paper eq. 10-11; docs/method.md)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["forward_cross_entropy", "soft_target_kl", "weighted_cross_entropy"]


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    normalize: Literal["weights", "batch"] = "weights",
    validate: bool = True,
) -> torch.Tensor:
    """Sample-weighted cross-entropy.

    ``CE_i = -log softmax(z_i)[y_i]``;
    ``normalize="batch"`` (paper-exact eq. 10): ``L1 = (1/B) sum_i w_i CE_i``;
    ``normalize="weights"`` ([a safeguard][safeguards]):
    ``L1 = sum_i w_i CE_i / sum_i w_i`` (0 when every w is 0), which keeps the gradient scale
    when many samples are down-weighted.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, C)
    labels : torch.Tensor of int64, shape (B,)
    weights : torch.Tensor of shape (B,)
        w_i >= 0 (treated as constants: not differentiated).
    normalize : {"weights", "batch"}
    validate : bool
        Check that every weight is finite and >= 0 (one device-to-host sync; a training loop
        that checks its loss may pass False).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    The second sample (a confident mistake) has weight 0:

    >>> import torch
    >>> from noisylabel import weighted_cross_entropy
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> labels = torch.tensor([0, 0])
    >>> w = torch.tensor([1.0, 0.0])
    >>> round(weighted_cross_entropy(logits, labels, w).item(), 4)  # sum w CE / sum w
    0.1269
    >>> round(weighted_cross_entropy(logits, labels, w, normalize="batch").item(), 4)  # / B
    0.0635
    """
    if normalize not in ("weights", "batch"):
        raise ValueError(f"normalize must be 'weights' or 'batch', got {normalize!r}")
    ce = F.cross_entropy(logits, labels, reduction="none")
    w = weights.detach().to(ce.dtype)
    if w.shape != ce.shape:
        raise ValueError(f"weights must have shape {tuple(ce.shape)}, got {tuple(w.shape)}")
    if validate:
        bad = ~torch.isfinite(w) | (w < 0)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"weights[{i}] = {float(w[i])}: weights must be finite and >= 0")
    if normalize == "batch":
        return (w * ce).mean()
    return (w * ce).sum() / w.sum().clamp_min(torch.finfo(ce.dtype).tiny)


def soft_target_kl(logits: torch.Tensor, targets: torch.Tensor, validate: bool = True,
                   atol: float = 1e-3) -> torch.Tensor:
    """KL divergence from soft targets to the model's prediction, averaged over the batch.

    ``L_kld = (1/B) sum_i KL(q_i || softmax(z_i)) = (1/B) sum_i sum_k q_ik (log q_ik -
    log softmax(z_i)_k)`` with ``0 log 0 = 0``. Its gradient in the logits is
    ``(softmax(z_i) - q_i) / B``: cross-entropy to the soft target q (the targets are
    detached).

    Parameters
    ----------
    logits : torch.Tensor of shape (B, C)
        Target-branch logits z.
    targets : torch.Tensor of shape (B, C)
        q, rows sum to 1.
    validate : bool
        Check that the targets are finite, >= 0 and that each row sums to 1 within ``atol``
        (one device-to-host sync; a training loop that checks its loss may pass False).
    atol : float
        Tolerance of the row-sum check.

    Returns
    -------
    torch.Tensor
        Scalar loss (>= 0).

    Examples
    --------
    >>> import torch
    >>> from noisylabel import soft_target_kl
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    >>> round(soft_target_kl(logits, targets).item(), 4)
    1.2804
    >>> abs(soft_target_kl(logits, logits.softmax(dim=1)).item()) < 1e-6  # q = prediction
    True
    """
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have shape {tuple(logits.shape)}, got {tuple(targets.shape)}")
    q = targets.detach().to(logits.dtype)
    if validate:
        _check_rows_are_distributions("targets", q, atol)
    log_p = F.log_softmax(logits, dim=1)
    return (torch.xlogy(q, q) - q * log_p).sum(dim=1).mean()


def forward_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, noise_matrix: torch.Tensor,
                          validate: bool = True, atol: float = 1e-3) -> torch.Tensor:
    """Cross-entropy of the given labels under the prediction passed through the noise matrix
    (forward correction, Patrini et al., CVPR 2017).

    ``L = -(1/B) sum_i log (softmax(z_i) T)[y_i]`` with ``T[a, b] = P(given b | true a)``:
    the network predicts the true class, ``softmax(z_i) T`` is its prediction of the given
    label, and the loss is the ordinary cross-entropy of that. Every sample keeps its weight (no
    label is dropped or relabelled); with the true ``T`` the minimiser of the expected loss is
    the clean posterior. With ``T = I`` it is plain cross-entropy.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, C)
    labels : torch.Tensor of int64, shape (B,)
        Given (noisy) labels.
    noise_matrix : torch.Tensor of shape (C, C)
        ``T``, rows sum to 1 (for example ``estimate_noise_matrix(...).matrix``); a constant
        (not differentiated).
    validate : bool
        Check that ``T`` is finite, >= 0 and row-stochastic within ``atol``.
    atol : float
        Tolerance of the row-sum check.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    >>> import torch
    >>> from noisylabel import forward_cross_entropy
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> labels = torch.tensor([0, 0])
    >>> t = torch.tensor([[0.8, 0.2], [0.3, 0.7]])  # 30% of true 1s are labelled 0
    >>> round(forward_cross_entropy(logits, labels, t).item(), 4)
    0.6617
    >>> ce = torch.nn.functional.cross_entropy(logits, labels)
    >>> bool(torch.isclose(forward_cross_entropy(logits, labels, torch.eye(2)), ce))
    True
    """
    c = logits.shape[1]
    t = noise_matrix.detach().to(logits.dtype)
    if t.shape != (c, c):
        raise ValueError(f"noise_matrix must have shape {(c, c)}, got {tuple(t.shape)}")
    if validate:
        _check_rows_are_distributions("noise_matrix", t, atol)
    noisy = logits.softmax(dim=1) @ t
    picked = noisy.gather(1, labels.long().unsqueeze(1)).squeeze(1)
    return -picked.clamp_min(torch.finfo(logits.dtype).tiny).log().mean()


def _check_rows_are_distributions(name: str, x: torch.Tensor, atol: float) -> None:
    """Raise naming the first row of ``x`` that is not finite, >= 0 and summing to 1."""
    bad = (~torch.isfinite(x) | (x < 0)).any(dim=1) | ((x.sum(dim=1) - 1).abs() > atol)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}] = {x[i].tolist()}: each row must be a probability "
                         f"distribution (finite, >= 0, summing to 1 within {atol})")
