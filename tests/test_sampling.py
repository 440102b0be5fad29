"""Generator-driven sampling follows each family's law, is reproducible, and leaves global RNG alone."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import (
    Bernoulli, Beta, Categorical, Dirichlet, Exponential, Gamma, Geometric, Independent, Laplace, LogNormal,
    MultivariateNormal, Normal, OneHotCategorical, Poisson, Uniform,
)

import estimators
from estimators.sampling import draw

D = torch.float64
FAMILIES = {
    "normal": lambda: Normal(torch.tensor([0.5, -1.0], dtype=D), torch.tensor([1.0, 0.3], dtype=D)),
    "mvn": lambda: MultivariateNormal(torch.tensor([0.5, -1.0], dtype=D),
                                      scale_tril=torch.tensor([[1.0, 0.0], [0.6, 0.5]], dtype=D)),
    "lognormal": lambda: LogNormal(torch.tensor([0.0, 0.3], dtype=D), torch.tensor([0.4, 0.2], dtype=D)),
    "laplace": lambda: Laplace(torch.tensor([0.5, -1.0], dtype=D), torch.tensor([1.0, 0.3], dtype=D)),
    "uniform": lambda: Uniform(torch.tensor([0.0, -2.0], dtype=D), torch.tensor([1.0, 3.0], dtype=D)),
    "exponential": lambda: Exponential(torch.tensor([0.5, 3.0], dtype=D)),
    "gamma": lambda: Gamma(torch.tensor([0.4, 3.0], dtype=D), torch.tensor([1.0, 2.0], dtype=D)),
    "beta": lambda: Beta(torch.tensor([0.5, 3.0], dtype=D), torch.tensor([2.0, 1.5], dtype=D)),
    "dirichlet": lambda: Dirichlet(torch.tensor([0.5, 1.0, 3.0], dtype=D)),
    "bernoulli": lambda: Bernoulli(probs=torch.tensor([0.1, 0.7], dtype=D)),
    "categorical": lambda: Categorical(probs=torch.tensor([0.2, 0.5, 0.3], dtype=D)),
    "onehot": lambda: OneHotCategorical(probs=torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]], dtype=D)),
    "poisson": lambda: Poisson(torch.tensor([0.5, 4.0], dtype=D)),
    "geometric (fallback)": lambda: Geometric(probs=torch.tensor([0.3, 0.8], dtype=D)),
    "independent": lambda: Independent(Normal(torch.zeros(2, 3, dtype=D), torch.ones(2, 3, dtype=D)), 1),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_moments_match_the_distribution(name, gen):
    dist = FAMILIES[name]()
    n = 200_000
    x = draw(dist, n, gen).to(D)
    assert x.shape == (n, *dist.batch_shape, *dist.event_shape)
    if isinstance(dist, Categorical):  # unordered: its mean is undefined, check frequencies instead
        x = torch.nn.functional.one_hot(x.long(), dist.probs.shape[-1]).to(D)
        mean, variance = dist.probs, dist.probs * (1 - dist.probs)
    else:
        mean, variance = dist.mean, dist.variance
    se_mean = (variance / n).sqrt()
    assert float(((x.mean(0) - mean).abs() / se_mean).max()) < 5
    centered_sq = (x - mean).pow(2)
    se_var = (centered_sq.std(0) / n**0.5).clamp_min(1e-12)  # zero where (x - mean)^2 is constant
    assert float(((centered_sq.mean(0) - variance).abs() / se_var).max()) < 5


@pytest.mark.parametrize("name", list(FAMILIES))
def test_reproducible_and_global_rng_untouched(name):
    dist = FAMILIES[name]()
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    a = draw(dist, 50, torch.Generator().manual_seed(3))
    b = draw(dist, 50, torch.Generator().manual_seed(3))
    c = draw(dist, 50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", ["normal", "gamma", "beta", "dirichlet", "laplace", "lognormal", "mvn"])
def test_reparameterized_draw_matches_torch_rsample_gradient(name):
    """With the same noise (the global generator's state), our rsample and torch's agree in value and
    gradient: same formula, same implicit-reparameterization kernels."""
    dist0 = FAMILIES[name]()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in
              estimators.families.parameters(dist0).items()}
    ours = estimators.families.rebuild(dist0, params)
    torch.manual_seed(11)
    x_ours = draw(ours, 5, None, reparameterized=True)
    g_ours = torch.autograd.grad(x_ours.sum(), list(params.values()))
    torch.manual_seed(11)
    x_torch = ours.rsample((5,))
    g_torch = torch.autograd.grad(x_torch.sum(), list(params.values()))
    assert torch.allclose(x_ours, x_torch)
    for a, b in zip(g_ours, g_torch):
        assert torch.allclose(a, b)


def test_estimator_call_is_reproducible_with_a_generator():
    loc = torch.tensor([0.3, -0.2], requires_grad=True)
    dist = Independent(Normal(loc, torch.ones(2)), 1)
    grads = []
    for seed in (5, 5, 6):
        out = estimators.get("reinforce", baseline="leave_one_out")(
            lambda z: z.pow(2).sum(-1), dist, 8, torch.Generator().manual_seed(seed))
        grads.append(torch.autograd.grad(out.surrogate, loc)[0])
    assert torch.equal(grads[0], grads[1]) and not torch.equal(grads[0], grads[2])


def test_the_posteriors_and_rebuilt_distributions_check_no_sample(monkeypatch):
    """``validate_args=False`` means no check of a sample anywhere inside: torch's OneHotCategorical builds its
    inner Categorical validated by default, whose log_prob checks every sample's indices (they always pass:
    it is cost only). The VAE's categorical posterior and ``families.rebuild``'s copy check none (a wrong variant
    without ``unvalidated``, built the same way, checks one per call), and their log-density is unchanged."""
    from torch.distributions import Distribution

    from estimators import families
    from experiments.vae.latent import LatentSpec
    from experiments.vae.model import VAE

    checks = []
    original = Distribution._validate_sample
    monkeypatch.setattr(Distribution, "_validate_sample", lambda self, value: checks.append(1) or original(self, value))
    model = VAE(6, LatentSpec(family="categorical", groups=2, classes=3), [4], "relu")
    q = model.posterior(torch.rand(5, 6))
    one_hot = torch.nn.functional.one_hot(torch.tensor([[0, 2]] * 5), 3).float()
    wrong = Independent(OneHotCategorical(logits=q.base_dist.logits, validate_args=False), 1, validate_args=False)
    expected = wrong.log_prob(one_hot)
    assert len(checks) == 1
    checks.clear()
    for dist in (q, families.rebuild(q, families.parameters(q))):
        torch.testing.assert_close(dist.log_prob(one_hot), expected)
    assert checks == []


def test_the_posteriors_and_rebuilt_distributions_check_no_parameter_when_built(monkeypatch):
    """Nor do they check their parameters when built (``families.build``): torch's OneHotCategorical would have
    its inner Categorical check the logits, a host sync on a GPU at every training step. A wrong variant, the
    plain constructor with ``validate_args=False``, does check them; the global default is left as it was."""
    from torch.distributions import Distribution, constraints

    from estimators import families
    from experiments.vae.latent import LatentSpec
    from experiments.vae.model import VAE

    checks = []
    original = constraints.independent.check  # the logits' constraint, real_vector, is an independent one
    monkeypatch.setattr(constraints.independent, "check",
                        lambda self, value: checks.append(1) or original(self, value))
    default = Distribution._validate_args
    model = VAE(6, LatentSpec(family="categorical", groups=2, classes=3), [4], "relu")
    q = model.posterior(torch.rand(5, 6))
    families.rebuild(q, families.parameters(q))
    assert checks == [] and Distribution._validate_args == default
    OneHotCategorical(logits=q.base_dist.logits, validate_args=False)
    assert len(checks) == 1
