r"""Synthetic problems :math:`\sum_b \mathbb{E}_{q_\theta}[f_\theta(z)]` with closed-form expectations.

Each :class:`Problem` holds initial parameter values, ``build(*params) -> (f, dist)`` and
``expectation(*params)``, the exact objective as a differentiable torch expression, so the exact gradient
is its autograd gradient. ``build`` and ``expectation`` broadcast over a leading replica dimension of the
parameters (the distribution's batch starts with it), which ``estimators.measure_variance(...,
vectorize=True)`` uses to draw many independent estimates in one pass.

Sources of the closed forms: Gaussian integrals in Mohamed et al. 2020 §3 ((x-k)^2, exp(-k x^2), cos(k x));
standard moments of Exponential, Gamma, Beta, Dirichlet, Laplace, Uniform, LogNormal; Bernoulli and
categorical expectations are finite sums.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

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
        l = torch.tril(raw_l)
        return (quad(loc - kvec) + torch.einsum("ij,...ji->...", a, l @ l.transpose(-1, -2))).sum()

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

    q = prod_i Bernoulli(sigmoid(logits_i)); the joint is :math:`\log p(x, z) = D \log 	frac12
    - 	frac12 (w^	op z - t)^2` (a uniform prior and a Gaussian-shaped likelihood; ``w`` spaced from 0.5 to 1.5);
    the log-weight :math:`f(z) = \log p(x, z) - \log q(z)` depends on the parameters. The bound
    :math:`\mathbb{E}_{q^K}[\log rac1K \sum_k e^{f(z_k)}]` is a finite sum over the :math:`2^{DK}` K-tuples.
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
    "beta_square": beta_square,
    "dirichlet_square": dirichlet_square,
    "bernoulli_toy": lambda: bernoulli_toy(t=0.45, dim=3, p=0.3),
    "bernoulli_polynomial": bernoulli_polynomial,
    "bernoulli_entropy": bernoulli_entropy,
    "categorical_polynomial": categorical_polynomial,
    "categorical_index_square": categorical_index_square,
}
"""Problems with D > 1 parameters covering every family the estimators claim, used by the tests."""
