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

from estimators import families
from experiments.vae.latent import LatentSpec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus,
               # Dong, Mnih & Tucker 2020 (DisARM), after Yin & Zhou 2019 (ARM): LeakyReLU with slope 0.3
               "leaky_relu": lambda: nn.LeakyReLU(0.3)}

#: ``VAE.iwae_bound`` draws its samples this many at a time, whatever its chunk size (a multiple of it),
#: so that the draws, and the bound, do not depend on how the samples are chunked.
IWAE_DRAW_BLOCK = 10
#: Default bound on a pass of ``VAE.iwae_bound`` (its decoder activations): at k=1000 and 500 data points,
#: all samples at once would hold about 1.5 GB of logits alone.
IWAE_MEMORY_BYTES = 256 * 2**20


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
        return self.posterior_from_outputs(self.encoder(x))

    def replicated_posterior(self, x: Tensor, encoder_params: list[Tensor]) -> Distribution:
        """q(z | x) under ``c`` independent copies of the encoder's weights, batch_shape ``[c, B]``.

        ``encoder_params``: one tensor ``[c, *p.shape]`` per parameter ``p`` of ``self.encoder``, in the order
        of ``self.encoder.parameters()``; ``x`` ``[B, D]`` is shared by every copy. Copy ``r``'s outputs depend
        only on its own slice ``[r]``, so one backward pass gives every copy's gradient (the vectorized mode of
        ``estimators.measure_variance``). Each linear layer is a batched matmul ``[c, B, a] @ [c, a, b]``
        (the first broadcasts ``x`` over the copies); the other layers of ``mlp`` are elementwise.
        """
        names = [name for name, _ in self.encoder.named_parameters()]
        if len(encoder_params) != len(names):
            raise ValueError(f"expected {len(names)} encoder parameters ({', '.join(names)}), "
                             f"got {len(encoder_params)}")
        by_name = dict(zip(names, encoder_params))
        h = x
        for i, layer in enumerate(self.encoder):
            if isinstance(layer, nn.Linear):
                weight, bias = by_name[f"{i}.weight"], by_name[f"{i}.bias"]
                h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
            elif any(True for _ in layer.parameters()):
                raise TypeError(f"replicated_posterior supports linear layers and parameter-free activations; "
                                f"layer {i} is a {type(layer).__name__} with parameters")
            else:
                h = layer(h)
        return self.posterior_from_outputs(h)

    def posterior_from_outputs(self, out: Tensor) -> Distribution:
        """q(z | x) from the encoder's outputs ``[*batch, latent.n_outputs]``: batch_shape ``[*batch]``."""
        if self.latent.family == "gaussian":
            loc, log_scale = out.chunk(2, dim=-1)
            return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1, validate_args=False)
        if self.latent.family == "bernoulli":
            return Independent(Bernoulli(logits=out, validate_args=False), 1, validate_args=False)
        logits = out.reshape(*out.shape[:-1], self.latent.groups, self.latent.classes)
        # families.build: OneHotCategorical's inner Categorical would check the logits here and every sample in
        # log_prob (each check a host sync on a GPU).
        return Independent(families.build(OneHotCategorical, logits=logits), 1, validate_args=False)

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
            # p log sigmoid(l) + (1 - p) log sigmoid(-l) = p l - softplus(l): one transcendental pass, not three.
            neg_entropy = torch.sigmoid(logits) * logits - nn.functional.softplus(logits)
            return neg_entropy.sum(-1) + logits.shape[-1] * math.log(2.0)
        log_p = base.logits.log_softmax(-1)
        return (log_p.exp() * log_p).sum((-2, -1)) + log_p.shape[-2] * math.log(log_p.shape[-1])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z): ``x`` ``[B, D]``, ``z`` ``[n, B, *event]`` -> ``[n, B]``."""
        logits = self.decoder(z.reshape(*z.shape[: z.dim() - len(self.latent.event_shape)], -1))
        # Bernoulli log-likelihood of binary x, written stably with logits.
        return -nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def objective(self, x: Tensor, q: Distribution, kl: str = "exact", log_likelihood=None):
        """``(f, exact_term)``: the estimators' integrand ``[n, B, *event] -> [n, B]`` and the scalar added to
        their surrogate, so that ``surrogate + exact_term`` estimates the minibatch ELBO (see the module).
        ``log_likelihood(x, z)``: the decoder's, by default this model's (stacked runs pass theirs)."""
        log_likelihood = log_likelihood or self.log_likelihood
        if kl == "exact":
            return (lambda z: log_likelihood(x, z)), -self.kl(q).sum()
        if kl == "in_signal":
            divergence = self.kl(q)
            return (lambda z: log_likelihood(x, z) - divergence), torch.zeros((), device=x.device)
        raise ValueError(f"unknown kl {kl!r}; valid: exact, in_signal")

    def log_weight(self, x: Tensor, q: Distribution, log_likelihood=None):
        """f(z) = log p(x|z) + log p(z) - log q(z|x), ``[n, B, *event] -> [n, B]``: the importance weight's log,
        whose K-sample mean's log is the IWAE bound. ``q`` and the prior are evaluated with their density
        formulas off the discrete support too (relaxed samples of rebar, relax and the relaxations).
        ``log_likelihood`` as in ``objective``."""
        prior, log_likelihood = self.prior(q), log_likelihood or self.log_likelihood
        return lambda z: log_likelihood(x, z) + log_density(prior, z) - log_density(q, z)

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

    def iwae_sample_chunk(self, batch: int, memory_bytes: int = IWAE_MEMORY_BYTES) -> int:
        """Samples per pass of ``iwae_bound`` on ``batch`` data points: the most whole blocks of
        ``IWAE_DRAW_BLOCK`` whose decoder activations fit ``memory_bytes``. Per sample and data point a pass
        holds the latent, every decoder layer's output, and the logits' binary cross-entropy (3 tensors of
        ``x_dim``: logits, their elementwise loss and its temporaries), in the parameters' dtype."""
        widths = [m.out_features for m in self.decoder if isinstance(m, nn.Linear)]
        x_dim = widths[-1]
        itemsize = next(self.decoder.parameters()).element_size()
        per_sample = itemsize * batch * (self.latent.flat_dim + sum(widths[:-1]) + 3 * x_dim)
        blocks = max(1, memory_bytes // (per_sample * IWAE_DRAW_BLOCK))
        return int(blocks * IWAE_DRAW_BLOCK)

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int, generator: torch.Generator | None,
                   sample_chunk: int | None = None) -> Tensor:
        r"""k-sample importance-weighted bound per data point (Burda et al. 2016), ``[B]``:
        :math:`\log \frac1k \sum_{s=1}^k w_s`, :math:`\log w_s = \log p(x|z_s) + \log p(z_s) - \log q(z_s|x)`.

        Memory is bounded: the samples pass through the decoder ``sample_chunk`` at a time (default
        ``iwae_sample_chunk``, rounded down to whole blocks of ``IWAE_DRAW_BLOCK``), and only ``log_w``
        ``[k, B]`` is kept (``k * B`` numbers against ``k * B * x_dim`` logits), so the final ``logsumexp``
        is the same computation whatever the chunking. The samples are drawn ``IWAE_DRAW_BLOCK`` at a time,
        in order, from ``generator``, so every chunking sees the same draws: the bound does not depend on
        ``sample_chunk`` (up to the last bits of the decoder's matmuls, whose blocking can depend on the
        number of rows).
        """
        from estimators.sampling import draw

        q = self.posterior(x)
        prior = self.prior(q)
        chunk = self.iwae_sample_chunk(x.shape[0]) if sample_chunk is None else int(sample_chunk)
        if chunk < 1:
            raise ValueError(f"sample_chunk must be >= 1, got {sample_chunk!r}")
        chunk = max(IWAE_DRAW_BLOCK, chunk - chunk % IWAE_DRAW_BLOCK)
        log_w = []
        for first in range(0, k, chunk):
            n = min(chunk, k - first)
            z = torch.cat([draw(q, min(IWAE_DRAW_BLOCK, n - i), generator) for i in range(0, n, IWAE_DRAW_BLOCK)])
            log_w.append(self.log_likelihood(x, z) + prior.log_prob(z) - q.log_prob(z))
        return torch.logsumexp(torch.cat(log_w), 0) - math.log(k)


def log_density(dist: Distribution, z: Tensor) -> Tensor:
    """log of ``dist`` (Independent of Normal, Bernoulli or OneHotCategorical, one event dimension) at ``z``
    ``[n, *batch, *event]``, extended off the discrete support by the same formula, so that it is
    differentiable in ``z`` at relaxed samples: Bernoulli z log p + (1 - z) log(1 - p), one-hot <z, log p>
    (torch's OneHotCategorical takes the argmax, which has no gradient in z)."""
    base = dist.base_dist
    if isinstance(base, Normal):
        return dist.log_prob(z)
    if isinstance(base, Bernoulli):
        return -nn.functional.binary_cross_entropy_with_logits(base.logits.expand_as(z), z, reduction="none").sum(-1)
    return (z * base.logits.log_softmax(-1)).sum((-1, -2))


class BaselineNet(nn.Module):
    """NVIL's input-dependent baseline b_psi(x) (Mnih & Gregor 2014): an MLP from x to a scalar."""

    def __init__(self, x_dim: int, hidden: int = 100):
        super().__init__()
        self.net = mlp([x_dim, hidden, 1], "tanh")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
