r"""DReG: doubly reparameterized gradients of the K-sample importance-weighted bound (Tucker et al. 2019).

Tucker, Lawson, Gu & Maddison 2019, "Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives"
(ICLR). Like ``vimco`` it estimates the gradient of the importance-weighted bound (Burda et al. 2016;
``capabilities.objective == "iwae"``), from one K-tuple, K = ``n_samples``:

.. math::
    \hat L = \log \frac1K \sum_{k=1}^K e^{f_k}, \qquad f_k = r_\theta(z_k) - \log q_\phi(z_k), \qquad
    \tilde w_k = \frac{e^{f_k}}{\sum_j e^{f_j}},

with ``f`` the per-sample log-weight said apart as a ``base.LogQSplit`` (for a VAE :math:`r_\theta =
\log p_\theta(x, z)`). With :math:`z_k = h_\phi(\epsilon_k)`, the pathwise (IWAE) gradient is
:math:`\sum_k \tilde w_k (\partial_z f_k\, \nabla_\phi h_\phi(\epsilon_k) - \nabla_\phi \log q_\phi(z_k))`, whose
score term has mean zero only at K = 1 and carries the noise that makes the encoder's signal-to-noise ratio
fall like :math:`1/\sqrt K` (Rainforth et al. 2018). Reparameterizing that score term a second time
(:math:`\mathbb E_{q}[g(z) \nabla_\phi \log q_\phi(z)]
= \mathbb E_\epsilon[\partial_z g(z)\, \nabla_\phi h_\phi(\epsilon)]` with :math:`g = \tilde w_k`,
:math:`\partial_{z_k} \tilde w_k = \tilde w_k (1 - \tilde w_k) \partial_z f_k`) gives

.. math::
    \nabla_\phi \mathcal L_K = \mathbb E\Big[\sum_k \tilde w_k^2\, \partial_z f_k\big|_{\phi \text{ fixed in } q}\,
        \nabla_\phi h_\phi(\epsilon_k)\Big], \qquad
    \nabla_\theta \mathcal L_K = \mathbb E\Big[\sum_k \tilde w_k\, \nabla_\theta r_\theta(z_k)\Big]:

the encoder's path derivative weighted by the *squared* normalized weights, no score term; the model's
parameters keep the ordinary IWAE gradient. Both are unbiased for the bound's gradient. One surrogate carries
both: ``f.stop_log_q`` (log q's parameters detached) is evaluated once at the reparameterized samples, and
:math:`\hat L` of it is differentiated; a gradient hook on the samples multiplies the path gradient reaching
:math:`z_k` by :math:`\tilde w_k` (``path_weights``), turning :math:`\tilde w_k` into :math:`\tilde w_k^2` there,
while a direct dependence of :math:`r` on any parameter keeps :math:`\tilde w_k`. The surrogate's value is
:math:`\hat L` summed over the batch (as ``vimco``'s) and ``out.value`` is ``f`` at the K samples. At K = 1 it
is ``stl``. Normal latents (under ``Independent``); one evaluation of ``f`` per sample.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Normal

from .base import EstimatorOutput, evaluate
from .capabilities import Capabilities
from .iwae import BoundEstimator, draw_tuples
from .registry import register


@register
class Dreg(BoundEstimator):
    name = "dreg"
    # Stackable: its randomness goes through draw and every batch element is its own (tests/test_stacked_runs.py
    # checks it with the integrand as a LogQSplit, per call and over whole stacked runs).
    capabilities = Capabilities(role="pathwise", unbiased=True, families=(Normal,), requires=("has_rsample",),
                                objective="iwae", needs_log_q=True, stackable=True)

    def path_weights(self, w: Tensor) -> Tensor:
        r"""The factor on the path gradient reaching :math:`z_k` on top of :math:`\hat L`'s own
        :math:`\tilde w_k`: :math:`\tilde w_k` again (DReG's squared weights)."""
        return w

    def _estimate_tuples(self, f, q, k, tuples, generator) -> EstimatorOutput:
        z = draw_tuples(q, k, tuples, generator, reparameterized=True)     # [k * tuples, *batch, *event]
        weights = {}
        if z.requires_grad:
            z = z.clone()
            event = (1,) * len(q.event_shape)
            z.register_hook(lambda grad: grad * weights["path"].reshape(*z.shape[:1 + len(q.batch_shape)], *event))
        rows = evaluate(f.stop_log_q, z, q, k * tuples)
        fz = rows.reshape(k, tuples, *q.batch_shape)
        weights["path"] = self.path_weights(torch.softmax(fz.detach(), dim=0))
        bound = torch.logsumexp(fz, dim=0) - math.log(k)                   # [tuples, *batch]
        return EstimatorOutput(surrogate=bound.mean(0).sum(), value=rows.detach())
