"""Exact enumeration against the closed forms, and REINFORCE's refusal where it would be biased.

Every unbiased estimator's unbiasedness, in every configuration its declared options name, on every family it
declares, is checked by ``test_estimator_contract.py`` (over ``estimators.available()``, no hand-written list).
"""
from __future__ import annotations

import pytest
import torch

import estimators
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS


@pytest.mark.parametrize("problem_name", [p for p, make in CLOSED_FORM_PROBLEMS.items()
                                          if make().family in ("Bernoulli", "Categorical", "OneHotCategorical")])
def test_exact_equals_closed_form(problem_name):
    """Enumeration reproduces the closed-form value and gradient to rounding error."""
    problem = CLOSED_FORM_PROBLEMS[problem_name]()
    leaves = problem.leaves()
    f, dist = problem.build(*leaves)
    out = estimators.get("exact")(f, dist)
    grads = torch.autograd.grad(out.surrogate, leaves)
    assert torch.allclose(out.surrogate, problem.expectation(*problem.leaves()), atol=1e-10)
    assert torch.allclose(torch.cat([g.reshape(-1) for g in grads]), problem.exact_gradient(), atol=1e-10)


def test_reinforce_refuses_parameter_dependent_support():
    """U(a, b): the score identity misses boundary terms, so REINFORCE would be biased; it must refuse."""
    problem = CLOSED_FORM_PROBLEMS["uniform_square"]()
    f, dist = problem.build(*problem.leaves())
    with pytest.raises(ValueError, match="does not support Independent\\(Uniform\\).*pathwise"):
        estimators.get("reinforce")(f, dist, 4)


@pytest.mark.parametrize("problem_name", ["bernoulli_polynomial", "categorical_polynomial", "categorical_index_square"])
def test_enumerated_log_probs_match_torch(problem_name):
    """The enumeration's joint log-probabilities equal the distribution's own log_prob."""
    from estimators.exact import enumerate_support

    problem = CLOSED_FORM_PROBLEMS[problem_name]()
    replicas = [p.unsqueeze(0).expand(2, *p.shape) for p in problem.leaves()]
    _, dist = problem.build(*replicas)
    z, log_q = enumerate_support(dist)
    assert torch.allclose(log_q, dist.log_prob(z))
    assert torch.allclose(log_q.exp().sum(0), torch.ones(2, dtype=log_q.dtype))
