"""double_cv, rodeo, indecater and gst: unbiasedness against closed forms and exact enumeration, wrong
variants that the same tests catch, the papers' variance ordering at equal evaluations of f, the shape
contract, refusals, and the trained control variates' checkpoints.

- Unbiased: double_cv (at its Taylor coefficient alpha = 1 and as trained), rodeo (trained: its Stein control
  variates nonzero), indecater, on the Bernoulli (and, for indecater, categorical) closed-form problems and
  on problems where f depends on the parameters (test_estimators_ii's ``*_direct``, bernoulli_entropy).
- Wrong variants fail the same test: double_cv without the mean of its Taylor control variate, rodeo with a
  Stein operator of a chain that does not leave q invariant (so its control variates are not mean-zero),
  indecater differentiating log p instead of p.
- gst's expected gradient is its enumerated backward pass (deterministic given the sample): biased.
- Variance at equal evaluations of f (two samples, two evaluations each), bernoulli_polynomial with ten
  coordinates, after 150 train-mode calls (lr 0.01): rodeo < double_cv < REINFORCE leave-one-out, the
  papers' ordering (numbers in test_variance_ordering_at_equal_evaluations).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, OneHotCategorical

import estimators
from estimators import families
from estimators.double_cv import DoubleCV
from estimators.exact import enumerate_support
from estimators.gst import gapped_relaxation
from estimators.indecater import IndeCateR
from estimators.one_hot_view import class_logits, from_one_hot, to_one_hot
from estimators.rodeo import Rodeo
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS, Problem, bernoulli_polynomial
from stats import Z_TOL, assert_mean_matches
from test_estimators_ii import NOT_DIFFERENTIABLE, bernoulli_direct, categorical_direct
import trained

N_ESTIMATES = 20_000
REPLICAS = 64  # independent estimates per training call
PROBLEMS = {**{name: CLOSED_FORM_PROBLEMS[name] for name in
               ("bernoulli_toy", "bernoulli_polynomial", "bernoulli_entropy", "categorical_polynomial")},
            "bernoulli_direct": bernoulli_direct, "categorical_direct": categorical_direct}
TRAINED = {"rodeo": {"lr": 0.01}, "double_cv": {"lr": 0.01}}


def _replicated(problem, c=REPLICAS):
    return trained.replicated(problem, c)


def _train(est, problem, gen, steps, n_samples=2):
    """``steps`` train-mode calls; each call's gradient estimate (for bit-for-bit checks)."""
    return trained.train(est, problem, gen, steps, n_samples, REPLICAS)


def _measure(est, problem, gen, n_samples=2, n_estimates=N_ESTIMATES):
    return estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=n_estimates,
                                       n_samples=n_samples, generator=gen, vectorize=True)


def _trained(name, problem, gen, steps=60, **opts):
    est = estimators.get(name, **{**TRAINED.get(name, {}), **opts})
    if name in TRAINED:
        _train(est, problem, gen, steps)
    return est


# --- unbiasedness ------------------------------------------------------------------------------------------

def _cases():
    for pname, make in PROBLEMS.items():
        dist = make().build(*make().leaves())[1]
        for name in ("double_cv", "rodeo", "indecater"):
            if estimators.get(name).supports(dist):
                yield pytest.param(pname, name, id=f"{pname}-{name}")


@pytest.mark.parametrize("problem_name, name", list(_cases()))
def test_unbiased(problem_name, name, gen):
    problem = PROBLEMS[problem_name]()
    est = _trained(name, problem, gen)
    assert est.unbiased
    if name == "rodeo":  # its Stein control variates are in play
        assert abs(float(est.alpha.detach())) > 0.05 and abs(float(est.beta.detach())) > 0.05
    assert_mean_matches(_measure(est, problem, gen), problem.exact_gradient())


