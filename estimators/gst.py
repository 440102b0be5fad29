r"""GST: the gapped straight-through estimator for one-hot categorical and Bernoulli variables.

Fan, Chi, Rudnicky & Ramadge 2022, "Training Discrete Deep Generative Models via Gapped Straight-Through
Estimator", ICML 2022.

Straight-through Gumbel-softmax backpropagates through :math:`\operatorname{softmax}((\theta + g)/\tau)` at
Gumbel noise :math:`g` drawn consistently with the sample :math:`D`; that noise is a second source of
variance. GST replaces it by a *deterministic* perturbation of the logits, a function of :math:`D` alone, that
keeps the two properties the paper asks of a good surrogate: the sampled class has the largest perturbed
logit (consistency), and every other class lies at least ``gap`` below it (the gap). With normalized logits
:math:`\theta` (log-probabilities), :math:`\theta_{\max} = \max_k \theta_k` and the one-hot sample :math:`D`:

.. math::
    m_1 = (\theta_{\max} - \theta) \odot D, \qquad
    m_2 = \max\big(0,\ \theta - \theta_{\max} + \text{gap}\big) \odot (1 - D),

    \tilde\theta = \theta + \bot(m_1 - m_2), \qquad
    \hat D = D + \operatorname{softmax}(\tilde\theta/\tau) - \bot\operatorname{softmax}(\tilde\theta/\tau).

:math:`m_1` lifts the sampled logit to the maximum, :math:`m_2` lowers any other logit closer than ``gap`` to
the maximum; both are constants for the backward pass (the paper's Algorithm 1). ``f`` is evaluated at
:math:`\hat D`, whose value is the exact sample :math:`D`, and the gradient is
:math:`J_{\operatorname{softmax}}(\tilde\theta/\tau)^\top \nabla_D f(D) / \tau`: no noise beyond the sample's.

A Bernoulli variable with logit :math:`\ell` is the two-class case (class logits :math:`(0, \ell)`, one-hot
:math:`(1 - b, b)`; ``one_hot_view``). Biased (a straight-through estimator); one evaluation of ``f`` per
sample and its gradient in ``z``, so ``f`` must be differentiable in ``z`` (an ``f`` that is not is refused
with a ValueError). Options: ``temperature`` :math:`\tau` and ``gap`` (both 1 by default; "GST-1.0" is gap 1).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, nonnegative, positive
from .one_hot_view import class_logits, from_one_hot, to_one_hot
from .registry import register
from .sampling import draw
from .straight_through import HARD_FAMILIES


def gapped_relaxation(hard: Tensor, logits: Tensor, temperature: float, gap: float) -> Tensor:
    r""":math:`\hat D`: the value of the one-hot ``hard`` ``[..., K]``, the gradient of the gapped softmax to
    ``logits`` (broadcast against ``hard``)."""
    theta = torch.log_softmax(logits, -1)
    with torch.no_grad():
        top = theta.max(-1, keepdim=True).values
        lift = (top - theta) * hard
        lower = torch.relu(theta - top + gap) * (1.0 - hard)
    soft = torch.softmax((theta + lift - lower) / temperature, -1)
    return hard + (soft - soft.detach())


def reaches(output: Tensor, target: Tensor) -> bool:
    """Whether ``output``'s autograd graph passes through ``target`` (a non-leaf): a walk over the graph's nodes,
    without a backward pass."""
    goal, stack, seen = target.grad_fn, [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        if node is goal:
            return True
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions)
    return False


def check_differentiable(fz: Tensor, z: Tensor, name: str) -> None:
    """Refuse an ``f`` whose output has no autograd path from a ``z`` that carries the gradient (also when the
    output requires grad through ``f``'s own parameters)."""
    if z.requires_grad and not reaches(fz, z):
        raise ValueError(
            f"estimator {name!r} backpropagates through f at the hard sample, so f must be differentiable in z; "
            f"f(z) has no autograd path from z (f detaches z or uses a non-differentiable operation)"
        )


@register
class GappedStraightThrough(Estimator):
    name = "gst"
    capabilities = Capabilities(role="relaxation", unbiased=False, families=HARD_FAMILIES, evaluations_per_sample=1,
                                differentiable_f=True, stackable=True)
    declared_options = {
        "temperature": Option(1.0, positive, "the temperature of the softmax at the moved logits"),
        "gap": Option(1.0, nonnegative, "how far below the sampled class's logit every other one is moved"),
    }

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        hard = to_one_hot(draw(dist, n_samples, generator, reparameterized=False), dist)
        z = from_one_hot(gapped_relaxation(hard, class_logits(dist), self.temperature, self.gap), dist)
        fz = evaluate(f, z, dist, n_samples)
        check_differentiable(fz, z, self.name)
        return EstimatorOutput(surrogate=reduce_samples(fz), value=fz.detach())
