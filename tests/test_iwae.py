"""The K-sample bound as an expectation over K-tuples (estimators/iwae.py): the product distribution, the
integrand, and every estimator of either objective unbiased for the bound's gradient on the synthetic
problem ``bernoulli_iwae`` (exact by enumeration over all K-tuples), with a wrong variant that fails."""
from __future__ import annotations

import math
import sys

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

import estimators
from estimators import iwae
from estimators.sampling import draw
from experiments.synthetic.problems import bernoulli_iwae
from experiments.synthetic.study import f_evaluations, measured_form
from stats import assert_mean_matches, max_z

N_ESTIMATES = 20_000


@pytest.mark.parametrize("q", [
    Independent(Normal(torch.randn(5, 3), torch.rand(5, 3) + 0.5), 1),
    Independent(Bernoulli(logits=torch.randn(5, 3)), 1),
    Bernoulli(logits=torch.randn(5)),
    Independent(OneHotCategorical(logits=torch.randn(5, 2, 4)), 1),
], ids=["normal", "bernoulli", "bernoulli_scalar", "categorical"])
def test_k_tuples_is_the_product_of_k_draws(q):
    k = 3
    qk = iwae.k_tuples(q, k)
    assert qk.batch_shape == q.batch_shape and qk.event_shape == (k, *q.event_shape)
    z = draw(qk, 7, torch.Generator().manual_seed(0))
    assert z.shape == (7, *q.batch_shape, k, *q.event_shape)
    per_draw = torch.stack([q.log_prob(z.select(1 + len(q.batch_shape), j)) for j in range(k)]).sum(0)
    assert torch.allclose(qk.log_prob(z), per_draw)


def test_k_sample_bound_is_the_log_mean_weight_of_each_tuple():
    f = lambda z: -(z - 0.3).pow(2).sum(-1)  # noqa: E731
    z = torch.randn(4, 5, 3, 2)   # [n, batch, K, event]
    expected = torch.logsumexp(torch.stack([f(z[:, :, j]) for j in range(3)]), 0) - math.log(3)
    assert torch.allclose(iwae.k_sample_bound(f, 3, 1)(z), expected)


def test_k_tuples_refuses_a_family_it_cannot_widen():
    from torch.distributions import Gamma

    with pytest.raises(ValueError, match="k_tuples widens Normal, Bernoulli, OneHotCategorical .* not Gamma"):
        iwae.k_tuples(Gamma(torch.ones(2), torch.ones(2)), 2)


CASES = [("vimco", {}, 1), ("vimco", {}, 3), ("reinforce", {"baseline": "leave_one_out"}, 4),
         ("reinforce", {"baseline": "none"}, 4),
         ("arm", {}, 2), ("disarm", {}, 2), ("relax", {}, 2)]


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("name, options, tuples", CASES, ids=[f"{n}-{o.get('baseline', '')}-{t}" for n, o, t in CASES])
def test_every_estimator_is_unbiased_for_the_bound(name, options, tuples, k):
    problem = bernoulli_iwae(k=k)
    est = estimators.get(name, **options)
    called, reason = measured_form(problem, est, tuples)
    assert reason is None
    result = estimators.measure_variance(est, called.build, called.leaves(), n_estimates=N_ESTIMATES,
                                         n_samples=tuples, generator=torch.Generator().manual_seed(k),
                                         vectorize=True)
    assert_mean_matches(result, problem.exact_gradient())


def test_the_per_sample_objective_is_not_the_bound():
    """The realistic mistake: an expectation estimator given the per-sample log-weight and K samples (the
    K-sample ELBO, not the bound): its mean is not the bound's gradient, and the test says so."""
    problem = bernoulli_iwae(k=4)
    est = estimators.get("reinforce", baseline="leave_one_out")
    result = estimators.measure_variance(est, problem.build_log_weight, problem.leaves(), n_estimates=N_ESTIMATES,
                                         n_samples=4, generator=torch.Generator().manual_seed(0), vectorize=True)
    assert max_z(result, problem.exact_gradient()) > 10


