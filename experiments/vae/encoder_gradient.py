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
from torch import Tensor, nn

import estimators
from estimators.measure import VarianceResult

from experiments.vae import objectives
from experiments.vae.model import VAE, BaselineNet
from experiments.vae.run_config import ObjectiveSettings, ReferenceGradientSettings


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


def _build(model: VAE, x: Tensor, objective, est):
    """``build`` for ``measure_variance``: the run's objective as ``est`` meets it (``objectives.problem``)."""
    def build(*_params):
        f, dist, exact_term = objectives.problem(model, x, model.posterior(x), est, objective)
        return f, dist, exact_term
    return build


def _build_replicated(model: VAE, x: Tensor, objective, est):
    """The vectorized mode's problem: encoder parameters ``[c, *p.shape]`` give q with batch ``[c, B]``; the
    decoder (frozen, shared by the copies) maps ``z`` ``[n, c, B, *event]`` to ``log p(x|z)`` ``[n, c, B]``
    (``x`` ``[B, D]`` broadcasts), and the KL term sums over copies, each copy's gradient its own."""
    def build(*encoder_params):
        q = model.replicated_posterior(x, list(encoder_params))
        f, dist, exact_term = objectives.problem(model, x, q, est, objective)
        return f, dist, exact_term
    return build


#: Bound on what one vectorized pass holds (see ``vectorized_chunk``), by device type. On CPU a pass is
#: bound by memory traffic, not by per-call overhead: passes past a few tens of MB were slower per
#: estimate than the loop (paper sizes, 1 thread: 25-67 estimates per pass cost 1.1-1.7x the loop's time,
#: 4-5 per pass the same, benchmarks/bench_checkpoint_measurement.py; digits sizes: 10-50 per pass
#: 1.8-2.2x faster than the loop, 400 per pass no faster). On a GPU larger passes amortize kernel
#: launches over more estimates (not measured here: no GPU).
MEASUREMENT_MEMORY_BYTES = {"cpu": 64 * 2**20, "cuda": 2**30}


#: Estimators that draw no samples (``exact`` enumerates the support): all their estimates are one number,
#: which the loop mode reproduces bit for bit (a variance of exactly 0), while replicas of a batched pass
#: differ in their last bits (a variance of ~1e-11 for a float32 model), and nothing is gained.
NO_SAMPLES = ("exact",)


def why_not_vectorized(est, call_kwargs: dict) -> str | None:
    """Why the encoder gradient of ``est`` is measured in the loop mode, or ``None`` (vectorized).

    The vectorized mode gives the same law of estimates for any estimator that treats each batch element
    independently with fixed state, which every registered one does in eval mode. It is kept off, by
    choice, where the state or the baseline is fitted to the data rather than fixed by the options, so
    that those measurements stay exactly what training saw: an estimator that adapts in train mode
    (``Estimator.adapts``: moving-average baselines, REBAR's and RELAX's trained control variates, warmed
    up before measuring) and a learned (NVIL) baseline ``b_psi(x)`` passed with the call; and for the
    estimators of ``NO_SAMPLES``.
    """
    if est.name in NO_SAMPLES:
        return f"{est.name} draws no samples: its estimates are all equal"
    if est.adapts:
        return f"{est.describe()} adapts in train mode (Estimator.adapts)"
    if "learned_baseline" in call_kwargs:
        return "a learned (NVIL) baseline is passed with each call"
    return None


