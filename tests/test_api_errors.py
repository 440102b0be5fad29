"""The public contract and every misuse's clear error."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

import estimators


def _normal(requires_grad=True):
    loc = torch.zeros(3, requires_grad=requires_grad)
    return Independent(Normal(loc, torch.ones(3)), 1)


def test_available_is_sorted_tuple_of_registered_names():
    names = estimators.available()
    assert isinstance(names, tuple) and list(names) == sorted(names)
    assert set(names) >= {"pathwise", "reinforce", "straight_through", "gumbel_softmax", "st_gumbel_softmax", "exact"}


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError,
                       match=r"unknown estimator 'reparam'.*available: .*exact, .*gumbel_softmax, .*pathwise"):
        estimators.get("reparam")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'tau' for estimator 'gumbel_softmax'; valid options: "
                                         r"temperature, anneal_rate, min_temperature"):
        estimators.get("gumbel_softmax", tau=0.5)
    with pytest.raises(ValueError, match="valid options: none"):
        estimators.get("pathwise", temperature=1.0)


def test_unknown_baseline_lists_valid_baselines():
    with pytest.raises(ValueError, match="unknown baseline 'mean' for estimator 'reinforce'; baseline must be one of "
                                         "none, moving_average, leave_one_out, weighted_leave_one_out$"):
        estimators.get("reinforce", baseline="mean")


@pytest.mark.parametrize("opts, message", [
    ({"temperature": 0.0}, r"temperature must be > 0, got 0.0 \(estimator 'gumbel_softmax': "),
    ({"temperature": -1.0}, "temperature must be > 0, got -1.0"),
    ({"anneal_rate": -0.1}, "anneal_rate must be >= 0, got -0.1"),
    ({"temperature": 0.5, "min_temperature": 0.6},
     "estimator 'gumbel_softmax' needs min_temperature <= temperature, got temperature=0.5, min_temperature=0.6$"),
    ({"anneal_rate": 1e-3, "min_temperature": 0.0},
     "needs min_temperature > 0 if anneal_rate > 0, got anneal_rate=0.001, min_temperature=0.0$")])
def test_bad_temperature_options(opts, message):
    with pytest.raises(ValueError, match=message):
        estimators.get("gumbel_softmax", **opts)


def test_bad_decay():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        estimators.get("reinforce", baseline="moving_average", decay=1.0)


def test_unsupported_distribution_names_the_estimators_that_do():
    dist = Independent(Bernoulli(probs=torch.full((3,), 0.5)), 1)
    with pytest.raises(ValueError, match=r"'pathwise' does not support Independent\(Bernoulli\).*estimators that do: "
                                         r".*exact, .*gumbel_softmax, .*reinforce, .*st_gumbel_softmax, "
                                         r".*straight_through"):
        estimators.get("pathwise")(lambda z: z.sum(-1), dist)
    with pytest.raises(ValueError,
                       match=r"'straight_through' does not support Independent\(Normal\).*pathwise, reinforce"):
        estimators.get("straight_through")(lambda z: z.sum(-1), _normal())


def test_exact_refuses_too_large_support():
    dist = Independent(Bernoulli(probs=torch.full((20,), 0.5)), 1)
    assert estimators.get("exact").supports(dist) is False
    assert estimators.get("exact", max_support=2**20).supports(dist) is True
    with pytest.raises(ValueError, match="'exact' does not support"):
        estimators.get("exact")(lambda z: z.sum(-1), dist)


@pytest.mark.parametrize("baseline", ["leave_one_out", "weighted_leave_one_out"])
def test_leave_one_out_needs_two_samples(baseline):
    est = estimators.get("reinforce", baseline=baseline)
    assert est.min_samples == 2
    with pytest.raises(ValueError, match=r"needs an integer n_samples >= 2, got 1"):
        est(lambda z: z.sum(-1), _normal(), n_samples=1)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_n_samples(n):
    with pytest.raises(ValueError, match="n_samples"):
        estimators.get("pathwise")(lambda z: z.sum(-1), _normal(), n_samples=n)


def test_wrong_f_shape_is_reported_with_the_contract():
    with pytest.raises(ValueError, match=r"f must map samples of shape \(4, 3\).*to shape \(4,\).*got \(4, 3\)"):
        estimators.get("pathwise")(lambda z: z, _normal(), n_samples=4)


def test_bad_generator_and_dist_types():
    with pytest.raises(TypeError, match="torch.Generator"):
        estimators.get("pathwise")(lambda z: z.sum(-1), _normal(), generator=0)
    with pytest.raises(TypeError, match="torch.distributions.Distribution"):
        estimators.get("pathwise")(lambda z: z.sum(-1), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to build a CUDA generator")
def test_generator_on_another_device():  # pragma: no cover - CPU CI
    with pytest.raises(ValueError, match="generator is on cuda"):
        estimators.get("pathwise")(lambda z: z.sum(-1), _normal(), generator=torch.Generator(device="cuda"))


def test_learned_baseline_shape_is_checked():
    with pytest.raises(ValueError, match=r"learned_baseline of shape \(5,\) does not broadcast to "
                                         r"\[n_samples, \*batch_shape\] = \(4, 2\)"):
        dist = Normal(torch.zeros(2, requires_grad=True), torch.ones(2))
        estimators.get("reinforce")(lambda z: z, dist, 4, learned_baseline=torch.zeros(5))


def test_output_contract():
    loc = torch.zeros(2, 3, requires_grad=True)
    dist = Independent(Normal(loc, torch.ones(2, 3)), 1)
    for name in ("pathwise", "reinforce"):
        out = estimators.get(name)(lambda z: z.pow(2).sum(-1), dist, n_samples=5)
        assert out.surrogate.shape == () and out.surrogate.requires_grad
        assert out.value.shape == (5, 2) and not out.value.requires_grad
        # the surrogate's value is the Monte Carlo estimate: mean over samples, summed over the batch
        assert torch.allclose(out.surrogate.detach(), out.value.mean(0).sum())
    logits = torch.zeros(2, 4, requires_grad=True)
    out = estimators.get("exact")(lambda z: z[..., 0], OneHotCategorical(logits=logits))
    assert out.value.shape == (4, 2)
    assert torch.allclose(out.surrogate, torch.tensor(0.5))


def test_measure_variance_rejects_non_vectorizable_problem(gen):
    def problem(loc):  # ignores the replica dimension
        loc_ignoring_replicas = loc.reshape(-1)[:3].detach() * 0 + loc.mean()
        return (lambda z: z.sum(-1)), Independent(Normal(loc_ignoring_replicas, torch.ones(3)), 1)

    loc = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="vectorize=True needs a problem whose distribution's batch starts"):
        estimators.measure_variance(estimators.get("pathwise"), problem, [loc], n_estimates=10, vectorize=True,
                                    generator=gen)
