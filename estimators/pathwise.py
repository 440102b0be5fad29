r"""Pathwise (reparameterization) gradient estimator.

Write :math:`z = h_\phi(\epsilon)` with :math:`\epsilon \sim p(\epsilon)` free of :math:`\phi`. Then

.. math::
    \nabla_\phi \mathbb{E}_{q_\phi(z)}[f_\phi(z)]
      = \mathbb{E}_{p(\epsilon)}\big[\nabla_\phi f_\phi(h_\phi(\epsilon))\big]
      \approx \frac{1}{S} \sum_{s=1}^S \nabla_\phi f_\phi(h_\phi(\epsilon_s)),

so the surrogate is :math:`\frac1S \sum_s f_\phi(z_s)` with the samples kept in the graph
(Kingma & Welling 2013, "Auto-Encoding Variational Bayes"; Rezende et al. 2014; Mohamed et al. 2020,
"Monte Carlo Gradient Estimation in Machine Learning", §5). Gamma, Beta and Dirichlet use implicit
reparameterization, :math:`\nabla_\phi z = -\nabla_\phi F(z;\phi) / q_\phi(z)` with ``F`` the CDF
(Figurnov et al. 2018), as torch's ``rsample`` does.

Applies to every distribution with ``has_rsample``; unbiased.
"""
from __future__ import annotations

from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .registry import register
from .sampling import draw


@register
class Pathwise(Estimator):
    name = "pathwise"
    # has_rsample: Normal, MultivariateNormal, LogNormal, Laplace, Uniform, Exponential, Gamma, Beta,
    # Dirichlet, the relaxed distributions, ...
    capabilities = Capabilities(role="pathwise", unbiased=True, requires=("has_rsample",), stackable=True)

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        z = draw(dist, n_samples, generator, reparameterized=True)  # gradient flows along the sampling path
        fz = evaluate(f, z, dist, n_samples)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
