r"""ReinMax: a second-order (Heun's method) straight-through estimator for one-hot categorical and
Bernoulli variables.

Liu, Liyuan; Dong, Chengyu; Liu, Xiaodong; Yu, Bin & Gao, Jianfeng (2023), "Bridging Discrete and
Backpropagation: Straight-Through and Beyond", NeurIPS 2023 (Algorithm 2).

With logits :math:`\theta \in \mathbb{R}^K`, :math:`\pi_0 = \operatorname{softmax}(\theta)`, a one-hot sample
:math:`D \sim \mathrm{Cat}(\pi_0)` and temperature :math:`\tau`:

.. math::
    \pi_1 = \tfrac12\big(D + \operatorname{softmax}(\theta / \tau)\big), \qquad
    \hat D = D + \big(2\,\tilde\pi_1 - \tfrac12\,\pi_0\big) - \bot\big(2\,\tilde\pi_1 - \tfrac12\,\pi_0\big),

where :math:`\tilde\pi_1` has the value :math:`\pi_1` and the softmax Jacobian *taken at* :math:`\pi_1`
(the paper writes it :math:`\operatorname{softmax}(\bot(\ln\pi_1 - \theta) + \theta)`; here it is the
linearization :math:`\pi_1 \odot (\delta - \langle\pi_1, \delta\rangle)`, :math:`\delta = \theta - \bot\theta`,
which has no logarithm to overflow at small :math:`\tau`). ``f`` is evaluated at :math:`\hat D`, whose value
is the exact sample :math:`D`; the gradient is

.. math::
    \hat g = 2\,(\operatorname{diag}\pi_1 - \pi_1\pi_1^\top)\,\nabla_D f(D)
           - \tfrac12\,(\operatorname{diag}\pi_0 - \pi_0\pi_0^\top)\,\nabla_D f(D).

Why (the paper's section 3-4): with :math:`I_i` the one-hot vector of class :math:`i`, the exact gradient is

.. math::
    \nabla_\theta \mathbb{E}[f(D)] = \sum_{i,j} \pi_i\,\pi_j\,\big(f(I_i) - f(I_j)\big)\, I_i .

Straight-through replaces each difference :math:`f(I_i) - f(I_j)` by a first-order (forward Euler) step
:math:`\nabla f(I_j)^\top (I_i - I_j)`, ReinMax by the trapezoidal (Heun) rule
:math:`\tfrac12(\nabla f(I_i) + \nabla f(I_j))^\top(I_i - I_j)`: at :math:`\tau = 1` the expectation of
:math:`\hat g` is that second-order approximation, which is exact when ``f`` is quadratic in the one-hot
vector (the other variables fixed), so ReinMax is then unbiased and straight-through is not. Other
temperatures move it away from that point; on the suite's quadratic problems ReinMax is then sometimes more
biased than straight-through (exact enumeration in tests/test_estimators_iii_discrete.py).

A Bernoulli variable with logit :math:`\ell` is the two-class case: class logits :math:`(0, \ell)`, one-hot
:math:`(1 - b, b)`, and ``f`` sees the second column. Biased in general; one evaluation of ``f`` per sample,
and its gradient in ``z``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, positive
from .one_hot_view import check_differentiable, class_logits, from_one_hot, linearized_softmax, to_one_hot
from .registry import register
from .sampling import draw
from .straight_through import HARD_FAMILIES


def reinmax_relaxation(hard: Tensor, logits: Tensor, temperature: float) -> Tensor:
    r""":math:`\hat D`: the value of the one-hot ``hard`` ``[..., K]``, ReinMax's gradient to ``logits``
    (broadcast against ``hard``)."""
    pi0 = torch.softmax(logits, -1)
    pi1 = 0.5 * (torch.softmax(logits / temperature, -1) + hard)
    second_order = 2.0 * linearized_softmax(pi1, logits)  # value 0, Jacobian 2 J(pi1)
    first_order = pi0 - pi0.detach()  # value 0, Jacobian J(pi0)
    return hard + second_order - 0.5 * first_order


@register
class ReinMax(Estimator):
    name = "reinmax"
    capabilities = Capabilities(role="relaxation", unbiased=False, families=HARD_FAMILIES, evaluations_per_sample=1,
                                differentiable_f=True, stackable=True)
    declared_options = {"temperature": Option(1.0, positive, "the temperature of its softmaxes")}

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        hard = to_one_hot(draw(dist, n_samples, generator, reparameterized=False), dist)
        z = from_one_hot(reinmax_relaxation(hard, class_logits(dist), self.temperature), dist)
        fz = evaluate(f, z, dist, n_samples)
        check_differentiable(fz, z, self.name)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
