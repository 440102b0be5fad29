"""Stateful estimators: when their buffers update, and the learned (NVIL) baseline."""
from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

import estimators
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS
from stats import assert_mean_matches


def _call(est, gen, loc=None):
    loc = torch.zeros(3, requires_grad=True) if loc is None else loc
    return est(lambda z: (z - 2).pow(2).sum(-1), Independent(Normal(loc, torch.ones(3)), 1), 4, gen)


def test_moving_average_updates_in_train_mode_only(gen):
    est = estimators.get("reinforce", baseline="moving_average", decay=0.5)
    out = _call(est, gen)
    first = float(out.value.mean())
    assert int(est.n_updates) == 1 and math.isclose(float(est.running_mean), first, rel_tol=1e-6)
    out = _call(est, gen)
    assert math.isclose(float(est.running_mean), 0.5 * first + 0.5 * float(out.value.mean()), rel_tol=1e-6)
    est.eval()
    frozen = float(est.running_mean)
    _call(est, gen)
    assert float(est.running_mean) == frozen and int(est.n_updates) == 2
    assert "running_mean" in est.state_dict()


def test_moving_average_lowers_variance(gen):
    problem = CLOSED_FORM_PROBLEMS["normal_quadratic"]()
    variances = {}
    for baseline in ("none", "moving_average"):
        est = estimators.get("reinforce", baseline=baseline)
        for _ in range(50):
            f, dist = problem.build(*problem.leaves())
            est(f, dist, 4, gen)
        variances[baseline] = estimators.measure_variance(
            est, problem.build, problem.leaves(), n_estimates=20_000, n_samples=4, generator=gen,
            vectorize=True).total_variance
    assert variances["moving_average"] < 0.5 * variances["none"]


def test_temperature_schedule(gen):
    est = estimators.get("gumbel_softmax", temperature=1.0, anneal_rate=0.1, min_temperature=0.5)
    problem = CLOSED_FORM_PROBLEMS["bernoulli_toy"]()
    f, dist = problem.build(*problem.leaves())
    assert est.current_temperature == 1.0
    est(f, dist, 2, gen)
    assert int(est.step) == 1 and math.isclose(est.current_temperature, math.exp(-0.1))
    est.eval()
    est(f, dist, 2, gen)
    assert int(est.step) == 1
    est.train()
    for _ in range(20):
        est(f, dist, 2, gen)
    assert est.current_temperature == 0.5


def test_learned_baseline_is_unbiased_and_trainable(gen):
    """NVIL: an arbitrary input-dependent baseline keeps REINFORCE unbiased, and minimizing
    out.baseline_loss drives it to E[f], which lowers the variance."""
    problem = CLOSED_FORM_PROBLEMS["normal_quadratic"]()
    est = estimators.get("reinforce")
    b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    kw = {"learned_baseline": b.detach()}
    before = estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=40_000, n_samples=2,
                                         generator=gen, vectorize=True, **kw)
    assert_mean_matches(before, problem.exact_gradient())
    opt = torch.optim.SGD([b], lr=0.05)
    for _ in range(300):
        f, dist = problem.build(*problem.leaves())
        out = est(f, dist, 2, gen, learned_baseline=b)
        opt.zero_grad()
        out.baseline_loss.backward()
        opt.step()
    expected_f = float(problem.expectation(*problem.params.values()))
    assert abs(float(b.detach()) - expected_f) < 0.3
    after = estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=40_000, n_samples=2,
                                        generator=gen, vectorize=True, learned_baseline=b.detach())
    assert_mean_matches(after, problem.exact_gradient())
    assert after.total_variance < 0.5 * before.total_variance


def test_vectorized_and_loop_measure_the_same_estimator(gen):
    """Both modes give i.i.d. estimates of the same law: means and variances agree within their SEs,
    and every one of the R estimates is distinct (its own noise)."""
    problem = CLOSED_FORM_PROBLEMS["normal_cosine"]()
    est = estimators.get("reinforce", baseline="leave_one_out")
    results = [estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=4000, n_samples=3,
                                           generator=gen, vectorize=v) for v in (False, True)]
    loop, vec = results
    for r in results:
        assert torch.unique(r.grads, dim=0).shape[0] == r.n_estimates
    se_mean = (loop.bias_se.pow(2) + vec.bias_se.pow(2)).sqrt()
    assert float(((loop.mean - vec.mean).abs() / se_mean).max()) < 5
    se_var = (loop.variance_se.pow(2) + vec.variance_se.pow(2)).sqrt()
    assert float(((loop.variance - vec.variance).abs() / se_var).max()) < 5
