r"""Synthetic problems :math:`\sum_b \mathbb{E}_{q_\theta}[f_\theta(z)]` with closed-form expectations.

Each :class:`Problem` holds initial parameter values, ``build(*params) -> (f, dist)`` and
``expectation(*params)``, the exact objective as a differentiable torch expression, so the exact gradient
is its autograd gradient. ``build`` and ``expectation`` broadcast over a leading replica dimension of the
parameters (the distribution's batch starts with it), which ``estimators.measure_variance(...,
vectorize=True)`` uses to draw many independent estimates in one pass.

Sources of the closed forms: Gaussian integrals in Mohamed et al. 2020 §3 ((x-k)^2, exp(-k x^2), cos(k x));
standard moments of Exponential, Gamma, Beta, Dirichlet, Laplace, Uniform, LogNormal; Bernoulli and
categorical expectations are finite sums.

The synthetic study's problems are the functions decorated with :func:`study_problem` at the end of this
file, one each: its name is the config key (``synthetic.settings.problems.NAME``), its signature the entry's
keys, types and defaults (checked as any config: a typo is a one-line error naming the valid keys), and it
yields the study's cells, ``(setting, Problem)``. Adding a problem is one such function and one config line.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import numpy as np

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Independent,
    Laplace,
    LogNormal,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    Uniform,
)

DTYPE = torch.float64


@dataclass(frozen=True)
class Problem:
    name: str
    family: str
    params: dict[str, Tensor]
    build: Callable
    expectation: Callable
    info: dict[str, float] = field(default_factory=dict)
    #: A K-sample bound problem (``objective == "iwae"``): ``build`` gives its expectation form (the bound of
    #: K-tuples, ``estimators.iwae``) and ``build_log_weight(*params) -> (f, q)`` the per-sample log-weight and
    #: q, for an estimator of the bound itself (vimco, with K samples).
    objective: str = "expectation"
    iwae_k: int | None = None
    build_log_weight: Callable | None = None

    def leaves(self) -> list[Tensor]:
        """Fresh copies of the parameters that require grad."""
        return [p.detach().clone().requires_grad_(True) for p in self.params.values()]

    def exact_gradient(self) -> Tensor:
        """The true gradient, flattened in parameter order (as measure_variance's columns)."""
        leaves = self.leaves()
        grads = torch.autograd.grad(self.expectation(*leaves), leaves, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(leaves, grads)])

    def parameter_labels(self) -> list[str]:
        """One label per flattened coordinate, e.g. ``loc[0]``."""
        return [f"{name}[{i}]" for name, p in self.params.items() for i in range(p.numel())]


def _t(values) -> Tensor:
    return torch.as_tensor(values, dtype=DTYPE)


def _normal(mu, sigma) -> Independent:
    return Independent(Normal(mu, sigma), 1)


# --- Gaussian: the three costs of Mohamed et al. 2020, section 3 ------------------------------------


