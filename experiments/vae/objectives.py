r"""What a VAE run optimizes, and how each estimator meets it (``RunConfig.objective``).

- ``bound: elbo`` (the default): :math:`\sum_x \mathcal L(x)`, the estimators' integrand and exact term from
  ``VAE.objective`` (``kl: exact`` or ``in_signal``); an estimator of the ``expectation`` objective applies.
- ``bound: iwae``: :math:`\sum_x \mathcal L_K(x)`, the K-sample importance-weighted bound of Burda et al.
  2016 with ``k`` = K and the log-weight ``VAE.log_weight``. ``vimco`` estimates it from one K-tuple
  (``n_samples`` must be 1); every other estimator from ``n_samples`` K-tuples of its expectation form
  (``estimators/iwae.py``), :math:`nK` decoder passes. There is no exact term.

Every place that trains or measures a run goes through ``why_not``, ``problem`` and ``f_evaluations`` here,
so that training, the own-run and the shared-checkpoints measurements and the plan agree on what applies.
"""
from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution

from estimators import iwae

#: ``objective`` of an estimator that applies to a run with ``bound: elbo`` (``capabilities.OBJECTIVES``).
ELBO_OBJECTIVE = "expectation"


def why_not(est, q: Distribution | type[Distribution], n_samples: int | None, objective) -> str | None:
    """Why ``est`` cannot train or be measured on a run with these settings (``ObjectiveSettings``), or None.
    ``q``: the posterior, or its family class when a study is planned."""
    if objective.bound == "elbo":
        return est.why_not(q, n_samples, objective=ELBO_OBJECTIVE)
    return iwae.why_not(est, q, int(objective.k), n_samples)


def samples_per_call(est, n_samples: int, objective) -> int:
    """The ``n_samples`` ``est`` is called with: ``k`` for an estimator of the bound itself (one K-tuple),
    else ``n_samples`` (samples, or K-tuples under the bound)."""
    return int(objective.k) if objective.bound == "iwae" and est.capabilities.objective == "iwae" else n_samples


def problem(model, x: Tensor, q: Distribution, est, n_samples: int, objective, log_likelihood=None):
    """``(f, dist, n_call, exact_term)``: what ``est`` is called with (``est(f, dist, n_call, ...)``) so that
    its surrogate plus ``exact_term`` estimates the minibatch objective. ``log_likelihood(x, z)``: the
    decoder's (default the model's; stacked runs pass their batched one)."""
    if objective.bound == "elbo":
        f, exact_term = model.objective(x, q, objective.kl, log_likelihood)
        return f, q, n_samples, exact_term
    k, n_call = int(objective.k), samples_per_call(est, n_samples, objective)
    f = model.log_weight(x, q, log_likelihood)
    zero = x.new_zeros(())
    if est.capabilities.objective == "iwae":
        return f, q, n_call, zero
    return iwae.k_sample_bound(f, k, len(q.batch_shape)), iwae.k_tuples(q, k), n_call, zero


def f_evaluations(est, q: Distribution, n_samples: int, objective) -> float:
    """Decoder passes (evaluations of the per-sample integrand) per estimate and data point."""
    if objective.bound == "elbo":
        return est.f_evaluations(q, n_samples)
    count = iwae.f_evaluations(est, q, int(objective.k), n_samples)
    return float("nan") if count is None else float(count)


__all__ = ["ELBO_OBJECTIVE", "f_evaluations", "problem", "samples_per_call", "why_not"]
