"""ARM, DisARM, MuProp, REBAR, RELAX and VIMCO: unbiasedness against closed forms and exact enumeration,
wrong variants that the same tests catch, declared capabilities, refusals and misuse.

REBAR's and RELAX's training of their control variates and their checkpoints are in test_relax_rebar.py.
"""
from __future__ import annotations

import math
import sys

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal, OneHotCategorical

import estimators
from estimators.arm import ARM
from estimators.capabilities import Capabilities
from estimators.exact import enumerate_support
from estimators.relax import Relax
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS, DTYPE, Problem
from stats import assert_mean_matches, max_z

EXPECTATION_ESTIMATORS = ("arm", "disarm", "muprop", "rebar", "relax")
N_SAMPLES = 4
N_ESTIMATES = 20_000
#: f = -log q(b) + sum b calls log_prob at its input, which torch only defines on the support: an f that the
#: estimators evaluating f off the support (declared by ``differentiable_f``) cannot take.
OFF_SUPPORT_UNDEFINED = {"bernoulli_entropy"}


# --- problems where f depends on the parameters ----------------------------------------------------------


def bernoulli_direct(dim: int = 3, t: float = 0.45) -> Problem:
    """f = sum_d w_d (b_d - t)^2 + sum_d a_d b_d with a = the logits themselves and w a parameter of f only:
    E = sum w (p (1-t)^2 + (1-p) t^2) + sum a p."""
    def build(logits, w):
        return (lambda z: (w * (z - t).pow(2)).sum(-1) + (logits * z).sum(-1)), Independent(Bernoulli(logits=logits), 1)

    def expectation(logits, w):
        p = torch.sigmoid(logits)
        return (w * (p * (1 - t) ** 2 + (1 - p) * t**2) + logits * p).sum()

    return Problem(name="bernoulli_direct", family="Bernoulli",
                   params={"logits": torch.tensor([0.4, -1.2, 2.0][:dim], dtype=DTYPE),
                           "w": torch.tensor([1.0, 0.5, -0.7][:dim], dtype=DTYPE)},
                   build=build, expectation=expectation, info={"dim": dim, "t": t})


def categorical_direct(groups: int = 2, classes: int = 3, t: float = 1.5) -> Problem:
    """One-hot groups, f = w (sum_g <c, z_g> - t)^2 + sum <logits, z> with w a parameter of f:
    E = w (sum_g Var_g + (sum_g E_g - t)^2) + sum <logits, p>."""
    c = torch.linspace(0.0, 2.0, classes, dtype=DTYPE)

    def build(logits, w):
        return ((lambda z: w * ((z * c).sum((-1, -2)) - t).pow(2) + (logits * z).sum((-1, -2))),
                Independent(OneHotCategorical(logits=logits), 1))

    def expectation(logits, w):
        p = torch.softmax(logits, -1)
        mean = (p * c).sum(-1)
        var = (p * c.pow(2)).sum(-1) - mean.pow(2)
        return (w * (var.sum(-1) + (mean.sum(-1) - t).pow(2)) + (logits * p).sum((-1, -2))).sum()

    return Problem(name="categorical_direct", family="OneHotCategorical",
                   params={"logits": torch.linspace(-1.0, 1.0, groups * classes, dtype=DTYPE).reshape(groups, classes),
                           "w": torch.tensor(0.8, dtype=DTYPE)},
                   build=build, expectation=expectation, info={"t": t})


PROBLEMS = {**CLOSED_FORM_PROBLEMS, "bernoulli_direct": bernoulli_direct, "categorical_direct": categorical_direct}


def _supports(name: str, problem: Problem) -> bool:
    est = estimators.get(name)
    if est.capabilities.differentiable_f and problem.name in OFF_SUPPORT_UNDEFINED:
        return False
    return est.supports(problem.build(*problem.leaves())[1])


def _cases():
    for pname, make in PROBLEMS.items():
        for name in EXPECTATION_ESTIMATORS:
            if _supports(name, make()):
                yield pytest.param(pname, name, id=f"{pname}-{name}")


def _measure(est, problem, gen, n_samples=N_SAMPLES, n_estimates=N_ESTIMATES):
    return estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=n_estimates,
                                       n_samples=n_samples, generator=gen, vectorize=True)


