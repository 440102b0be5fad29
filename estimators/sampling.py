r"""Sampling from ``torch.distributions`` with an explicit ``torch.Generator``.

``Distribution.sample``/``rsample`` always draw from torch's global generator, which makes a run depend
on whatever else consumed global randomness. Here each family the benchmark uses is sampled with the
same formula torch uses, but with the generator passed in; the reparameterized (``rsample``) path keeps
torch's gradients, including the implicit reparameterization of Gamma, Beta and Dirichlet
(Figurnov et al. 2018), whose backward passes are torch's own ``_standard_gamma`` and
``_dirichlet_grad`` kernels.

Families without a formula here fall back to the distribution's own ``sample``/``rsample`` run under a
forked global RNG state seeded from the generator: still reproducible from the generator, and the
caller's global RNG state is left as it was.

Shapes: every function returns ``[n_samples, *batch_shape, *event_shape]``.

Stacked runs (``experiments/vae/stacked.py``): a :class:`GeneratorStack` holds one generator per run, and the
runs are the *first* batch dimension of the distribution (and of every noise tensor, right after its sample
dimensions). ``draw`` with a stack draws run ``r``'s slice from the distribution sliced at batch index ``r``
with generator ``r``, so each run gets, bit for bit, the noise it would get alone; ``uniform`` and
``exponential`` do the same for the raw noise of the estimators that transform it themselves.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Dirichlet,
    Distribution,
    Exponential,
    Gamma,
    Independent,
    Laplace,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    Poisson,
    TransformedDistribution,
    Uniform,
)

from . import families

Sampler = Callable[[Distribution, torch.Size, "torch.Generator | None"], Tensor]


class GeneratorStack:
    """One ``torch.Generator`` per stacked run: run ``r`` is index ``r`` of the first batch dimension, and its
    noise comes from ``generators[r]`` alone, so it equals the noise of the same run drawn on its own.

    Only ``draw``/``_draw`` on :data:`STACKABLE_FAMILIES` and the raw primitives ``uniform``/``exponential``
    accept it; estimators declare whether their randomness goes through them (``Capabilities.stackable``).
    """

    def __init__(self, generators):
        gens = tuple(generators)
        if not gens:
            raise ValueError("GeneratorStack needs at least one generator")
        bad = [type(g).__name__ for g in gens if not isinstance(g, torch.Generator)]
        if bad:
            raise TypeError(f"GeneratorStack holds torch.Generator objects, got {bad[0]}")
        devices = sorted({str(g.device) for g in gens})
        if len(devices) > 1:
            raise ValueError(f"the generators of a GeneratorStack must share one device, got {', '.join(devices)}")
        self.generators = gens

    def __len__(self) -> int:
        return len(self.generators)

    def __iter__(self):
        return iter(self.generators)

    def __getitem__(self, r: int) -> torch.Generator:
        return self.generators[r]

    @property
    def device(self) -> torch.device:
        return self.generators[0].device

    def __repr__(self) -> str:
        return f"GeneratorStack({len(self)} generators on {self.device})"


#: The families (under ``Independent`` wrappers) that ``draw`` samples with a ``GeneratorStack``: the VAE's.
STACKABLE_FAMILIES = (Normal, Bernoulli, OneHotCategorical)


def check_generator(generator: "torch.Generator | GeneratorStack | None", device: torch.device) -> None:
    """Raise a clear error when a generator (or each generator of a stack) cannot drive sampling on ``device``."""
    if generator is None:
        return
    if isinstance(generator, GeneratorStack):
        for g in generator:
            check_generator(g, device)
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, a GeneratorStack or None, "
                        f"got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the distribution's parameters are on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )


def _uniform(shape: torch.Size, like: Tensor, generator) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


def _per_run(make: Callable[[tuple, torch.Generator], Tensor], shape, generator, sample_ndim: int) -> Tensor:
    """``make(shape, generator)``, or with a ``GeneratorStack`` run ``r``'s slice (``shape`` without its run
    axis ``shape[sample_ndim]``) from generator ``r``, stacked along that axis."""
    shape = tuple(int(s) for s in shape)
    if not isinstance(generator, GeneratorStack):
        return make(shape, generator)
    if len(shape) <= sample_ndim or shape[sample_ndim] != len(generator):
        raise ValueError(f"noise of shape {shape} has no run axis of size {len(generator)} at dim {sample_ndim} "
                         f"(shape = [*sample ({sample_ndim} dims), runs, *batch, *event])")
    one = shape[:sample_ndim] + shape[sample_ndim + 1:]
    return torch.stack([make(one, g) for g in generator], dim=sample_ndim)


def uniform(shape, like: Tensor, generator, sample_ndim: int = 1) -> Tensor:
    """U[0, 1) noise ``shape`` = ``[*sample, *batch, *event]`` (``sample_ndim`` sample dims) in ``like``'s dtype
    and device; with a ``GeneratorStack`` the run axis is ``shape[sample_ndim]`` and run ``r``'s slice is what
    ``torch.rand`` draws alone from generator ``r``."""
    return _per_run(lambda s, g: torch.rand(s, generator=g, dtype=like.dtype, device=like.device),
                    shape, generator, sample_ndim)


def exponential(shape, like: Tensor, generator, sample_ndim: int = 1) -> Tensor:
    """Exp(1) noise ``shape`` = ``[*sample, *batch, *event]``, as ``uniform`` (``Tensor.exponential_``)."""
    return _per_run(lambda s, g: torch.empty(s, dtype=like.dtype, device=like.device).exponential_(generator=g),
                    shape, generator, sample_ndim)


def _normal(d: Normal, shape, generator) -> Tensor:
    eps = torch.randn(shape + d.batch_shape, generator=generator, dtype=d.loc.dtype, device=d.loc.device)
    return d.loc + eps * d.scale


def _multivariate_normal(d: MultivariateNormal, shape, generator) -> Tensor:
    eps = torch.randn(shape + d.batch_shape + d.event_shape, generator=generator,
                      dtype=d.loc.dtype, device=d.loc.device)
    return d.loc + (d._unbroadcasted_scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


def _laplace(d: Laplace, shape, generator) -> Tensor:
    # Inverse CDF on u ~ U(eps - 1, 1), as torch does, so log1p(-|u|) stays finite.
    eps = torch.finfo(d.loc.dtype).eps
    u = _uniform(shape + d.batch_shape, d.loc, generator) * (2.0 - eps) + (eps - 1.0)
    return d.loc - d.scale * u.sign() * torch.log1p(-u.abs())


def _uniform_dist(d: Uniform, shape, generator) -> Tensor:
    return d.low + _uniform(shape + d.batch_shape, d.low, generator) * (d.high - d.low)


def _exponential(d: Exponential, shape, generator) -> Tensor:
    e = torch.empty(shape + d.batch_shape, dtype=d.rate.dtype, device=d.rate.device)
    return e.exponential_(generator=generator) / d.rate


def _gamma(d: Gamma, shape, generator) -> Tensor:
    full = shape + d.batch_shape
    # _standard_gamma carries the implicit-reparameterization gradient d z / d concentration.
    value = torch._standard_gamma(d.concentration.expand(full), generator=generator) / d.rate.expand(full)
    value.detach().clamp_(min=torch.finfo(value.dtype).tiny)
    return value


class _DirichletSample(torch.autograd.Function):
    r"""Dirichlet draw with the implicit reparameterization gradient.

    Forward: x ~ Dir(alpha) from ``torch._sample_dirichlet`` with an explicit generator.
    Backward (Figurnov et al. 2018; torch's ``_dirichlet_grad`` gives dx_i/d alpha_i along the
    simplex): grad_alpha = J * (g - <x, g>), the projection that keeps sum(x) = 1.
    """

    @staticmethod
    def forward(ctx, concentration: Tensor, generator):
        x = torch._sample_dirichlet(concentration, generator=generator)
        ctx.save_for_backward(x, concentration)
        return x

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, concentration = ctx.saved_tensors
        total = concentration.sum(-1, keepdim=True).expand_as(concentration)
        jac = torch._dirichlet_grad(x, concentration, total)
        return jac * (grad_output - (x * grad_output).sum(-1, keepdim=True)), None


def _dirichlet(d: Dirichlet, shape, generator) -> Tensor:
    conc = d.concentration.expand(shape + d.batch_shape + d.event_shape)
    return _DirichletSample.apply(conc, generator)


def _beta(d: Beta, shape, generator) -> Tensor:
    # Beta(a, b) is the first coordinate of Dir(a, b), as in torch.
    conc = torch.stack([d.concentration1, d.concentration0], -1).expand(shape + d.batch_shape + (2,))
    return _DirichletSample.apply(conc, generator)[..., 0]


def bernoulli(probs: Tensor, generator, shape=None) -> Tensor:
    """0/1 draws ``shape`` (default ``probs.shape``; ``probs`` broadcasts to it) with P(1) = ``probs``, in
    ``probs``' dtype: ``u < p`` for ``u ~ U[0, 1)``, which is Bernoulli(p) as ``torch.bernoulli`` is, from one
    ``torch.rand`` draw per entry; about 3x faster than ``torch.bernoulli`` on CPU (0.31 against 0.98 ms for
    100 x 784 entries on one thread), which is a few percent of a training step at the paper sizes."""
    shape = probs.shape if shape is None else shape
    return (torch.rand(shape, generator=generator, dtype=probs.dtype, device=probs.device) < probs).to(probs.dtype)


def _bernoulli(d: Bernoulli, shape, generator) -> Tensor:
    return bernoulli(d.probs, generator, shape + d.batch_shape)


def _category_indices(probs: Tensor, shape: torch.Size, generator) -> Tensor:
    """Category indices ``[*shape, *batch]`` for probabilities ``[*batch, K]``."""
    n = int(torch.Size(shape).numel())
    # A NaN row (the probabilities of a training run that has just diverged, whose divergence is read at the
    # loop's next boundary, experiments/vae/divergence.py) draws uniformly instead of stopping the program, or
    # on a GPU raising a device-side assert; finite rows are left exactly as they are.
    flat = probs.reshape(-1, probs.shape[-1]).nan_to_num(nan=1.0)
    idx = torch.multinomial(flat, n, replacement=True, generator=generator)  # [B, n]
    return idx.T.reshape(tuple(shape) + tuple(probs.shape[:-1]))


def _categorical(d: Categorical, shape, generator) -> Tensor:
    return _category_indices(d.probs, shape, generator)


def _one_hot_categorical(d: OneHotCategorical, shape, generator) -> Tensor:
    probs = d.probs
    idx = _category_indices(probs, shape, generator)
    return torch.nn.functional.one_hot(idx, probs.shape[-1]).to(probs.dtype)


def _poisson(d: Poisson, shape, generator) -> Tensor:
    return torch.poisson(d.rate.expand(shape + d.batch_shape), generator=generator)


def _independent(d: Independent, shape, generator) -> Tensor:
    return _draw(d.base_dist, shape, generator)


def _transformed(d: TransformedDistribution, shape, generator) -> Tensor:
    x = _draw(d.base_dist, shape, generator)
    for transform in d.transforms:
        x = transform(x)
    return x


_SAMPLERS: dict[type, Sampler] = {
    Normal: _normal,
    MultivariateNormal: _multivariate_normal,
    Laplace: _laplace,
    Uniform: _uniform_dist,
    Exponential: _exponential,
    Gamma: _gamma,
    Dirichlet: _dirichlet,
    Beta: _beta,
    Bernoulli: _bernoulli,
    Categorical: _categorical,
    OneHotCategorical: _one_hot_categorical,
    Poisson: _poisson,
    Independent: _independent,
    TransformedDistribution: _transformed,
}


def _sampler_for(dist: Distribution) -> Sampler | None:
    for klass in type(dist).__mro__:
        if klass in _SAMPLERS:
            # A subclass that overrides rsample/sample has its own law; only reuse the parent's
            # formula when the sampling methods are inherited unchanged.
            if klass is type(dist) or (type(dist).rsample is klass.rsample and type(dist).sample is klass.sample):
                return _SAMPLERS[klass]
            return None
    return None


def _fallback(dist: Distribution, shape: torch.Size, generator) -> Tensor:
    draw = dist.rsample if dist.has_rsample else dist.sample
    if generator is None:
        return draw(shape)
    device = generator.device
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=device))
    on_cuda = device.type == "cuda"
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if on_cuda else []
    with torch.random.fork_rng(devices=devices):
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        return draw(shape)


def _draw_stacked(dist: Distribution, shape: torch.Size, stack: GeneratorStack) -> Tensor:
    """``[*shape, runs, *rest_of_batch, *event]``: run ``r``'s slice drawn from ``dist`` sliced at batch index
    ``r`` with ``stack[r]`` (the same code path, shapes and generator as the run alone), then stacked. Slicing
    keeps autograd, so the reparameterized path reaches each run's parameters."""
    base = families.unwrap(dist)[0]
    if not isinstance(base, STACKABLE_FAMILIES) or _sampler_for(base) is None:
        raise ValueError(f"a GeneratorStack draws from {', '.join(k.__name__ for k in STACKABLE_FAMILIES)} "
                         f"(and Independent wrappers); got {families.family_name(dist)}")
    if len(dist.batch_shape) == 0 or dist.batch_shape[0] != len(stack):
        raise ValueError(f"a GeneratorStack of {len(stack)} runs needs the runs as the first batch dimension; "
                         f"got batch_shape {tuple(dist.batch_shape)}")
    params = families.parameters(base)
    slices = [_draw(families.rebuild(dist, {k: v[r] for k, v in params.items()}), shape, gen)
              for r, gen in enumerate(stack)]
    return torch.stack(slices, dim=len(shape))


