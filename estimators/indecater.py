r"""IndeCateR: the CatLog-derivative trick for independent categorical (and Bernoulli) variables.

De Smet, Sansone & Zuidberg Dos Martires 2023, "Differentiable Sampling of Categorical Distributions Using
the CatLog-Derivative Trick", NeurIPS 2023.

For :math:`D` independent categorical variables :math:`X_1, \dots, X_D` with class probabilities
:math:`p_d(k)` (``K`` classes each), the CatLog-derivative trick sums out one variable at a time:

.. math::
    \nabla_\lambda \mathbb{E}[f(X)] = \sum_{d=1}^{D} \mathbb{E}_{X_{\neq d}}\Big[\sum_{k=1}^{K}
        \nabla_\lambda p_d(k)\; f(X_{<d}, k, X_{>d})\Big],

(the paper's Theorem and its estimator IndeCateR): each variable's own randomness is integrated exactly, the
others are sampled. With ``n_samples`` samples :math:`x^{(s)}` the estimate is

.. math::
    \hat g = \frac1S \sum_s \sum_d \sum_k \nabla_\lambda p_d(k)\,
        f\big(x^{(s)}_{<d}, k, x^{(s)}_{>d}\big),

unbiased (Rao-Blackwellized REINFORCE; for Bernoulli variables it is the local expectation gradient of
Titsias & Lázaro-Gredilla 2015). The surrogate is
:math:`\frac1S\sum_s [f(x^{(s)}) + \sum_{d,k} \bot F_{s,d,k}\,(p_d(k) - \bot p_d(k))]` summed over the batch,
:math:`F_{s,d,k}` the value of ``f`` at sample :math:`s` with variable :math:`d` set to class :math:`k`: its
value is the Monte Carlo estimate of the objective, the probabilities (whatever the distribution was built
from: logits or probs) receive :math:`\hat g`, and ``f``'s own parameters receive its gradient at the samples.
The perturbed evaluations run without autograd.

Variables: a Bernoulli coordinate is a variable with ``K = 2`` classes; a ``OneHotCategorical`` group (the
last event dim is its classes, the others, under ``Independent``, count the groups) one with ``K`` classes.
Cost: the paper counts :math:`D \times K` evaluations of ``f`` per sample; the class a sample already has
gives ``f`` at the sample itself, so here it is evaluated once: :math:`1 + D(K - 1)` per sample
(``f_evaluations``; Bernoulli :math:`1 + D`), in blocks of bounded size. Unbiased; applies to Bernoulli and
OneHotCategorical; ``f`` is only evaluated on the discrete support.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from . import families
from .base import Estimator, EstimatorOutput, evaluate, evaluate_rows, reduce_samples
from .capabilities import Capabilities
from .measure_valued import MAX_BLOCK_ELEMENTS
from .one_hot_view import from_one_hot, is_bernoulli, to_one_hot
from .registry import register
from .sampling import draw


def groups_and_classes(dist: Distribution) -> tuple[tuple[int, ...], int]:
    """The event's variables (their shape) and the number of classes of each."""
    event = tuple(dist.event_shape)
    return (event, 2) if is_bernoulli(dist) else (event[:-1], event[-1])


def class_probabilities(dist: Distribution) -> Tensor:
    """``[*batch_shape, D, K]``: each variable's class probabilities, differentiable in the parameters."""
    base = families.unwrap(dist)[0]
    groups, classes = groups_and_classes(dist)
    full = (*dist.batch_shape, *groups)
    if isinstance(base, Bernoulli):
        p = base.probs.expand(full)
        probs = torch.stack([1.0 - p, p], -1)
    else:
        probs = base.probs.expand(*full, classes)
    return probs.reshape(*dist.batch_shape, math.prod(groups), classes)


def values_at_every_class(f, one_hot: Tensor, f_sample: Tensor, dist: Distribution) -> Tensor:
    r"""``F [n, *batch, D, K]``: ``f`` at each sample with variable ``d`` set to class ``k``; the sample's own class
    takes ``f_sample`` ``[n, *batch]``. ``one_hot``: the samples, ``[n, *batch, D, K]``. The other classes of
    every variable are visited as offsets ``r = 1..K-1`` from the sample's own (a regular grid of ``D(K-1)``
    points per sample), evaluated in blocks."""
    n, d, k = one_hot.shape[0], one_hot.shape[-2], one_hot.shape[-1]
    batch = tuple(dist.batch_shape)
    groups, _ = groups_and_classes(dist)
    own = one_hot.argmax(-1)                                                       # [n, *batch, D]
    moved = torch.stack([torch.nn.functional.one_hot((own + r) % k, k).to(one_hot) for r in range(1, k)])
    rows = (k - 1) * d                                                             # points per sample
    eye = torch.eye(d, dtype=torch.bool, device=one_hot.device)
    block = max(1, MAX_BLOCK_ELEMENTS // max(one_hot.numel(), 1))
    values = f_sample.unsqueeze(-1).unsqueeze(-1).expand(n, *batch, d, k).clone()
    flat_moved = moved.unsqueeze(1)                                                # [K-1, 1, n, *batch, D, K]
    out = []
    for first in range(0, rows, block):
        index = torch.arange(first, min(rows, first + block), device=one_hot.device)
        offset, var = index // d, index % d
        mask = eye[var].reshape(len(index), *([1] * (one_hot.dim() - 2)), d, 1)    # [B, 1.., D, 1]
        points = torch.where(mask, flat_moved[offset, 0], one_hot.unsqueeze(0))    # [B, n, *batch, D, K]
        z = from_one_hot(points.reshape(len(index) * n, *batch, *groups, k), dist)
        out.append(evaluate_rows(f, z, len(index) * n, batch).reshape(len(index), n, *batch))
    at = torch.cat(out).reshape(k - 1, d, n, *batch).movedim(1, -1)                # [K-1, n, *batch, D]
    classes = (own.unsqueeze(0) + torch.arange(1, k, device=own.device).reshape(-1, *([1] * own.dim()))) % k
    for r in range(k - 1):
        values.scatter_(-1, classes[r].unsqueeze(-1), at[r].unsqueeze(-1))
    return values


@register
class IndeCateR(Estimator):
    name = "indecater"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli, OneHotCategorical),
                                evaluations_per_sample=1, evaluations_per_coordinate=1, stackable=True)

    def f_evaluations(self, dist: Distribution, n_samples: int) -> float:
        """``1 + D(K - 1)`` per sample: ``capabilities.evaluations`` counts one per scalar coordinate of the event
        (``1 + D`` for Bernoulli, exact), and a one-hot group of ``K`` classes costs ``K - 1``."""
        groups, classes = groups_and_classes(dist)
        return float(int(n_samples) * (1 + math.prod(groups) * (classes - 1)))

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        x = draw(dist, n_samples, generator, reparameterized=False)
        fx = evaluate(f, x, dist, n_samples)
        probs = class_probabilities(dist)
        if not probs.requires_grad:
            return EstimatorOutput(surrogate=reduce_samples(fx), value=fx.detach())
        groups, classes = groups_and_classes(dist)
        with torch.no_grad():
            one_hot = to_one_hot(x, dist).reshape(n_samples, *dist.batch_shape, math.prod(groups), classes)
            values = values_at_every_class(f, one_hot, fx.detach(), dist)
        score = (values * (probs - probs.detach())).sum((-1, -2))  # zero in value; the CatLog gradient
        return EstimatorOutput(surrogate=reduce_samples(fx + score), value=fx.detach())
