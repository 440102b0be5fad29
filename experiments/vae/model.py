r"""MLP VAE with a Bernoulli likelihood and Gaussian, Bernoulli or categorical latents.

ELBO per data point, with the KL to the prior in closed form (as Jang et al. 2017 do for the discrete
latents):

.. math::
    \mathcal L(x) = \mathbb E_{q_\phi(z|x)}[\log p_\theta(x|z)] - \mathrm{KL}(q_\phi(z|x)\,\|\,p(z)).

``objective(x, q, kl)`` splits it for the estimators. With ``kl="exact"`` (the default) the estimator's
integrand is :math:`f(z) = \log p_\theta(x|z)` and the KL's exact gradient is added directly, as the
pathwise estimator in effect does; a score-function estimator then does not multiply its score by the
KL, which is zero-mean noise since the KL does not depend on z. With ``kl="in_signal"`` the integrand is
:math:`f(z) = \log p_\theta(x|z) - \mathrm{KL}` (the full ELBO as the learning signal): the same gradient
in expectation, with more variance for REINFORCE. Priors:
:math:`\mathcal N(0, I)`; Bernoulli(1/2) per bit; uniform over each categorical group's classes.
Relaxed samples (Gumbel-softmax) enter the decoder as they are, hard samples as 0/1 or one-hot vectors.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

from .latent import LatentSpec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus,
               # Dong, Mnih & Tucker 2020 (DisARM), after Yin & Zhou 2019 (ARM): LeakyReLU with slope 0.3
               "leaky_relu": lambda: nn.LeakyReLU(0.3)}


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
        """KL(q || prior) per data point, ``[B]``, in closed form against the standard prior (N(0, I),
        Bernoulli(1/2), uniform categorical); equal to ``kl_divergence(q, self.prior(q))`` (a test checks)
        and several times cheaper than torch's generic Bernoulli and categorical versions."""
        base = q.base_dist
        if self.latent.family == "gaussian":
            scale = base.scale
            return 0.5 * (base.loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum(-1)
        if self.latent.family == "bernoulli":
            logits = base.logits
            p = torch.sigmoid(logits)
            neg_entropy = p * nn.functional.logsigmoid(logits) + (1.0 - p) * nn.functional.logsigmoid(-logits)
            return neg_entropy.sum(-1) + logits.shape[-1] * math.log(2.0)
        log_p = base.logits.log_softmax(-1)
        return (log_p.exp() * log_p).sum((-2, -1)) + log_p.shape[-2] * math.log(log_p.shape[-1])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z): ``x`` ``[B, D]``, ``z`` ``[n, B, *event]`` -> ``[n, B]``."""
        logits = self.decoder(z.reshape(*z.shape[: z.dim() - len(self.latent.event_shape)], -1))
        # Bernoulli log-likelihood of binary x, written stably with logits.
        return -nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def objective(self, x: Tensor, q: Distribution, kl: str = "exact"):
        """``(f, exact_term)``: the estimators' integrand ``[n, B, *event] -> [n, B]`` and the scalar added to
        their surrogate, so that ``surrogate + exact_term`` estimates the minibatch ELBO (see the module)."""
        if kl == "exact":
            return (lambda z: self.log_likelihood(x, z)), -self.kl(q).sum()
        if kl == "in_signal":
            divergence = self.kl(q)
            return (lambda z: self.log_likelihood(x, z) - divergence), torch.zeros((), device=x.device)
        raise ValueError(f"unknown kl {kl!r}; valid: exact, in_signal")

    def elbo_integrand(self, x: Tensor, q: Distribution):
        """f(z) = log p(x|z) - KL(q||p): ``[n, B, *event] -> [n, B]`` (evaluation)."""
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
