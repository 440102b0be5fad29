r"""Bernoulli and one-hot categorical variables seen as one-hot vectors over their classes.

The ReinMax and Gumbel-Rao estimators are written for a categorical variable with logits
:math:`\theta \in \mathbb{R}^K` and a one-hot sample :math:`D`. A Bernoulli variable with logit :math:`\ell` is
the two-class case: class logits :math:`(0, \ell)` (any common shift gives the same softmax at every
temperature), one-hot sample :math:`(1 - b, b)`, and the value passed to ``f`` is the second column.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from . import families


def is_bernoulli(dist: Distribution) -> bool:
    return isinstance(families.unwrap(dist)[0], Bernoulli)


def class_logits(dist: Distribution) -> Tensor:
    """Logits ``[*base_batch, K]`` (differentiable in the distribution's parameters)."""
    base = families.unwrap(dist)[0]
    logits = base.logits
    if isinstance(base, Bernoulli):
        return torch.stack([torch.zeros_like(logits), logits], -1)
    return logits


def to_one_hot(sample: Tensor, dist: Distribution) -> Tensor:
    """A hard sample of ``dist`` as one-hot vectors ``[..., K]``."""
    return torch.stack([1.0 - sample, sample], -1) if is_bernoulli(dist) else sample


def from_one_hot(y: Tensor, dist: Distribution) -> Tensor:
    """Back to the sample space of ``dist`` (the class-1 column for a Bernoulli)."""
    return y[..., 1] if is_bernoulli(dist) else y


def linearized_softmax(at: Tensor, logits: Tensor) -> Tensor:
    r"""Zero in value; its Jacobian with respect to ``logits`` is the softmax Jacobian taken at the
    probabilities ``at``, :math:`\operatorname{diag}(\pi) - \pi\pi^\top` with :math:`\pi` = ``at``
    (detached): :math:`\pi \odot (\delta - \langle \pi, \delta \rangle)` with :math:`\delta = \theta - \bot\theta`."""
    pi = at.detach()
    delta = logits - logits.detach()
    return pi * (delta - (pi * delta).sum(-1, keepdim=True))


def check_differentiable(fz: Tensor, z: Tensor, name: str) -> None:
    """Refuse an ``f`` whose output has no autograd path from a ``z`` that carries the gradient."""
    if z.requires_grad and not fz.requires_grad:
        raise ValueError(
            f"estimator {name!r} backpropagates through f at the hard sample, so f must be differentiable in z; "
            f"f(z) does not require grad for z that does (f detaches z or uses a non-differentiable operation)"
        )