def normal_quadratic(k: float = 0.0, dim: int = 1, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """f = sum_i (z_i - k)^2; E = sum (mu - k)^2 + sigma^2. k = 0 is the dimension study's sum of squares."""
    return Problem(
        name="normal_quadratic", family="Normal",
        params={"loc": _t([mu] * dim), "scale": _t([sigma] * dim)},
        build=lambda loc, scale: (lambda z: (z - k).pow(2).sum(-1), _normal(loc, scale)),
        expectation=lambda loc, scale: ((loc - k).pow(2) + scale.pow(2)).sum(),
        info={"k": k, "dim": dim},
    )


def normal_exp_square(k: float = 1.0, dim: int = 1, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """f = sum_i exp(-k z_i^2); E = sum exp(-k mu^2 / (1 + 2 k s^2)) / sqrt(1 + 2 k s^2)."""
    def expectation(loc, scale):
        a = 1 + 2 * k * scale.pow(2)
        return (torch.exp(-k * loc.pow(2) / a) / a.sqrt()).sum()

    return Problem(
        name="normal_exp_square", family="Normal",
        params={"loc": _t([mu] * dim), "scale": _t([sigma] * dim)},
        build=lambda loc, scale: (lambda z: torch.exp(-k * z.pow(2)).sum(-1), _normal(loc, scale)),
        expectation=expectation, info={"k": k, "dim": dim},
    )


def normal_cosine(k: float = 1.0, dim: int = 1, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """f = sum_i cos(k z_i); E = sum cos(k mu) exp(-k^2 s^2 / 2)."""
    return Problem(
        name="normal_cosine", family="Normal",
        params={"loc": _t([mu] * dim), "scale": _t([sigma] * dim)},
        build=lambda loc, scale: (lambda z: torch.cos(k * z).sum(-1), _normal(loc, scale)),
        expectation=lambda loc, scale: (torch.cos(k * loc) * torch.exp(-0.5 * k**2 * scale.pow(2))).sum(),
        info={"k": k, "dim": dim},
    )


def normal_entropy(dim: int = 3) -> Problem:
    """f depends on the parameters: f = -log q(z) + sum z^2; E = H[q] + sum (mu^2 + s^2)."""
    def build(loc, scale):
        q = _normal(loc, scale)
        return (lambda z: -q.log_prob(z) + z.pow(2).sum(-1)), q

    return Problem(
        name="normal_entropy", family="Normal",
        params={"loc": _t([0.5, -1.0, 1.5][:dim] + [0.3] * max(0, dim - 3)), "scale": _t([0.8] * dim)},
        build=build,
        expectation=lambda loc, scale: (0.5 * torch.log(2 * math.pi * math.e * scale.pow(2))
                                        + loc.pow(2) + scale.pow(2)).sum(),
        info={"dim": dim},
    )


def normal_parameter_product(dim: int = 3) -> Problem:
    """f depends on the parameters with a nonzero mean direct gradient: f = sum loc z^2;
    E = sum loc (loc^2 + s^2)."""
    return Problem(
        name="normal_parameter_product", family="Normal",
        params={"loc": _t([0.5, -1.0, 1.5][:dim]), "scale": _t([0.8, 1.1, 0.6][:dim])},
        build=lambda loc, scale: ((lambda z: (loc * z.pow(2)).sum(-1)), _normal(loc, scale)),
        expectation=lambda loc, scale: (loc * (loc.pow(2) + scale.pow(2))).sum(),
        info={"dim": dim},
    )


def mvn_quadratic(dim: int = 3) -> Problem:
    """f = (z - k)^T A (z - k), z ~ N(m, L L^T); E = (m - k)^T A (m - k) + tr(A L L^T)."""
    g = torch.Generator().manual_seed(dim)
    a_half = torch.randn(dim, dim, generator=g, dtype=DTYPE)
    a = a_half @ a_half.T / dim + torch.eye(dim, dtype=DTYPE)
    kvec = torch.linspace(-0.5, 0.5, dim, dtype=DTYPE)
    raw = torch.eye(dim, dtype=DTYPE) + 0.3 * torch.tril(torch.ones(dim, dim, dtype=DTYPE), -1)

    def quad(x):
        return torch.einsum("...i,ij,...j->...", x, a, x)

    def expectation(loc, raw_l):
        scale_tril = torch.tril(raw_l)
        return (quad(loc - kvec) + torch.einsum("ij,...ji->...", a, scale_tril @ scale_tril.transpose(-1, -2))).sum()

    return Problem(
        name="mvn_quadratic", family="MultivariateNormal",
        params={"loc": _t([0.2 * i for i in range(dim)]), "scale_tril": raw},
        build=lambda loc, raw_l: (lambda z: quad(z - kvec), MultivariateNormal(loc, scale_tril=torch.tril(raw_l))),
        expectation=expectation, info={"dim": dim},
    )


# --- other continuous families ---------------------------------------------------------------------


def lognormal_mean(dim: int = 3) -> Problem:
    """f = sum z; E = sum exp(mu + s^2 / 2)."""
    return Problem(
        name="lognormal_mean", family="LogNormal",
        params={"loc": _t([0.0, -0.5, 0.3][:dim]), "scale": _t([0.5, 0.3, 0.4][:dim])},
        build=lambda loc, scale: (lambda z: z.sum(-1), Independent(LogNormal(loc, scale), 1)),
        expectation=lambda loc, scale: torch.exp(loc + 0.5 * scale.pow(2)).sum(),
        info={"dim": dim},
    )


def laplace_cosine(k: float = 1.0, dim: int = 3) -> Problem:
    """f = sum cos(k z); E = sum cos(k m) / (1 + k^2 b^2)."""
    return Problem(
        name="laplace_cosine", family="Laplace",
        params={"loc": _t([0.3, -0.7, 1.2][:dim]), "scale": _t([0.5, 1.0, 0.8][:dim])},
        build=lambda loc, scale: (lambda z: torch.cos(k * z).sum(-1), Independent(Laplace(loc, scale), 1)),
        expectation=lambda loc, scale: (torch.cos(k * loc) / (1 + k**2 * scale.pow(2))).sum(),
        info={"k": k, "dim": dim},
    )


def uniform_square(dim: int = 3) -> Problem:
    """f = sum z^2; E = sum (a^2 + a b + b^2) / 3."""
    return Problem(
        name="uniform_square", family="Uniform",
        params={"low": _t([-1.0, 0.0, 0.5][:dim]), "high": _t([1.0, 2.0, 0.9][:dim])},
        build=lambda low, high: (lambda z: z.pow(2).sum(-1), Independent(Uniform(low, high), 1)),
        expectation=lambda low, high: ((low.pow(2) + low * high + high.pow(2)) / 3).sum(),
        info={"dim": dim},
    )


def exponential_square(dim: int = 3) -> Problem:
    """f = sum z^2; E = sum 2 / rate^2."""
    return Problem(
        name="exponential_square", family="Exponential",
        params={"rate": _t([1.0, 2.0, 0.7][:dim])},
        build=lambda rate: (lambda z: z.pow(2).sum(-1), Independent(Exponential(rate), 1)),
        expectation=lambda rate: (2 / rate.pow(2)).sum(),
        info={"dim": dim},
    )


def gamma_square(dim: int = 3) -> Problem:
    """f = sum z^2; E = sum a (a + 1) / b^2 (implicit reparameterization for pathwise)."""
    return Problem(
        name="gamma_square", family="Gamma",
        params={"concentration": _t([0.7, 2.0, 4.5][:dim]), "rate": _t([1.0, 1.5, 3.0][:dim])},
        build=lambda c, r: (lambda z: z.pow(2).sum(-1), Independent(Gamma(c, r), 1)),
        expectation=lambda c, r: (c * (c + 1) / r.pow(2)).sum(),
        info={"dim": dim},
    )


def gamma_log(dim: int = 3) -> Problem:
    """f = sum log z; E = sum digamma(a) - log b."""
    return Problem(
        name="gamma_log", family="Gamma",
        params={"concentration": _t([1.5, 2.0, 4.5][:dim]), "rate": _t([1.0, 1.5, 3.0][:dim])},
        build=lambda c, r: (lambda z: z.log().sum(-1), Independent(Gamma(c, r), 1)),
        expectation=lambda c, r: (torch.digamma(c) - r.log()).sum(),
        info={"dim": dim},
    )


def beta_square(dim: int = 3) -> Problem:
    """f = sum z^2; E = sum a (a + 1) / ((a + b)(a + b + 1))."""
    return Problem(
        name="beta_square", family="Beta",
        params={"concentration1": _t([0.8, 2.0, 5.0][:dim]), "concentration0": _t([1.2, 3.0, 1.5][:dim])},
        build=lambda a, b: (lambda z: z.pow(2).sum(-1), Independent(Beta(a, b), 1)),
        expectation=lambda a, b: (a * (a + 1) / ((a + b) * (a + b + 1))).sum(),
        info={"dim": dim},
    )


def dirichlet_square(dim: int = 4) -> Problem:
    """f = sum_i c_i z_i^2; E = sum c_i a_i (a_i + 1) / (a0 (a0 + 1))."""
    c = torch.linspace(1.0, 2.0, dim, dtype=DTYPE)

    def expectation(alpha):
        a0 = alpha.sum(-1, keepdim=True)
        return (c * alpha * (alpha + 1) / (a0 * (a0 + 1))).sum()

    return Problem(
        name="dirichlet_square", family="Dirichlet",
        params={"concentration": torch.linspace(0.8, 3.0, dim, dtype=DTYPE)},
        build=lambda alpha: (lambda z: (c * z.pow(2)).sum(-1), Dirichlet(alpha)),
        expectation=expectation, info={"dim": dim},
    )


# --- discrete ---------------------------------------------------------------------------------------


def bernoulli_toy(t: float = 0.45, dim: int = 1, p: float = 0.5) -> Problem:
    """The REBAR/RELAX toy: f = sum_i (b_i - t)^2 with logits parameters; E = sum p(1-t)^2 + (1-p) t^2."""
    logit = math.log(p / (1 - p))
    return Problem(
        name="bernoulli_toy", family="Bernoulli",
        params={"logits": _t([logit] * dim)},
        build=lambda logits: (lambda z: (z - t).pow(2).sum(-1), Independent(Bernoulli(logits=logits), 1)),
        expectation=lambda logits: (torch.sigmoid(logits) * (1 - t) ** 2
                                    + (1 - torch.sigmoid(logits)) * t**2).sum(),
        info={"t": t, "dim": dim},
    )


def bernoulli_polynomial(t: float = 1.0, dim: int = 4) -> Problem:
    """f = (sum_i w_i b_i - t)^2, not separable; E = sum w^2 p (1 - p) + (sum w p - t)^2."""
    w = torch.linspace(0.5, 1.5, dim, dtype=DTYPE)

    def expectation(logits):
        p = torch.sigmoid(logits)
        return ((w.pow(2) * p * (1 - p)).sum(-1) + ((w * p).sum(-1) - t).pow(2)).sum()

    return Problem(
        name="bernoulli_polynomial", family="Bernoulli",
        params={"logits": torch.linspace(-1.0, 1.0, dim, dtype=DTYPE)},
        build=lambda logits: (lambda z: ((w * z).sum(-1) - t).pow(2), Independent(Bernoulli(logits=logits), 1)),
        expectation=expectation, info={"t": t, "dim": dim},
    )


def bernoulli_entropy(dim: int = 3) -> Problem:
    """f depends on the parameters: f = -log q(b) + sum b; E = H[q] + sum p."""
    def build(logits):
        q = Independent(Bernoulli(logits=logits), 1)
        return (lambda z: -q.log_prob(z) + z.sum(-1)), q

    def expectation(logits):
        return (Bernoulli(logits=logits).entropy() + torch.sigmoid(logits)).sum()

    return Problem(
        name="bernoulli_entropy", family="Bernoulli",
        params={"logits": _t([0.4, -1.2, 2.0][:dim])},
        build=build, expectation=expectation, info={"dim": dim},
    )


def categorical_polynomial(groups: int = 2, classes: int = 4, t: float = 1.5) -> Problem:
    """One-hot groups z_g, f = (sum_g <c, z_g> - t)^2; E = sum_g Var_g + (sum_g E_g - t)^2."""
    c = torch.linspace(0.0, 2.0, classes, dtype=DTYPE)

    def expectation(logits):
        p = torch.softmax(logits, -1)
        mean = (p * c).sum(-1)
        var = (p * c.pow(2)).sum(-1) - mean.pow(2)
        return (var.sum(-1) + (mean.sum(-1) - t).pow(2)).sum()

    base = torch.linspace(-1.0, 1.0, groups * classes, dtype=DTYPE).reshape(groups, classes)
    return Problem(
        name="categorical_polynomial", family="OneHotCategorical",
        params={"logits": base},
        build=lambda logits: (lambda z: ((z * c).sum((-1, -2)) - t).pow(2),
                              Independent(OneHotCategorical(logits=logits), 1)),
        expectation=expectation, info={"t": t, "groups": groups, "classes": classes},
    )


def categorical_index_square(classes: int = 5, t: float = 1.7) -> Problem:
    """Integer Categorical: f = (z - t)^2; E = sum_k p_k (k - t)^2."""
    ks = torch.arange(classes, dtype=DTYPE)
    return Problem(
        name="categorical_index_square", family="Categorical",
        params={"logits": torch.linspace(0.5, -0.5, classes, dtype=DTYPE)},
        build=lambda logits: (lambda z: (z.to(DTYPE) - t).pow(2), Categorical(logits=logits)),
        expectation=lambda logits: (torch.softmax(logits, -1) * (ks - t).pow(2)).sum(),
        info={"t": t, "classes": classes},
    )


def bernoulli_iwae(k: int = 2, dim: int = 3, t: float = 1.0) -> Problem:
    r"""The K-sample importance-weighted bound of a small Bernoulli model, exact by enumeration.

    q = prod_i Bernoulli(sigmoid(logits_i)); the joint is :math:`\log p(x, z) = D \log \frac12
    - \frac12 (w^\top z - t)^2` (a uniform prior and a Gaussian-shaped likelihood; ``w`` spaced from 0.5 to 1.5);
    the log-weight :math:`f(z) = \log p(x, z) - \log q(z)` depends on the parameters. The bound
    :math:`\mathbb{E}_{q^K}[\log \frac1K \sum_k e^{f(z_k)}]` is a finite sum over the :math:`2^{DK}` K-tuples.
    """
    from estimators.iwae import k_sample_bound, k_tuples

    w = torch.linspace(0.5, 1.5, dim, dtype=DTYPE)

    def log_joint(z):
        return dim * math.log(0.5) - 0.5 * ((z * w).sum(-1) - t).pow(2)

    def build_log_weight(logits):
        q = Independent(Bernoulli(logits=logits), 1)
        # log q at relaxed points too (relax, rebar and the relaxations evaluate f off {0, 1}): the same formula.
        log_q = Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False).log_prob
        return (lambda z: log_joint(z) - log_q(z)), q

    def build(logits):
        f, q = build_log_weight(logits)
        return k_sample_bound(f, k, len(q.batch_shape)), k_tuples(q, k)

    def expectation(logits):
        configs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=DTYPE)] * dim).reshape(-1, dim)
        f, q = build_log_weight(logits)
        log_q, log_w = q.log_prob(configs), f(configs)                       # [2^D]
        tuples = torch.cartesian_prod(*[torch.arange(len(configs))] * k).reshape(-1, k)   # [2^(DK), K]
        bound = torch.logsumexp(log_w[tuples], -1) - math.log(k)
        return (log_q[tuples].sum(-1).exp() * bound).sum()

    return Problem(
        name="bernoulli_iwae", family="Bernoulli", params={"logits": _t([0.3, -0.8, 1.1, 0.5][:dim])},
        build=build, expectation=expectation, info={"k": k, "dim": dim}, objective="iwae", iwae_k=k,
        build_log_weight=build_log_weight,
    )


