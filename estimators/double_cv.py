r"""Double control variates: REINFORCE leave-one-out with a Taylor control variate (Titsias & Shi 2022).

Titsias & Shi 2022, "Double Control Variates for Gradient Estimation in Discrete Latent Variable Models",
AISTATS 2022. For :math:`S \ge 2` independent samples :math:`b_1, \dots, b_S` of independent Bernoulli variables
with logits :math:`\ell`, :math:`p = \sigma(\ell)`, the score :math:`s_k = \nabla_\ell \log q(b_k) = b_k - p`, and
the gradients :math:`g_j = \nabla_b f(b_j)` of ``f`` at the samples, REINFORCE leave-one-out (Kool et al. 2019)
is :math:`\frac1S\sum_k \big(f(b_k) - \frac1{S-1}\sum_{j\ne k} f(b_j)\big)\,s_k`: its baseline, the other
samples' mean, is the *global* control variate. The *double* control variate is a local, linear one built
from the other samples' gradients, :math:`\bar g_{-k} = \frac1{S-1}\sum_{j\ne k} g_j`:

.. math::
    c_k = \bar g_{-k}^\top (b_k - p), \qquad F_k = f(b_k) - \alpha\, c_k,

    \hat g_\ell = \frac1S \sum_k \Big(F_k - \frac1{S-1}\sum_{j\ne k} F_j\Big)\, s_k
        + \alpha\; p \odot (1 - p) \odot \frac1S \sum_k g_k .

With :math:`\alpha = 1`, :math:`f(b_j) + g_j^\top(b_k - \cdot)` is the first-order Taylor expansion of ``f``
around the other samples, so the learning signal of sample :math:`k` is ``f`` less its Taylor prediction; the
other samples' :math:`F_j` carry their own control variate too (the control variate of the global control
variate: hence "double"). Unbiased for every :math:`\alpha`: given the other samples,
:math:`\mathbb{E}[c_k s_k] = p(1-p) \odot \bar g_{-k}` (the variance of a Bernoulli), which the last term
corrects on average, and :math:`c_j` (:math:`j \ne k`) is linear in :math:`b_j - p`, independent of
:math:`s_k`, so :math:`\mathbb{E}[c_j s_k] = 0`. For a linear ``f`` on :math:`\{0,1\}^D` with its own slope as
gradient, :math:`\alpha = 1` gives the exact gradient from any samples.

:math:`\alpha` (option ``alpha``, its initial value; 0 in the authors' code, where the estimator starts as
REINFORCE leave-one-out) is trained to minimize the variance (``learned_loo``: Adam, ``lr``, on
:math:`\lVert\hat g_\ell\rVert^2` in training mode). Cost: one evaluation of ``f`` per sample and one backward
pass through it for :math:`g` (no evaluation beyond REINFORCE leave-one-out's: the paper's "no extra
computational cost"). Applies to Bernoulli (under ``Independent`` too); unbiased; ``n_samples >= 2``; ``f``
must be differentiable in ``z``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli

from .capabilities import Capabilities
from .learned_loo import DTYPE, LearnedLeaveOneOut
from .options import Option, real
from .registry import register
from .reinforce import leave_one_out_mean


@register
class DoubleCV(LearnedLeaveOneOut):
    name = "double_cv"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), min_samples=2,
                                differentiable_f=True)
    declared_options = {
        "alpha": Option(0.0, real, "the Taylor control variate's initial coefficient (0: REINFORCE leave-one-out)"),
        **LearnedLeaveOneOut.declared_options,
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.coefficient = nn.Parameter(torch.tensor(self.alpha, dtype=DTYPE))

    @property
    def current_alpha(self) -> float:
        return float(self.coefficient.detach())

    def _per_sample(self, fb: Tensor, grad: Tensor, b: Tensor, p: Tensor) -> Tensor:
        score = b - p
        alpha = self.coefficient
        local = (leave_one_out_mean(grad) * score).sum(-1)          # c_k [S, *batch]
        values = fb - alpha * local                                 # F_k
        signal = values - leave_one_out_mean(values)
        return signal.unsqueeze(-1) * score + self._correction(alpha, grad, p)

    @staticmethod
    def _correction(alpha: Tensor, grad: Tensor, p: Tensor) -> Tensor:
        """The control variate's mean, ``alpha p (1 - p) mean_k g_k`` (tests replace it to show it is needed)."""
        return alpha * p * (1.0 - p) * grad.mean(0)
