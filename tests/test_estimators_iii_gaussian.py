"""measure_valued and reinforce_delta (the delta-method control variate) on Gaussians.

- Unbiased on the suite's Gaussian problems, including f that depends on the parameters (normal_entropy,
  normal_parameter_product), on a non-Independent Normal, and (measure_valued) on a step function, which
  has no gradient in z.
- Per-coordinate variance equal to numerical quadrature on Mohamed et al.'s (2020, section 3) three costs,
  (x - k)^2, exp(-k x^2), cos(k x), for several k: adaptive quadrature over the Weibull/Rayleigh, Maxwell
  and uniform variables of the couplings (measure_valued), Gauss-Hermite over N(0, 1) (reinforce_delta with
  a fixed coefficient, the one whose variance is a one-dimensional integral).
- Meta-tests: a wrong location decomposition, an uncoupled scale pair and a coefficient that sees its own
  sample are each caught by the same checks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

import estimators
from estimators.measure import VarianceResult
from estimators.measure_valued import MeasureValued
from estimators.reinforce_delta import ReinforceDelta
from experiments.synthetic.problems import (
    CLOSED_FORM_PROBLEMS, Problem, normal_cosine, normal_exp_square, normal_quadratic,
)
from stats import Z_TOL, assert_mean_matches, max_z

DTYPE = torch.float64
GAUSSIAN_PROBLEMS = ["normal_quadratic", "normal_exp_square", "normal_cosine", "normal_entropy",
                     "normal_parameter_product"]
CONFIGS = {  # name: (estimator, options, n_samples)
    "measure_valued": ("measure_valued", {}, 1),
    "delta_loo": ("reinforce_delta", {}, 4),
    "delta_fixed": ("reinforce_delta", {"coefficient": 1.0}, 2),
}
N_ESTIMATES = 40_000


def _measure(est, problem, n_samples, gen, n_estimates=N_ESTIMATES):
    return estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=n_estimates,
                                       n_samples=n_samples, generator=gen, vectorize=True)


# --- unbiasedness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("problem_name", GAUSSIAN_PROBLEMS)
def test_unbiased_on_the_suite(problem_name, config, gen):
    problem = CLOSED_FORM_PROBLEMS[problem_name]()
    name, opts, n_samples = CONFIGS[config]
    est = estimators.get(name, **opts)
    assert est.unbiased
    assert_mean_matches(_measure(est, problem, n_samples, gen), problem.exact_gradient())


def _scalar_normal_problem() -> Problem:
    """A plain Normal (no Independent; event shape ()) with batch 3: f = exp(-z^2) per element."""
    def expectation(loc, scale):
        a = 1 + 2 * scale.pow(2)
        return (torch.exp(-loc.pow(2) / a) / a.sqrt()).sum()

    return Problem(name="scalar_normal", family="Normal",
                   params={"loc": torch.tensor([0.3, -0.8, 1.1], dtype=DTYPE),
                           "scale": torch.tensor([0.5, 1.2, 0.9], dtype=DTYPE)},
                   build=lambda loc, scale: ((lambda z: torch.exp(-z.pow(2))), Normal(loc, scale)),
                   expectation=expectation)


def _step_problem() -> Problem:
    """f = sum 1[z > 0]: no gradient in z anywhere; E = sum Phi(mu / sigma)."""
    return Problem(name="normal_step", family="Normal",
                   params={"loc": torch.tensor([0.3, -0.8, 1.1], dtype=DTYPE),
                           "scale": torch.tensor([0.5, 1.2, 0.9], dtype=DTYPE)},
                   build=lambda loc, scale: ((lambda z: (z > 0).to(DTYPE).sum(-1)),
                                             Independent(Normal(loc, scale), 1)),
                   expectation=lambda loc, scale: torch.special.ndtr(loc / scale).sum())


@pytest.mark.parametrize("config", list(CONFIGS))
def test_unbiased_on_a_plain_normal(config, gen):
    problem = _scalar_normal_problem()
    name, opts, n_samples = CONFIGS[config]
    assert_mean_matches(_measure(estimators.get(name, **opts), problem, n_samples, gen), problem.exact_gradient())


def test_measure_valued_needs_no_gradient_of_f(gen):
    """A step function (no autograd path from z, where pathwise has nothing to differentiate): measure_valued
    only evaluates it, and stays unbiased."""
    problem = _step_problem()
    assert not estimators.get("measure_valued").capabilities.differentiable_f
    assert_mean_matches(_measure(estimators.get("measure_valued"), problem, 1, gen), problem.exact_gradient())


# --- variance against quadrature --------------------------------------------------------------------

MU, SIGMA = 1.0, 1.0
COSTS = {  # numpy f, problem (dim 1, mu = 1, sigma = 1)
    "quadratic": (lambda k: (lambda x: (x - k) ** 2), lambda k: normal_quadratic(k=k, dim=1, mu=MU, sigma=SIGMA)),
    "exp_square": (lambda k: (lambda x: np.exp(-k * x**2)),
                   lambda k: normal_exp_square(k=k, dim=1, mu=MU, sigma=SIGMA)),
    "cosine": (lambda k: (lambda x: np.cos(k * x)), lambda k: normal_cosine(k=k, dim=1, mu=MU, sigma=SIGMA)),
}
KS = [0.5, 1.0, 3.0]
R_MAX = 14.0  # the Rayleigh and Maxwell tails beyond this are below 1e-40


def _mvd_variance_by_quadrature(f, grad):
    """Per-sample variances of measure_valued's (loc, scale) gradients for N(MU, SIGMA^2)."""
    c = 1.0 / (SIGMA * math.sqrt(2 * math.pi))
    loc_m2 = integrate.quad(lambda r: (f(MU + SIGMA * r) - f(MU - SIGMA * r)) ** 2 * r * math.exp(-r * r / 2),
                            0.0, R_MAX, epsabs=1e-13, epsrel=1e-11, limit=400)[0]
    maxwell = math.sqrt(2 / math.pi)

    def scale_integrand(u, m):  # averaged over the sign
        diff = [(f(MU + s * SIGMA * m) - f(MU + s * SIGMA * u * m)) ** 2 for s in (1.0, -1.0)]
        return 0.5 * sum(diff) * maxwell * m * m * math.exp(-m * m / 2)

    scale_m2 = integrate.dblquad(scale_integrand, 0.0, R_MAX, 0.0, 1.0, epsabs=1e-12, epsrel=1e-10)[0]
    return np.array([c * c * loc_m2 - grad[0] ** 2, scale_m2 / SIGMA**2 - grad[1] ** 2])