def iwae_bound_by_quadrature(log_weight, loc: Tensor, scale: Tensor, k: int, shift: Tensor,
                             x_half_width: float = 10.0, x_points: int = 4001,
                             u_range: tuple[float, float] = (-40.0, 50.0), u_points: int = 2251) -> Tensor:
    r"""The K-sample bound :math:`\mathbb E_{q^K}[\log \frac1K \sum_k e^{f(z_k)}]` of a 1-D Normal q, by quadrature.

    Frullani's integral :math:`\log y = \int_0^\infty (e^{-t} - e^{-ty})\,dt/t` (y > 0) with
    :math:`y = \frac1K \sum_k w_k`, :math:`w_k = e^{f(z_k) - c}` independent, and Fubini give

    .. math::
        \mathcal L_K = c + \int_{-\infty}^{\infty} \Big(e^{-e^u} - \varphi(e^u / K)^K\Big)\,du, \qquad
        \varphi(s) = \mathbb E_q\big[e^{-s\,w(z)}\big]

    (:math:`t = e^u`): a 1-D integral of a 1-D integral, whatever K. ``shift`` (:math:`c`, detached) puts the
    weights near 1. :math:`\varphi` is the trapezoid rule over :math:`z = \mu + \sigma x`, :math:`|x| \le`
    ``x_half_width``, the outer integral the trapezoid rule in u (both integrands are smooth and decay at both
    ends: near :math:`t = 0` like :math:`t^2` when :math:`\mathbb E_q w = 1`, at large t like :math:`\varphi(t/K)^K`).
    Differentiable in ``loc``, ``scale`` and whatever ``log_weight`` depends on, so autograd gives the gradient.
    ``log_weight`` maps ``[m, 1]`` points to ``[m]``; ``loc``, ``scale``: one-element tensors.
    """
    xs = torch.linspace(-x_half_width, x_half_width, x_points, dtype=loc.dtype, device=loc.device)
    density = torch.exp(-0.5 * xs.pow(2)) / math.sqrt(2 * math.pi) * (xs[1] - xs[0])
    w = torch.exp(log_weight((loc + scale * xs).reshape(-1, 1)) - shift.detach())          # [x_points]
    us = torch.linspace(*u_range, u_points, dtype=loc.dtype, device=loc.device)
    s = torch.exp(us) / k
    phi = (torch.exp(-s.unsqueeze(1) * w.unsqueeze(0)) * density).sum(1)                  # [u_points]
    integrand = torch.exp(-torch.exp(us)) - phi.pow(k)
    return shift.detach() + (integrand.sum() - 0.5 * (integrand[0] + integrand[-1])) * (us[1] - us[0])