@pytest.mark.parametrize("problem_name", ["bernoulli_polynomial", "bernoulli_direct"])
def test_double_cv_is_unbiased_at_the_taylor_coefficient(problem_name, gen):
    problem = PROBLEMS[problem_name]()
    assert_mean_matches(_measure(estimators.get("double_cv", alpha=1.0), problem, gen), problem.exact_gradient())


def _bernoulli_probs():
    """bernoulli_polynomial with the distribution built from probabilities: the estimate reaches them through
    the logits torch derives from them."""
    w = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)

    def expectation(p):
        return ((w.pow(2) * p * (1 - p)).sum(-1) + ((w * p).sum(-1) - 1.0).pow(2)).sum()

    return Problem(name="bernoulli_probs", family="Bernoulli", params={"probs": torch.tensor([0.3, 0.6, 0.8],
                   dtype=torch.float64)}, expectation=expectation,
                   build=lambda p: ((lambda z: ((w * z).sum(-1) - 1.0).pow(2)), Independent(Bernoulli(probs=p), 1)))


@pytest.mark.parametrize("name, opts", [("double_cv", {"alpha": 1.0}), ("rodeo", {}), ("indecater", {})])
def test_unbiased_for_a_distribution_built_from_probabilities(name, opts, gen):
    problem = _bernoulli_probs()
    est = _trained(name, problem, gen, **opts)
    assert_mean_matches(_measure(est, problem, gen), problem.exact_gradient())


def test_every_estimator_and_f_depending_on_the_parameters_is_covered():
    cases = [c.values for c in _cases()]
    assert {n for _, n in cases} == {"double_cv", "rodeo", "indecater"}
    for name in ("double_cv", "rodeo", "indecater"):
        assert any(p.endswith("_direct") for p, n in cases if n == name)
    assert ("categorical_direct", "indecater") in cases


def test_double_cv_is_exact_for_a_linear_f_at_alpha_one(gen):
    """f(b) = a^T b + c: the Taylor control variate removes all of the score term's noise."""
    logits = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    out = estimators.get("double_cv", alpha=1.0)(lambda z: (z * a).sum(-1) + 3.0,
                                                 Independent(Bernoulli(logits=logits), 1), 2, gen)
    (grad,) = torch.autograd.grad(out.surrogate, logits)
    p = torch.sigmoid(logits.detach())
    torch.testing.assert_close(grad, a * p * (1 - p), rtol=1e-12, atol=1e-12)


# --- wrong variants fail the same tests ----------------------------------------------------------------------

class _NoCorrection(DoubleCV):
    """Wrong: the Taylor control variate without its mean (not mean-zero)."""

    @staticmethod
    def _correction(alpha, grad, p):
        return torch.zeros_like(p)


class _StayRates(Rodeo):
    """Wrong: the Gibbs rates use the probability of keeping each coordinate, q_i(b_i), not of flipping it; that
    chain does not leave q invariant, so its Stein control variates are not mean-zero."""

    @staticmethod
    def _flip_probabilities(p, b):
        return p * b + (1.0 - p) * (1.0 - b)


class _LogDerivative(IndeCateR):
    """Wrong: every class's value weighted by the derivative of log p instead of p."""

    def _estimate(self, f, dist, n_samples, generator):
        from estimators.base import EstimatorOutput, evaluate, reduce_samples
        from estimators.indecater import class_probabilities, groups_and_classes, values_at_every_class
        from estimators.sampling import draw

        x = draw(dist, n_samples, generator)
        fx = evaluate(f, x, dist, n_samples)
        groups, classes = groups_and_classes(dist)
        with torch.no_grad():
            one_hot = to_one_hot(x, dist).reshape(n_samples, *dist.batch_shape, math.prod(groups), classes)
            values = values_at_every_class(f, one_hot, fx.detach(), dist)
        log_p = class_probabilities(dist).log()
        return EstimatorOutput(surrogate=reduce_samples(fx + (values * (log_p - log_p.detach())).sum((-1, -2))),
                               value=fx.detach())


