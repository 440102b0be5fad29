r"""What a VAE run optimizes, and how each estimator meets it (``RunConfig.objective``).

- ``bound: elbo`` (the default): :math:`\sum_x \mathcal L(x)`, the estimators' integrand and exact term from
  ``VAE.objective`` (``kl: exact`` or ``in_signal``, both with the KL in closed form); an estimator of the
  ``expectation`` objective applies. ``kl: sampled`` estimates the KL by sampling, with the integrand the
  log-weight :math:`\log p(x|z) + \log p(z) - \log q(z|x)` and no exact term: the Monte Carlo ELBO of ``stl``.
- ``bound: iwae``: :math:`\sum_x \mathcal L_K(x)`, the K-sample importance-weighted bound of Burda et al.
  2016 with ``k`` = K and the log-weight ``VAE.log_weight``. Every estimator estimates it from ``n_samples``
  K-tuples, :math:`nK` decoder passes: ``vimco`` and ``dreg`` (estimators of the bound itself) from the per-sample
  log-weight, every other from the bound's expectation form (``estimators/iwae.py``). There is no exact term.

Where the integrand contains :math:`-\log q(z|x)` (``kl: sampled``, and the bound's log-weight) it is given as
``estimators.base.LogQSplit(rest, q)`` with ``rest`` :math:`= \log p(x|z) + \log p(z)`, which every estimator
calls as ``f(z)`` (the same values, in the same order of operations, as ``VAE.log_weight``); ``stl`` and ``dreg``
(``Capabilities.needs_log_q``) take only such an integrand: ``stl`` the ELBO with ``kl: sampled``, ``dreg`` the
bound.

Every place that trains or measures a run goes through ``why_not``, ``problem`` and ``f_evaluations`` here,
so that training, the own-run and the shared-checkpoints measurements and the plan agree on what applies.
"""
from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution

from estimators import iwae
from estimators.base import LogQSplit

from experiments.vae.model import log_density

#: ``objective`` of an estimator that applies to a run with ``bound: elbo`` (``capabilities.OBJECTIVES``).
ELBO_OBJECTIVE = "expectation"


def why_not(est, q: Distribution | type[Distribution], n_samples: int | None, objective) -> str | None:
    """Why ``est`` cannot train or be measured on a run with these settings (``ObjectiveSettings``), or None.
    ``q``: the posterior, or its family class when a study is planned."""
    if est.capabilities.needs_log_q:
        if objective.bound == "elbo" and objective.kl != "sampled":
            return (f"it needs the ELBO's log q term sampled (objective.kl: sampled), not kl: {objective.kl} "
                    f"(the KL in closed form)")
        if objective.bound == "iwae" and est.capabilities.objective != "iwae":
            return ("under the K-sample bound its integrand would be the bound of K-tuples, which has no log q term of "
                    "the distribution sampled (dreg is the bound's own)")
    if objective.bound == "elbo":
        return est.why_not(q, n_samples, objective=ELBO_OBJECTIVE)
    return iwae.why_not(est, q, int(objective.k), n_samples)


def problem(model, x: Tensor, q: Distribution, est, objective, log_likelihood=None):
    """``(f, dist, exact_term)``: what ``est`` is called with (``est(f, dist, n_samples, ...)``, ``n_samples``
    K-tuples under the K-sample bound) so that its surrogate plus ``exact_term`` estimates the minibatch
    objective. ``log_likelihood(x, z)``: the decoder's (default the model's; stacked runs pass their batched one)."""
    zero = x.new_zeros(())
    if objective.bound == "elbo" and objective.kl != "sampled":
        f, exact_term = model.objective(x, q, objective.kl, log_likelihood)
        return f, q, exact_term
    f = log_weight(model, x, q, log_likelihood)
    if objective.bound == "elbo":
        return f, q, zero
    f_called, dist = iwae.called(est, f, q, int(objective.k))
    return f_called, dist, zero


def log_weight(model, x: Tensor, q: Distribution, log_likelihood=None) -> LogQSplit:
    """``VAE.log_weight`` with its log q term said apart: f(z) = [log p(x|z) + log p(z)] - log q(z|x)."""
    prior, log_likelihood = model.prior(q), log_likelihood or model.log_likelihood
    return LogQSplit(lambda z: log_likelihood(x, z) + log_density(prior, z), q, log_density)


def f_evaluations(est, q: Distribution, n_samples: int, objective) -> float:
    """Decoder passes (evaluations of the per-sample integrand) per estimate and data point."""
    if objective.bound == "elbo":
        return est.f_evaluations(q, n_samples)
    count = iwae.f_evaluations(est, q, int(objective.k), n_samples)
    return float("nan") if count is None else float(count)


__all__ = ["ELBO_OBJECTIVE", "f_evaluations", "log_weight", "problem", "why_not"]
