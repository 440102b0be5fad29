r"""REINFORCE leave-one-out with trained control variates built from the gradients of ``f`` at the samples.

The machinery shared by ``double_cv`` (Titsias & Shi 2022) and ``rodeo`` (Shi et al. 2022); each module gives
its estimator's math. Both are the REINFORCE leave-one-out estimator (Kool et al. 2019) for ``S >= 2``
independent Bernoulli samples :math:`b_1, \dots, b_S` with logits :math:`\ell`, :math:`p = \sigma(\ell)`, plus
control variates whose coefficients (and, for RODEO, a small network) are trained; the inputs of those control
variates are the values :math:`f(b_j)` and the gradients :math:`\nabla_b f(b_j)` at the samples, which one
backward pass through ``f`` at its inputs gives: no evaluation of ``f`` beyond the samples, but ``f`` must be
differentiable in ``z`` (an ``f`` that is not is refused with a ValueError).

What the surrogate carries (as ``rebar``): :math:`\frac1S\sum_s f(b_s)` summed over the batch, so ``f``'s own
parameters receive its gradient at the samples, plus :math:`\langle \bot\hat g_\ell, \ell - \bot\ell\rangle`,
zero in value, so the logits (``dist.logits``, whatever the distribution was built from) receive the
estimator's :math:`\hat g_\ell`, which reaches everything upstream by the chain rule.

Training: in training mode (``est.train()``), every call where the logits require grad ends with one step of the
estimator's own Adam optimizer (``lr``) on its parameters down the gradient of :math:`\lVert\hat g_\ell\rVert^2`
(summed over the batch), after the returned estimate was formed: since the estimate is unbiased whatever
the parameters are, that minimizes its variance (the authors train the same loss with Adam, learning rate
1e-3). In eval mode, or under ``torch.no_grad()`` (then only :math:`f(b)` is evaluated), nothing changes. The
parameters are float64 and live on the device of the first call's logits; the optimizer's state is part of
``state_dict()`` (``get_extra_state``, loadable with ``weights_only=True``), so a resumed run continues bit for
bit.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli

from . import families
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, positive
from .optimizers import Optimizer
from .trained_state import OwnOptimizer
from .sampling import draw

#: Float64 control-variate parameters: their values enter every estimate.
DTYPE = torch.float64


def not_differentiable(name: str) -> ValueError:
    return ValueError(
        f"estimator {name!r} needs f differentiable in z (its control variates use the gradient of f at the "
        f"samples), but f's output does not depend differentiably on its input; use an estimator that only "
        f"evaluates f (reinforce, arm, disarm, indecater)"
    )


class LearnedLeaveOneOut(OwnOptimizer, Estimator):
    """Sampling, the gradients of ``f`` at the samples, the surrogate and the training step; subclasses give
    ``_per_sample``, the per-sample terms whose mean over the samples is the estimate of d E[f] / d logits."""

    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), min_samples=2,
                                differentiable_f=True)
    declared_options = {
        "lr": Option(1e-3, positive, "learning rate of the Adam optimizer that trains its control variate "
                                     "(in train mode, to minimize the variance)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._optimizer: Optimizer | None = None

    @property
    def adapts(self) -> bool:
        return True  # its parameters train in every train-mode call

    def _per_sample(self, fb: Tensor, grad: Tensor, b: Tensor, p: Tensor) -> Tensor:
        r"""``[S, *batch, E]`` terms whose mean over dim 0 is :math:`\hat g_\ell`. ``fb`` ``[S, *batch]``: ``f`` at
        the samples; ``grad``, ``b`` ``[S, *batch, E]``: its gradient there and the samples, events flattened;
        ``p`` ``[*batch, E]``: the probabilities. All detached; the estimator's parameters are in the graph."""
        raise NotImplementedError

    def _prepare(self, like: Tensor, generator) -> None:
        """Put the parameters on ``like``'s device (the optimizer's state follows); subclasses add their own."""
        if self._own_parameters()[0].device == like.device:
            return
        state = None if self._optimizer is None else self._optimizer.state_dict()
        self.to(like.device)
        self._optimizer = None
        if state is not None:
            self._ensure_optimizer().load_state_dict(state)

    # --- the estimate -------------------------------------------------------------------------------
    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        logits = families.unwrap(dist)[0].logits
        b = draw(dist, n_samples, generator, reparameterized=False)
        if not torch.is_grad_enabled():  # a value only
            fb = evaluate(f, b, dist, n_samples)
            return EstimatorOutput(surrogate=reduce_samples(fb), value=fb.detach())
        z = b.clone().requires_grad_(True)
        fz = evaluate(f, z, dist, n_samples)
        grad = (torch.autograd.grad(fz.sum(), z, retain_graph=True, allow_unused=True)[0]
                if fz.requires_grad else None)
        if grad is None:
            raise not_differentiable(self.name)
        surrogate = reduce_samples(fz)
        if not logits.requires_grad:
            return EstimatorOutput(surrogate=surrogate, value=fz.detach())
        self._prepare(logits, generator)
        batch, event = tuple(dist.batch_shape), tuple(dist.event_shape)
        flat = (n_samples, *batch, -1)
        p = torch.sigmoid(logits.detach()).expand(*batch, *event).reshape(*batch, -1)
        train = self.training
        with torch.set_grad_enabled(train):
            estimate = self._per_sample(fz.detach().to(DTYPE), grad.detach().reshape(flat).to(DTYPE),
                                        b.reshape(flat).to(DTYPE), p.to(DTYPE)).mean(0)   # [*batch, E]
        g = estimate.detach().to(logits.dtype).reshape(*batch, *event)
        surrogate = surrogate + (g * (logits - logits.detach())).sum()
        if train:
            self._train_step(estimate)
        return EstimatorOutput(surrogate=surrogate, value=fz.detach())

    def _train_step(self, estimate: Tensor) -> None:
        """One Adam step on the estimator's parameters down the gradient of the estimate's squared norm."""
        params = self._own_parameters()
        grads = torch.autograd.grad(estimate.pow(2).sum(), params, allow_unused=True)
        opt = self._ensure_optimizer()
        opt.zero_grad(set_to_none=True)
        for param, grad in zip(params, grads):
            param.grad = torch.zeros_like(param) if grad is None else grad.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