def _draw(dist: Distribution, shape: torch.Size, generator) -> Tensor:
    if isinstance(generator, GeneratorStack):
        return _draw_stacked(dist, shape, generator)
    sampler = _sampler_for(dist)
    return sampler(dist, shape, generator) if sampler is not None else _fallback(dist, shape, generator)


def draw(dist: Distribution, n_samples: int, generator: "torch.Generator | GeneratorStack | None" = None,
         reparameterized: bool = False) -> Tensor:
    """Draw ``[n_samples, *batch_shape, *event_shape]`` samples from ``dist`` with ``generator`` (with a
    ``GeneratorStack``, ``batch_shape[0]`` is the runs: see ``_draw_stacked``).

    With ``reparameterized=True`` the samples carry gradients to the distribution's parameters
    (as ``rsample``); the distribution must have ``has_rsample``. Otherwise they are detached
    (as ``sample``).
    """
    shape = torch.Size((n_samples,))
    if reparameterized:
        if not dist.has_rsample:
            raise ValueError(f"{type(dist).__name__} has no reparameterized sampler (has_rsample is False)")
        return _draw(dist, shape, generator)
    with torch.no_grad():
        return _draw(dist, shape, generator)


def can_sample(dist: Distribution) -> bool:
    """Whether ``dist`` can be sampled at all (formula here, or its own sample/rsample)."""
    if _sampler_for(dist) is not None:
        inner = getattr(dist, "base_dist", None)
        return True if inner is None else can_sample(inner)
    return dist.has_rsample or type(dist).sample is not Distribution.sample
