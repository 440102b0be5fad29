"""Estimators IV, pathwise side: stl (Roeder et al. 2017) and dreg (Tucker et al. 2019), and the claim across K.

- The reference: ``problems.gaussian_iwae``'s bound by quadrature is the closed-form ELBO at K = 1 and agrees
  with a Monte Carlo estimate of the bound at K = 5 and 50.
- ``stl`` is unbiased for the ELBO's gradient (closed form) and equal in mean to pathwise, on the synthetic
  model and on a VAE with ``objective.kl: sampled``; it sticks the landing (no variance at the posterior).
- ``dreg`` is unbiased for the K-sample bound's gradient (quadrature) and equal in mean to the pathwise IWAE
  gradient, on the synthetic model and a VAE; its decoder gradient is the IWAE one; its encoder SNR is higher
  than pathwise's at K = 20, where pathwise's has fallen like 1/sqrt(K) (Rainforth et al. 2018).
- Meta-tests: DReG with the ordinary IWAE weights (w instead of w^2 on the path term) fails the mean test;
  STL that keeps the score term is pathwise, estimate for estimate.
- The interface: a plain f is refused, the plan and the synthetic study skip what does not apply with a reason,
  and a VAE trains and is measured with both.

Power: every mean test has a standard error at most 5% of the gradient's scale (its largest coordinate).
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import estimators
from estimators.base import LogQSplit
from estimators.dreg import Dreg
from estimators.iwae import k_sample_bound, k_tuples
from estimators.stl import Stl
from estimators.sampling import draw
from experiments.synthetic.problems import gaussian_elbo, gaussian_iwae, normal_quadratic
from experiments.synthetic.study import measured_form
from experiments.config.typed_config import parse
from experiments.vae import objectives
from experiments.vae.encoder_gradient import encoder_gradient_estimates
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE
from experiments.vae.run_config import ObjectiveSettings, resolve
from experiments.vae.train import train
from stats import Z_TOL

DTYPE = torch.float64


def _measure(est, build, params, n_samples, seed, n_estimates):
    return estimators.measure_variance(est, build, params, n_estimates=n_estimates, n_samples=n_samples,
                                       generator=torch.Generator().manual_seed(seed), vectorize=True,
                                       chunk_size=20_000)


def _assert_mean(result, reference, scale=None):
    """Mean within Z_TOL SE of ``reference``, with the SE at most 5% of the gradient's scale (its largest
    coordinate, or ``scale``)."""
    reference = reference.reshape(-1).to(DTYPE)
    scale = float(reference.abs().max()) if scale is None else scale
    se = result.bias_se
    assert float(se.max()) <= 0.05 * scale, f"SE {se.tolist()} above 5% of the scale {scale:.3g}"
    z = ((result.mean - reference).abs() / se.clamp_min(1e-300)).max()
    assert float(z) < Z_TOL, f"mean {result.mean.tolist()} vs {reference.tolist()}: {float(z):.1f} SE"


def _elbo(loc, scale, weight, x=1.5, noise=1.0):
    """The closed-form ELBO of ``gaussian_iwae``'s model: E_q[log p(z) + log p(x|z)] + H[q]."""
    log_prior = -0.5 * math.log(2 * math.pi) - 0.5 * (loc.pow(2) + scale.pow(2))
    log_lik = -0.5 * math.log(2 * math.pi * noise**2) - ((x - weight * loc).pow(2) + weight.pow(2) * scale.pow(2)) / (
        2 * noise**2)
    return (log_prior + log_lik + 0.5 * torch.log(2 * math.pi * math.e * scale.pow(2))).sum()


def _closed_form_gradient(problem):
    leaves = problem.leaves()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(_elbo(*leaves), leaves)])


# --- the reference ---------------------------------------------------------------------------------


def test_the_quadrature_is_the_closed_form_elbo_at_k1_and_the_monte_carlo_bound_beyond():
    problem = gaussian_iwae(k=1)
    leaves = problem.leaves()
    assert float(problem.expectation(*leaves).detach()) == pytest.approx(float(_elbo(*leaves).detach()), abs=1e-11)
    torch.testing.assert_close(problem.exact_gradient(), _closed_form_gradient(problem), rtol=0, atol=1e-11)
    gen = torch.Generator().manual_seed(0)
    for k, tuples in ((5, 2_000_000), (50, 200_000)):
        problem = gaussian_iwae(k=k)
        f, dist = problem.build(*problem.leaves())
        values = f(draw(dist, tuples, gen)).detach()
        se = float(values.std() / math.sqrt(tuples))
        assert se < 3e-4
        assert abs(float(values.mean()) - float(problem.expectation(*problem.leaves()).detach())) < Z_TOL * se


