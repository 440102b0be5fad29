r"""MLP VAE with a Bernoulli likelihood and Gaussian, Bernoulli or categorical latents.

ELBO per data point, with the KL to the prior in closed form (as Jang et al. 2017 do for the discrete
latents):

.. math::
    \mathcal L(x) = \mathbb E_{q_\phi(z|x)}[\log p_\theta(x|z)] - \mathrm{KL}(q_\phi(z|x)\,\|\,p(z)),

so the estimator's integrand is :math:`f(z) = \log p_\theta(x|z) - \mathrm{KL}`, which depends on
:math:`\phi` directly through the KL (the estimator contract's total derivative handles it). Priors:
:math:`\mathcal N(0, I)`; Bernoulli(1/2) per bit; uniform over each categorical group's classes.
Relaxed samples (Gumbel-softmax) enter the decoder as they are, hard samples as 0/1 or one-hot vectors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical, kl_divergence

LATENT_FAMILIES = ("gaussian", "bernoulli", "categorical")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}

# Presets that follow the anchor papers' MNIST models (as we read them):
# Kingma & Welling 2013: one hidden layer of 500 tanh units, Gaussian latents (20 here), Bernoulli decoder.
# Jang et al. 2017 (Table 1, binarized MNIST): 784-512-256-latent-256-512-784 ReLU MLPs, 20 x 10 categorical
# or 200 Bernoulli latents, Adam 1e-3, batch 100, temperature max(0.5, exp(-1e-5 t)).
PRESETS = {
    "kingma2013": {"latent": {"family": "gaussian", "dim": 20},
                   "model": {"hidden": [500], "activation": "tanh"}},
    "jang2017_bernoulli": {"latent": {"family": "bernoulli", "dim": 200},
                           "model": {"hidden": [512, 256], "activation": "relu"}},
    "jang2017_categorical": {"latent": {"family": "categorical", "groups": 20, "classes": 10},
                             "model": {"hidden": [512, 256], "activation": "relu"}},
}


@dataclass(frozen=True)
class LatentSpec:
    family: str
    dim: int = 0        # gaussian / bernoulli
    groups: int = 0     # categorical
    classes: int = 0    # categorical

    @classmethod
    def from_config(cls, cfg: dict) -> "LatentSpec":
        family = cfg.get("family")
        if family not in LATENT_FAMILIES:
            raise ValueError(f"unknown latent family {family!r}; valid: {', '.join(LATENT_FAMILIES)}")
        if family == "categorical":
            return cls(family, groups=int(cfg["groups"]), classes=int(cfg["classes"]))
        return cls(family, dim=int(cfg["dim"]))

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.groups, self.classes) if self.family == "categorical" else (self.dim,)

    @property
    def flat_dim(self) -> int:
        return math.prod(self.event_shape)

    @property
    def n_outputs(self) -> int:
        """Encoder outputs: loc and log-scale for Gaussian, logits otherwise."""
        return 2 * self.dim if self.family == "gaussian" else self.flat_dim

    @property
    def support_size(self) -> float:
        """Joint support size of a discrete latent (inf for Gaussian)."""
        if self.family == "gaussian":
            return math.inf
        return float(2**self.dim if self.family == "bernoulli" else self.classes**self.groups)

    def label(self) -> str:
        if self.family == "categorical":
            return f"categorical({self.groups}x{self.classes})"
        return f"{self.family}({self.dim})"


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    def __init__(self, x_dim: int, latent: LatentSpec, hidden: list[int], activation: str = "relu"):
        super().__init__()
        self.latent = latent
        self.encoder = mlp([x_dim, *hidden, latent.n_outputs], activation)
        self.decoder = mlp([latent.flat_dim, *reversed(hidden), x_dim], activation)

    def posterior(self, x: Tensor) -> Distribution:
        """q(z | x), batch_shape ``[B]``, event_shape ``latent.event_shape``."""
        out = self.encoder(x)
        if self.latent.family == "gaussian":
            loc, log_scale = out.chunk(2, dim=-1)
            return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1, validate_args=False)
        if self.latent.family == "bernoulli":
            return Independent(Bernoulli(logits=out, validate_args=False), 1, validate_args=False)
        logits = out.reshape(*out.shape[:-1], self.latent.groups, self.latent.classes)
        return Independent(OneHotCategorical(logits=logits, validate_args=False), 1, validate_args=False)

    def prior(self, like: Distribution) -> Distribution:
        base = like.base_dist
        if self.latent.family == "gaussian":
            return Independent(Normal(torch.zeros_like(base.loc), torch.ones_like(base.scale)), 1)
        if self.latent.family == "bernoulli":
            return Independent(Bernoulli(logits=torch.zeros_like(base.logits)), 1)
        return Independent(OneHotCategorical(logits=torch.zeros_like(base.logits)), 1)

    def kl(self, q: Distribution) -> Tensor:
        """KL(q || prior) per data point, ``[B]``."""
        return kl_divergence(q, self.prior(q))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z): ``x`` ``[B, D]``, ``z`` ``[n, B, *event]`` -> ``[n, B]``."""
        logits = self.decoder(z.reshape(*z.shape[: z.dim() - len(self.latent.event_shape)], -1))
        # Bernoulli log-likelihood of binary x, written stably with logits.
        return -nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def elbo_integrand(self, x: Tensor, q: Distribution):
        """f(z) = log p(x|z) - KL(q||p) for the estimators: ``[n, B, *event] -> [n, B]``."""
        kl = self.kl(q)
        return lambda z: self.log_likelihood(x, z) - kl

    @torch.no_grad()
    def elbo(self, x: Tensor, generator: torch.Generator | None, n_samples: int = 1) -> Tensor:
        """Monte Carlo ELBO per data point with hard samples of q, ``[B]``."""
        from estimators.sampling import draw

        q = self.posterior(x)
        z = draw(q, n_samples, generator)
        return self.elbo_integrand(x, q)(z).mean(0)

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
        """k-sample importance-weighted bound per data point (Burda et al. 2016), ``[B]``."""
        from estimators.sampling import draw

        q = self.posterior(x)
        z = draw(q, k, generator)
        log_w = self.log_likelihood(x, z) + self.prior(q).log_prob(z) - q.log_prob(z)
        return torch.logsumexp(log_w, 0) - math.log(k)


class BaselineNet(nn.Module):
    """NVIL's input-dependent baseline b_psi(x) (Mnih & Gregor 2014): an MLP from x to a scalar."""

    def __init__(self, x_dim: int, hidden: int = 100):
        super().__init__()
        self.net = mlp([x_dim, hidden, 1], "tanh")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def example_posterior(latent: LatentSpec) -> Distribution:
    """A posterior of the family's shape (batch of one), for support checks without a model."""
    if latent.family == "gaussian":
        return Independent(Normal(torch.zeros(1, latent.dim), torch.ones(1, latent.dim)), 1)
    if latent.family == "bernoulli":
        return Independent(Bernoulli(logits=torch.zeros(1, latent.dim)), 1)
    return Independent(OneHotCategorical(logits=torch.zeros(1, latent.groups, latent.classes)), 1)