def _linear_gaussian_log_weight(x: float, noise: float):
    r"""``build_log_weight(loc, scale, weight) -> (f, q)`` of the linear-Gaussian model of ``gaussian_iwae`` and
    ``gaussian_elbo``: :math:`q = \mathcal N(\mu, s^2)` and its log-weight :math:`f(z) = \log p_\theta(x, z) - \log
    q(z)` said apart as ``estimators.base.LogQSplit``, :math:`z \sim \mathcal N(0, 1)`, :math:`x \mid z \sim
    \mathcal N(\theta z, \sigma^2)`."""
    from estimators.base import LogQSplit

    log_norm = math.log(2 * math.pi)

    def log_joint(weight):
        def rest(z):
            return (-0.5 * z.pow(2) - 0.5 * ((x - weight * z) / noise).pow(2) - math.log(noise) - log_norm).sum(-1)
        return rest

    def build_log_weight(loc, scale, weight):
        q = _normal(loc, scale)
        return LogQSplit(log_joint(weight), q), q
    return build_log_weight


def gaussian_iwae(k: int = 5, x: float = 1.5, noise: float = 1.0) -> Problem:
    r"""The K-sample importance-weighted bound of a linear-Gaussian model: Normal latent, reference by quadrature.

    Model :math:`z \sim \mathcal N(0, 1)`, :math:`x \mid z \sim \mathcal N(\theta z, \sigma^2)` at one observation
    ``x`` (``noise`` :math:`= \sigma`), with the decoder weight :math:`\theta` a parameter (``weight``);
    :math:`q = \mathcal N(\mu, s^2)` (``loc``, ``scale``: the encoder's). The log-weight
    :math:`f(z) = \log p_\theta(x, z) - \log q(z)` is said apart as ``estimators.base.LogQSplit`` (``stl``,
    ``dreg``). At the initial values (:math:`\mu = 0.3`, :math:`s = 1`, :math:`\theta = 1`) q is wider than the
    posterior :math:`\mathcal N(0.75, 0.5)` and off its mean, so the bound rises with K towards
    :math:`\log p(x)`, and the encoder's gradient shrinks. The exact objective is ``iwae_bound_by_quadrature``
    (Frullani's integral, exact to quadrature error; at K = 1 it is the closed-form ELBO, and it agrees with a
    Monte Carlo estimate of the bound at K = 5 and 50 within 5 standard errors of 3e-4:
    ``tests/test_estimators_iv_pathwise.py``; refining both grids moves the gradient by under 1e-13).
    """
    from estimators.iwae import k_sample_bound, k_tuples

    build_log_weight = _linear_gaussian_log_weight(x, noise)

    def build(loc, scale, weight):
        f, q = build_log_weight(loc, scale, weight)
        return k_sample_bound(f, k, len(q.batch_shape)), k_tuples(q, k)

    def expectation(loc, scale, weight):
        f, _ = build_log_weight(loc, scale, weight)
        variance = weight.pow(2) + noise**2
        log_evidence = (-0.5 * (math.log(2 * math.pi) + variance.log()) - 0.5 * x**2 / variance).sum()
        return iwae_bound_by_quadrature(f, loc, scale, k, log_evidence)

    return Problem(
        name="gaussian_iwae", family="Normal", params={"loc": _t([0.3]), "scale": _t([1.0]), "weight": _t([1.0])},
        build=build, expectation=expectation, info={"k": k, "dim": 1}, objective="iwae", iwae_k=k,
        build_log_weight=build_log_weight,
    )


