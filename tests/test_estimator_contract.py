"""The estimator contract, over every registered estimator (``estimators.available()``; no hand-written list).

- Shapes, for every estimator on a small problem of every family it declares (its capabilities decide), with a
  batch of two: ``f`` sees samples ``[n, *batch, *event]``, ``out.value`` is ``[n_samples, *batch]``
  (``[support, *batch]`` for the role ``exact``), ``out.surrogate`` is a scalar whose value is the Monte Carlo
  estimate (the mean of ``out.value`` summed over the batch, for the objective ``expectation``), and its
  gradient reaches every parameter with the parameter's shape, finite.
- Unbiasedness, for every estimator whose capabilities say it is unbiased, in its default configuration and
  with each named choice of its declared options (``Constraint.choices``: reinforce's baselines): the mean of R
  estimates equals the exact gradient (closed form, quadrature or enumeration) of the objective it declares
  (``capabilities.objective``), within ``stats.Z_TOL`` standard errors, with R sized (by a pilot) so that the
  largest standard error is at most 5% of the gradient's largest coordinate (so a bias of a quarter of the
  gradient is 5 standard errors), on a small problem per family. An estimator that adapts across calls
  (``Estimator.adapts``: a moving average, a trained control variate) is warmed up by train-mode calls first,
  as training would. Seeds are fixed per case.
- Coverage: every unbiased estimator is checked on at least one problem or listed in ``NOT_CHECKED`` with the
  reason; every declared family and objective has a problem.
- Meta: the same check fails a deliberately biased variant (the gradient scaled by 1.5).

The problems: per family, the first of ``CLOSED_FORM_PROBLEMS`` (and ``test_estimators_ii``'s ``*_direct``)
and the first whose ``f`` depends on the parameters itself (the total derivative), among those whose ``f`` is
defined between the points of a discrete support (relaxations and control variates evaluate it there;
``bernoulli_entropy`` calls ``log_prob``, which is not); for the objective ``iwae``, the K-sample bounds of
``problems.bernoulli_iwae`` (enumeration) and ``problems.gaussian_iwae`` (quadrature). Estimators that need
``f`` to say its log q term apart (``needs_log_q``) get ``LogQSplit(f + log q, q)``: the same integrand.
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.distributions import Poisson

import estimators
from estimators import registry
from estimators.base import EstimatorOutput, LogQSplit
from estimators.capabilities import OBJECTIVES, Capabilities
from estimators.sampling import draw
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS, Problem, bernoulli_iwae, gaussian_iwae
from stats import assert_mean_matches
from test_estimators_ii import bernoulli_direct, categorical_direct

#: Unbiased estimators the generic check cannot cover, with the reason (none today).
NOT_CHECKED: dict[str, str] = {}
N_SAMPLES = 4          # samples per estimate (at least each estimator's minimum)
PILOT_ESTIMATES = 2_000
MAX_ESTIMATES = 100_000
#: The power asked: the largest standard error over the gradient's largest coordinate (assert_mean_matches asks
#: 5% of max(1, that), which is no power at all for a gradient of 0.02).
TARGET_REL_SE = 0.05
WARM_UP_CALLS = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread while these many small measurements run (as under xdist, ``conftest``): a second
    thread only spins on tensors this small, several-fold the CPU time on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _f_depends_on_parameters(problem: Problem) -> bool:
    f, dist = problem.build(*problem.leaves())
    return f(draw(dist, 2, torch.Generator().manual_seed(0))).requires_grad


def _defined_off_support(problem: Problem) -> bool:
    """Whether ``f`` takes points between a discrete support's (relaxed samples)."""
    f, dist = problem.build(*problem.leaves())
    z = draw(dist, 2, torch.Generator().manual_seed(0))
    if z.is_floating_point() and dist.support.is_discrete:
        try:
            f(z * 0.5 + 0.25)
        except ValueError:
            return False
    return True


