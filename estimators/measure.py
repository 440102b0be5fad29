r"""Measuring an estimator: R independent gradient estimates and their statistics.

``measure_variance`` draws ``n_estimates`` (R) gradient estimates, each from its own ``n_samples`` fresh
samples, of the gradient of :math:`\sum_b \mathbb{E}[f]` with respect to ``params``, and summarizes them.

Two execution modes give the same estimator (R independent estimates, each with its own noise):

- loop (``vectorize=False``): R calls of the estimator and R backward passes. Works for any problem.
- vectorized (``vectorize=True``): each parameter is replicated along a new leading dimension of size
  ``c`` (a chunk of the R estimates), the problem is built once from the replicas, and one backward pass
  gives each replica's gradient, which only depends on its own slice of the batch. This needs a problem
  that treats a leading parameter dimension as an independent batch dimension (true of the synthetic
  problems in ``experiments``); it is checked that the distribution's batch starts with ``c``.

The estimator is put in eval mode while measuring, so stateful baselines and temperature schedules are
frozen and the R estimates are identically distributed; its mode is restored afterwards.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .base import Estimator

#: ``build(*params) -> (f, dist)`` or ``(f, dist, exact_term)``: how a measurement rebuilds its objective
#: from (replicated) parameters; ``exact_term`` is a scalar whose exact gradient is added to every estimate.
BuildFn = Callable[..., tuple]


@dataclass(frozen=True)
class VarianceResult:
    """R gradient estimates ``grads`` ``[R, n_params]`` (float64, CPU) and their statistics."""

    grads: Tensor
    n_samples: int
    seconds_per_estimate: float
    reference: Tensor | None = None

    @property
    def n_estimates(self) -> int:
        return self.grads.shape[0]

    # Computed once: grads can be [R, ~1e6] for a VAE encoder, and every statistic below uses these two.
    @functools.cached_property
    def mean(self) -> Tensor:
        return self.grads.mean(0)

    @functools.cached_property
    def variance(self) -> Tensor:
        """Per-coordinate unbiased sample variance ``[n_params]``."""
        return self.grads.var(0, unbiased=True)

    @property
    def variance_se(self) -> Tensor:
        """Standard error of each per-coordinate variance, from the spread of squared deviations."""
        sq = (self.grads - self.mean).pow(2)
        return sq.std(0, unbiased=True) / math.sqrt(self.n_estimates)

    @property
    def total_variance(self) -> float:
        """Trace of the covariance: sum of per-coordinate variances."""
        return float(self.variance.sum())

    @property
    def total_variance_se(self) -> float:
        r = self.n_estimates
        sq = (self.grads - self.mean).pow(2).sum(1) * (r / (r - 1))
        return float(sq.std(unbiased=True) / math.sqrt(r))

    @property
    def total_variance_rse(self) -> float:
        """Relative standard error of the total variance (NaN when the variance is zero)."""
        total = self.total_variance
        return self.total_variance_se / total if total > 0 else math.nan

    @property
    def snr(self) -> Tensor:
        """Per-coordinate signal-to-noise ratio ``|mean| / std`` (Rainforth et al. 2018)."""
        return self.mean.abs() / self.variance.sqrt()

    @property
    def bias(self) -> Tensor | None:
        return None if self.reference is None else self.mean - self.reference

    @property
    def bias_se(self) -> Tensor:
        return (self.variance / self.n_estimates).sqrt()

    @property
    def mse(self) -> float | None:
        """Mean over estimates of the squared error norm against the reference."""
        if self.reference is None:
            return None
        return float((self.grads - self.reference).pow(2).sum(1).mean())

    def summary(self) -> dict[str, float]:
        """Scalar statistics, one dict per measurement (a row of a tidy CSV)."""
        var = self.variance
        mean_var = float(var.mean())
        total = self.total_variance
        row = {
            "n_estimates": self.n_estimates,
            "n_samples": self.n_samples,
            "n_params": self.grads.shape[1],
            "total_variance": total,
            "total_variance_se": self.total_variance_se,
            "total_variance_rse": self.total_variance_rse,
            "mean_variance": mean_var,
            "log10_mean_variance": math.log10(mean_var) if mean_var > 0 else -math.inf,
            "grad_norm": float(self.mean.norm()),
            # Median, not mean: near-deterministic coordinates have huge ratios that would dominate a mean.
            "snr": float(self.snr[var > 0].median()) if bool((var > 0).any()) else math.inf,
            "snr_norm": float(self.mean.norm() / math.sqrt(total)) if total > 0 else math.inf,
            "seconds_per_estimate": self.seconds_per_estimate,
        }
        if self.reference is not None:
            row["bias_norm"] = float(self.bias.norm())
            row["max_abs_bias_in_se"] = float((self.bias.abs() / self.bias_se.clamp_min(1e-300)).max())
            row["mse"] = self.mse
        return row


def measure_until(measure: Callable[[int], VarianceResult], first: int, target_rse: float,
                  max_estimates: int) -> VarianceResult:
    """Draw estimates with ``measure(n)`` (``first``, then three times as many as so far) until the total
    variance's relative standard error is at most ``target_rse`` or ``max_estimates`` are drawn."""
    parts, n, total = [], first, 0
    while True:
        parts.append(measure(n))
        total += n
        grads = torch.cat([p.grads for p in parts])
        seconds = sum(p.seconds_per_estimate * p.n_estimates for p in parts) / total
        merged = VarianceResult(grads=grads, n_samples=parts[0].n_samples, seconds_per_estimate=seconds,
                                reference=parts[0].reference)
        if not merged.total_variance_rse > target_rse or total >= max_estimates:
            return merged
        n = min(max_estimates - total, 3 * total)


