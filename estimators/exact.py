r"""Exact expectation by enumerating the support (the ground truth for tests and bias).

.. math::
    \sum_b \mathbb{E}_{q_{\phi,b}}[f_\phi(z)] = \sum_b \sum_{z \in \mathcal{Z}} q_{\phi,b}(z)\, f_\phi(z),

a finite sum whose autograd gradient is the exact gradient (both through :math:`q_\phi(z)` and through
``f``'s direct dependence on :math:`\phi`). Applies to Bernoulli, Categorical and OneHotCategorical,
under ``Independent`` too, where :math:`|\mathcal{Z}| = K^{M}` for ``K`` values per variable and ``M``
variables per event; refused above ``max_support`` points.

``n_samples`` and ``generator`` are ignored: nothing is sampled. ``out.value`` is ``f`` at every support
point, ``[support_size, *batch_shape]``, in the order of :func:`enumerate_support`.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from . import families
from .base import Estimator, EstimatorOutput, evaluate
from .capabilities import Capabilities
from .options import Option, positive_integer
from .registry import register

ENUMERABLE = (Bernoulli, Categorical, OneHotCategorical)


def _values_per_variable(base: Distribution) -> Tensor:
    """The support of one variable: ``[K, *event_of_base]``."""
    if isinstance(base, Bernoulli):
        return torch.tensor([0.0, 1.0], dtype=base.probs.dtype, device=base.probs.device)
    k = base.probs.shape[-1]
    if isinstance(base, OneHotCategorical):
        return torch.eye(k, dtype=base.probs.dtype, device=base.probs.device)
    return torch.arange(k, dtype=torch.long, device=base.probs.device)


def _cell_log_probs(base: Distribution) -> Tensor:
    """log q of each value of each variable: ``[*base_batch, K]``."""
    if isinstance(base, Bernoulli):
        logits = base.logits
        return torch.stack([-torch.nn.functional.softplus(logits), -torch.nn.functional.softplus(-logits)], -1)
    return base.logits  # torch keeps categorical logits normalized: log-probabilities


def _event_cells(dist: Distribution) -> tuple[Distribution, tuple[int, ...]]:
    base, ndims = families.unwrap(dist)
    return base, (tuple(base.batch_shape[len(base.batch_shape) - ndims:]) if ndims else ())


def support_size(dist: Distribution) -> int:
    base, cells = _event_cells(dist)
    per_variable = 2 if isinstance(base, Bernoulli) else base.probs.shape[-1]
    return per_variable ** math.prod(cells)


@functools.lru_cache(maxsize=64)
def _digits(k: int, m: int, device: torch.device) -> Tensor:
    """Mixed-radix digits of 0..K^M-1, ``[K^M, M]``: configuration c puts value digit_j(c) in cell j."""
    codes = torch.arange(k**m, device=device)
    powers = k ** torch.arange(m - 1, -1, -1, device=device)
    return (codes.unsqueeze(-1) // powers) % k


def enumerate_support(dist: Distribution) -> tuple[Tensor, Tensor]:
    """Every joint value of one event with its log-probability.

    Returns ``z`` ``[support, *batch_shape, *event_shape]`` and ``log_q`` ``[support, *batch_shape]``,
    where log q(config) is the sum over the event's variables of the log-probability of its value.
    """
    base, cells = _event_cells(dist)
    values = _values_per_variable(base)
    k, m = values.shape[0], math.prod(cells)
    digits = _digits(k, m, values.device)  # [K^M, M]
    batch = tuple(dist.batch_shape)
    joint = values[digits].reshape(k**m, *([1] * len(batch)), *cells, *values.shape[1:])
    z = joint.expand(k**m, *batch, *joint.shape[1 + len(batch):])
    cell_lp = _cell_log_probs(base).reshape(*batch, m * k)
    # log q(config) = sum_j log p_j(digit_j) as a matmul with the configurations' one-hot codes: unlike
    # advanced indexing, whose backward is an accumulating scatter, this is deterministic on every device.
    codes = torch.nn.functional.one_hot(digits, k).reshape(k**m, m * k).to(cell_lp.dtype)
    log_q = cell_lp @ codes.T  # [*batch, K^M]
    return z, log_q.movedim(-1, 0)


@register
class Exact(Estimator):
    name = "exact"
    # Only the families whose support this module enumerates, although torch can enumerate more.
    capabilities = Capabilities(role="exact", unbiased=True, families=ENUMERABLE, requires=("has_enumerate_support",),
                                evaluations_per_sample=None, limits="a support of at most max_support points")
    declared_options = {"max_support": Option(2**16, positive_integer, "the largest support enumerated (points)")}

    def _why_not_instance(self, dist: Distribution) -> str | None:
        size = support_size(dist)
        if size <= self.max_support:
            return None
        return f"its support has {size} points, above max_support={self.max_support}"

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        z, log_q = enumerate_support(dist)
        fz = evaluate(f, z, dist, z.shape[0])
        # q(z) stays in the graph: the gradient of sum q f is the exact gradient.
        return EstimatorOutput(surrogate=(log_q.exp() * fz).sum(), value=fz.detach())