def gaussian_elbo(gap: float = 1.0, x: float = 1.5, noise: float = 1.0) -> Problem:
    r"""The ELBO of ``gaussian_iwae``'s linear-Gaussian model as a Monte Carlo objective, q ``gap`` away from the
    posterior: closed form.

    Model :math:`z \sim \mathcal N(0, 1)`, :math:`x \mid z \sim \mathcal N(\theta z, \sigma^2)` (``weight``
    :math:`\theta = 1`, ``noise`` :math:`\sigma`), whose posterior at :math:`\theta = 1` is :math:`\mathcal N(m, s^2)`,
    :math:`s^2 = \sigma^2 / (\sigma^2 + 1)`, :math:`m = x s^2 / \sigma^2`; q starts at ``loc`` :math:`= m + g s`,
    ``scale`` :math:`= s (1 + g)` (``gap`` g). The integrand is the log-weight :math:`f(z) = \log p_\theta(x, z)
    - \log q(z)` said apart as ``estimators.base.LogQSplit`` (``stl``), so :math:`\mathbb E_q f` is the ELBO,

    .. math::
        -\tfrac12 (\mu^2 + \varsigma^2) - \frac{(x - \theta\mu)^2 + \theta^2 \varsigma^2}{2\sigma^2}
        - \log \sigma - \log 2\pi + \tfrac12 \log(2 \pi e \varsigma^2)

    (:math:`\mu, \varsigma` = ``loc``, ``scale``). Sticking the landing (Roeder et al. 2017): where q is the
    posterior, :math:`\partial_z f = 0` for every z, so ``stl``'s estimate of q's gradient is exactly zero there
    while the pathwise estimator keeps the score term's noise; as ``gap`` shrinks, ``stl``'s variance falls like
    :math:`g^2` (it is kept above 0 here: at :math:`g = 0` q's exact gradient is 0 too, and a zero-variance
    estimate of a zero gradient has no scale to tell rounding from noise).
    """
    post_var = noise**2 / (noise**2 + 1.0)
    post_mean, post_sd = x * post_var / noise**2, math.sqrt(post_var)
    log_norm = math.log(2 * math.pi)

    def expectation(loc, scale, weight):
        log_joint = (-0.5 * (loc.pow(2) + scale.pow(2)) - 0.5 * ((x - weight * loc).pow(2) + weight.pow(2)
                     * scale.pow(2)) / noise**2 - math.log(noise) - log_norm)
        entropy = 0.5 * torch.log(2 * math.pi * math.e * scale.pow(2))
        return (log_joint + entropy).sum()

    return Problem(
        name="gaussian_elbo", family="Normal",
        params={"loc": _t([post_mean + gap * post_sd]), "scale": _t([post_sd * (1 + gap)]), "weight": _t([1.0])},
        build=_linear_gaussian_log_weight(x, noise), expectation=expectation, info={"gap": gap, "dim": 1},
    )