def _delta_variance_by_quadrature(f_torch, beta, grad):
    """Per-sample variances of reinforce_delta's (loc, scale) gradients with a fixed coefficient."""
    mu = torch.tensor(MU, dtype=DTYPE, requires_grad=True)
    (d1,) = torch.autograd.grad(f_torch(mu), mu, create_graph=True)
    (d2,) = torch.autograd.grad(d1, mu)
    f0, d1, d2 = float(f_torch(mu.detach())), float(d1.detach()), float(d2)
    eps, w = hermegauss(160)
    w = w / math.sqrt(2 * math.pi)
    x = MU + SIGMA * eps
    fx = f_torch(torch.as_tensor(x)).numpy()
    h = f0 + d1 * (x - MU) + 0.5 * d2 * (x - MU) ** 2
    g_loc = (fx - beta * h) * eps / SIGMA + beta * d1
    g_scale = (fx - beta * h) * (eps**2 - 1) / SIGMA + beta * d2 * SIGMA
    return np.array([(w * g_loc**2).sum() - grad[0] ** 2, (w * g_scale**2).sum() - grad[1] ** 2])


def _assert_variance_matches(result: VarianceResult, expected: np.ndarray, *, z_tol: float = Z_TOL):
    """Per coordinate: the measured variance equals ``expected`` within ``z_tol`` of its standard errors,
    which are at most 5% of it (power); where ``expected`` is 0 (an exact cancellation), so is the
    measurement."""
    expected = torch.as_tensor(expected, dtype=DTYPE)
    exact = expected.abs() < 1e-12
    assert float(result.variance[exact].abs().sum()) < 1e-20, "a zero variance was measured as nonzero"
    var, se, expected = result.variance[~exact], result.variance_se[~exact], expected[~exact]
    assert bool((se < 0.05 * expected).all()), f"too few estimates: relative SE {(se / expected).tolist()}"
    z = (var - expected).abs() / se
    assert bool((z < z_tol).all()), f"variance {var.tolist()} vs quadrature {expected.tolist()} ({z.tolist()} SE)"


