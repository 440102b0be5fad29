r"""DisARM: ARM with its noise integrated out given the pair (Dong, Mnih & Tucker 2020).

Dong, Mnih & Tucker 2020, "DisARM: An Antithetic Gradient Estimator for Binary Latent Variables". With the
same antithetic pair as ``arm`` (one uniform vector :math:`u` per pair,
:math:`b = 1[u < \sigma(\alpha)]`, :math:`\tilde b = 1[1-u < \sigma(\alpha)]`), DisARM is the conditional
expectation of ARM's estimate given :math:`(b, \tilde b)`:

.. math::
    \hat g_{\alpha_d} = \tfrac12\big(f(b) - f(\tilde b)\big)\,(-1)^{\tilde b_d}\,
        1[b_d \neq \tilde b_d]\,\sigma(|\alpha_d|),

so it is unbiased and, on the same pairs, its variance is at most ARM's (Rao-Blackwellization); it is
zero in the coordinates where the pair agrees. Surrogate, value, cost (two evaluations of ``f`` per
sample, ``n_samples`` counting pairs) and what ``f``'s own parameters receive are as in ``arm``.

Applies to Bernoulli (under ``Independent`` too); unbiased. The categorical extension of Dong et al.
2021 ("Coupled gradient estimators for discrete latent variables") is not offered here because it is
not this estimator with a new sampler: it re-expresses a categorical as a chain of dependent stick-breaking
binaries whose pair differs in a whole prefix and whose estimate depends on a chosen category ordering,
which would be a separate estimator with its own derivation and tests.
"""
from __future__ import annotations

import torch
from torch.distributions import Bernoulli

from .arm import AntitheticBernoulli
from .capabilities import Capabilities
from .registry import register


@register
class DisARM(AntitheticBernoulli):
    name = "disarm"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), evaluations_per_sample=2,
                                stackable=True)

    def _pair_estimate(self, fb, fbt, u, b, bt, logits):
        sign = 1.0 - 2.0 * bt  # (-1)^{b_tilde}
        return 0.5 * (fb - fbt) * sign * (b != bt).to(logits.dtype) * torch.sigmoid(logits.abs())