CLOSED_FORM_PROBLEMS: dict[str, Callable[[], Problem]] = {
    "normal_quadratic": lambda: normal_quadratic(k=0.5, dim=3, mu=0.7, sigma=0.8),
    "normal_exp_square": lambda: normal_exp_square(k=2.0, dim=3, mu=0.6, sigma=0.9),
    "normal_cosine": lambda: normal_cosine(k=1.5, dim=3, mu=0.4, sigma=0.7),
    "normal_entropy": normal_entropy,
    "normal_parameter_product": normal_parameter_product,
    "mvn_quadratic": mvn_quadratic,
    "lognormal_mean": lognormal_mean,
    "laplace_cosine": laplace_cosine,
    "uniform_square": uniform_square,
    "exponential_square": exponential_square,
    "gamma_square": gamma_square,
    "gamma_log": gamma_log,
    "gaussian_elbo": gaussian_elbo,
    "beta_square": beta_square,
    "dirichlet_square": dirichlet_square,
    "bernoulli_toy": lambda: bernoulli_toy(t=0.45, dim=3, p=0.3),
    "bernoulli_polynomial": bernoulli_polynomial,
    "bernoulli_entropy": bernoulli_entropy,
    "categorical_polynomial": categorical_polynomial,
    "categorical_index_square": categorical_index_square,
}
"""Problems with D > 1 parameters covering every family the estimators claim, used by the tests."""


