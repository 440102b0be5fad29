"""Biased estimators: their bias against `exact` is finite, measured, and moves the way theory says.

- straight-through, one Bernoulli per coordinate, f = a z + c z^2, gradient in the probabilities:
  E[g_ST] = a + 2 c p while the truth is a + c, so the bias is exactly c (2p - 1): zero for linear f,
  growing with the curvature c.
- Gumbel-softmax (and its straight-through variant): the relaxed objective tends to the discrete one as
  the temperature goes to 0, so the bias shrinks while the variance grows (measured for tau <= 1; above,
  the gradient itself fades as tau -> infinity and the bias is not monotone).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent

import estimators
from experiments.synthetic.problems import bernoulli_polynomial, categorical_polynomial
from stats import assert_mean_matches

P = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)


def _st_problem(a: float, c: float):
    return lambda probs: ((lambda z: (a * z + c * z.pow(2)).sum(-1)), Independent(Bernoulli(probs=probs), 1))


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_straight_through_bias_matches_closed_form(c, gen):
    a = 1.0
    probs = P.clone().requires_grad_(True)
    true_grad = torch.full_like(P, a + c)
    result = estimators.measure_variance(
        estimators.get("straight_through"), _st_problem(a, c), [probs], n_estimates=50_000, n_samples=1,
        generator=gen, vectorize=True, reference=true_grad,
    )
    assert_mean_matches(result, true_grad + c * (2 * P - 1))  # the predicted bias, exactly
    if c > 0:
        assert result.summary()["max_abs_bias_in_se"] > 10  # and it is really there


def _bias_and_variance(name, problem, tau, gen):
    result = estimators.measure_variance(
        estimators.get(name, temperature=tau), problem.build, problem.leaves(), n_estimates=400_000,
        n_samples=1, generator=gen, vectorize=True, reference=problem.exact_gradient(),
    )
    s = result.summary()
    return s["bias_norm"], float(result.bias_se.norm()), s["total_variance"]


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax"])
@pytest.mark.parametrize("make", [bernoulli_polynomial, categorical_polynomial], ids=["bernoulli", "categorical"])
def test_relaxation_bias_shrinks_as_temperature_falls(name, make, gen):
    problem = make()
    measured = [_bias_and_variance(name, problem, tau, gen) for tau in (1.0, 0.5, 0.25, 0.125)]
    for (b_hi, se_hi, v_hi), (b_lo, se_lo, v_lo) in zip(measured, measured[1:]):
        assert math.isfinite(b_hi) and math.isfinite(b_lo)
        assert b_hi - b_lo > 3 * math.hypot(se_hi, se_lo), f"bias did not shrink: {measured}"
        assert v_lo > v_hi, f"variance did not grow as the temperature fell: {measured}"
    assert measured[0][0] > 10 * measured[0][1], "at tau = 1 the bias must be clearly measurable"


def test_biased_estimators_declare_it():
    for name in ("straight_through", "gumbel_softmax", "st_gumbel_softmax"):
        assert estimators.get(name).unbiased is False
    for name in ("pathwise", "reinforce", "exact"):
        assert estimators.get(name).unbiased is True
