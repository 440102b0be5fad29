r"""Gumbel-Rao: the straight-through Gumbel-softmax gradient, Rao-Blackwellized over the Gumbel noise
given the sampled category.

Paulus, Max B.; Maddison, Chris J. & Krause, Andreas (2021), "Rao-Blackwellizing the Straight-Through
Gumbel-Softmax Gradient Estimator", ICLR 2021.

Straight-through Gumbel-softmax (``st_gumbel_softmax``) draws :math:`G` (i.i.d. standard Gumbel), evaluates
``f`` at :math:`D = H(\theta + G)` (the one-hot argmax, an exact sample of :math:`\mathrm{Cat}(\operatorname
{softmax}\theta)`) and backpropagates through :math:`\operatorname{softmax}((\theta + G)/\tau)`:
:math:`\hat g_{ST} = J_\theta \operatorname{softmax}((\theta + G)/\tau)^\top \nabla_D f(D)`. Its
conditional expectation given :math:`D`,

.. math::
    \hat g_{GR} = \mathbb{E}\big[J_\theta \operatorname{softmax}((\theta + G)/\tau) \,\big|\, D\big]^\top
                  \nabla_D f(D)
                \approx \Big(\frac1k \sum_{j=1}^k J_\theta \operatorname{softmax}((\theta + G^{(j)})/\tau)
                  \Big)^\top \nabla_D f(D), \qquad G^{(j)} \sim G \mid D,

has the same mean and no more variance (Rao-Blackwell). ``f`` is evaluated once per sample, at :math:`D`;
the ``k`` draws only cost softmaxes. The surrogate is :math:`\hat D = D + \bar y - \bot\bar y` with
:math:`\bar y = \frac1k\sum_j \operatorname{softmax}((\theta + \bot G^{(j)})/\tau)`.

Exact conditional Gumbel sampling given the argmax :math:`i` (the top-down construction): with
:math:`E_0, E_1, \dots, E_K \sim \mathrm{Exp}(1)` i.i.d. and :math:`Z = \sum_c e^{\theta_c}`, the perturbed
logits :math:`X = \theta + G` are

.. math::
    X_i = \log Z - \log E_i, \qquad
    X_c = -\log\big(E_c\, e^{-\theta_c} + E_i / Z\big) \quad (c \ne i),

since the maximum of :math:`K` Gumbels :math:`\mathrm{Gumbel}(\theta_c)` is :math:`\mathrm{Gumbel}(\log Z)`,
independent of the argmax, and given the maximum :math:`M` the others are independent
:math:`\mathrm{Gumbel}(\theta_c)` truncated below :math:`M`, i.e. :math:`e^{-X_c} = e^{-M} + e^{-Y_c}` with
:math:`Y_c \sim \mathrm{Gumbel}(\theta_c)`. Then :math:`G^{(j)} = X - \theta` (held fixed in the backward pass).

``k = 1`` is ``st_gumbel_softmax`` in distribution (the pair :math:`(D, G)` has the same law); the variance
falls with ``k`` towards its Rao-Blackwellized limit, and the mean, hence the bias of the relaxation, does
not move. Bernoulli variables are the two-class case (class logits :math:`(0, \ell)`; the difference of two
Gumbels is logistic, so this is the binary Concrete of ``st_gumbel_softmax``). Biased.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, positive, positive_integer
from .one_hot_view import check_differentiable, class_logits, from_one_hot, to_one_hot
from .registry import register
from .sampling import draw, exponential
from .straight_through import HARD_FAMILIES


def conditional_gumbel(logits: Tensor, hard: Tensor, k: int, generator) -> Tensor:
    """Gumbel noise ``[k, *hard.shape]`` distributed as ``G | argmax(logits + G) = hard`` (detached)."""
    with torch.no_grad():
        logits = logits.detach().expand_as(hard)
        # [k, n, *batch, *event]: two sample dims, so a GeneratorStack's runs are dim 2 (the first batch dim)
        e = exponential((k, *hard.shape), logits, generator, sample_ndim=2)
        tiny = torch.finfo(logits.dtype).tiny
        log_e = e.clamp_min(tiny).log()
        log_e_top = (log_e * hard).sum(-1, keepdim=True)  # log E_i of the sampled class
        log_z = torch.logsumexp(logits, -1, keepdim=True)
        top = log_z - log_e_top  # the maximum, Gumbel(log Z)
        others = -torch.logaddexp(log_e - logits, log_e_top - log_z)  # truncated below the maximum
        perturbed = torch.where(hard > 0.5, top, others)
        return perturbed - logits


@register
class GumbelRao(Estimator):
    name = "gumbel_rao"
    capabilities = Capabilities(role="relaxation", unbiased=False, families=HARD_FAMILIES, evaluations_per_sample=1,
                                differentiable_f=True, stackable=True)
    declared_options = {
        "temperature": Option(1.0, positive, "the relaxation's temperature"),
        "k": Option(10, positive_integer, "conditional Gumbel draws per sample (1: `st_gumbel_softmax`)"),
    }

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        hard = to_one_hot(draw(dist, n_samples, generator, reparameterized=False), dist)
        logits = class_logits(dist)
        noise = conditional_gumbel(logits, hard, self.k, generator)
        soft = torch.softmax((logits + noise) / self.temperature, -1).mean(0)
        z = from_one_hot(hard + (soft - soft.detach()), dist)
        fz = evaluate(f, z, dist, n_samples)
        check_differentiable(fz, z, self.name)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
