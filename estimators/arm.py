r"""ARM: the Augment-REINFORCE-Merge estimator for Bernoulli variables (Yin & Zhou 2019).

Yin & Zhou 2019, "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary Networks". For independent
Bernoulli variables with logits :math:`\alpha` (one per coordinate :math:`d` of the event and batch) and
one uniform vector :math:`u \sim U(0,1)^D` per pair, the antithetic pair

.. math::
    b = 1[u < \sigma(\alpha)], \qquad \tilde b = 1[1 - u < \sigma(\alpha)] = 1[u > \sigma(-\alpha)]

(both exact samples of :math:`q`, coupled through the same :math:`u`) gives the unbiased estimate

.. math::
    \hat g_{\alpha_d} = \big(f(\tilde b) - f(b)\big)\big(u_d - \tfrac12\big).

With :math:`S` = ``n_samples`` pairs the surrogate is

.. math::
    \frac1S\sum_s \tfrac12\big[f_\phi(b_s) + f_\phi(\tilde b_s)\big]
        + \Big\langle \bot\,\frac1S\sum_s \hat g_{\alpha}^{(s)},\ \alpha - \bot\alpha \Big\rangle,

summed over the batch: its value is the Monte Carlo estimate of the objective, ``f``'s own parameters
receive the average of its gradients at the :math:`2S` discrete samples (its direct dependence on the
parameters, unbiased since both halves of a pair are samples of :math:`q`), and the logits
:math:`\alpha` (``dist.logits``, whatever the distribution was built from) receive :math:`\hat g_\alpha`,
which reaches everything upstream by the chain rule. The coupling matters: with independent uniforms
for :math:`b` and :math:`\tilde b` the same formula is biased (it halves the gradient of a linear ``f``).

``n_samples`` counts pairs: two evaluations of ``f`` per sample (``evaluations_per_sample = 2``), made
in one call of ``f`` on the :math:`2S` samples. ``out.value`` is ``[S, *batch_shape]``, the mean of ``f``
over each pair. Applies to Bernoulli (under ``Independent`` too); unbiased.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli

from . import families, sampling
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .registry import register


class AntitheticBernoulli(Estimator):
    """The pair sampling and surrogate shared by ARM and DisARM; subclasses give the per-pair estimate."""

    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), evaluations_per_sample=2,
                                stackable=True)

    def _uniforms(self, shape: tuple[int, ...], like: Tensor, generator) -> tuple[Tensor, Tensor]:
        """``(u, u_tilde)``: ``b = 1[u < p]``, ``b_tilde = 1[u_tilde < p]``; the pair shares ``u``
        (``u_tilde = 1 - u``)."""
        u = sampling.uniform(shape, like, generator, sample_ndim=1)  # [n, *batch, *event]
        return u, 1.0 - u

    def _pair_estimate(self, fb: Tensor, fbt: Tensor, u: Tensor, b: Tensor, bt: Tensor, logits: Tensor) -> Tensor:
        """The estimate of d E[f] / d logits from one pair, ``[n, *logits.shape]``."""
        raise NotImplementedError

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        logits = families.unwrap(dist)[0].logits
        shape = (n_samples, *logits.shape)
        with torch.no_grad():
            u, u_tilde = self._uniforms(shape, logits, generator)
            p = torch.sigmoid(logits)
            b, bt = (u < p).to(logits.dtype), (u_tilde < p).to(logits.dtype)
        both = evaluate(f, torch.cat([b, bt]), dist, 2 * n_samples)
        fb, fbt = both[:n_samples], both[n_samples:]
        value = 0.5 * (fb + fbt)
        surrogate = reduce_samples(value)
        if logits.requires_grad:
            event_ones = (1,) * (logits.dim() - len(dist.batch_shape))
            with torch.no_grad():
                g = self._pair_estimate(fb.detach().reshape(*fb.shape, *event_ones),
                                        fbt.detach().reshape(*fbt.shape, *event_ones), u, b, bt, logits.detach())
            surrogate = surrogate + (g.mean(0) * (logits - logits.detach())).sum()
        return EstimatorOutput(surrogate=surrogate, value=value.detach())


@register
class ARM(AntitheticBernoulli):
    name = "arm"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), evaluations_per_sample=2,
                                stackable=True)

    def _pair_estimate(self, fb, fbt, u, b, bt, logits):
        return (fbt - fb) * (u - 0.5)