def _expectation_problems() -> dict[str, callable]:
    candidates = {**CLOSED_FORM_PROBLEMS, "bernoulli_direct": bernoulli_direct,
                  "categorical_direct": categorical_direct}
    chosen: dict[tuple[str, bool], str] = {}
    for name, make in candidates.items():
        problem = make()
        if not _defined_off_support(problem):
            continue
        chosen.setdefault((problem.family, False), name)
        if _f_depends_on_parameters(problem):
            chosen.setdefault((problem.family, True), name)
    return {name: candidates[name] for name in dict.fromkeys(chosen.values())}


#: Small problems per objective (``capabilities.OBJECTIVES``): name -> factory.
PROBLEMS = {
    "expectation": _expectation_problems(),
    "iwae": {"bernoulli_iwae": lambda: bernoulli_iwae(k=2), "gaussian_iwae": lambda: gaussian_iwae(k=5)},
}


@functools.cache
def _problem(objective: str, name: str) -> Problem:
    return PROBLEMS[objective][name]()


@functools.cache
def _exact_gradient(objective: str, name: str) -> torch.Tensor:
    return _problem(objective, name).exact_gradient()


def _build(problem: Problem):
    """The problem's ``build`` for its objective: the expectation, or the per-sample log-weight of a K-sample
    bound (estimated with K samples by an estimator of that objective)."""
    return problem.build if problem.objective == "expectation" else problem.build_log_weight


def _log_q_apart(f, q) -> LogQSplit:
    """``f`` as ``LogQSplit(f + log q, q)``: the same integrand, with log q said apart."""
    return f if isinstance(f, LogQSplit) else LogQSplit(lambda z: f(z) + q.log_prob(z), q)


def _with_log_q_apart(build, est):
    """``build`` with ``f`` as a ``LogQSplit`` for an estimator that needs one (``needs_log_q``)."""
    if not est.capabilities.needs_log_q:
        return build

    def split(*leaves):
        f, q = build(*leaves)
        return _log_q_apart(f, q), q
    return split


def _configurations(cls) -> list[dict]:
    """The default configuration and, one at a time, every other named choice of its declared options."""
    configs = [{}]
    for option_name, option in cls.declared_options.items():
        configs += [{option_name: c} for c in option.constraint.choices if c != option.default]
    return configs


def _label(config: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items())


def _applies(cls, objective: str, problem_name: str, config: dict, n_samples: int) -> bool:
    est = cls(**config)
    problem = _problem(objective, problem_name)
    _, dist = _build(problem)(*problem.leaves())
    return est.why_not(dist, n_samples) is None


def _n_samples(est, problem: Problem) -> int:
    return problem.iwae_k if problem.objective == "iwae" else max(N_SAMPLES, est.min_samples)


@dataclass(frozen=True)
class Case:
    estimator: str
    config: tuple
    objective: str
    problem: str

    @property
    def id(self) -> str:
        config = _label(dict(self.config))
        return f"{self.estimator}{'[' + config + ']' if config else ''}-{self.problem}"


def unbiased_cases(classes) -> list[Case]:
    """Every (configuration, problem of its objective) of each unbiased class that applies."""
    cases = []
    for cls in classes:
        if not cls.capabilities.unbiased:
            continue
        objective = cls.capabilities.objective
        for config in _configurations(cls):
            for name in PROBLEMS.get(objective, {}):
                est = cls(**config)
                if _applies(cls, objective, name, config, _n_samples(est, _problem(objective, name))):
                    cases.append(Case(cls.name, tuple(config.items()), objective, name))
    return cases


def _registered() -> list[type]:
    return [estimators.estimator_class(name) for name in estimators.available()]


UNBIASED_CASES = unbiased_cases(_registered())


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def _warm_up(est, build, leaves, n_samples: int, gen: torch.Generator) -> None:
    """Train-mode calls, as training would make, for an estimator whose later estimates depend on them."""
    if not est.adapts:
        return
    est.train()
    for _ in range(WARM_UP_CALLS):
        f, dist = build(*leaves)
        est(f, dist, n_samples, gen)