@pytest.mark.parametrize("problem_name, name", list(_cases()))
def test_unbiased(problem_name, name, gen):
    problem = PROBLEMS[problem_name]()
    est = estimators.get(name)
    assert est.unbiased and est.capabilities.objective == "expectation"
    assert_mean_matches(_measure(est, problem, gen), problem.exact_gradient())


def test_every_new_estimator_is_covered():
    covered = {name for _, name in (c.values for c in _cases())}
    assert covered == set(EXPECTATION_ESTIMATORS)
    for name in EXPECTATION_ESTIMATORS:  # and each on a problem where f depends on the parameters
        assert any(p.endswith("_direct") for p, n in (c.values for c in _cases()) if n == name)


# --- VIMCO against exact enumeration over all K-tuples ---------------------------------------------------


def iwae_bound(problem: Problem, k: int, *leaves) -> torch.Tensor:
    """E[log (1/K) sum_k exp f(z_k)] over K i.i.d. draws, exactly: a sum over every K-tuple of the support."""
    f, dist = problem.build(*leaves)
    z, log_q = enumerate_support(dist)  # [S, *event], [S]
    fz = f(z)
    idx = torch.cartesian_prod(*[torch.arange(z.shape[0])] * k).reshape(-1, k)
    bound = torch.logsumexp(fz[idx], dim=1) - math.log(k)
    return (log_q[idx].sum(1).exp() * bound).sum()


def iwae_gradient(problem: Problem, k: int) -> torch.Tensor:
    leaves = problem.leaves()
    grads = torch.autograd.grad(iwae_bound(problem, k, *leaves), leaves)
    return torch.cat([g.reshape(-1) for g in grads])


VIMCO_CASES = [("bernoulli_direct2", 2), ("bernoulli_direct2", 3), ("bernoulli_polynomial", 2),
               ("bernoulli_entropy", 3), ("categorical_direct", 2), ("categorical_index_square", 3)]


def _vimco_problem(name: str) -> Problem:
    return bernoulli_direct(dim=2) if name == "bernoulli_direct2" else PROBLEMS[name]()


@pytest.mark.parametrize("problem_name, k", VIMCO_CASES, ids=[f"{p}-K{k}" for p, k in VIMCO_CASES])
def test_vimco_is_unbiased_for_the_iwae_bound(problem_name, k, gen):
    problem = _vimco_problem(problem_name)
    est = estimators.get("vimco")
    assert est.capabilities.objective == "iwae" and est.min_samples == 2
    result = _measure(est, problem, gen, n_samples=k)
    assert_mean_matches(result, iwae_gradient(problem, k))
    if k > 1:  # and that is not the gradient of the expectation
        assert max_z(result, problem.exact_gradient()) > 10


def test_vimco_value_and_surrogate():
    problem = bernoulli_direct(dim=2)
    leaves = problem.leaves()
    f, dist = problem.build(*leaves)
    out = estimators.get("vimco")(f, dist, 3, torch.Generator().manual_seed(0))
    assert out.value.shape == (3,) and not out.value.requires_grad
    assert torch.allclose(out.surrogate.detach(), torch.logsumexp(out.value, 0) - math.log(3))


def test_vimco_leave_one_out_baseline_by_hand():
    """L_{-k} replaces the k-th log-weight by the mean of the others, for each k."""
    from estimators.vimco import leave_one_out_bounds

    fz = torch.tensor([[0.3, -1.0], [1.2, 0.5], [-0.4, 2.0]], dtype=DTYPE)  # [K=3, batch=2]
    got = leave_one_out_bounds(fz)
    for k in range(3):
        others = [j for j in range(3) if j != k]
        replaced = fz.clone()
        replaced[k] = fz[others].mean(0)
        assert torch.allclose(got[k], torch.logsumexp(replaced, 0) - math.log(3))


# --- wrong variants fail the same tests --------------------------------------------------------------------


class RelaxWithoutConditionalPath(Relax):
    """RELAX without the d z_tilde / d theta term (z_tilde's dependence on theta dropped)."""

    _detach_conditional = True


class UncoupledARM(ARM):
    """ARM with independent uniforms for the two halves of a pair: no antithetic coupling."""

    def _uniforms(self, shape, like, generator):
        u = torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
        return u, torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