TORCH_COSTS = {"quadratic": lambda k: (lambda x: (x - k) ** 2),
               "exp_square": lambda k: (lambda x: torch.exp(-k * x**2)),
               "cosine": lambda k: (lambda x: torch.cos(k * x))}


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("cost", list(COSTS))
def test_measure_valued_variance_equals_quadrature(cost, k, gen):
    make_f, make_problem = COSTS[cost]
    problem = make_problem(k)
    grad = problem.exact_gradient().numpy()
    result = _measure(estimators.get("measure_valued"), problem, 1, gen, n_estimates=100_000)
    _assert_variance_matches(result, _mvd_variance_by_quadrature(make_f(k), grad))


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("cost", list(COSTS))
def test_delta_method_variance_equals_quadrature(cost, k, gen):
    problem = COSTS[cost][1](k)
    grad = problem.exact_gradient().numpy()
    # 32 samples per estimate: the same variance / 32, with lighter tails than single score-function terms,
    # so that 50,000 estimates measure it to a few percent.
    result = _measure(estimators.get("reinforce_delta", coefficient=1.0), problem, 32, gen, n_estimates=50_000)
    _assert_variance_matches(result, _delta_variance_by_quadrature(TORCH_COSTS[cost](k), 1.0, grad) / 32)


def test_the_control_variate_pays_where_the_taylor_expansion_is_good(gen):
    """Against plain REINFORCE (same samples per estimate): the delta method removes all the variance of a
    quadratic cost and most of that of cos(k x) at small k; at k = 3 the fixed coefficient makes it worse,
    and the estimated (leave-one-out) coefficient recovers most of the loss (measured facts)."""
    variances = {}
    for k in (0.5, 3.0):
        problem = normal_cosine(k=k, dim=1, mu=MU, sigma=SIGMA)
        for label, name, opts in (("plain", "reinforce", {}), ("fixed", "reinforce_delta", {"coefficient": 1.0}),
                                  ("loo", "reinforce_delta", {})):
            variances[k, label] = _measure(estimators.get(name, **opts), problem, 4, gen, 40_000).total_variance
    quadratic = normal_quadratic(k=0.5, dim=3, mu=0.7, sigma=0.8)
    assert _measure(estimators.get("reinforce_delta", coefficient=1.0), quadratic, 1, gen, 1000).total_variance < 1e-20
    assert variances[0.5, "fixed"] < 0.2 * variances[0.5, "plain"], variances
    assert variances[0.5, "loo"] < 0.5 * variances[0.5, "plain"], variances
    assert variances[3.0, "fixed"] > 2 * variances[3.0, "plain"], variances
    assert variances[3.0, "loo"] < 0.5 * variances[3.0, "fixed"], variances


# --- meta-tests: wrong variants fail the same checks ---------------------------------------------------


class _HalfNormalLocation(MeasureValued):
    """Wrong: the location pair drawn from |N(0, 1)| instead of the Rayleigh (Weibull) distribution."""

    @staticmethod
    def _location_radius(shape, like, generator):
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device).abs()


class _UncoupledScale(MeasureValued):
    """Unbiased but not the paper's coupling: the Gaussian part drawn independently of the Maxwell part."""

    @staticmethod
    def _scale_pair(shape, like, generator):
        maxwell, _ = MeasureValued._scale_pair(shape, like, generator)
        return maxwell, torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


class _CoefficientSeesItsOwnSample(ReinforceDelta):
    """Wrong: beta estimated from all the samples, its own included, so it depends on z_s."""

    def _coefficient(self, signal, h, score, c):
        x = h.unsqueeze(-1) * score - c
        num = (signal.unsqueeze(-1) * score * x).sum(-1).sum(0, keepdim=True)
        return (num / x.pow(2).sum(-1).sum(0, keepdim=True)).expand_as(signal)


def test_a_wrong_location_decomposition_is_caught(gen):
    problem = CLOSED_FORM_PROBLEMS["normal_cosine"]()
    result = _measure(_HalfNormalLocation(), problem, 1, gen)
    assert max_z(result, problem.exact_gradient()) > 10 * Z_TOL
    with pytest.raises(AssertionError, match="differs from"):
        assert_mean_matches(result, problem.exact_gradient())