# --- the synthetic study's problems: one decorated function each -------------------------------------


@dataclass(frozen=True)
class Linspace:
    """``num`` evenly spaced values from ``start`` to ``stop`` (``numpy.linspace``), for a swept setting."""

    start: float
    stop: float
    num: int


def values(spec: list[float] | Linspace) -> list[float]:
    """A swept setting's values: the list as given, or the evenly spaced grid."""
    if isinstance(spec, Linspace):
        return [float(x) for x in np.linspace(spec.start, spec.stop, spec.num)]
    return [float(x) for x in spec]


#: What a study problem yields: one ``(setting, problem)`` per cell; the setting labels the cell's rows (and its
#: ``k``, ``dim`` and ``t`` entries fill those columns) and seeds its generator (``experiments.runtime.seeds``).
Cells = Iterator[tuple[dict, Problem]]


@dataclass(frozen=True)
class StudyProblem:
    """A registered problem: ``cells(**entry)`` yields its cells; ``grid`` is the dataclass of its config entry,
    made from the function's signature."""

    name: str
    cells: Callable[..., Cells]
    grid: type

    def expand(self, entry) -> Cells:
        """The cells of a parsed config entry (an instance of ``grid``)."""
        return self.cells(**{f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)})


#: The synthetic study's problems by config name, in the order the study runs them (the order of this file).
STUDY_PROBLEMS: dict[str, StudyProblem] = {}