def vectorized_chunk(model: VAE, batch: int, n_evaluations: float, memory_bytes: int | None = None) -> int:
    """Estimates per vectorized pass: the most whose memory fits ``memory_bytes`` (default: the model's
    device type's entry of ``MEASUREMENT_MEMORY_BYTES``, the CPU's for other types), from the sizes.

    Per estimate a pass holds three copies of the encoder's parameters (the replica, its gradient, and
    the flattened gradient), ``x`` broadcast to its copy for the first batched matmul, the encoder
    activations kept for backward (2 per layer: output and activation) for ``batch`` points, and, for
    each of the ``n_evaluations`` latent samples per point (``Estimator.f_evaluations``), the decoder's
    saved activations (2 per hidden layer) and its ``x_dim``-wide logits, loss and their gradients (4
    tensors of ``x_dim``), in the parameters' dtype. At the paper's sizes with 4 samples, about 12-15 MB
    per estimate (4-5 per pass on CPU, 70-85 on a GPU); with the reference's 100 samples, about 170-200 MB
    (1 per pass on CPU, 5-6 on a GPU); at the digits size with 4 samples about 1 MB (60-65 per pass on CPU).
    """
    first = next(model.parameters())
    if memory_bytes is None:
        memory_bytes = MEASUREMENT_MEMORY_BYTES.get(first.device.type, MEASUREMENT_MEMORY_BYTES["cpu"])
    itemsize = first.element_size()
    enc_params = sum(p.numel() for p in model.encoder.parameters())
    enc_widths = [m.out_features for m in model.encoder if isinstance(m, nn.Linear)]
    dec_widths = [m.out_features for m in model.decoder if isinstance(m, nn.Linear)]
    x_dim = dec_widths[-1]
    per_sample = model.latent.flat_dim + 2 * sum(dec_widths[:-1]) + 4 * x_dim
    per_estimate = itemsize * (3 * enc_params + batch * (x_dim + 2 * sum(enc_widths))
                               + n_evaluations * batch * per_sample)
    return max(1, int(memory_bytes // per_estimate))


def encoder_gradient_estimates(model: VAE, x: Tensor, est, *, n_samples: int, n_estimates: int,
                               generator, reference: ReferenceGradient | None = None,
                               baseline_net: BaselineNet | None = None, objective=None,
                               target_rse: float | None = None, max_estimates: int | None = None,
                               vectorize: bool = True, chunk_size: int | None = None) -> VarianceResult:
    """``n_estimates`` estimates of the encoder gradient; with ``target_rse``, more (up to ``max_estimates``)
    until the total variance's relative standard error reaches it.

    vectorize: measure ``chunk_size`` estimates per pass (``measure_variance``'s vectorized mode, through
        ``VAE.replicated_posterior``) wherever ``why_not_vectorized`` allows; else, or with ``False``, one
        estimator call and one backward pass per estimate. Both give the same law of estimates (tested in
        ``tests/test_vae_vectorized_measurement.py``), not the same draws.
    chunk_size: estimates per vectorized pass; default ``vectorized_chunk`` (from the sizes).
    objective: the run's ``ObjectiveSettings`` (default: the ELBO with the exact KL); ``n_samples`` counts
        K-tuples under the IWAE bound (``objectives``).
    """
    objective = objective or ObjectiveSettings()
    kwargs = {}
    if baseline_net is not None and est.name == "reinforce":
        with torch.no_grad():
            kwargs["learned_baseline"] = baseline_net(x)
    vectorized = vectorize and why_not_vectorized(est, kwargs) is None
    build = _build(model, x, objective, est)
    mode = {}
    if vectorized:
        if chunk_size is None:
            evaluations = objectives.f_evaluations(est, model.posterior(x[:1]), n_samples, objective)
            chunk_size = vectorized_chunk(model, x.shape[0], n_samples if math.isnan(evaluations) else
                                          max(evaluations, n_samples))
        build, mode = _build_replicated(model, x, objective, est), {"vectorize": True,
                                                                               "chunk_size": int(chunk_size)}

    def measure(n):
        return estimators.measure_variance(
            est, build, list(model.encoder.parameters()), n_estimates=n, n_samples=n_samples,
            generator=generator, reference=None if reference is None else reference.gradient, **mode, **kwargs)

    if target_rse is None:
        return measure(n_estimates)
    return estimators.measure_until(measure, n_estimates, target_rse, max_estimates or n_estimates)


def reference_gradient(model: VAE, x: Tensor, generator, cfg: ReferenceGradientSettings,
                       objective=None) -> ReferenceGradient:
    """The encoder gradient of the minibatch objective (the ELBO, or the run's IWAE bound): exact by
    enumeration (of K-tuples under the bound), or a high-sample estimate (``n_samples`` K-tuples)."""
    objective = objective or ObjectiveSettings()
    params = list(model.encoder.parameters())
    support = model.latent.support_size ** (int(objective.k) if objective.bound == "iwae" else 1)
    if support <= cfg.max_support:
        exact = estimators.get("exact", max_support=cfg.max_support)
        f, dist, exact_term = objectives.problem(model, x, model.posterior(x), exact, objective)
        out = exact(f, dist)
        grads = torch.autograd.grad(out.surrogate + exact_term, params)
        flat = torch.cat([g.reshape(-1) for g in grads]).detach().to("cpu", torch.float64)
        return ReferenceGradient(flat, torch.zeros_like(flat), "exact")
    est = estimators.get("pathwise") if model.latent.family == "gaussian" else \
        estimators.get("reinforce", baseline="leave_one_out")
    res = encoder_gradient_estimates(model, x, est, n_samples=cfg.n_samples, n_estimates=cfg.n_estimates,
                                     generator=generator, objective=objective)
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
