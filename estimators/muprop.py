r"""MuProp: REINFORCE with a first-order Taylor control variate around the mean (Gu et al. 2016).

Gu, Levine, Sutskever & Mnih 2016, "MuProp: Unbiased Backpropagation for Stochastic Neural Networks". With
:math:`\mu_\theta = \mathbb{E}_{q_\theta}[z]` (the probabilities, for Bernoulli and one-hot categorical
samples) and :math:`\bar\mu = \bot\mu_\theta` the expansion point, the control variate is the linear
expansion of ``f`` at the mean-field value,
:math:`c(z) = f(\bar\mu) + \nabla f(\bar\mu)^\top (z - \bar\mu)`, whose expectation is known in closed form,
:math:`\mathbb{E}_q[c(z)] = f(\bar\mu) + \nabla f(\bar\mu)^\top(\mu_\theta - \bar\mu)`, so

.. math::
    \hat g = \frac1S\sum_s \Big[\nabla_\phi f_\phi(z_s)
        + \big(f(z_s) - c(z_s)\big)\nabla_\theta \log q_\theta(z_s)\Big]
        + \nabla f(\bar\mu)^\top \frac{\partial \mu_\theta}{\partial\theta}

is unbiased (the score term of :math:`c` and its analytic gradient cancel in expectation). The surrogate is

.. math::
    \frac1S \sum_s \Big[ f_\phi(z_s) + \bot\big(f(z_s) - c(z_s)\big)\big(\log q(z_s) - \bot\log q(z_s)\big)\Big]
        + \bot\nabla f(\bar\mu)^\top (\mu_\theta - \bot\mu_\theta),

zero in value beyond the Monte Carlo estimate of the objective. :math:`f(\bar\mu)` and
:math:`\nabla f(\bar\mu)` are detached, so ``f``'s own parameters receive exactly
:math:`\frac1S\sum_s\nabla_\phi f_\phi(z_s)`, its gradient at the discrete samples.

``f`` must be differentiable in ``z`` and defined at the mean (a point off the discrete support); an ``f``
whose output does not depend differentiably on its input is refused with a ValueError. Cost: one
evaluation of ``f`` per sample plus one evaluation and one backward pass at the mean per call
(``evaluations_per_call = 1``). Under ``torch.no_grad()`` only the samples are evaluated. Applies to
Bernoulli and OneHotCategorical; unbiased.
"""
from __future__ import annotations

import torch
from torch.distributions import Bernoulli, OneHotCategorical

from . import families
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .rebar import not_differentiable
from .registry import register
from .sampling import draw


@register
class MuProp(Estimator):
    name = "muprop"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli, OneHotCategorical),
                                evaluations_per_sample=1, evaluations_per_call=1, differentiable_f=True, stackable=True)

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        z = draw(dist, n_samples, generator, reparameterized=False)
        fz = evaluate(f, z, dist, n_samples)
        if not torch.is_grad_enabled():
            return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
        mu = families.unwrap(dist)[0].probs.expand(z.shape[1:])  # [*batch, *event]
        mu_bar = mu.detach().unsqueeze(0).clone().requires_grad_(True)
        f_mu = evaluate(f, mu_bar, dist, 1)
        slope = torch.autograd.grad(f_mu.sum(), mu_bar, allow_unused=True)[0] if f_mu.requires_grad else None
        if slope is None:
            raise not_differentiable(self.name)
        event_dims = tuple(range(1 + len(dist.batch_shape), z.dim()))
        cv = f_mu.detach() + (slope * (z - mu_bar.detach())).sum(event_dims)  # [n, *batch]
        log_q = dist.log_prob(z)
        score = (fz.detach() - cv) * (log_q - log_q.detach())
        analytic = (slope[0] * (mu - mu.detach())).sum()  # zero in value; gradient grad f(mu)^T d mu / d theta
        return EstimatorOutput(surrogate=reduce_samples(fz + score) + analytic, value=fz.detach())
