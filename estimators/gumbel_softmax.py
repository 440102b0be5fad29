r"""Gumbel-softmax / Concrete relaxation, and its straight-through variant.

Categorical (one-hot, ``K`` classes) with logits :math:`\ell`, temperature :math:`\tau`:

.. math::
    y = \operatorname{softmax}\big((\ell + g)/\tau\big), \qquad g_k = -\log(-\log u_k),\ u_k \sim U(0,1)

(Jang, Gu & Poole 2017, "Categorical Reparameterization with Gumbel-Softmax"; Maddison, Mnih & Teh 2017,
"The Concrete Distribution"). Bernoulli with logit :math:`\ell` uses the binary Concrete:

.. math::
    y = \sigma\big((\ell + \log u - \log(1-u))/\tau\big).

``gumbel_softmax`` evaluates ``f`` at the relaxed sample ``y`` and differentiates along it: an unbiased
estimate of the gradient of the *relaxed* objective :math:`\mathbb{E}[f(y)]`, hence biased for the discrete
one. As :math:`\tau \to 0`, ``y`` tends to the one-hot sample and the bias vanishes while the variance grows
(roughly as :math:`1/\tau`).

``st_gumbel_softmax`` evaluates ``f`` at the hard sample :math:`H(y)` (argmax one-hot, or
:math:`y > 1/2`), which is an exact sample of :math:`q`, and backpropagates through ``y``:
:math:`\tilde z = H(y) + y - \bot y` (Jang et al. 2017, §2.2).

Temperature schedule: :math:`\tau_t = \max(\tau_{min}, \tau_0 e^{-r t})` with ``temperature`` =
:math:`\tau_0`, ``anneal_rate`` = :math:`r`, ``min_temperature`` = :math:`\tau_{min}`; ``t`` is the
``step`` buffer, incremented at the end of every call in training mode (never in eval mode). With the
default ``anneal_rate=0`` the temperature is constant.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from . import families, sampling
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, Rule, nonnegative, positive
from .registry import register
from .straight_through import HARD_FAMILIES


def relaxed_sample(dist: Distribution, n_samples: int, temperature: float, generator) -> Tensor:
    """A Concrete sample ``[n_samples, *batch_shape, *event_shape]`` for Bernoulli/OneHotCategorical."""
    base = families.unwrap(dist)[0]
    logits = base.logits
    shape = (n_samples, *logits.shape)
    finfo = torch.finfo(logits.dtype)
    u = sampling.uniform(shape, logits, generator, sample_ndim=1)  # [n, *batch, *event]
    u = u.clamp(finfo.tiny, 1.0 - finfo.eps)
    if isinstance(base, Bernoulli):
        return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / temperature)
    gumbel = -torch.log(-torch.log(u))
    return torch.softmax((logits + gumbel) / temperature, dim=-1)


def harden(y: Tensor, dist: Distribution) -> Tensor:
    """The discrete sample a relaxed sample rounds to."""
    if isinstance(families.unwrap(dist)[0], Bernoulli):
        return (y > 0.5).to(y.dtype)
    return torch.nn.functional.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)


class _Relaxation(Estimator):
    capabilities = Capabilities(role="relaxation", unbiased=False, families=HARD_FAMILIES, stackable=True)
    hard_forward = False
    declared_options = {
        "temperature": Option(1.0, positive, "the relaxation's temperature (at the schedule's start)"),
        "anneal_rate": Option(0.0, nonnegative, "r of the schedule max(min_temperature, temperature e^(-r t)), "
                                                "t the train-mode calls"),
        "min_temperature": Option(0.0, nonnegative, "the schedule's floor"),
    }
    option_rules = (
        Rule("min_temperature <= temperature", lambda temperature, min_temperature: min_temperature <= temperature),
        Rule("min_temperature > 0 if anneal_rate > 0",
             lambda anneal_rate, min_temperature: anneal_rate == 0.0 or min_temperature > 0.0),
    )

    def __init__(self, **options):
        super().__init__(**options)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def options(self) -> dict[str, object]:
        opts = {"temperature": self.temperature}
        if self.anneal_rate > 0:
            opts.update(anneal_rate=self.anneal_rate, min_temperature=self.min_temperature)
        return opts

    @property
    def current_temperature(self) -> float:
        tau = self.temperature * math.exp(-self.anneal_rate * int(self.step))
        return max(self.min_temperature, tau)

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        y = relaxed_sample(dist, n_samples, self.current_temperature, generator)
        z = harden(y, dist) + (y - y.detach()) if self.hard_forward else y
        fz = evaluate(f, z, dist, n_samples)
        if self.training:
            self.step += 1
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())


@register
class GumbelSoftmax(_Relaxation):
    name = "gumbel_softmax"


@register
class STGumbelSoftmax(_Relaxation):
    name = "st_gumbel_softmax"
    hard_forward = True