def measure_against_exact(est, objective: str, problem_name: str, seed: int):
    """R estimates of the gradient of ``problem_name`` (R sized by a pilot for ``TARGET_REL_SE``, at most
    ``MAX_ESTIMATES``), and the exact gradient."""
    problem = _problem(objective, problem_name)
    build = _with_log_q_apart(_build(problem), est)
    n_samples = _n_samples(est, problem)
    exact = _exact_gradient(objective, problem_name)
    gen = torch.Generator().manual_seed(seed)
    _warm_up(est, build, problem.leaves(), n_samples, gen)
    scale = relative_scale(exact)
    n_estimates = PILOT_ESTIMATES
    while True:
        result = estimators.measure_variance(est, build, problem.leaves(), n_estimates=n_estimates,
                                             n_samples=n_samples, generator=gen, vectorize=True,
                                             chunk_size=n_estimates)
        rel_se = float(result.bias_se.max()) / scale
        if rel_se <= TARGET_REL_SE or n_estimates >= MAX_ESTIMATES:
            return result, exact
        # A fresh measurement of the size the pilot asks for (the pilot's estimates are not reused).
        n_estimates = min(MAX_ESTIMATES, math.ceil(n_estimates * 1.2 * (rel_se / TARGET_REL_SE) ** 2))


def relative_scale(exact: torch.Tensor) -> float:
    """The gradient's largest coordinate (1 for a zero gradient)."""
    return float(exact.abs().max()) or 1.0


def assert_unbiased(result, exact: torch.Tensor) -> None:
    se = float(result.bias_se.max())
    assert se <= TARGET_REL_SE * relative_scale(exact), (
        f"too few estimates ({result.n_estimates}) for the power asked: SE {se:.3g} against a gradient of "
        f"{relative_scale(exact):.3g}")
    assert_mean_matches(result, exact)


@pytest.mark.parametrize("case", UNBIASED_CASES, ids=lambda c: c.id)
def test_unbiased(case):
    est = estimators.get(case.estimator, **dict(case.config))
    assert est.unbiased
    assert_unbiased(*measure_against_exact(est, case.objective, case.problem, _seed(case.id)))


# --- coverage -------------------------------------------------------------------------------------------


def unchecked(classes, cases) -> set[str]:
    """Unbiased estimators among ``classes`` that no case checks."""
    checked = {case.estimator for case in cases}
    return {cls.name for cls in classes if cls.capabilities.unbiased} - checked


def test_every_unbiased_estimator_is_checked_or_listed_with_its_reason():
    missing = unchecked(_registered(), UNBIASED_CASES)
    assert missing <= set(NOT_CHECKED), (
        f"unbiased estimator(s) {sorted(missing - set(NOT_CHECKED))} are checked on no problem: give their "
        f"families or objective a problem here, or list them in NOT_CHECKED with the reason")
    assert set(NOT_CHECKED) <= missing, f"listed but checked (or no longer unbiased): {set(NOT_CHECKED) - missing}"
    assert all(reason.strip() for reason in NOT_CHECKED.values())


def test_a_new_unbiased_estimator_without_a_problem_is_caught():
    """The coverage check is not vacuous: an unbiased estimator of a family without a problem is reported."""
    class PoissonOnly(estimators.Estimator):  # not registered
        name = "poisson_only_test"
        capabilities = Capabilities(unbiased=True, families=(Poisson,))

    assert unchecked([PoissonOnly], unbiased_cases([PoissonOnly])) == {"poisson_only_test"}


def test_every_objective_and_declared_family_has_a_problem():
    assert set(PROBLEMS) == set(OBJECTIVES)
    families = {_problem("expectation", name).family for name in PROBLEMS["expectation"]}
    for cls in _registered():
        declared = {klass.__name__ for klass in cls.capabilities.families}
        assert declared <= families, f"{cls.name}: no problem of {sorted(declared - families)}"
    assert families >= {"Normal", "MultivariateNormal", "LogNormal", "Laplace", "Uniform", "Exponential", "Gamma",
                        "Beta", "Dirichlet", "Bernoulli", "Categorical", "OneHotCategorical"}


# --- meta: a biased variant fails the same check ---------------------------------------------------------


def scaled(cls, factor: float):
    """``cls`` with its gradient estimate scaled by ``factor`` (the surrogate's value unchanged): biased."""
    class Scaled(cls):
        def _estimate(self, *args, **kwargs) -> EstimatorOutput:
            out = super()._estimate(*args, **kwargs)
            s = out.surrogate
            return EstimatorOutput(s + (factor - 1.0) * (s - s.detach()), out.value, out.baseline_loss)
    return Scaled