def study_problem(name: str):
    """Register the decorated function as the synthetic study's problem ``name``. Each parameter is a key of the
    problem's config entry and needs a type (``typed_config`` reads the entry as it; a list is what a study sweeps,
    ``list[float] | Linspace`` also takes ``{start, stop, num}``), a default makes it optional; the function yields
    the cells, ``(setting, Problem)``."""
    def register(fn: Callable[..., Cells]) -> Callable[..., Cells]:
        if name in STUDY_PROBLEMS:
            raise ValueError(f"study problem {name!r} is registered twice")
        fields = []
        for p in inspect.signature(fn, eval_str=True).parameters.values():
            if p.annotation is inspect.Parameter.empty or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise TypeError(f"study problem {name!r}: parameter {p.name!r} needs a type and a name of its own "
                                f"(it is a key of the config entry)")
            fields.append((p.name, p.annotation) + (() if p.default is p.empty else (p.default,)))
        grid = dataclasses.make_dataclass(f"{name}_entry", fields, frozen=True)
        grid.__module__, grid.__doc__ = __name__, fn.__doc__
        STUDY_PROBLEMS[name] = StudyProblem(name, fn, grid)
        return fn
    return register


def _at_each_k(k: list[float] | Linspace, cost: Callable[..., Problem]) -> Cells:
    for x in values(k):
        yield {"k": x}, cost(k=x, dim=1, mu=1.0, sigma=1.0)


@study_problem("mohamed_quadratic")
def mohamed_quadratic_cells(k: list[float] | Linspace) -> Cells:
    """The quadratic cost (z - k)^2 of Mohamed et al. 2020 §3 at each k, z ~ N(1, 1)."""
    return _at_each_k(k, normal_quadratic)


@study_problem("mohamed_exp")
def mohamed_exp_cells(k: list[float] | Linspace) -> Cells:
    """The cost exp(-k z^2) of Mohamed et al. 2020 §3 at each k, z ~ N(1, 1)."""
    return _at_each_k(k, normal_exp_square)


@study_problem("mohamed_cos")
def mohamed_cos_cells(k: list[float] | Linspace) -> Cells:
    """The cost cos(k z) of Mohamed et al. 2020 §3 at each k, z ~ N(1, 1)."""
    return _at_each_k(k, normal_cosine)


@study_problem("dimension")
def dimension_cells(dims: list[int]) -> Cells:
    """sum_i z_i^2, z ~ N(1, I_D), at each dimension D (the closed-form variance is beside it in the tables)."""
    for dim in dims:
        yield {"dim": dim}, normal_quadratic(k=0.0, dim=dim, mu=1.0, sigma=1.0)


@study_problem("bernoulli_toy")
def bernoulli_toy_cells(t: list[float], dims: list[int], p: float = 0.5) -> Cells:
    """The REBAR/RELAX toy sum_i (b_i - t)^2 at each t and dimension, b_i ~ Bernoulli(p)."""
    for target in t:
        for dim in dims:
            yield {"t": float(target), "dim": dim}, bernoulli_toy(t=float(target), dim=dim, p=p)


@study_problem("categorical_toy")
def categorical_toy_cells(groups: list[int], classes: int, t: float = 1.5) -> Cells:
    """(sum_g <c, z_g> - t)^2 over one-hot groups of ``classes`` classes, at each number of groups."""
    for n in groups:
        yield {"dim": n, "classes": classes}, categorical_polynomial(groups=n, classes=classes, t=t)


@study_problem("bernoulli_iwae")
def bernoulli_iwae_cells(k: list[int], dim: int = 3) -> Cells:
    """The K-sample bound of a small Bernoulli model (``bernoulli_iwae``), at each K."""
    for n in k:
        yield {"k": int(n), "dim": dim}, bernoulli_iwae(k=int(n), dim=dim)


@study_problem("gaussian_iwae")
def gaussian_iwae_cells(k: list[int]) -> Cells:
    """The K-sample bound of a linear-Gaussian model with a Normal latent (``gaussian_iwae``, reference by
    quadrature), at each K: pathwise (IWAE), DReG and the score-function estimators across K."""
    for n in k:
        yield {"k": int(n), "dim": 1}, gaussian_iwae(k=int(n))


@study_problem("gaussian_elbo")
def gaussian_elbo_cells(gap: list[float]) -> Cells:
    """The Monte Carlo ELBO of ``gaussian_iwae``'s model with q ``gap`` posterior standard deviations from the
    posterior (``gaussian_elbo``, closed form): sticking the landing (``stl``) against pathwise as q nears it."""
    for g in gap:
        yield {"gap": float(g), "dim": 1}, gaussian_elbo(gap=float(g))


@study_problem("gamma")
def gamma_cells(costs: list[Literal["square", "log"]]) -> Cells:
    """Gamma (implicit reparameterization for pathwise), 3-D, with each cost: sum z^2 or sum log z."""
    for cost in costs:
        yield {"cost": cost, "dim": 3}, {"square": gamma_square, "log": gamma_log}[cost](3)
