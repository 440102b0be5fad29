"""REBAR and RELAX train their control variates: the variance falls, eval mode freezes them, and a
checkpoint of ``est.state_dict()`` (optimizer state and RELAX's lazily built network included, loadable with
``weights_only=True``) resumes bit for bit, also from a state saved before the first call."""
from __future__ import annotations

import math

import pytest
import torch

import estimators
from experiments.synthetic.problems import bernoulli_toy, categorical_polynomial
import trained

REPLICAS = 64  # independent estimates per training step: their summed squared norms are the variance loss


def _replicated(problem, c=REPLICAS):
    return trained.replicated(problem, c)


def _train(est, problem, gen, steps, n_samples=1):
    """``steps`` train-mode calls; each call's gradient estimate (for bit-for-bit checks)."""
    return trained.train(est, problem, gen, steps, n_samples, REPLICAS)


def _variance(est, problem, gen):
    r = estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=20_000, n_samples=1,
                                    generator=gen, vectorize=True)
    return r.total_variance, r.total_variance_se


@pytest.mark.parametrize("name", ["rebar", "relax"])
@pytest.mark.parametrize("t, dim", [(0.45, 1), (0.499, 1), (0.45, 10)])
def test_variance_falls_as_the_control_variate_trains(name, t, dim, gen):
    """The REBAR toy (Tucker et al. 2017; Grathwohl et al. 2018, Fig. 1): f(b) = sum_d (b_d - t)^2, Bernoulli
    logits parameters at p = 1/2. From the default initialization (eta = 1, temperature 0.5) the variance
    falls for both. With one dimension the best REBAR can do is about REINFORCE's variance (its relaxed f
    misses the constant part of f), while RELAX's network learns it and falls far below; with ten, REBAR
    is far below REINFORCE too."""
    problem = bernoulli_toy(t=t, dim=dim, p=0.5)
    est = estimators.get(name, lr=0.05)
    before, se_before = _variance(est, problem, gen)
    _train(est, problem, gen, steps=80)
    after, se_after = _variance(est, problem, gen)
    reinforce, _ = _variance(estimators.get("reinforce"), problem, gen)
    assert before - after > 5 * math.hypot(se_before, se_after), (before, after)
    if name == "relax":
        assert after < 0.05 * before and after < 0.05 * reinforce, (before, after, reinforce)
    else:
        assert after < 0.8 * before, (before, after)
        if dim > 1:
            assert after < 0.1 * reinforce, (after, reinforce)


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_eval_mode_and_no_grad_freeze_the_parameters(name, gen):
    problem = bernoulli_toy(t=0.45, dim=3, p=0.3)
    est = estimators.get(name, lr=0.1)
    _train(est, problem, gen, steps=1)  # builds RELAX's network
    frozen = {k: v.clone() for k, v in est.state_dict().items() if isinstance(v, torch.Tensor)}
    est.eval()
    (f, dist), _ = _replicated(problem, 4)
    est(f, dist, 2, gen)
    est.train()
    with torch.no_grad():
        est(f, dist, 2, gen)
    for k, v in est.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, frozen[k]), k
    _train(est, problem, gen, steps=1)
    assert not torch.equal(est.state_dict()["cv_scale"], frozen["cv_scale"])


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), k
    assert repr(sa["_extra_state"]) == repr(sb["_extra_state"])


@pytest.mark.parametrize("name", ["rebar", "relax"])
@pytest.mark.parametrize("make", [lambda: bernoulli_toy(t=0.45, dim=3, p=0.3), lambda: categorical_polynomial(2, 3)],
                         ids=["bernoulli", "categorical"])
@pytest.mark.parametrize("saved_at", [0, 4])
def test_checkpoint_resumes_bit_for_bit(name, make, saved_at):
    problem = make()
    opts = {"lr": 0.05}
    est, gen = estimators.get(name, **opts), torch.Generator().manual_seed(11)
    _train(est, problem, gen, steps=saved_at)
    blob = trained.checkpoint(est, gen)
    if name == "relax":
        assert (est.net is None) == (saved_at == 0)
    uninterrupted = _train(est, problem, gen, steps=5)

    resumed_est, resumed_gen = trained.resume(name, blob, **opts)
    resumed = _train(resumed_est, problem, resumed_gen, steps=5)
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed))
    _assert_same_state(est, resumed_est)
    assert est.state_dict()["_extra_state"]["optimizer"] is not None


def test_relax_state_names_its_lazy_network():
    """The extra state says what to build; a fresh estimator loading it builds the network first."""
    problem = categorical_polynomial(2, 3)
    est = estimators.get("relax", hidden=7)
    gen = torch.Generator().manual_seed(0)
    _train(est, problem, gen, steps=2)
    extra = est.state_dict()["_extra_state"]
    assert extra["event_shape"] == [2, 3] and extra["net_dtype"] == "float64"
    fresh = estimators.get("relax", hidden=7)
    assert fresh.net is None
    fresh.load_state_dict(est.state_dict())
    assert fresh.net[0].weight.shape == (7, 6)
    _assert_same_state(est, fresh)
    # and a state saved before the first call takes a built network away again
    fresh.load_state_dict(estimators.get("relax", hidden=7).state_dict())
    assert fresh.net is None and fresh.state_dict()["_extra_state"]["optimizer"] is None


def test_relax_network_is_initialized_from_the_generator_only():
    problem = bernoulli_toy(t=0.45, dim=3, p=0.3)
    built = trained.networks_under_global_seeds("relax", problem, n_samples=1)
    assert torch.equal(*(est.net[0].weight for est in built))
    assert all(torch.equal(est.net[2].weight, torch.zeros_like(est.net[2].weight)) for est in built)  # as REBAR
    est = built[-1]
    with pytest.raises(ValueError, match=r"built its network for events of shape \(3,\); got \(2,\)"):
        p2 = bernoulli_toy(dim=2)
        est(*p2.build(*p2.leaves()), 1)