@pytest.mark.parametrize("name, objective, problem_name", [("pathwise", "expectation", "normal_quadratic"),
                                                            ("reinforce", "expectation", "categorical_polynomial"),
                                                            ("vimco", "iwae", "bernoulli_iwae")])
def test_a_scaled_gradient_fails_the_unbiasedness_check(name, objective, problem_name):
    case = Case(name, (), objective, problem_name)
    assert case in UNBIASED_CASES  # the honest estimator is checked on the same problem
    est = scaled(estimators.estimator_class(name), 1.5)()
    result, exact = measure_against_exact(est, objective, problem_name, _seed(case.id))
    with pytest.raises(AssertionError, match="differs from"):
        assert_unbiased(result, exact)


# --- shapes ------------------------------------------------------------------------------------------------

BATCH = 2
SHAPE_SAMPLES = 5


def shape_cases() -> list[tuple[str, str]]:
    return [(name, problem) for name in estimators.available() for problem in PROBLEMS["expectation"]
            if _applies(estimators.estimator_class(name), "expectation", problem, {}, SHAPE_SAMPLES)]


@pytest.mark.parametrize("name, problem_name", shape_cases(), ids=lambda v: v)
def test_shape_contract(name, problem_name):
    est = estimators.get(name)
    problem = _problem("expectation", problem_name)
    leaves = [p.detach().unsqueeze(0).expand(BATCH, *p.shape).clone().requires_grad_(True)
              for p in problem.params.values()]
    f, dist = problem.build(*leaves)
    seen = []

    def recorded(z):
        seen.append(tuple(z.shape))
        return f(z)

    call_f = _log_q_apart(recorded, dist) if est.capabilities.needs_log_q else recorded
    est.train()
    out = est(call_f, dist, SHAPE_SAMPLES, torch.Generator().manual_seed(_seed(name + problem_name)))
    batch, event = tuple(dist.batch_shape), tuple(dist.event_shape)
    assert batch[:1] == (BATCH,)
    assert seen and all(shape[1:] == batch + event for shape in seen), (seen, batch, event)
    rows = out.value.shape[0] if est.capabilities.role == "exact" else SHAPE_SAMPLES
    assert tuple(out.value.shape) == (rows, *batch) and not out.value.requires_grad
    assert out.surrogate.shape == () and out.surrogate.requires_grad
    if est.capabilities.objective == "expectation" and est.capabilities.role != "exact":
        torch.testing.assert_close(out.surrogate.detach(), out.value.mean(0).sum())
    grads = torch.autograd.grad(out.surrogate, leaves, allow_unused=True)
    for leaf, grad in zip(leaves, grads):
        assert grad is not None and grad.shape == leaf.shape and bool(torch.isfinite(grad).all())


# --- the README's example -------------------------------------------------------------------------------


def _readme_example() -> type:
    """The class of the README's example estimator (``fixed_baseline``), defined from the README's text and taken
    out of the registry again, so that no other test sees it."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    after = text[text.index("<!-- example-estimator: fixed_baseline.py -->"):]
    start = after.index("```python\n") + len("```python\n")
    code = after[start:after.index("\n```", start)]
    namespace: dict = {}
    try:
        exec(compile(code, "README.md:fixed_baseline.py", "exec"), namespace)
    finally:
        registry._REGISTRY.pop("fixed_baseline", None)
    return namespace["FixedBaseline"]


def test_the_readme_example_estimator_is_unbiased_where_it_says_it_applies():
    """A newcomer copies it: every problem it declares it applies to (not U(a, b): its support moves) is
    checked as a registered unbiased estimator is."""
    cls = _readme_example()
    cases = unbiased_cases([cls])
    assert cases and "uniform" not in " ".join(case.problem for case in cases).lower()
    for case in cases:
        est = cls(**dict(case.config))
        assert_unbiased(*measure_against_exact(est, case.objective, case.problem, _seed(case.id)))
