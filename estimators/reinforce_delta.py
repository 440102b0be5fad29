r"""Score-function estimator for Gaussians with the delta-method control variate.

Mohamed, Shakir; Rosca, Mihaela; Figurnov, Michael & Mnih, Andriy (2020), "Monte Carlo Gradient Estimation
in Machine Learning", JMLR 21(132), section 7.4 (delta methods; Paisley, Blei & Jordan 2012, "Variational
Bayesian Inference with Stochastic Search", ICML).

For :math:`z \sim q_\theta = \mathcal N(\mu, \operatorname{diag}\sigma^2)` the control variate is the
second-order Taylor expansion of ``f`` around the mean,

.. math::
    h(z) = f(\mu) + (z - \mu)^\top \nabla f(\mu) + \tfrac12 (z - \mu)^\top \nabla^2 f(\mu)\,(z - \mu),

whose expectation is known, :math:`\mathbb{E}_q[h] = f(\mu) + \tfrac12 \sum_i \nabla^2_{ii} f(\mu)\,\sigma_i^2`,
so (holding :math:`h`'s coefficients fixed) :math:`c := \nabla_\theta \mathbb{E}_q[h] = \mathbb{E}_q[h\,
\nabla_\theta\log q]` is :math:`c_\mu = \nabla f(\mu)`, :math:`c_{\sigma_i} = \nabla^2_{ii} f(\mu)\,\sigma_i`.
Per sample :math:`z_s`, with scores :math:`s_\mu = \epsilon/\sigma`, :math:`s_\sigma = (\epsilon^2 - 1)/\sigma`,
:math:`\epsilon = (z - \mu)/\sigma`:

.. math::
    \hat g_{\theta} = \nabla_\theta f_\theta(z_s)\big|_{\text{direct}}
        + \big(f(z_s) - \beta_s\,h(z_s)\big)\,s_\theta(z_s) + \beta_s\,c_\theta,

unbiased for any :math:`\beta_s` independent of :math:`z_s`. ``coefficient="leave_one_out"`` (the default)
estimates, for each batch element and each parameter group (location, scale), the variance-minimizing
coefficient :math:`\beta^* = \sum_i \operatorname{Cov}(f s_i, h s_i) / \sum_i \operatorname{Var}(h s_i)`
(pooled over the coordinates, as the authors' code does) from the *other* samples of the call,

.. math::
    \beta_s = \frac{\sum_{k \ne s} \sum_i f(z_k)\, s_i(z_k)\,\big(h(z_k)\, s_i(z_k) - c_i\big)}
                   {\sum_{k \ne s} \sum_i \big(h(z_k)\, s_i(z_k) - c_i\big)^2}.

Since the mean of :math:`h s_i` is known exactly (:math:`c_i`), :math:`\mathbb{E}[f s_i (h s_i - c_i)]` *is*
the covariance, and :math:`\beta_s` minimizes the other samples' estimate of the second moment
:math:`\mathbb{E}[(f s - \beta(h s - c))^2]`, which differs from the variance by a term free of
:math:`\beta`; one other sample suffices (:math:`\beta_s = 0` where the denominator is). So :math:`\beta_s`
is independent of :math:`z_s` and the estimator stays unbiased; it needs ``n_samples >= 2``. (Centring
:math:`f s_i` at :math:`c_i` instead is exact for quadratic ``f`` but blows up where the Taylor expansion is
poor, e.g. ``cos(3 z)``; centring it at the other samples' mean is the reverse. Measured on the suite's
Gaussian problems with 4 samples, this uncentred form was never the worst of the three and within a factor
of 2 of the best except where ``f`` is (nearly) quadratic, where ``coefficient=1.0`` is exact.) With few samples and few
coordinates the estimated coefficient is noisy, and where the Taylor expansion is poor the control variate
can cost more than it saves. A number fixes :math:`\beta` (``coefficient=1.0``: the plain delta method,
exact for quadratic ``f``) and needs one sample.

Cost: one evaluation of ``f`` per sample, plus, per call, ``f`` and its gradient at the mean and ``D``
Hessian-vector products there (``D`` the event size; they give the Hessian's columns, from which
:math:`(z - \mu)^\top \nabla^2 f\,(z - \mu)` is formed for every sample), declared as
``evaluations_per_call = 1``. ``f`` must be twice differentiable in ``z``
(``differentiable_f``): an ``f`` with no autograd path from ``z`` (detached, thresholded, integer-valued)
or with non-finite derivatives is refused with a ValueError. Applies to ``Normal`` and
``Independent(Normal)``; unbiased.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Normal

from . import families
from .base import Estimator, EstimatorOutput, coordinates_over, evaluate, reduce_samples
from .capabilities import Capabilities
from .measure_valued import evaluate_rows
from .options import Option, one_of_or_real, positive_integer
from .registry import register
from .sampling import draw

COEFFICIENTS = ("leave_one_out",)


def _not_differentiable(reason: str) -> ValueError:
    return ValueError(
        f"estimator 'reinforce_delta' needs f to be twice differentiable in z (its control variate is f's "
        f"second-order Taylor expansion at the mean, from f's gradient and Hessian-vector products): {reason}"
    )


def taylor_at_mean(f, mu: Tensor, batch, event) -> tuple[Tensor, Tensor, Tensor]:
    """``f(mu)`` ``[*batch]``, gradient ``[*batch, D]`` and Hessian ``[*batch, D, D]`` of ``f`` at ``mu``
    (detached); ``mu`` is ``[*batch, *event]``. ``f`` is evaluated on ``D`` copies of ``mu``, one per
    Hessian column (a Hessian-vector product with the unit vector of that coordinate)."""
    n_coords = math.prod(event)
    with torch.enable_grad():
        at = mu.detach().unsqueeze(0).expand(n_coords, *mu.shape).clone().requires_grad_(True)
        value = evaluate_rows(f, at, n_coords, batch)
        if not value.requires_grad:
            raise _not_differentiable("f(z) does not require grad for z that does")
        (grad,) = torch.autograd.grad(value.sum(), at, create_graph=True, allow_unused=True)
        if grad is None:
            raise _not_differentiable("f(z) has no autograd path from z")
        if not bool(torch.isfinite(grad).all()):
            raise _not_differentiable("its gradient at the mean is not finite")
        units = torch.eye(n_coords, dtype=mu.dtype, device=mu.device)
        units = units.reshape(n_coords, *([1] * len(batch)), *event)
        hessian_cols = None
        if grad.requires_grad:
            (hessian_cols,) = torch.autograd.grad((grad * units).sum(), at, allow_unused=True)
    flat = (n_coords, *batch, n_coords)
    if hessian_cols is None:  # f is linear in z
        hessian_cols = torch.zeros(flat, dtype=mu.dtype, device=mu.device)
    if not bool(torch.isfinite(hessian_cols).all()):
        raise _not_differentiable("its Hessian at the mean is not finite")
    hessian = hessian_cols.detach().reshape(flat).movedim(0, -1)  # [*batch, D (row), D (column)]
    hessian = 0.5 * (hessian + hessian.transpose(-1, -2))
    return value[0].detach(), grad[0].detach().reshape(*batch, n_coords), hessian


@register
class ReinforceDelta(Estimator):
    name = "reinforce_delta"
    # Per call, f at the mean (with its gradient and D Hessian-vector products there): evaluations_per_call.
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Normal,), min_samples=1,
                                evaluations_per_sample=1, evaluations_per_call=1, differentiable_f=True,
                                limits="events of at most max_coordinates coordinates")
    declared_options = {
        "coefficient": Option("leave_one_out", one_of_or_real(*COEFFICIENTS),
                              "the control variate's weight: estimated from the other samples (`n_samples` >= 2) "
                              "or fixed (1.0: the plain delta method)"),
        # The Taylor expansion holds a D x D Hessian per batch element: memory and time grow as D^2.
        "max_coordinates": Option(100, positive_integer,
                                  "the largest event size accepted (a D x D Hessian of `f` per batch element)"),
    }

    @property
    def min_samples(self) -> int:
        return 2 if self.coefficient == "leave_one_out" else 1

    def _why_not_instance(self, dist) -> str | None:
        return coordinates_over(dist, self.max_coordinates, "a D x D Hessian of f per batch element")

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        base, _ = families.unwrap(dist)
        batch, event = tuple(dist.batch_shape), tuple(dist.event_shape)
        full = (*batch, *event)
        n_coords = math.prod(event)
        loc, scale = base.loc.expand(full), base.scale.expand(full)
        z = draw(dist, n_samples, generator, reparameterized=False)
        fz = evaluate(f, z, dist, n_samples)
        f_mu, grad, hessian = taylor_at_mean(f, loc, batch, event)
        with torch.no_grad():
            mu = loc.detach().reshape(*batch, n_coords)
            sigma = scale.detach().reshape(*batch, n_coords)
            v = z.reshape(n_samples, *batch, n_coords) - mu
            h = f_mu + (v * grad).sum(-1) + 0.5 * torch.einsum("...i,...ij,...j->...", v, hessian, v)
            eps = v / sigma
            signal = fz.detach()
            weights = []
            hessian_diag = torch.diagonal(hessian, 0, -2, -1)
            for score, c in ((eps / sigma, grad), ((eps.pow(2) - 1) / sigma, hessian_diag * sigma)):
                beta = self._coefficient(signal, h, score, c)
                weights.append((signal - beta * h).unsqueeze(-1) * score + beta.unsqueeze(-1) * c)
        w_loc, w_scale = (w.reshape(n_samples, *full) for w in weights)
        pathless = w_loc * (loc - loc.detach()) + w_scale * (scale - scale.detach())  # zero in value
        per_sample = fz + pathless.reshape(n_samples, *batch, n_coords).sum(-1)
        return EstimatorOutput(surrogate=reduce_samples(per_sample), value=fz.detach())

    def _coefficient(self, signal: Tensor, h: Tensor, score: Tensor, c: Tensor) -> Tensor:
        """beta per sample and batch element ``[S, *batch]``, independent of that sample's own draw."""
        if self.coefficient != "leave_one_out":
            return torch.full_like(signal, self.coefficient)
        x = h.unsqueeze(-1) * score - c  # h s - E[h s]: known mean zero
        num = (signal.unsqueeze(-1) * score * x).sum(-1)  # f s (h s - c): its mean is the covariance
        den = x.pow(2).sum(-1)
        num_others, den_others = num.sum(0, keepdim=True) - num, den.sum(0, keepdim=True) - den
        return torch.where(den_others > 0, num_others / den_others.clamp_min(torch.finfo(den.dtype).tiny),
                           torch.zeros_like(num))