WRONG = {"double_cv_without_correction": (lambda: _NoCorrection(alpha=1.0), "bernoulli_polynomial", 0),
         "rodeo_stay_rates": (lambda: _StayRates(lr=0.01), "bernoulli_polynomial", 60),
         "indecater_log_derivative": (lambda: _LogDerivative(), "categorical_polynomial", 0)}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_wrong_variants_fail_the_unbiasedness_test(wrong, gen):
    make, problem_name, steps = WRONG[wrong]
    problem, est = PROBLEMS[problem_name](), make()
    _train(est, problem, gen, steps)
    with pytest.raises(AssertionError, match="differs"):
        assert_mean_matches(_measure(est, problem, gen), problem.exact_gradient())


# --- variance at equal evaluations of f ------------------------------------------------------------------------

def test_variance_ordering_at_equal_evaluations(gen):
    """Two samples (two evaluations of f) per estimate; bernoulli_polynomial with ten coordinates; rodeo and
    double_cv after 150 train-mode calls (lr 0.01, 64 replicas each). Measured total variances (20,000
    estimates, about): REINFORCE leave-one-out 460, double_cv 34, rodeo 9: the papers' ordering,
    RODEO below Double CV below REINFORCE leave-one-out."""
    problem = bernoulli_polynomial(dim=10)
    loo = estimators.get("reinforce", baseline="leave_one_out")
    results = {"loo": _measure(loo, problem, gen)}
    for name in ("double_cv", "rodeo"):
        est = _trained(name, problem, gen, steps=150)
        assert est.f_evaluations(problem.build(*problem.leaves())[1], 2) == loo.f_evaluations(
            problem.build(*problem.leaves())[1], 2) == 2
        results[name] = _measure(est, problem, gen)
    var = {k: r.total_variance for k, r in results.items()}

    def below(a, b):
        return var[b] - var[a] > Z_TOL * math.hypot(results[a].total_variance_se, results[b].total_variance_se)

    assert below("double_cv", "loo") and below("rodeo", "loo") and below("rodeo", "double_cv"), var
    assert var["rodeo"] < 0.1 * var["loo"], var