def _flat_grads(surrogate: Tensor, params: Sequence[Tensor], leading: int | None) -> Tensor:
    grads = torch.autograd.grad(surrogate, list(params), allow_unused=True)
    parts = []
    for p, g in zip(params, grads):
        g = torch.zeros_like(p) if g is None else g
        parts.append(g.reshape(leading, -1) if leading is not None else g.reshape(1, -1))
    return torch.cat(parts, dim=1)


def _unpack(built: tuple) -> tuple:
    return built if len(built) == 3 else (*built, 0.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_variance(
    estimator: Estimator,
    build: BuildFn,
    params: Sequence[Tensor],
    *,
    n_estimates: int,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    reference: Tensor | None = None,
    vectorize: bool = False,
    chunk_size: int = 4096,
    **call_kwargs,
) -> VarianceResult:
    """Draw ``n_estimates`` independent gradient estimates of ``params`` and summarize them.

    build: ``build(*params) -> (f, dist)`` or ``(f, dist, exact_term)``; called once per estimate (loop)
        or once per chunk with replicated parameters ``[c, *p.shape]`` (vectorized).
    params: tensors requiring grad; the result's columns are their flattened concatenation.
    reference: the true gradient ``[n_params]`` (flattened the same way), for bias and MSE.
    call_kwargs: passed to each estimator call (e.g. ``learned_baseline=``).
    """
    params = list(params)
    if n_estimates < 2:
        raise ValueError(f"n_estimates must be >= 2 to estimate a variance, got {n_estimates}")
    if not all(isinstance(p, Tensor) and p.requires_grad for p in params):
        raise ValueError("params must be tensors that require grad")
    device = params[0].device
    was_training = estimator.training
    estimator.eval()
    try:
        _sync(device)
        start = time.perf_counter()
        if vectorize:
            chunks = []
            for first in range(0, n_estimates, chunk_size):
                c = min(chunk_size, n_estimates - first)
                replicas = [p.detach().unsqueeze(0).expand(c, *p.shape).clone().requires_grad_(True) for p in params]
                f, dist, exact_term = _unpack(build(*replicas))
                if tuple(dist.batch_shape[:1]) != (c,):
                    raise ValueError(
                        f"vectorize=True needs a problem whose distribution's batch starts with the replica "
                        f"dimension ({c}); got batch_shape {tuple(dist.batch_shape)}. Use vectorize=False."
                    )
                out = estimator(f, dist, n_samples, generator, **call_kwargs)
                chunks.append(_flat_grads(out.surrogate + exact_term, replicas, c).detach())
            grads = torch.cat(chunks)
        else:
            rows = []
            for _ in range(n_estimates):
                f, dist, exact_term = _unpack(build(*params))
                out = estimator(f, dist, n_samples, generator, **call_kwargs)
                rows.append(_flat_grads(out.surrogate + exact_term, params, None).detach())
            grads = torch.cat(rows)
        _sync(device)
        elapsed = time.perf_counter() - start
    finally:
        estimator.train(was_training)
    ref = None if reference is None else reference.detach().reshape(-1).to("cpu", torch.float64)
    if ref is not None and ref.numel() != grads.shape[1]:
        raise ValueError(f"reference has {ref.numel()} entries but params have {grads.shape[1]}")
    return VarianceResult(
        grads=grads.to("cpu", torch.float64),
        n_samples=n_samples,
        seconds_per_estimate=elapsed / n_estimates,
        reference=ref,
    )
