r"""STL, sticking the landing: the pathwise gradient of a Monte Carlo ELBO without its score term.

Roeder, Wu & Duvenaud 2017, "Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
Inference" (NeurIPS). For an integrand that contains the log-density of the distribution sampled,

.. math::
    f_{\theta,\phi}(z) = r_\theta(z) - \log q_\phi(z)

(the ELBO's :math:`\log p_\theta(x, z) - \log q_\phi(z \mid x)` with the KL estimated by sampling), the pathwise
gradient with :math:`z = h_\phi(\epsilon)` splits into a path term and a score term,

.. math::
    \nabla_\phi f(h_\phi(\epsilon)) = \big(\nabla_z r(z) - \nabla_z \log q_\phi(z)\big)\,\nabla_\phi h_\phi(\epsilon)
        \;-\; \nabla_\phi \log q_\phi(z)\big|_{z \text{ fixed}},

and the score term has mean zero, :math:`\mathbb E_q[\nabla_\phi \log q_\phi(z)] = 0`. STL drops it:

.. math::
    \hat g_\phi = \frac1S \sum_s \big(\nabla_z r(z_s) - \nabla_z \log q_\phi(z_s)\big)\,\nabla_\phi h_\phi(\epsilon_s),

unbiased for the ELBO's gradient, and exactly zero (variance zero) where :math:`q` is the posterior, since then
:math:`r - \log q` is constant in z (the estimate "sticks the landing"). The model's parameters :math:`\theta`
keep the ordinary gradient :math:`\frac1S \sum_s \nabla_\theta r_\theta(z_s)`. The surrogate is the mean over
samples of ``f.stop_log_q(z)`` (``base.LogQSplit``: log q with its parameters detached) at reparameterized
samples; its value is the Monte Carlo ELBO. ``f`` must be a ``LogQSplit`` of the distribution sampled
(``Capabilities.needs_log_q``): a VAE run with ``objective.kl: sampled``. One evaluation of ``f`` per sample.
Normal latents (under ``Independent``), as the paper's.
"""
from __future__ import annotations

from torch.distributions import Normal

from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .registry import register
from .sampling import draw


@register
class Stl(Estimator):
    name = "stl"
    # Stackable: its randomness goes through draw and every batch element is its own (tests/test_stacked_runs.py
    # checks it with the integrand as a LogQSplit, per call and over whole stacked runs).
    capabilities = Capabilities(role="pathwise", unbiased=True, families=(Normal,), requires=("has_rsample",),
                                needs_log_q=True, stackable=True)

    def integrand(self, f):
        """What is differentiated at the samples: f with log q's parameters detached (no score term)."""
        return f.stop_log_q

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        z = draw(dist, n_samples, generator, reparameterized=True)
        fz = evaluate(self.integrand(f), z, dist, n_samples)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
