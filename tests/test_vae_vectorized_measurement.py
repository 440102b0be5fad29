"""The VAE encoder-gradient measurement, vectorized over estimates (``encoder_gradient_estimates``): the same
law of estimates as the loop mode, a shared-noise bug is caught, and adapting estimators keep the loop mode.

Each comparison draws R estimates in each mode with fixed seeds and checks, in standard errors of the
estimates themselves (``tests/stats.py``'s ``Z_TOL``): every coordinate's mean, and the total variance.
"""
from __future__ import annotations

import math

import pytest
import torch

import estimators
import estimators.reinforce as reinforce_module
from experiments.config.typed_config import parse
from experiments.vae import encoder_gradient
from experiments.vae.encoder_gradient import encoder_gradient_estimates, why_not_vectorized
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE, BaselineNet
from experiments.vae.run_config import ObjectiveSettings

from stats import Z_TOL

R = 3000


def _small_model(family_cfg, seed=0):
    """A VAE of the digits' kind, smaller: 16 inputs, one hidden layer of 12, float64; 5 data points."""
    torch.manual_seed(seed)
    model = VAE(16, parse(LatentSpec, family_cfg), [12], "tanh").double()
    x = torch.bernoulli(torch.full((5, 16), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    return model, x


def _both_modes(family_cfg, est, n_samples, *, chunk_size=None, kl="exact"):
    model, x = _small_model(family_cfg)
    return [encoder_gradient_estimates(model, x, est, n_samples=n_samples, n_estimates=R,
                                       objective=ObjectiveSettings(kl=kl),
                                       generator=torch.Generator().manual_seed(seed), vectorize=vectorize,
                                       chunk_size=chunk_size)
            for seed, vectorize in ((10, False), (11, True))]


def _disagreement(loop, vec) -> tuple[float, float]:
    """Largest |z| of the per-coordinate mean difference, and |z| of the total-variance difference."""
    se_mean = (loop.bias_se.pow(2) + vec.bias_se.pow(2)).sqrt()
    diff = (loop.mean - vec.mean).abs()
    # A coordinate without noise in either mode (the weight of an input pixel that is 0 in every data point)
    # must have the same mean in both.
    z = torch.where(se_mean > 0, diff / se_mean.clamp_min(1e-300), torch.where(diff == 0, 0.0, math.inf))
    z_mean = float(z.max())
    z_var = abs(loop.total_variance - vec.total_variance) / math.hypot(loop.total_variance_se, vec.total_variance_se)
    return z_mean, z_var


CASES = {
    "pathwise-gaussian": ({"family": "gaussian", "dim": 3}, ("pathwise", {}), 1),
    "reinforce_loo-bernoulli": ({"family": "bernoulli", "dim": 4}, ("reinforce", {"baseline": "leave_one_out"}), 3),
    "reinforce_loo-categorical": ({"family": "categorical", "groups": 2, "classes": 3},
                                  ("reinforce", {"baseline": "leave_one_out"}), 3),
    "gumbel_softmax-bernoulli": ({"family": "bernoulli", "dim": 4}, ("gumbel_softmax", {"temperature": 0.5}), 2),
    "gumbel_softmax-categorical": ({"family": "categorical", "groups": 2, "classes": 3},
                                   ("gumbel_softmax", {"temperature": 0.5}), 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_vectorized_and_loop_give_the_same_law_of_estimates(case):
    family, (name, opts), n_samples = CASES[case]
    est = estimators.get(name, **opts)
    assert why_not_vectorized(est, {}) is None
    # A chunk that does not divide R: the last, shorter pass is exercised too.
    loop, vec = _both_modes(family, est, n_samples, chunk_size=700)
    for res in (loop, vec):  # every estimate has its own noise
        assert torch.unique(res.grads, dim=0).shape[0] == R
        assert res.total_variance_rse < 0.1, "too few estimates for the variance comparison to have power"
    z_mean, z_var = _disagreement(loop, vec)
    assert z_mean < Z_TOL and z_var < Z_TOL, (z_mean, z_var)


def test_the_kl_in_the_signal_is_vectorized_too():
    family, (name, opts), n_samples = CASES["reinforce_loo-bernoulli"]
    loop, vec = _both_modes(family, estimators.get(name, **opts), n_samples, kl="in_signal")
    z_mean, z_var = _disagreement(loop, vec)
    assert z_mean < Z_TOL and z_var < Z_TOL, (z_mean, z_var)


def test_replicas_sharing_one_sample_are_caught(monkeypatch):
    """Meta-test: a vectorized pass whose replicas all see the first replica's sample (one draw broadcast
    over the replica dimension, a plausible bug) fails the comparison above."""
    family, (name, opts), n_samples = CASES["reinforce_loo-bernoulli"]
    draw = reinforce_module.draw

    def shared_draw(dist, n, generator, **kwargs):
        z = draw(dist, n, generator, **kwargs)
        return z[:, :1].expand_as(z) if len(dist.batch_shape) == 2 else z  # [n, c, B, *event]: replica 0's

    monkeypatch.setattr(reinforce_module, "draw", shared_draw)
    loop, vec = _both_modes(family, estimators.get(name, **opts), n_samples, chunk_size=700)
    assert torch.unique(loop.grads, dim=0).shape[0] == R  # the loop is untouched by the bug
    z_mean, z_var = _disagreement(loop, vec)
    assert not (z_mean < Z_TOL and z_var < Z_TOL), (z_mean, z_var)


def test_each_replica_of_the_encoder_is_its_own_encoder():
    """``replicated_posterior`` with c different weight sets is the plain posterior under each set."""
    model, x = _small_model({"family": "categorical", "groups": 2, "classes": 3})
    gen = torch.Generator().manual_seed(4)
    names = [n for n, _ in model.encoder.named_parameters()]
    replicas = [p.detach() + 0.3 * torch.randn((3, *p.shape), generator=gen, dtype=p.dtype)
                for p in model.encoder.parameters()]
    q = model.replicated_posterior(x, replicas)
    assert tuple(q.batch_shape) == (3, 5)
    for r in range(3):
        logits = torch.func.functional_call(model.encoder, {n: p[r] for n, p in zip(names, replicas)}, (x,))
        expected = model.posterior_from_outputs(logits).base_dist.logits
        assert torch.allclose(q.base_dist.logits[r], expected, rtol=1e-12, atol=1e-12)


def _spy(monkeypatch) -> list[dict]:
    calls = []
    measure = estimators.measure_variance

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return measure(*args, **kwargs)

    monkeypatch.setattr(estimators, "measure_variance", spy)
    return calls


@pytest.mark.parametrize("name, opts", [("reinforce", {"baseline": "moving_average"}), ("rebar", {})])
def test_an_adapting_estimator_is_measured_in_the_loop_mode(monkeypatch, name, opts):
    est = estimators.get(name, **opts)
    assert est.adapts and "adapts" in why_not_vectorized(est, {})
    calls = _spy(monkeypatch)
    model, x = _small_model({"family": "bernoulli", "dim": 4})
    res = encoder_gradient_estimates(model, x, est, n_samples=2, n_estimates=20,
                                     generator=torch.Generator().manual_seed(0))
    assert [c.get("vectorize", False) for c in calls] == [False] and res.n_estimates == 20


def test_an_estimator_without_samples_is_measured_in_the_loop_mode_with_zero_variance():
    est = estimators.get("exact")
    assert "no samples" in why_not_vectorized(est, {})
    model, x = _small_model({"family": "bernoulli", "dim": 3})
    res = encoder_gradient_estimates(model.float(), x.float(), est, n_samples=1, n_estimates=10,
                                     generator=torch.Generator().manual_seed(0))
    assert res.total_variance == 0


def test_a_learned_baseline_is_measured_in_the_loop_mode_and_the_rest_vectorized(monkeypatch):
    calls = _spy(monkeypatch)
    model, x = _small_model({"family": "bernoulli", "dim": 4})
    est = estimators.get("reinforce")
    torch.manual_seed(0)
    nvil = BaselineNet(16).double()
    assert "learned" in why_not_vectorized(est, {"learned_baseline": nvil(x)})
    for baseline_net in (nvil, None):
        encoder_gradient_estimates(model, x, est, n_samples=2, n_estimates=20, baseline_net=baseline_net,
                                   generator=torch.Generator().manual_seed(0))
    assert [c.get("vectorize", False) for c in calls] == [False, True]
    assert calls[1]["chunk_size"] == encoder_gradient.vectorized_chunk(model, 5, 2)