@pytest.mark.parametrize("wrong, problem_name", [(RelaxWithoutConditionalPath, "bernoulli_toy"),
                                                 (RelaxWithoutConditionalPath, "categorical_polynomial"),
                                                 (UncoupledARM, "bernoulli_toy"),
                                                 (UncoupledARM, "bernoulli_polynomial")])
def test_wrong_variants_fail_the_unbiasedness_test(wrong, problem_name, gen):
    problem = PROBLEMS[problem_name]()
    with pytest.raises(AssertionError, match="differs from"):
        assert_mean_matches(_measure(wrong(), problem, gen), problem.exact_gradient())


def test_disarm_variance_is_at_most_arms_on_the_same_pairs():
    """DisARM is ARM's conditional expectation given the pair: with the same uniforms, lower variance in
    every coordinate (Rao-Blackwellization), and both unbiased."""
    problem = PROBLEMS["bernoulli_polynomial"]()
    results = {name: _measure(estimators.get(name), problem, torch.Generator().manual_seed(7), n_samples=1,
                              n_estimates=40_000) for name in ("arm", "disarm")}
    arm, disarm = results["arm"], results["disarm"]
    se = (arm.variance_se.pow(2) + disarm.variance_se.pow(2)).sqrt()
    assert bool((disarm.variance < arm.variance + se).all()), (disarm.variance, arm.variance)
    assert arm.total_variance - disarm.total_variance > 5 * math.hypot(arm.total_variance_se, disarm.total_variance_se)
    # the same pairs: where a pair agrees in every coordinate both estimates are zero, so the zero rows match
    assert torch.equal((arm.grads == 0).all(1), (disarm.grads == 0).all(1))


# --- what the surrogate gives f's own parameters ----------------------------------------------------------


@pytest.mark.parametrize("name, make", [(n, m) for m in (bernoulli_direct, categorical_direct)
                                         for n in EXPECTATION_ESTIMATORS if _supports(n, m())])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_f_parameters_get_fs_own_gradient_at_the_discrete_samples(name, make, mode):
    """The control variates shape only the distribution parameters' estimate: the gradient with respect to
    a parameter of f alone is exactly the mean of f's gradients at the discrete samples it was evaluated at."""
    problem = make()
    est = estimators.get(name, lr=0.1) if name in ("rebar", "relax") else estimators.get(name)
    est.train(mode == "train")
    logits, w = problem.leaves()
    f, dist = problem.build(logits, w)
    hard = []

    def recording(z):
        if bool(((z == 0) | (z == 1)).all()):
            hard.append(z.detach())
        return f(z)

    out = est(recording, dist, 3, torch.Generator().manual_seed(3))
    (got,) = torch.autograd.grad(out.surrogate, w)
    samples = torch.cat(hard)
    (expected,) = torch.autograd.grad(problem.build(logits, w)[0](samples).mean(), w)
    assert (samples.shape[0]
            == 3 * est.capabilities.evaluations_per_sample - (2 * 3 if name in ("rebar", "relax") else 0))
    assert torch.equal(got, expected)


# --- declarations, refusals, misuse ---------------------------------------------------------------------------

DECLARED = {  # name: (families, evaluations_per_sample, evaluations_per_call, min_samples, differentiable_f, objective)
    "arm": ((Bernoulli,), 2, 0, 1, False, "expectation"),
    "disarm": ((Bernoulli,), 2, 0, 1, False, "expectation"),
    "muprop": ((Bernoulli, OneHotCategorical), 1, 1, 1, True, "expectation"),
    "rebar": ((Bernoulli, OneHotCategorical), 3, 0, 1, True, "expectation"),
    "relax": ((Bernoulli, OneHotCategorical), 3, 0, 1, True, "expectation"),
    "vimco": ((), 1, 0, 2, False, "iwae"),
}


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_declared_capabilities(name):
    caps = estimators.estimator_class(name).capabilities
    assert (caps.families, caps.evaluations_per_sample, caps.evaluations_per_call, caps.min_samples,
            caps.differentiable_f, caps.objective) == DECLARED[name]
    assert caps.unbiased
    klass = estimators.estimator_class(name)
    assert CITED[name] in sys.modules[klass.__module__].__doc__


CITED = {"arm": "Yin & Zhou 2019", "disarm": "Dong, Mnih & Tucker 2020", "muprop": "Gu, Levine, Sutskever & Mnih 2016",
         "rebar": "Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017",
         "relax": "Grathwohl, Choi, Wu, Roeder & Duvenaud 2018", "vimco": "Mnih & Rezende 2016"}


