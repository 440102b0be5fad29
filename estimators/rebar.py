r"""REBAR: REINFORCE with a relaxed control variate and its conditional correction (Tucker et al. 2017).

Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017, "REBAR: Low-variance, unbiased gradient estimates
for discrete latent variable models". For Bernoulli or one-hot categorical :math:`b = H(z)` with a
reparameterized continuous :math:`z(\theta, u)` (logistic, resp. Gumbel, noise on the logits
:math:`\alpha_\theta`), a *conditional* reparameterized sample :math:`\tilde z(\theta, v, b) \sim p(z \mid b)`
and a control variate :math:`c(z) = \eta\, f(\sigma_\lambda(z))` (``f`` at the Concrete relaxation of
temperature :math:`\lambda`), the estimate of the gradient with respect to the distribution's parameters
:math:`\theta` is

.. math::
    \hat g_\theta = \big[f(b) - c(\tilde z)\big]\,\nabla_\theta \log p_\theta(b)
        + \nabla_\theta c\big(z(\theta, u)\big) - \nabla_\theta c\big(\tilde z(\theta, v, b)\big),

unbiased for any :math:`\eta, \lambda` because :math:`\mathbb{E}[\nabla_\theta c(z)] =
\mathbb{E}_b[c(\tilde z)\nabla_\theta \log p(b) + \nabla_\theta c(\tilde z)]`; the last term is the
:math:`d\tilde z / d\theta` path through the conditional sample. Conditional samples (REBAR, appendix):

- Bernoulli, :math:`p = \sigma(\alpha)`: :math:`z = \alpha + \operatorname{logit} u`, :math:`b = 1[z > 0]`,
  :math:`\tilde z = \log(1 + \frac{v}{(1-v)(1-p)})` if :math:`b = 1`, else
  :math:`\tilde z = -\log(1 + \frac{1-v}{v\,p})` (computed as softplus of logits).
- One-hot categorical, normalized log-probabilities :math:`\alpha`, :math:`\pi = e^\alpha`:
  :math:`z = \alpha - \log(-\log u)`, :math:`b = \operatorname{onehot}(\arg\max z)`,
  :math:`\tilde z_b = -\log(-\log v_b)` and
  :math:`\tilde z_i = -\log\big(-\log v_i / \pi_i - \log v_b\big)` for :math:`i \neq b`.

The relaxation is :math:`\sigma_\lambda(z) = \operatorname{sigmoid}(z/\lambda)`, resp.
:math:`\operatorname{softmax}(z/\lambda)`.

What the surrogate carries. ``f``'s other parameters (a decoder's weights) receive exactly
:math:`\frac1S\sum_s \nabla f(b_s)`, ``f``'s gradient at the discrete samples (as REINFORCE's direct term):
the control variate's terms are differentiated with respect to :math:`\theta` only (by ``autograd.grad``)
and enter the surrogate as :math:`\langle \bot\hat g_\theta, \theta - \bot\theta\rangle`, zero in value, so
the relaxed evaluations of ``f`` never reach any other gradient (a known bug of a public implementation
let them reach the decoder). :math:`\theta` are the tensors the distribution was built from
(``logits`` or ``probs``); what lies upstream of them (an encoder) gets :math:`\hat g_\theta` through the
chain rule. The surrogate's value is :math:`\frac1S\sum_s f(b_s)` summed over the batch.

Training the control variate. :math:`\eta` and :math:`\log\lambda` (``eta``, ``temperature`` are their
initial values) are trained to minimize the variance of :math:`\hat g_\theta`: since the estimate is
unbiased for every :math:`(\eta, \lambda)`, that is minimizing :math:`\mathbb{E}\lVert\hat g_\theta\rVert^2`,
whose single-sample gradient is :math:`\nabla_{\eta,\lambda}\lVert\hat g_\theta\rVert^2` with
:math:`\hat g_\theta` built with ``create_graph=True`` (REBAR §3.3; summed over the batch, including
``f``'s direct dependence on :math:`\theta`). In training mode (``est.train()``) every call where
:math:`\theta` requires grad ends with one step of the estimator's own Adam optimizer (``lr``) on them,
after the returned estimate was formed with the values from before the step; in eval mode nothing
changes. The optimizer's state is part of ``state_dict()`` (``get_extra_state``), loadable with
``torch.load(weights_only=True)``, so a resumed run continues bit for bit.

``f`` must be differentiable in ``z``: it is also evaluated at the relaxed samples, and an ``f`` whose
output does not depend differentiably on its input is refused with a ValueError. Cost: three
evaluations of ``f`` per sample (at :math:`b`, :math:`\sigma_\lambda(z)`, :math:`\sigma_\lambda(\tilde z)`)
and one backward pass (two in training mode, through a graph built for double backward). Under
``torch.no_grad()`` only :math:`f(b)` is evaluated. Applies to Bernoulli and OneHotCategorical; unbiased.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from . import families, sampling
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, positive, real
from .optimizers import Optimizer
from .trained_state import OwnOptimizer
from .registry import register

RELAXABLE = (Bernoulli, OneHotCategorical)


def open_uniform(shape: tuple[int, ...], like: Tensor, generator, sample_ndim: int = 1) -> Tensor:
    """U(0, 1) draws ``shape`` = ``[*sample, *batch, *event]`` kept away from 0 and 1, so their logarithms and
    logits are finite (``sampling.uniform``: a ``GeneratorStack`` draws each run's slice with its generator)."""
    finfo = torch.finfo(like.dtype)
    u = sampling.uniform(shape, like, generator, sample_ndim)
    return u.clamp(finfo.tiny, 1.0 - finfo.eps)


def logit(u: Tensor) -> Tensor:
    return torch.log(u) - torch.log1p(-u)


def relaxed_and_conditional(logits: Tensor, bernoulli: bool, u: Tensor, v: Tensor, detach_conditional: bool = False
                            ) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(z, b, z_tilde)``: the reparameterized pre-threshold sample, its discrete value (detached) and the
    conditional sample :math:`\tilde z \sim p(z \mid b)`, all ``[n, *logits.shape]``.

    ``logits``: Bernoulli logits, or the categorical's normalized log-probabilities. ``detach_conditional``
    drops the :math:`d\tilde z/d\theta` path (a wrong variant, for tests only).
    """
    cond_logits = logits.detach() if detach_conditional else logits
    if bernoulli:
        z = logits + logit(u)
        b = (z.detach() > 0).to(z.dtype)
        lv = logit(v)
        # b = 1: log(1 + v / ((1 - v)(1 - p))) ; b = 0: -log(1 + (1 - v) / (v p)), with -log(1-p) = softplus(a).
        z_tilde = b * F.softplus(lv + F.softplus(cond_logits)) - (1 - b) * F.softplus(-lv + F.softplus(-cond_logits))
        return z, b, z_tilde
    z = logits - torch.log(-torch.log(u))
    b = F.one_hot(z.detach().argmax(-1), z.shape[-1]).to(z.dtype)
    log_e = torch.log(-torch.log(v))                       # log E_i, E_i = -log v_i ~ Exp(1)
    log_e_b = (log_e * b).sum(-1, keepdim=True)            # log E_b
    others = torch.logaddexp(log_e - cond_logits, log_e_b)  # log(E_i / pi_i + E_b)
    z_tilde = -torch.where(b.bool(), log_e_b.expand_as(log_e), others)
    return z, b, z_tilde


def relax_fn(z: Tensor, temperature: Tensor, bernoulli: bool) -> Tensor:
    """The Concrete relaxation sigma_lambda(z)."""
    return torch.sigmoid(z / temperature) if bernoulli else torch.softmax(z / temperature, dim=-1)


def not_differentiable(name: str) -> ValueError:
    return ValueError(
        f"estimator {name!r} needs f differentiable in z (it evaluates f off the discrete support), but f's "
        f"output does not depend differentiably on its input; use an estimator that only evaluates f at "
        f"samples (reinforce, arm, disarm, vimco)"
    )


class _TrainedControlVariate(OwnOptimizer, Estimator):
    """REBAR's machinery; RELAX adds a learned network to the control variate (``_extra_cv``)."""

    capabilities = Capabilities(role="control_variate", unbiased=True, families=RELAXABLE, evaluations_per_sample=3,
                                differentiable_f=True)
    #: Tests only: a wrong variant without the d z_tilde / d theta path.
    _detach_conditional = False
    declared_options = {
        "temperature": Option(0.5, positive, "the control variate's initial relaxation temperature"),
        "eta": Option(1.0, real, "the control variate's initial scale"),
        "lr": Option(1e-3, positive, "learning rate of the Adam optimizer that trains its control variate "
                                     "(in train mode, to minimize the variance)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.cv_scale = nn.Parameter(torch.tensor(self.eta, dtype=torch.float64))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(self.temperature), dtype=torch.float64))
        self._optimizer: Optimizer | None = None

    @property
    def current_temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    # --- the estimate -------------------------------------------------------------------------------
    def _prepare(self, sample_like: Tensor, dist: Distribution, generator) -> None:
        """Build what depends on the shapes met (RELAX's network)."""

    def _extra_cv(self, z: Tensor, bernoulli: bool, dist: Distribution) -> Tensor | float:
        """A learned addition to the control variate, a function of the pre-threshold ``z``,
        ``[n, *batch_shape]`` (none for REBAR)."""
        return 0.0

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        base = families.unwrap(dist)[0]
        bernoulli = isinstance(base, Bernoulli)
        logits = base.logits
        shape = (n_samples, *logits.shape)
        u = open_uniform(shape, logits, generator, sample_ndim=1)
        v = open_uniform(shape, logits, generator, sample_ndim=1)
        if not torch.is_grad_enabled():  # a value only: the discrete samples
            b = relaxed_and_conditional(logits, bernoulli, u, v)[1]
            fb = evaluate(f, b, dist, n_samples)
            return EstimatorOutput(surrogate=reduce_samples(fb), value=fb.detach())
        z, b, z_tilde = relaxed_and_conditional(logits, bernoulli, u, v, self._detach_conditional)
        self._prepare(b, dist, generator)
        fb = evaluate(f, b, dist, n_samples)

        temperature = self.log_temperature.exp().to(logits.dtype)
        eta = self.cv_scale.to(logits.dtype)
        y, y_tilde = relax_fn(z, temperature, bernoulli), relax_fn(z_tilde, temperature, bernoulli)
        f_y = evaluate(f, y, dist, n_samples)
        f_y_tilde = evaluate(f, y_tilde, dist, n_samples)
        c = eta * f_y + self._extra_cv(z, bernoulli, dist)
        c_tilde = eta * f_y_tilde + self._extra_cv(z_tilde, bernoulli, dist)
        log_p = dist.log_prob(b)
        # Its theta-gradient is g_theta (the score term's coefficient is kept in the graph for the
        # variance's gradient; the score factor is zero in value so that costs nothing here).
        cv_objective = reduce_samples((fb.detach() - c_tilde) * (log_p - log_p.detach()) + c - c_tilde)

        thetas = [p for p in families.parameters(dist).values() if isinstance(p, Tensor) and p.requires_grad]
        train = self.training and bool(thetas)
        # retain_graph: the path from the logits to theta (e.g. logits computed from probs) may be shared with
        # f(b)'s graph, which the caller differentiates later.
        grads = torch.autograd.grad(cv_objective, [*thetas, y, y_tilde], create_graph=train, retain_graph=True,
                                    allow_unused=True)
        if grads[len(thetas)] is None or grads[len(thetas) + 1] is None:
            raise not_differentiable(self.name)
        g_cv = [torch.zeros_like(t) if g is None else g for t, g in zip(thetas, grads[: len(thetas)])]

        surrogate = reduce_samples(fb)
        for theta, g in zip(thetas, g_cv):
            surrogate = surrogate + (g.detach() * (theta - theta.detach())).sum()
        if train:
            self._train_step(fb, thetas, g_cv)
        return EstimatorOutput(surrogate=surrogate, value=fb.detach())

    @property
    def adapts(self) -> bool:
        return True  # its parameters train in every train-mode call

    def _train_step(self, fb: Tensor, thetas: list[Tensor], g_cv: list[Tensor]) -> None:
        """One Adam step on the control variate's parameters down the gradient of ||g_theta||^2."""
        direct = (torch.autograd.grad(reduce_samples(fb), thetas, retain_graph=True, allow_unused=True)
                  if fb.requires_grad else [None] * len(thetas))
        loss = sum(((g + (0.0 if d is None else d.detach())).pow(2)).sum() for g, d in zip(g_cv, direct))
        params = self._own_parameters()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        opt = self._ensure_optimizer()
        opt.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g.detach().to(p.dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)


@register
class Rebar(_TrainedControlVariate):
    name = "rebar"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=RELAXABLE, evaluations_per_sample=3,
                                differentiable_f=True)