def test_the_coupling_is_the_papers(gen):
    """The uncoupled scale pair is still unbiased, but its variance is not the coupled quadrature's: the
    variance test tells the two apart (and the coupling is the smaller)."""
    k = 1.0
    make_f, make_problem = COSTS["cosine"]
    problem = make_problem(k)
    grad = problem.exact_gradient().numpy()
    expected = _mvd_variance_by_quadrature(make_f(k), grad)
    uncoupled = _measure(_UncoupledScale(), problem, 1, gen, n_estimates=100_000)
    assert_mean_matches(uncoupled, problem.exact_gradient())
    with pytest.raises(AssertionError, match="vs quadrature"):
        _assert_variance_matches(uncoupled, expected)
    assert float(uncoupled.variance[1]) > 1.5 * expected[1]


def test_a_coefficient_that_sees_its_own_sample_is_caught(gen):
    problem = CLOSED_FORM_PROBLEMS["normal_cosine"]()  # the leave-one-out version passes it above
    result = _measure(_CoefficientSeesItsOwnSample(), problem, 4, gen)
    assert max_z(result, problem.exact_gradient()) > 10 * Z_TOL
    with pytest.raises(AssertionError, match="differs from"):
        assert_mean_matches(result, problem.exact_gradient())


# --- declarations and refusals ------------------------------------------------------------------------


def test_declared_costs_are_the_evaluations_made(gen):
    """measure_valued evaluates f at 1 + 3 D points per sample, as declared; reinforce_delta once per
    sample plus D copies of the mean for its Hessian columns."""
    rows = []

    def f(z):
        rows.append(z.shape[0])
        return torch.cos(z).sum(-1)

    loc = torch.zeros(5, 4, dtype=DTYPE, requires_grad=True)
    dist = Independent(Normal(loc, torch.ones(5, 4, dtype=DTYPE)), 1)
    caps = estimators.get("measure_valued").capabilities
    estimators.get("measure_valued")(f, dist, 3, gen)
    assert sum(rows) == 3 * caps.evaluations(4) == 3 * (1 + 3 * 4)
    rows.clear()
    estimators.get("reinforce_delta")(f, dist, 3, gen)
    assert sum(rows) == 3 * estimators.get("reinforce_delta").capabilities.evaluations(4) + 4


def test_capabilities_and_options():
    mv, delta = estimators.get("measure_valued"), estimators.get("reinforce_delta")
    assert mv.unbiased and delta.unbiased
    assert delta.capabilities.differentiable_f and not mv.capabilities.differentiable_f
    assert delta.min_samples == 2 and estimators.get("reinforce_delta", coefficient=1.0).min_samples == 1
    assert (estimators.get("reinforce_delta", coefficient=0.5).describe()
            == "reinforce_delta(coefficient=0.5, max_coordinates=100)")
    wide = Independent(Normal(torch.zeros(101), torch.ones(101)), 1)
    for name in ("measure_valued", "reinforce_delta"):
        assert "101 coordinates, above max_coordinates=100" in estimators.get(name).why_not(wide)
        assert estimators.get(name, max_coordinates=101).supports(wide)
        with pytest.raises(ValueError, match="max_coordinates must be an integer >= 1"):
            estimators.get(name, max_coordinates=0)
    for dist in (Independent(Bernoulli(logits=torch.zeros(3)), 1),
                 MultivariateNormal(torch.zeros(2), torch.eye(2))):
        assert not mv.supports(dist) and not delta.supports(dist)
    with pytest.raises(ValueError, match="unknown coefficient"):
        estimators.get("reinforce_delta", coefficient="optimal")
    with pytest.raises(ValueError, match="finite number"):
        estimators.get("reinforce_delta", coefficient=float("nan"))


@pytest.mark.parametrize("f", [lambda z: (z > 0).to(z.dtype).sum(-1), lambda z: z.detach().pow(2).sum(-1),
                               lambda z: torch.sqrt(z.abs()).sum(-1)],
                         ids=["step", "detached", "sqrt_abs_at_zero"])
def test_delta_method_refuses_f_that_is_not_differentiable(f):
    loc = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    dist = Independent(Normal(loc, torch.ones(3, dtype=DTYPE)), 1)
    with pytest.raises(ValueError, match="'reinforce_delta' needs f to be twice differentiable in z"):
        estimators.get("reinforce_delta")(f, dist, 4)