def test_objective_defaults_to_the_expectation_and_is_checked():
    assert Capabilities(unbiased=True).objective == "expectation"
    assert estimators.get("reinforce").capabilities.objective == "expectation"
    with pytest.raises(ValueError, match="unknown objective 'elbo'; valid: expectation, iwae"):
        Capabilities(unbiased=True, objective="elbo")


NOT_DIFFERENTIABLE = {
    "thresholded": lambda z: (z > 0.5).to(z.dtype).sum((-1,)),
    "detached": lambda z: z.detach().pow(2).sum(-1),
}


@pytest.mark.parametrize("name", ["muprop", "rebar", "relax"])
@pytest.mark.parametrize("kind", sorted(NOT_DIFFERENTIABLE))
def test_refuses_an_f_not_differentiable_in_z(name, kind):
    logits = torch.zeros(3, requires_grad=True)
    w = torch.ones(3, requires_grad=True)  # f's output requires grad through w, but not through z
    f = NOT_DIFFERENTIABLE[kind]
    with pytest.raises(ValueError, match=rf"estimator '{name}' needs f differentiable in z"):
        estimators.get(name)(lambda z: f(z) * w.sum(), Independent(Bernoulli(logits=logits), 1), 2)


@pytest.mark.parametrize("name", ["arm", "disarm", "vimco"])
def test_sample_only_estimators_take_a_non_differentiable_f(name):
    logits = torch.zeros(3, requires_grad=True)
    out = estimators.get(name)(NOT_DIFFERENTIABLE["thresholded"], Independent(Bernoulli(logits=logits), 1), 2)
    out.surrogate.backward()
    assert logits.grad is not None


@pytest.mark.parametrize("name, dist, valid", [
    ("arm", Independent(OneHotCategorical(logits=torch.zeros(2, 3)), 1), "Bernoulli"),
    ("disarm", Categorical(logits=torch.zeros(3)), "Bernoulli"),
    ("rebar", Independent(Normal(torch.zeros(2), torch.ones(2)), 1), "Bernoulli, OneHotCategorical"),
    ("relax", Categorical(logits=torch.zeros(3)), "Bernoulli, OneHotCategorical"),
    ("muprop", Independent(Normal(torch.zeros(2), torch.ones(2)), 1), "Bernoulli, OneHotCategorical"),
])
def test_wrong_family_names_the_valid_choices(name, dist, valid):
    with pytest.raises(ValueError, match=rf"'{name}' does not support .*it applies to: {valid} .*estimators that do: "):
        estimators.get(name)(lambda z: z.sum(-1), dist, 2)


def test_vimco_needs_two_samples_and_refuses_uniform():
    dist = Independent(Bernoulli(logits=torch.zeros(2)), 1)
    with pytest.raises(ValueError, match=r"needs an integer n_samples >= 2, got 1"):
        estimators.get("vimco")(lambda z: z.sum(-1), dist, 1)
    assert "excluded" in estimators.get("vimco").why_not(torch.distributions.Uniform)
    assert estimators.get("vimco").why_not(Normal, 2) is None


def test_value_only_under_no_grad():
    logits = torch.zeros(3, requires_grad=True)
    dist = Independent(Bernoulli(logits=logits), 1)
    for name in (*EXPECTATION_ESTIMATORS, "vimco"):
        with torch.no_grad():
            out = estimators.get(name)(lambda z: (z - 0.4).pow(2).sum(-1), dist, 2, torch.Generator().manual_seed(0))
        assert not out.surrogate.requires_grad and out.value.shape == (2,)


def test_pairs_count_as_samples():
    """ARM and DisARM: n_samples pairs, f called once on the 2 n_samples samples; value is each pair's mean."""
    calls = []
    logits = torch.tensor([0.3, -0.2], requires_grad=True)

    def f(z):
        calls.append(z.shape)
        return z.sum(-1)

    out = estimators.get("arm")(f, Independent(Bernoulli(logits=logits), 1), 5, torch.Generator().manual_seed(0))
    assert calls == [torch.Size([10, 2])] and out.value.shape == (5,)
    assert torch.allclose(out.surrogate.detach(), out.value.mean())