# --- stl -------------------------------------------------------------------------------------------


def test_stl_is_unbiased_for_the_elbo_and_equal_in_mean_to_pathwise():
    problem = gaussian_iwae(k=1)
    exact = _closed_form_gradient(problem)
    stl = _measure(Stl(), problem.build_log_weight, problem.leaves(), 1, 0, 40_000)
    pathwise = _measure(estimators.get("pathwise"), problem.build_log_weight, problem.leaves(), 1, 1, 40_000)
    _assert_mean(stl, exact)
    _assert_mean(pathwise, exact)
    difference = (stl.mean - pathwise.mean).abs() / (stl.bias_se.pow(2) + pathwise.bias_se.pow(2)).sqrt()
    assert float(difference.max()) < Z_TOL
    # Not pathwise: lower encoder variance (q is near the posterior's scale, the score term is most of the noise).
    assert (stl.variance[:2] < 0.5 * pathwise.variance[:2]).all()
    same_draws = _measure(estimators.get("pathwise"), problem.build_log_weight, problem.leaves(), 1, 0, 40_000)
    torch.testing.assert_close(stl.grads[:, 2], same_draws.grads[:, 2], rtol=1e-12, atol=1e-12)   # the decoder's


def _at_the_posterior(problem):
    """q set to the exact posterior of the model (N(0.75, 0.5) at x = 1.5, weight 1, noise 1)."""
    leaves = problem.leaves()
    with torch.no_grad():
        leaves[0].fill_(0.75)
        leaves[1].fill_(math.sqrt(0.5))
    return leaves


