"""Per-epoch noise model for any PyTorch training loop (paper eq. 3-9 and the safeguards of
docs/method.md).

Usage, once per epoch::

    nm = NoiseModel(num_samples=len(train_set), num_classes=C, warmup=3, device="cuda")
    for epoch in range(1, epochs + 1):
        for idx, x, y in loader:                      # idx: dataset indices of the batch
            p = aux_logits.softmax(1).detach()
            q = nm.targets(idx, y, p)                 # w D[y] + (1 - w) p
            w = nm.weights(idx)
            ...
            nm.record(idx, p, y)                      # or from a separate eval pass
        report = nm.fit(epoch)                        # new w and D for epoch + 1

Every buffer lives on ``device``; ``record`` scatters by dataset index (any order, no
Python loop over samples), ``fit`` fits a [`BetaMixture`][noisylabel.mixture.BetaMixture] on
the recorded signal and mines class distributions with
[`ClassDistributionMiner`][noisylabel.distribution.ClassDistributionMiner]. When
``torch.distributed`` is initialised, ``fit`` first all-reduces the recorded buffers, so every
rank fits on the global data and holds the same w and D: each rank records only its own share
of the indices (an index recorded by several ranks, such as DistributedSampler's padding, is
averaged; one recorded by none keeps its w), and every rank calls ``fit`` (a collective) each
epoch.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist

from noisylabel.correction import correct_labels
from noisylabel.distribution import ClassDistributionMiner
from noisylabel.mixture import BetaMixture, MixtureNotSeparatedWarning
from noisylabel.pipeline import MIN_CLASS_SAMPLES, detect
from noisylabel.signals import Signal, get_signal

__all__ = ["FitReport", "NoiseModel"]


@dataclass
class FitReport:
    """What one ``NoiseModel.fit`` did, for logging (``as_dict()`` gives plain types).

    Attributes
    ----------
    epoch : int
        The epoch passed to ``fit``.
    accepted : bool
        Whether w was replaced by this fit's posterior.
    reason : str
        "accepted", "warmup" (epoch <= warmup), "not separated" (gate kept the last
        accepted w), or "ungated" (gate off: the fit is used whatever its separation).
    separated, converged : bool
        From the global mixture.
    n_iter : int
        EM iterations of the global mixture.
    means, weights : list of float
        Global mixture component means / weights (ascending means).
    alphas, betas : list of float
        Global mixture component Beta parameters (same order).
    ll_gain : float
        Mixture log-likelihood gain over one Beta (see ``BetaMixture.ll_gain_``).
    n_seen : int
        Samples recorded since the last fit (summed over ranks).
    mean_w, frac_noisy : float
        Mean of w and fraction of w < 0.5 over all samples after the fit.
    agreement : float
        Share of the recorded samples whose predicted class (argmax of the recorded
        prediction) is the given label: how much of the given labels the network fits.
    fit_clean_share : float
        Mean of this fit's w over the recorded samples: the share of them it calls clean.
        ``agreement`` well under it, epoch after epoch, says the network does not fit the
        labels the fit calls wrong: it is not memorising, and the correction has little to
        undo ([When the network does not memorise][no-memorisation]).
    last_accepted_epoch : int or None
        Epoch of the last accepted fit.
    classes_accepted : list of bool
        Per-class acceptance of the miner in this update.
    per_class_fallback : list of int
        With ``per_class``: classes that used the global fit.
    flagged_classes : list of int
        Classes with at least ``min_class_samples`` recorded samples whose every sample has
        w < 0.5 after the fit: there w tells the class apart from the others (a class the model
        cannot yet predict), not its right labels from its wrong ones, and the weighted loss
        drops the class ([When w flags whole classes][whole-classes]). Checked on the w in
        use after every fit, adopted or not; a warning says so when the set changes.
    """

    epoch: int
    accepted: bool
    reason: str
    separated: bool
    converged: bool
    n_iter: int
    means: list[float]
    weights: list[float]
    ll_gain: float
    n_seen: int
    mean_w: float
    frac_noisy: float
    last_accepted_epoch: int | None
    agreement: float
    fit_clean_share: float
    classes_accepted: list[bool] = field(default_factory=list)
    per_class_fallback: list[int] = field(default_factory=list)
    flagged_classes: list[int] = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)
    betas: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NoiseModel:
    """Record predictions by dataset index, fit the noise model each epoch, serve w, D, q.

    ``w_i = p(clean | S_i)`` from a two-component Beta mixture on the signal S (cosine
    similarity by default), ``D`` from the class-distribution miner, and
    ``q_i = w_i D[y_i] + (1 - w_i) p_i``
    ([`correct_labels`][noisylabel.correction.correct_labels]).

    [Safeguards][safeguards], each an option:

    * warm-up gate: ``w = 1`` for every epoch ``<= warmup``; with ``gate=True`` a fit is
      adopted only when it is separated (``BetaMixture.separated_``), otherwise the last
      accepted w is kept (ones before any);
    * monotone posterior (``monotone``), see
      [`BetaMixture.clean_probability`][noisylabel.mixture.BetaMixture.clean_probability];
    * per-class fitting (``per_class``): one mixture per class with at least
      ``min_class_samples`` recorded samples and a separated fit; other classes use the
      global fit (whose separation is what the gate checks);
    * mining rule (``mining_rule``, ``mining_margin``).

    Paper-exact: ``warmup=0, gate=False, monotone=False, per_class=False,
    mining_rule="absolute"`` (every fit is used, separated or not).

    Parameters
    ----------
    num_samples : int
        Dataset size N (indices passed to ``record``/``weights`` lie in ``0 .. N-1``).
    num_classes : int
        Number of classes C.
    signal : {"cosine", "loss", "calibrated"} or Signal
        Per-sample signal fitted by the mixture.
    t : float
        Miner threshold (and smoothed one-hot diagonal).
    mining_rule : {"absolute", "relative"}
        Miner acceptance rule.
    warmup : int
        Epochs (counted from 1) during which w stays 1.
    gate : bool
        Adopt only separated fits.
    per_class : bool
        One mixture per class.
    monotone : bool
        Monotone posterior.
    device : str or torch.device
        Where the buffers live.
    mining_margin : float
        Margin of the relative mining rule.
    min_class_samples : int
        Minimum recorded samples of a class for its own mixture.
    mixture_kwargs : dict, optional
        Extra [`BetaMixture`][noisylabel.mixture.BetaMixture] arguments.

    Attributes
    ----------
    mixture_ : BetaMixture or None
        The global mixture of the last ``fit``.
    signal_ : torch.Tensor or None
        Shape (N,): the signal S that mixture was fitted to, by dataset index (global under
        torch.distributed), NaN for samples not recorded before that fit; for plots of S
        against the fitted mixture. Not part of ``state_dict``.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        signal: str | Signal = "cosine",
        t: float = 0.7,
        mining_rule: Literal["absolute", "relative"] = "absolute",
        warmup: int = 0,
        gate: bool = True,
        per_class: bool = False,
        monotone: bool = True,
        device: str | torch.device = "cpu",
        mining_margin: float = 0.0,
        min_class_samples: int = MIN_CLASS_SAMPLES,
        mixture_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if num_samples < 1 or num_classes < 2:
            raise ValueError(
                f"need num_samples >= 1 and num_classes >= 2, got {num_samples}, {num_classes}"
            )
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.signal = get_signal(signal)
        self.warmup = warmup
        self.gate = gate
        self.per_class = per_class
        self.monotone = monotone
        self.min_class_samples = min_class_samples
        self._last_flagged: list[int] = []  # FitReport.flagged_classes of the last fit
        self.mixture_kwargs = dict(mixture_kwargs or {})
        self.device = torch.device(device)
        self.miner = ClassDistributionMiner(num_classes, t=t, rule=mining_rule, margin=mining_margin)
        n, c, dev = num_samples, num_classes, self.device
        self._probs = torch.zeros(n, c, dtype=torch.float32, device=dev)
        self._count = torch.zeros(n, dtype=torch.float32, device=dev)
        self._labels = torch.full((n,), -1, dtype=torch.long, device=dev)
        self._w = torch.ones(n, dtype=torch.float32, device=dev)
        self._last_probs = torch.full((n, c), 1.0 / c, dtype=torch.float32, device=dev)
        self._d = torch.as_tensor(self.miner.distributions_, dtype=torch.float32, device=dev)
        self.last_accepted_epoch: int | None = None
        self.mixture_: BetaMixture | None = None
        self.signal_: torch.Tensor | None = None

    # ------------------------------------------------------------------ recording
    def record(self, indices: torch.Tensor, pred_probs: torch.Tensor, labels: torch.Tensor,
               validate: bool = True) -> None:
        """Store predictions by dataset index (summed; ``fit`` uses the mean per index).

        Parameters
        ----------
        indices : torch.Tensor of int64, shape (B,)
            Dataset indices of the batch, in any order.
        pred_probs : torch.Tensor of shape (B, C)
            Predicted probabilities (detached here).
        labels : torch.Tensor of int64, shape (B,)
            Given labels of the batch.
        validate : bool
            Check that indices lie in ``[0, num_samples)`` and labels in ``[0, num_classes)``
            (one device-to-host sync; a training loop whose indices and labels come from its
            own data may pass False). Float indices or labels are refused either way.

        Raises
        ------
        ValueError
            Wrong shapes, float indices or labels, an index or label out of range (named).
        """
        for name, value in (("indices", indices), ("labels", labels)):
            t = torch.as_tensor(value)
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise ValueError(f"record: {name} must be integers, got dtype {t.dtype}")
        idx = torch.as_tensor(indices, device=self.device).long().reshape(-1)
        p = torch.as_tensor(pred_probs).detach().to(self.device, torch.float32)
        y = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if validate:
            self._check_range("indices", idx, self.num_samples)
            self._check_range("labels", y, self.num_classes)
        if p.ndim != 2 or p.shape != (idx.shape[0], self.num_classes) or y.shape != idx.shape:
            raise ValueError(
                f"record: expected indices (B,), pred_probs (B, {self.num_classes}), labels (B,);"
                f" got {tuple(idx.shape)}, {tuple(p.shape)}, {tuple(y.shape)}"
            )
        self._probs.index_add_(0, idx, p)
        self._count.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))
        self._labels[idx] = y

    @staticmethod
    def _check_range(name: str, values: torch.Tensor, limit: int) -> None:
        bad = (values < 0) | (values >= limit)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"record: {name}[{i}] = {int(values[i])} outside 0..{limit - 1}")

    def _all_reduce(self) -> None:
        """Sum the recorded probabilities and counts over the ranks; take the labels' maximum.

        After it every rank holds the global buffers: an index recorded by one rank only gets
        that rank's sum (the others add zeros), one recorded by several ranks (the padding
        duplicates of ``torch.utils.data.DistributedSampler``) the sum of all its records
        with a matching count, so ``fit``'s per-index mean is what one process recording the
        same predictions would get. Labels are -1 where a rank recorded nothing. NCCL reduces
        CUDA tensors only: CPU buffers travel through the current CUDA device then.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        comm = self.device
        if comm.type == "cpu" and dist.get_backend() == dist.Backend.NCCL:
            comm = torch.device("cuda", torch.cuda.current_device())
        packed = torch.cat([self._probs, self._count[:, None]], dim=1).to(comm)
        labels = self._labels.to(comm)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        dist.all_reduce(labels, op=dist.ReduceOp.MAX)
        self._probs.copy_(packed[:, :-1])
        self._count.copy_(packed[:, -1])
        self._labels.copy_(labels)

    # ------------------------------------------------------------------ fitting
    def fit(self, epoch: int) -> FitReport:
        """Fit the noise model on the predictions recorded since the last fit.

        Mines D (always), fits the mixture on the signal of the recorded samples and
        adopts its w for them unless ``epoch <= warmup`` or (``gate`` and the fit is not
        separated). Samples not recorded since the last fit keep their w. The recorded
        buffers (predictions, counts, labels) are then cleared.

        Parameters
        ----------
        epoch : int
            The epoch just finished, counted from 1.

        Returns
        -------
        FitReport
        """
        self._all_reduce()
        seen = self._count > 0
        n_seen = int(seen.sum().item())
        if n_seen < 2:
            raise ValueError(
                f"NoiseModel.fit(epoch={epoch}): {n_seen} sample(s) recorded since the last fit; "
                "call record(indices, pred_probs, labels) for the training set first"
            )
        seen_idx = seen.nonzero().squeeze(1)
        probs = self._probs[seen_idx] / self._count[seen_idx, None]
        probs = probs / probs.sum(1, keepdim=True)
        labels = self._labels[seen_idx]
        if bool((labels < 0).any().item()):
            raise ValueError("NoiseModel.fit: recorded samples without a label (internal error)")

        self._last_probs[seen_idx] = probs
        self.miner.update(labels, probs, validate=False)
        self._d = torch.as_tensor(self.miner.distributions_, dtype=torch.float32, device=self.device)

        det = detect(labels, probs, signal=self.signal, per_class=self.per_class,
                     monotone=self.monotone, min_class_samples=self.min_class_samples,
                     fallback=False, mixture_kwargs=self.mixture_kwargs, validate=False)
        bmm, w_new, fallback = det.mixture, det.clean_probability, det.per_class_fallback
        self.mixture_ = bmm
        self.signal_ = torch.full((self.num_samples,), float("nan"), device=self.device)
        self.signal_[seen_idx] = det.signal.to(torch.float32)

        if epoch <= self.warmup:
            reason = "warmup"
        elif not self.gate:
            reason = "ungated"
        elif bmm.separated_:
            reason = "accepted"
        else:
            reason = "not separated"
        accepted = reason in ("accepted", "ungated")
        if accepted:
            self._w[seen_idx] = w_new.to(torch.float32)
            self.last_accepted_epoch = epoch
        elif reason == "not separated":
            warnings.warn(
                f"NoiseModel.fit(epoch={epoch}): the mixture is not separated (means "
                f"{bmm.means_.round(3).tolist()}, weights {bmm.weights_.round(3).tolist()}); "
                + (f"keeping the w of epoch {self.last_accepted_epoch}"
                   if self.last_accepted_epoch is not None
                   else "keeping w = 1 (no fit accepted yet)"),
                MixtureNotSeparatedWarning,
                stacklevel=2,
            )

        flagged = self._whole_classes_flagged(labels, self._w[seen_idx])
        self._probs.zero_()
        self._count.zero_()
        self._labels.fill_(-1)  # stale labels would win the next all-reduce's maximum
        stats = torch.stack([  # one transfer to the host
            self._w.mean(), (self._w < 0.5).float().mean(),
            (probs.argmax(1) == labels).float().mean(), w_new.to(torch.float32).mean(),
        ]).tolist()
        return FitReport(
            epoch=epoch,
            accepted=accepted,
            reason=reason,
            separated=bool(bmm.separated_),
            converged=bool(bmm.converged_),
            n_iter=int(bmm.n_iter_),
            means=[float(v) for v in bmm.means_],
            weights=[float(v) for v in bmm.weights_],
            alphas=[float(v) for v in bmm.alphas_],
            betas=[float(v) for v in bmm.betas_],
            ll_gain=float(bmm.ll_gain_),
            n_seen=n_seen,
            mean_w=float(stats[0]),
            frac_noisy=float(stats[1]),
            last_accepted_epoch=self.last_accepted_epoch,
            agreement=float(stats[2]),
            fit_clean_share=float(stats[3]),
            classes_accepted=[bool(v) for v in self.miner.accepted_],
            per_class_fallback=fallback,
            flagged_classes=flagged,
        )

    def _whole_classes_flagged(self, labels: torch.Tensor, w: torch.Tensor) -> list[int]:
        """Classes with >= ``min_class_samples`` samples all at w < 0.5 (FitReport); warned
        when they differ from the last fit's (not every epoch)."""
        n = torch.bincount(labels, minlength=self.num_classes)
        kept = torch.bincount(labels, weights=(w >= 0.5).float(), minlength=self.num_classes)
        flagged = ((n >= self.min_class_samples) & (kept == 0)).nonzero().flatten().tolist()
        warn = flagged and flagged != self._last_flagged
        self._last_flagged = flagged
        if warn:
            warnings.warn(
                f"NoiseModel.fit: every sample labelled with class(es) {flagged} has w < 0.5: w "
                "separates these classes from the others, not their right labels from their "
                "wrong ones, and the weighted loss drops them (see docs/method.md, 'When w "
                "flags whole classes')",
                UserWarning,
                stacklevel=3,
            )
        return flagged

    # ------------------------------------------------------------------ serving
    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Clean probabilities w of the given dataset indices, shape (B,), on ``device``."""
        return self._w[torch.as_tensor(indices, device=self.device).long()]

    @property
    def clean_probability(self) -> torch.Tensor:
        """w for every sample, shape (N,) (a view: do not modify)."""
        return self._w

    @property
    def predictions(self) -> torch.Tensor:
        """Mean recorded prediction of every sample at its last fit, shape (N, C), rows sum to
        1 (uniform before a sample's first fit; a view: do not modify). With an eval-mode
        statistics pass these are the un-augmented predictions the signal was computed from,
        the natural source of a pseudo-label ``argmax_c predictions[i, c]``."""
        return self._last_probs

    @property
    def class_distributions(self) -> torch.Tensor:
        """Mined class distributions D, shape (C, C), rows sum to 1, on ``device``."""
        return self._d

    def targets(
        self, indices: torch.Tensor, labels: torch.Tensor, pred_probs: torch.Tensor
    ) -> torch.Tensor:
        """Corrected soft targets ``q_i = w_i D[y_i] + (1 - w_i) p_i`` (p detached), shape (B, C)."""
        p = pred_probs.detach()
        w = self.weights(indices).to(device=p.device, dtype=p.dtype)
        d = self._d.to(device=p.device, dtype=p.dtype)
        return correct_labels(labels, p, w, d, validate=False)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loadable with ``torch.load(weights_only=True)``)."""
        miner = self.miner.state_dict()
        return {
            "w": self._w.detach().cpu().clone(),
            "labels": self._labels.detach().cpu().clone(),
            "probs": self._probs.detach().cpu().clone(),
            "count": self._count.detach().cpu().clone(),
            "last_probs": self._last_probs.detach().cpu().clone(),
            "miner": {
                "distributions": torch.from_numpy(miner["distributions"]),
                "accepted": torch.from_numpy(miner["accepted"]),
                "n_accepted": torch.from_numpy(miner["n_accepted"]),
                "n_updates": int(miner["n_updates"]),
            },
            "last_accepted_epoch": self.last_accepted_epoch,
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` wrote (onto this model's ``device``)."""
        if (state["num_samples"], state["num_classes"]) != (self.num_samples, self.num_classes):
            raise ValueError(
                f"state is for {state['num_samples']} samples / {state['num_classes']} classes, "
                f"this NoiseModel has {self.num_samples} / {self.num_classes}"
            )
        self._w = state["w"].to(self.device, torch.float32).clone()
        self._labels = state["labels"].to(self.device, torch.long).clone()
        self._probs = state["probs"].to(self.device, torch.float32).clone()
        self._count = state["count"].to(self.device, torch.float32).clone()
        if "last_probs" in state:  # absent from checkpoints written before 0.2
            self._last_probs = state["last_probs"].to(self.device, torch.float32).clone()
        self.miner.load_state_dict(state["miner"])
        self._d = torch.as_tensor(self.miner.distributions_, dtype=torch.float32, device=self.device)
        self.last_accepted_epoch = state["last_accepted_epoch"]
