r"""The encoder-gradient measurement of VAEs: R estimates at a checkpoint, and the reference gradient.

At a checkpoint, with every parameter frozen, on a fixed evaluation minibatch ``x`` (the first
``variance.batch_size`` test images, binarized once with a fixed seed), draw R independent estimates of the
gradient of the minibatch ELBO :math:`\sum_{x \in \text{batch}} \mathcal L(x)` with respect to the
*encoder* parameters (the ones whose gradient needs an estimator; the decoder's gradient is a plain
Monte Carlo average for every estimator), each from ``n_samples`` fresh samples per data point, and report:
total variance (trace of the covariance), mean per-parameter variance (and its log10), SNR, seconds per
estimate, and bias against the *reference gradient*:

- ``exact``: enumeration of the latent support when it has at most ``reference_gradient.max_support``
  points (small Bernoulli or categorical latents); no error.
- ``mc``: otherwise, the mean of ``reference_gradient.n_estimates`` estimates of an unbiased estimator
  (pathwise for Gaussian latents, REINFORCE with a leave-one-out baseline for discrete ones) with
  ``reference_gradient.n_samples`` samples each, with its standard error (``reference_se_norm``); a bias
  is only meaningful where ``bias_norm`` clearly exceeds it.

Two protocols use it: ``own_run`` (each estimator at the checkpoints of its own training run, see
``train``) and ``shared_checkpoints`` (every applicable estimator at the same checkpoints of one run, which
isolates the estimator from the trajectory; see ``shared_checkpoints``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import estimators
from estimators.measure import VarianceResult

from .model import VAE, BaselineNet
from .run_config import ReferenceGradientSettings


@dataclass(frozen=True)
class ReferenceGradient:
    """The reference at a checkpoint. It is computed once, by the run that writes the checkpoint, and kept
    in the checkpoint (``to_state``), so that every estimator measured there later reads it back instead of
    recomputing it (at the paper's sizes it costs more than measuring an estimator)."""

    gradient: Tensor   # flat, float64, CPU
    se: Tensor         # flat standard error (zeros for exact)
    kind: str          # "exact" or "mc"

    def to_state(self) -> dict:
        return {"gradient": self.gradient, "se": self.se, "kind": self.kind}

    @classmethod
    def from_state(cls, state: dict | None) -> "ReferenceGradient | None":
        return None if state is None else cls(state["gradient"], state["se"], state["kind"])


def _build(model: VAE, x: Tensor, kl: str):
    def build(*_params):
        q = model.posterior(x)
        f, exact_term = model.objective(x, q, kl)
        return f, q, exact_term
    return build


def encoder_gradient_estimates(model: VAE, x: Tensor, est, *, n_samples: int, n_estimates: int,
                               generator, reference: ReferenceGradient | None = None,
                               baseline_net: BaselineNet | None = None, kl: str = "exact",
                               target_rse: float | None = None, max_estimates: int | None = None) -> VarianceResult:
    """``n_estimates`` estimates of the encoder gradient; with ``target_rse``, more (up to ``max_estimates``)
    until the total variance's relative standard error reaches it."""
    kwargs = {}
    if baseline_net is not None and est.name == "reinforce":
        with torch.no_grad():
            kwargs["learned_baseline"] = baseline_net(x)

    def measure(n):
        return estimators.measure_variance(
            est, _build(model, x, kl), list(model.encoder.parameters()), n_estimates=n, n_samples=n_samples,
            generator=generator, reference=None if reference is None else reference.gradient, **kwargs)

    if target_rse is None:
        return measure(n_estimates)
    return estimators.measure_until(measure, n_estimates, target_rse, max_estimates or n_estimates)


def reference_gradient(model: VAE, x: Tensor, generator, cfg: ReferenceGradientSettings) -> ReferenceGradient:
    """The encoder gradient of the minibatch ELBO: exact by enumeration, or a high-sample estimate."""
    params = list(model.encoder.parameters())
    if model.latent.support_size <= cfg.max_support:
        exact = estimators.get("exact", max_support=cfg.max_support)
        q = model.posterior(x)
        f, exact_term = model.objective(x, q)
        out = exact(f, q)
        grads = torch.autograd.grad(out.surrogate + exact_term, params)
        flat = torch.cat([g.reshape(-1) for g in grads]).detach().to("cpu", torch.float64)
        return ReferenceGradient(flat, torch.zeros_like(flat), "exact")
    est = estimators.get("pathwise") if model.latent.family == "gaussian" else \
        estimators.get("reinforce", baseline="leave_one_out")
    res = encoder_gradient_estimates(model, x, est, n_samples=cfg.n_samples, n_estimates=cfg.n_estimates,
                                     generator=generator)
    return ReferenceGradient(res.mean, res.bias_se, "mc")


#: The measurement's columns in variance.csv (a header-only file keeps them when nothing was measured).
VARIANCE_COLUMNS = ["total_variance", "total_variance_se", "mean_variance", "log10_mean_variance", "snr", "snr_norm",
                    "grad_norm", "seconds_per_estimate", "n_estimates", "n_params", "work_normalized_variance",
                    "bias_norm", "mse", "reference_kind", "reference_se_norm", "reference_grad_norm"]


def variance_row(res: VarianceResult, reference: ReferenceGradient | None) -> dict:
    s = res.summary()
    row = {
        "total_variance": s["total_variance"], "total_variance_se": s["total_variance_se"],
        "mean_variance": s["mean_variance"], "log10_mean_variance": s["log10_mean_variance"],
        "snr": s["snr"], "snr_norm": s["snr_norm"], "grad_norm": s["grad_norm"],
        "seconds_per_estimate": s["seconds_per_estimate"], "n_estimates": s["n_estimates"],
        "n_params": s["n_params"],
        "work_normalized_variance": s["total_variance"] * s["seconds_per_estimate"],
    }
    if reference is not None:
        row.update(bias_norm=s["bias_norm"], mse=s["mse"], reference_kind=reference.kind,
                   reference_se_norm=float(reference.se.norm()),
                   reference_grad_norm=float(reference.gradient.norm()))
    else:
        row.update(bias_norm=math.nan, mse=math.nan, reference_kind="none", reference_se_norm=math.nan,
                   reference_grad_norm=math.nan)
    return row
