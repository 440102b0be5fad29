r"""Straight-through estimator for Bernoulli and one-hot categorical variables.

Forward pass with the hard sample :math:`z \sim q_\phi`, backward pass as if :math:`z` were its mean:

.. math::
    \tilde z = z + \mu_\phi - \bot\mu_\phi, \qquad \mu_\phi = \mathbb{E}_{q_\phi}[z]
    \quad(\text{the probabilities}),
    \qquad \hat g = \frac1S \sum_s \nabla_\phi f_\phi(\tilde z_s),

(Bengio, Léonard & Courville 2013, "Estimating or Propagating Gradients Through Stochastic Neurons").
It is biased unless ``f`` is (multi)linear in ``z``: for one Bernoulli variable and
:math:`f(z) = a z + c z^2`, :math:`\mathbb{E}[\hat g_p] - \nabla_p \mathbb{E}[f] = c\,(2p - 1)`, so the
bias grows with the curvature ``c`` of ``f`` and vanishes as ``c -> 0``.
"""
from __future__ import annotations

from torch.distributions import Bernoulli, OneHotCategorical

from . import families
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .registry import register
from .sampling import draw

#: The relaxed and straight-through estimators need a hard sample with a differentiable mean.
HARD_FAMILIES = (Bernoulli, OneHotCategorical)


@register
class StraightThrough(Estimator):
    name = "straight_through"
    capabilities = Capabilities(role="relaxation", unbiased=False, families=HARD_FAMILIES, stackable=True)

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        hard = draw(dist, n_samples, generator, reparameterized=False)
        probs = families.unwrap(dist)[0].probs
        z = hard + (probs - probs.detach())  # value: hard sample; gradient: d probs
        fz = evaluate(f, z, dist, n_samples)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
