r"""VIMCO: the multi-sample score-function estimator of the importance-weighted bound (Mnih & Rezende 2016).

Mnih & Rezende 2016, "Variational Inference for Monte Carlo Objectives". It estimates the gradient of a
*different objective* than the other estimators (``capabilities.objective == "iwae"``): with
``f`` the per-sample log-weight (for a VAE, :math:`f(z) = \log p(x, z) - \log q(z \mid x)`) and
:math:`K` = ``n_samples`` samples,

.. math::
    \mathcal L = \sum_b \mathbb{E}_{z_{1:K} \sim q}\Big[\hat L\Big], \qquad
    \hat L = \log \frac1K \sum_{k=1}^K e^{f_\phi(z_k)}

(the importance-weighted bound of Burda et al. 2016). Its gradient is

.. math::
    \nabla \mathcal L = \mathbb{E}\Big[\sum_k \big(\hat L - \hat L_{-k}\big)\nabla_\theta \log q_\theta(z_k)
        + \sum_k \tilde w_k \nabla_\phi f_\phi(z_k)\Big], \qquad
    \tilde w_k = \frac{e^{f_k}}{\sum_j e^{f_j}},

with the leave-one-out baselines :math:`\hat L_{-k} = \log\frac1K\big(\sum_{j\neq k} e^{f_j} + e^{\hat f_{-k}}\big)`,
:math:`\hat f_{-k} = \frac{1}{K-1}\sum_{j\ne k} f_j` (the geometric mean of the other weights in place of
the :math:`k`-th). :math:`\hat L_{-k}` does not depend on :math:`z_k`, so each baseline's score term has
mean zero and the estimate is unbiased for :math:`\nabla\mathcal L`; the second sum (``f``'s direct
dependence on the parameters, e.g. on the decoder and on :math:`-\log q`) is autograd's gradient of
:math:`\hat L` through ``f``. The surrogate is

.. math::
    \sum_b \Big[\hat L + \sum_k \bot\big(\hat L - \hat L_{-k}\big)\big(\log q(z_k) - \bot\log q(z_k)\big)\Big],

whose value is :math:`\hat L` summed over the batch (not a mean of ``f``), and ``out.value`` is ``f`` at
the :math:`K` samples, ``[K, *batch_shape]``. Needs :math:`K \ge 2`. Called on ``iwae.k_tuples(q, K)`` with
``n`` K-tuples (``iwae.BoundEstimator``) it is the mean of ``n`` such estimates, ``value`` ``[nK, *batch_shape]``.
It is a score-function method: it applies to every family that can be sampled and has ``log_prob``, except
those whose support depends on the parameters (Uniform), as ``reinforce``. One evaluation of ``f`` per sample.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Uniform

from .base import EstimatorOutput, evaluate
from .capabilities import Capabilities
from .iwae import BoundEstimator, draw_tuples
from .registry import register


def leave_one_out_bounds(fz: Tensor) -> Tensor:
    r""":math:`\hat L_{-k}` for each k, ``[K, ...]``, from log-weights ``fz`` ``[K, ...]`` (no gradient)."""
    k = fz.shape[0]
    geometric = (fz.sum(0, keepdim=True) - fz) / (k - 1)  # f_hat_{-k}
    eye = torch.eye(k, dtype=torch.bool, device=fz.device).reshape(k, k, *([1] * (fz.dim() - 1)))
    # row k: the K log-weights with the k-th replaced by f_hat_{-k}
    replaced = torch.where(eye, geometric.unsqueeze(1), fz.unsqueeze(0))
    return torch.logsumexp(replaced, dim=1) - math.log(k)


@register
class Vimco(BoundEstimator):
    name = "vimco"
    capabilities = Capabilities(role="score_function", unbiased=True, requires=("sample",), excludes=(Uniform,),
                                exclude_reason="its support depends on its parameters", min_samples=2,
                                objective="iwae", stackable=True)

    def _estimate_tuples(self, f, q, k, tuples, generator) -> EstimatorOutput:
        z = draw_tuples(q, k, tuples, generator, reparameterized=False)    # [k * tuples, *batch, *event]
        rows = evaluate(f, z, q, k * tuples)
        fz = rows.reshape(k, tuples, *q.batch_shape)
        bound = torch.logsumexp(fz, dim=0) - math.log(k)                  # [tuples, *batch]
        with torch.no_grad():
            signal = bound.detach().unsqueeze(0) - leave_one_out_bounds(fz.detach())
        log_q = q.log_prob(z).reshape(fz.shape)
        score = (signal * (log_q - log_q.detach())).sum(0)
        return EstimatorOutput(surrogate=(bound + score).mean(0).sum(), value=rows.detach())