def test_stl_sticks_the_landing_and_keeping_the_score_term_is_pathwise():
    """At the posterior log p(x, z) - log q(z) is constant in z: STL's encoder estimates are all zero. The wrong
    variant (the score term kept) gives pathwise's estimates, draw for draw."""
    class KeepsTheScore(Stl):
        def integrand(self, f):
            return f

    problem = gaussian_iwae(k=1)
    leaves = _at_the_posterior(problem)
    stl, kept, pathwise = (_measure(est, problem.build_log_weight, leaves, 1, 3, 2_000)
                           for est in (Stl(), KeepsTheScore(), estimators.get("pathwise")))
    assert float(stl.grads[:, :2].abs().max()) < 1e-12
    assert float(pathwise.variance[:2].min()) > 0.1
    torch.testing.assert_close(kept.grads, pathwise.grads, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(stl.grads, pathwise.grads)


@pytest.mark.parametrize("gap", [0.5, 1.0])
def test_the_elbo_problem_is_the_bounds_at_k1_and_stl_is_unbiased_on_it(gap):
    """``gaussian_elbo``'s closed form is this file's ELBO of the same model at its loc and scale (q ``gap``
    posterior SDs from N(0.75, 0.5)), and stl and pathwise are unbiased for its gradient."""
    problem = gaussian_elbo(gap=gap)
    leaves = problem.leaves()
    expected = [0.75 + gap * math.sqrt(0.5), math.sqrt(0.5) * (1 + gap)]
    assert [float(v.detach()) for v in leaves[:2]] == pytest.approx(expected)
    by_hand = torch.autograd.grad(_elbo(*leaves), leaves)
    torch.testing.assert_close(problem.exact_gradient(), torch.cat([g.reshape(-1) for g in by_hand]),
                               rtol=0, atol=1e-12)
    for est, seed in ((Stl(), 5), (estimators.get("pathwise"), 6)):
        result = _measure(est, problem.build, problem.leaves(), 1, seed, 40_000)
        _assert_mean(result, problem.exact_gradient(), scale=float(problem.exact_gradient()[:2].abs().max()))


def test_stls_variance_vanishes_like_the_gap_squared_and_pathwises_does_not():
    """As q nears the posterior (gap 1 -> 0.1 -> 0.01), stl's encoder variance falls about 100-fold a step (like
    gap^2), pathwise's stays of order one; the wrong variant (the score term kept) does not fall."""
    class KeepsTheScore(Stl):
        def integrand(self, f):
            return f

    variance = {}
    for gap in (1.0, 0.1, 0.01):
        problem = gaussian_elbo(gap=gap)
        for name, est in (("stl", Stl()), ("pathwise", estimators.get("pathwise")), ("kept", KeepsTheScore())):
            variance[name, gap] = _measure(est, problem.build, problem.leaves(), 1, 7, 4_000).variance[:2]
    for a, b in ((1.0, 0.1), (0.1, 0.01)):
        fall = variance["stl", a] / variance["stl", b]
        assert ((fall > 30) & (fall < 300)).all(), fall
        assert (variance["pathwise", b] > 0.2).all() and (variance["kept", b] > 0.2).all()


# --- dreg ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 20])
def test_dreg_is_unbiased_for_the_bound_and_equal_in_mean_to_the_iwae_gradient(k):
    problem = gaussian_iwae(k=k)
    exact = problem.exact_gradient()
    dreg = _measure(Dreg(), problem.build_log_weight, problem.leaves(), k, 0, 40_000)
    pathwise = _measure(estimators.get("pathwise"), problem.build, problem.leaves(), 1, 1, 40_000)
    _assert_mean(dreg, exact)
    _assert_mean(pathwise, exact)
    difference = (dreg.mean - pathwise.mean).abs() / (dreg.bias_se.pow(2) + pathwise.bias_se.pow(2)).sqrt()
    assert float(difference.max()) < Z_TOL


@pytest.mark.parametrize("name, options, tuples", [("vimco", {}, 1), ("reinforce", {"baseline": "leave_one_out"}, 4)])
def test_the_score_function_estimators_of_the_claim_are_unbiased_on_the_gaussian_bound(name, options, tuples):
    problem = gaussian_iwae(k=5)
    est = estimators.get(name, **options)
    called, reason = measured_form(problem, est, tuples)
    assert reason is None
    _assert_mean(_measure(est, called.build, called.leaves(), tuples, 7, 40_000), problem.exact_gradient())


def test_dreg_with_the_ordinary_iwae_weights_fails_the_mean_test():
    class OrdinaryWeights(Dreg):
        def path_weights(self, w):
            return torch.ones_like(w)

    problem = gaussian_iwae(k=5)
    wrong = _measure(OrdinaryWeights(), problem.build_log_weight, problem.leaves(), 5, 0, 40_000)
    with pytest.raises(AssertionError, match="SE"):
        _assert_mean(wrong, problem.exact_gradient())


def test_dregs_decoder_gradient_is_the_iwae_gradient_draw_for_draw():
    """Same draws (one K-tuple): the decoder weight's gradient of DReG equals pathwise's on the K-tuple form."""
    problem = gaussian_iwae(k=7)
    grads = []
    for est in (Dreg(), estimators.get("pathwise")):
        leaves = problem.leaves()
        f, q = problem.build_log_weight(*leaves)
        gen = torch.Generator().manual_seed(5)
        out = est(f, q, 7, gen) if est.name == "dreg" else est(k_sample_bound(f, 7, 0), k_tuples(q, 7), 1, gen)
        grads.append(torch.autograd.grad(out.surrogate, leaves))
    torch.testing.assert_close(grads[0][2], grads[1][2], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(grads[0][0], grads[1][0])


def _snr(result, exact):
    return exact[:2].abs() / result.variance[:2].sqrt()


def test_dreg_has_higher_encoder_snr_at_k20_where_pathwises_falls_like_one_over_sqrt_k():
    snr = {}
    for k in (5, 20):
        problem = gaussian_iwae(k=k)
        exact = problem.exact_gradient()
        snr["pathwise", k] = _snr(_measure(estimators.get("pathwise"), problem.build, problem.leaves(), 1, 2, 20_000),
                                  exact)
        snr["dreg", k] = _snr(_measure(Dreg(), problem.build_log_weight, problem.leaves(), k, 2, 20_000), exact)
    assert (snr["dreg", 20] > 10 * snr["pathwise", 20]).all(), snr
    assert (snr["dreg", 20] > snr["dreg", 5]).all(), snr                    # DReG's rises with K
    ratio = snr["pathwise", 5] / snr["pathwise", 20]                        # sqrt(20 / 5) = 2
    assert ((ratio > 1.6) & (ratio < 2.6)).all(), ratio


# --- the interface ---------------------------------------------------------------------------------


def test_a_plain_f_or_another_q_is_refused_with_the_reason():
    problem = gaussian_iwae(k=3)
    f, q = problem.build_log_weight(*problem.leaves())
    for est in (Stl(), Dreg()):
        with pytest.raises(ValueError, match=r"needs f to say its log q term apart, as estimators.base.LogQSplit"):
            est(lambda z: f(z), q, 3)
        other = problem.build_log_weight(*problem.leaves())[1]
        with pytest.raises(ValueError, match=r"must be the distribution it samples"):
            est(f, other, 3)
    z = torch.ones(2, 1, dtype=DTYPE)
    assert isinstance(f, LogQSplit) and torch.equal(f(z), f.stop_log_q(z))     # the same values, apart in gradient


def test_the_synthetic_study_and_the_vae_plan_say_where_they_apply():
    problem = gaussian_iwae(k=1)
    assert measured_form(problem, Dreg(), 1)[1] is None
    assert "log q term" in measured_form(problem, Stl(), 1)[1]                       # the bound of K-tuples
    assert "below its minimum 2" in measured_form(problem, estimators.get("vimco"), 1)[1]
    assert "LogQSplit" in measured_form(normal_quadratic(), Stl(), 1)[1]                # no log q term said
    sampled, exact, bound = (ObjectiveSettings(kl="sampled"), ObjectiveSettings(),
                             ObjectiveSettings(bound="iwae", k=5))
    family = torch.distributions.Normal
    assert objectives.why_not(Stl(), family, 1, sampled) is None
    assert "objective.kl: sampled" in objectives.why_not(Stl(), family, 1, exact)
    assert "dreg is the bound's own" in objectives.why_not(Stl(), family, 1, bound)
    assert objectives.why_not(Dreg(), family, 1, bound) is None
    assert "another objective" in objectives.why_not(Dreg(), family, 1, sampled)
    with pytest.raises(ValueError, match="kl"):
        resolve({"objective": {"kl": "estimated"}})


def _vae():
    torch.manual_seed(0)
    model = VAE(16, parse(LatentSpec, {"family": "gaussian", "dim": 2}), [12], "tanh").double()
    x = torch.bernoulli(torch.full((4, 16), 0.4, dtype=DTYPE), generator=torch.Generator().manual_seed(1))
    return model, x


def _vae_estimates(model, x, name, objective, seed, n=6000):
    return encoder_gradient_estimates(model, x, estimators.get(name), n_samples=1, n_estimates=n,
                                      generator=torch.Generator().manual_seed(seed), objective=objective)


def _assert_equal_means(a, b):
    se = (a.bias_se.pow(2) + b.bias_se.pow(2)).sqrt()
    noisy = se > 0   # the weights of input pixels that are 0 in every data point have no gradient at all
    assert noisy.sum() > 10 and float(se.max()) <= 0.05 * float(b.mean.abs().max())
    assert float(((a.mean - b.mean).abs()[noisy] / se[noisy]).max()) < Z_TOL


def test_on_a_vae_stl_with_the_sampled_kl_is_the_elbos_gradient_and_dreg_the_bounds():
    model, x = _vae()
    _assert_equal_means(_vae_estimates(model, x, "stl", ObjectiveSettings(kl="sampled"), 3),
                        _vae_estimates(model, x, "pathwise", ObjectiveSettings(), 4))
    bound = ObjectiveSettings(bound="iwae", k=3)
    _assert_equal_means(_vae_estimates(model, x, "dreg", bound, 5), _vae_estimates(model, x, "pathwise", bound, 6))


def test_a_vae_run_trains_and_is_measured_with_stl_and_dreg(tmp_path):
    base = {"latent": {"family": "gaussian", "dim": 2}, "model": {"hidden": [16]},
            "train": {"steps": 20, "batch_size": 20}, "eval": {"every": 20, "iwae_k": 3, "train_subset": 50},
            "variance": {"every": 20, "batch_size": 10, "min_estimates": 10, "max_estimates": 10,
                         "reference_gradient": {"n_samples": 4, "n_estimates": 4}}}
    for name, objective, evaluations in (("stl", {"kl": "sampled"}, 1), ("dreg", {"bound": "iwae", "k": 3}, 3)):
        cfg = resolve({**base, "objective": objective, "estimator": {"id": name, "name": name}})
        assert train(cfg, tmp_path / name) == "completed"
        variance = pd.read_csv(tmp_path / name / "variance.csv")
        assert (variance["f_evaluations"] == evaluations).all() and variance["total_variance"].gt(0).all()
    with pytest.raises(ValueError, match=r"objective.kl: sampled"):
        train(resolve({**base, "estimator": {"id": "stl", "name": "stl"}}), tmp_path / "bad")


def test_the_synthetic_study_measures_the_bound_across_k(tmp_path):
    from experiments.synthetic.study import RunConfig, run

    config = parse(RunConfig, {
        "n_samples": [1], "measurement": {"min_estimates": 2000, "max_estimates": 2000, "timing_calls": 1},
        "problems": {"gaussian_iwae": {"k": [1, 5]}},
        "estimators": {e: {"name": e} for e in ("pathwise", "dreg", "stl", "vimco")}})
    frame = run(config, tmp_path)
    assert set(frame.estimator_id) == {"pathwise", "dreg", "vimco"}
    assert set(frame.parameter) == {"loc", "scale", "weight"} and (frame.max_abs_bias_in_se < Z_TOL).all()
    loc = frame[frame.parameter == "loc"].set_index(["k", "estimator_id"]).snr
    assert loc[5, "dreg"] > 3 * loc[5, "pathwise"]
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert set(skipped.estimator_id) == {"stl", "vimco"} and skipped.reason.str.contains("log q term|minimum 2").all()