def test_n_samples_counts_k_tuples_for_both_kinds_with_k_evaluations_each():
    problem = bernoulli_iwae(k=5)
    vimco, loo = estimators.get("vimco"), estimators.get("reinforce", baseline="leave_one_out")
    assert measured_form(problem, vimco, 10)[1] is None and measured_form(problem, vimco, 1)[1] is None
    assert measured_form(problem, loo, 1)[1] == "n_samples=1 is below its minimum 2"
    assert f_evaluations(problem, vimco, 1) == 5 and f_evaluations(problem, vimco, 10) == 50
    assert f_evaluations(problem, loo, 10) == 50
    assert measured_form(problem, loo, 10)[1] is None
    assert "n_samples=1 is below its minimum 2" in measured_form(bernoulli_iwae(k=1), vimco, 3)[1]


@pytest.mark.parametrize("name", ["vimco", "dreg"])
def test_n_tuples_of_an_estimator_of_the_bound_is_the_mean_of_n_one_tuple_estimates(name, monkeypatch):
    """est(f, k_tuples(q, K), n) is the mean of the n one-tuple estimates est(f, q, K) on its draws (tuple j is
    column j of the draws' [K, n] view), and with n = 1 it is est(f, q, K) bit for bit."""
    from experiments.synthetic.problems import gaussian_iwae
    problem = (gaussian_iwae if name == "dreg" else bernoulli_iwae)(k=4)
    est, k, n = estimators.get(name), 4, 3
    params = problem.leaves()
    module = sys.modules[type(est).__module__]

    def gradient(f, dist, n_call):
        out = est(f, dist, n_call, torch.Generator().manual_seed(7))
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(out.surrogate, params)])

    f, q = problem.build_log_weight(*params)
    assert torch.equal(gradient(f, iwae.k_tuples(q, k), 1), gradient(f, q, k))
    many = gradient(f, iwae.k_tuples(q, k), n)

    def tuple_j(*_args, j, **_kw):   # the n-tuple call's draws (a graph of their own per call), column j
        z = iwae.draw_tuples(q, k, n, torch.Generator().manual_seed(7), reparameterized=name == "dreg")
        return z.reshape(k, n, *z.shape[1:])[:, j]

    by_hand = []
    for j in range(n):
        monkeypatch.setattr(module, "draw_tuples", lambda *args, j=j, **kw: tuple_j(*args, j=j, **kw))
        by_hand.append(gradient(f, q, k))
    torch.testing.assert_close(many, torch.stack(by_hand).mean(0), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(by_hand[0], by_hand[1])


def test_pathwise_on_k_tuples_is_the_iwae_gradient():
    """Burda et al.'s IWAE gradient (pathwise on K-tuples) and REINFORCE-LOO on K-tuples estimate the same
    gradient of a Gaussian bound: their means agree within standard errors."""
    loc = torch.tensor([0.3, -0.5], dtype=torch.float64)
    scale = torch.tensor([0.8, 1.2], dtype=torch.float64)
    k = 3

    def build(loc, scale):
        q = Independent(Normal(loc, scale), 1)
        log_w = lambda z: -0.5 * (z - 1.0).pow(2).sum(-1) - q.log_prob(z)  # noqa: E731
        return iwae.k_sample_bound(log_w, k, len(q.batch_shape)), iwae.k_tuples(q, k)

    means = []
    for est, n in ((estimators.get("pathwise"), 1), (estimators.get("reinforce", baseline="leave_one_out"), 8)):
        res = estimators.measure_variance(est, build, [loc.clone().requires_grad_(), scale.clone().requires_grad_()],
                                          n_estimates=N_ESTIMATES, n_samples=n,
                                          generator=torch.Generator().manual_seed(1), vectorize=True)
        means.append((res.mean, res.bias_se))
    (a, sa), (b, sb) = means
    assert float(((a - b).abs() / (sa.pow(2) + sb.pow(2)).sqrt()).max()) < 5
