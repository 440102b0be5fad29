"""The unbiasedness check has power: subtly wrong estimators fail it."""
from __future__ import annotations

import estimators
from estimators.reinforce import Reinforce
from experiments.synthetic.problems import CLOSED_FORM_PROBLEMS
from stats import max_z


class _SelfIncludingBaseline(Reinforce):
    """A classic bug: the baseline is the mean over all samples, including z_s itself, which biases
    the gradient by a factor (S - 1) / S."""

    def _baseline(self, signal, dist, z):
        return signal.mean(0, keepdim=True)


class _MissingDirectTerm(Reinforce):
    """Another bug: dropping f's direct dependence on the parameters (no total derivative)."""

    def _estimate(self, f, dist, n_samples, generator, **kw):
        return super()._estimate(lambda z: f(z).detach(), dist, n_samples, generator, **kw)


def _measure(est, name, gen):
    problem = CLOSED_FORM_PROBLEMS[name]()
    result = estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=40_000,
                                         n_samples=4, generator=gen, vectorize=True)
    return max_z(result, problem.exact_gradient())


def test_self_including_baseline_is_caught(gen):
    assert _measure(Reinforce(baseline="leave_one_out"), "normal_quadratic", gen) < 5
    assert _measure(_SelfIncludingBaseline(), "normal_quadratic", gen) > 5


def test_missing_direct_term_is_caught(gen):
    assert _measure(Reinforce(), "normal_parameter_product", gen) < 5
    assert _measure(_MissingDirectTerm(), "normal_parameter_product", gen) > 5