def test_untrained_double_cv_and_rodeo_are_reinforce_leave_one_out(gen):
    """alpha = beta = 0 at the start (the authors' initialization): the same estimates as REINFORCE-LOO."""
    problem = bernoulli_polynomial(dim=4)
    estimates = {}
    for name, opts in (("reinforce", {"baseline": "leave_one_out"}), ("double_cv", {}), ("rodeo", {})):
        f, dist = problem.build(*problem.leaves())
        out = estimators.get(name, **opts)(f, dist, 3, torch.Generator().manual_seed(5))
        estimates[name] = torch.autograd.grad(out.surrogate, dist.base_dist.logits)[0]
    torch.testing.assert_close(estimates["double_cv"], estimates["reinforce"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(estimates["rodeo"], estimates["reinforce"], rtol=1e-12, atol=1e-12)


# --- gst: its expectation by enumeration ---------------------------------------------------------------------

def _gst_expected_gradient(problem, temperature, gap):
    """Sum over the support of q(D) times GST's (deterministic) backward pass at D."""
    leaves = problem.leaves()
    f, dist = problem.build(*leaves)
    z, log_q = enumerate_support(dist)
    relaxed = from_one_hot(gapped_relaxation(to_one_hot(z, dist), class_logits(dist), temperature, gap), dist)
    grads = torch.autograd.grad((log_q.detach().exp() * f(relaxed)).sum(), leaves)
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("problem_name", ["bernoulli_polynomial", "categorical_polynomial"])
def test_gst_has_its_enumerated_mean_and_is_biased(problem_name, gen):
    problem = PROBLEMS[problem_name]()
    result = _measure(estimators.get("gst", temperature=0.7, gap=1.0), problem, gen, n_samples=1)
    expected = _gst_expected_gradient(problem, 0.7, 1.0)
    assert_mean_matches(result, expected)
    assert float((expected - problem.exact_gradient()).norm()) > 0.1


def test_gst_forward_is_the_sample_and_its_gap_is_kept():
    logits = torch.tensor([[2.0, 0.5, 0.4, -1.0]], dtype=torch.float64, requires_grad=True)
    hard = torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    out = gapped_relaxation(hard, logits, 1.0, 1.0)
    assert torch.equal(out.detach(), hard)
    # the perturbed logits: the sampled class at the top, every other at least the gap below it
    theta = torch.log_softmax(logits.detach(), -1)
    top = theta.max()
    perturbed = theta + (top - theta) * hard - torch.relu(theta - top + 1.0) * (1 - hard)
    assert int(perturbed.argmax()) == 2 and float((perturbed[0, 2] - perturbed[0, [0, 1, 3]]).min()) >= 1.0 - 1e-12


# --- shape contract, cost, refusals -----------------------------------------------------------------------------

def _dist(kind, batch=(2,)):
    if kind == "bernoulli":
        logits = torch.linspace(-1, 1, math.prod(batch) * 3, dtype=torch.float64).reshape(*batch, 3)
        return Independent(Bernoulli(logits=logits.requires_grad_(True)), 1), lambda z: (z - 0.3).pow(2).sum(-1)
    logits = torch.linspace(-1, 1, math.prod(batch) * 8, dtype=torch.float64).reshape(*batch, 2, 4)
    c = torch.arange(4, dtype=torch.float64)
    return Independent(OneHotCategorical(logits=logits.requires_grad_(True)), 1), lambda z: (z * c).sum((-1, -2)).pow(2)


NAMES = ("double_cv", "rodeo", "indecater", "gst")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_shape_contract(name, kind, gen):
    dist, f = _dist(kind)
    est = estimators.get(name)
    if not est.supports(dist):
        assert kind == "categorical" and name in ("double_cv", "rodeo")
        assert "is not one of its families (Bernoulli)" in est.why_not(dist)
        return
    out = est(f, dist, 3, gen)
    assert out.surrogate.shape == () and out.surrogate.requires_grad
    assert out.value.shape == (3, 2) and not out.value.requires_grad
    torch.testing.assert_close(out.surrogate.detach(), out.value.mean(0).sum())
    (grad,) = torch.autograd.grad(out.surrogate, families.unwrap(dist)[0].logits)
    assert grad.shape == families.unwrap(dist)[0].logits.shape and torch.isfinite(grad).all()
    with torch.no_grad():  # a value only
        assert est(f, dist, 3, gen).value.shape == (3, 2)


def test_indecater_declares_and_makes_its_evaluations(gen):
    for kind, per_sample in (("bernoulli", 1 + 3), ("categorical", 1 + 2 * 3)):
        dist, f = _dist(kind)
        rows = []
        est = estimators.get("indecater")
        est(lambda z: (rows.append(z.shape[0]), f(z))[1], dist, 5, gen)
        assert sum(rows) == 5 * per_sample == est.f_evaluations(dist, 5)
    caps = estimators.estimator_class("indecater").capabilities
    assert (caps.evaluations_per_sample, caps.evaluations_per_coordinate) == (1, 1)  # 1 + D, Bernoulli


@pytest.mark.parametrize("name", ["gst", "double_cv", "rodeo"])
@pytest.mark.parametrize("kind", sorted(NOT_DIFFERENTIABLE))
def test_refuses_an_f_not_differentiable_in_z(name, kind, gen):
    dist, _ = _dist("bernoulli")
    w = torch.ones(3, requires_grad=True)  # f's output requires grad through w, but not through z
    f = NOT_DIFFERENTIABLE[kind]
    assert estimators.get(name).capabilities.differentiable_f
    with pytest.raises(ValueError, match=rf"estimator '{name}' .*f (must be|differentiable in z)"):
        estimators.get(name)(lambda z: f(z) * w.sum(), dist, 2, gen)
    out = estimators.get("indecater")(lambda z: f(z) * w.sum(), dist, 2, gen)  # only evaluates f: takes it
    assert torch.autograd.grad(out.surrogate, families.unwrap(dist)[0].logits)[0].shape == (2, 3)


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_two_samples_at_least(name):
    dist, f = _dist("bernoulli")
    est = estimators.get(name)
    assert est.min_samples == 2 and est.why_not(dist, 1) == "n_samples=1 is below its minimum 2"
    with pytest.raises(ValueError, match=r"needs an integer n_samples >= 2, got 1"):
        est(f, dist, 1)


def test_options_and_their_errors():
    assert estimators.get("gst", temperature=0.5, gap=2.0).describe() == "gst(temperature=0.5, gap=2.0)"
    assert estimators.get("rodeo").describe() == "rodeo(lr=0.001, hidden=100)"
    assert estimators.get("double_cv").describe() == "double_cv(alpha=0.0, lr=0.001)"
    assert estimators.get("indecater").describe() == "indecater"
    for name, bad, message in (("gst", {"temperature": 0.0}, "temperature must be > 0"),
                               ("gst", {"gap": -1.0}, "gap must be >= 0"),
                               ("rodeo", {"lr": 0.0}, "lr must be > 0"),
                               ("rodeo", {"hidden": 0}, "hidden must be an integer >= 1"),
                               ("double_cv", {"lr": -1.0}, "lr must be > 0")):
        with pytest.raises(ValueError, match=message):
            estimators.get(name, **bad)
    with pytest.raises(ValueError, match="unknown option.*'tau'.*valid options: temperature, gap"):
        estimators.get("gst", tau=1.0)


# --- trained control variates: eval mode, checkpoints -------------------------------------------------------------

def _tensors(est):
    return {k: v.clone() for k, v in est.state_dict().items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_eval_mode_and_no_grad_freeze_the_parameters(name, gen):
    problem = bernoulli_polynomial(dim=4)
    est = estimators.get(name, lr=0.1)
    _train(est, problem, gen, steps=2)
    frozen = _tensors(est)
    (f, dist), _ = _replicated(problem, 4)
    est.eval()
    est(f, dist, 2, gen)
    est.train()
    with torch.no_grad():
        est(f, dist, 2, gen)
    assert all(torch.equal(v, frozen[k]) for k, v in _tensors(est).items())
    _train(est, problem, gen, steps=1)
    assert any(not torch.equal(v, frozen[k]) for k, v in _tensors(est).items())


@pytest.mark.parametrize("name", ["rodeo", "double_cv"])
@pytest.mark.parametrize("saved_at", [0, 3])
def test_checkpoint_resumes_bit_for_bit(name, saved_at):
    problem = bernoulli_polynomial(dim=4)
    opts = {"lr": 0.05}
    est, gen = estimators.get(name, **opts), torch.Generator().manual_seed(11)
    _train(est, problem, gen, steps=saved_at)
    blob = trained.checkpoint(est, gen)
    if name == "rodeo":
        assert bool(est.initialized) == (saved_at > 0)
    uninterrupted = _train(est, problem, gen, steps=4)
    resumed_est, resumed_gen = trained.resume(name, blob, **opts)
    resumed = _train(resumed_est, problem, resumed_gen, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed))
    assert _tensors(est).keys() == _tensors(resumed_est).keys()
    assert all(torch.equal(v, _tensors(resumed_est)[k]) for k, v in _tensors(est).items())
    assert repr(est.state_dict()["_extra_state"]) == repr(resumed_est.state_dict()["_extra_state"])
    assert est.state_dict()["_extra_state"]["optimizer"] is not None


def test_rodeo_network_comes_from_the_generator_only():
    built = trained.networks_under_global_seeds("rodeo", bernoulli_polynomial(dim=3), n_samples=2)
    assert torch.equal(*(est.net[0].weight for est in built)) and all(bool(est.initialized) for est in built)
