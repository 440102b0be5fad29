r"""Score-function (REINFORCE, likelihood-ratio) estimator with baselines.

.. math::
    \nabla_\phi \mathbb{E}_{q_\phi(z)}[f_\phi(z)]
      = \mathbb{E}_{q_\phi}\big[\nabla_\phi f_\phi(z)\big]
      + \mathbb{E}_{q_\phi}\big[(f_\phi(z) - b)\,\nabla_\phi \log q_\phi(z)\big]

for any baseline :math:`b` independent of :math:`z` (since
:math:`\mathbb{E}_q[\nabla_\phi \log q_\phi] = 0`) (Williams 1992; Glynn 1990; Mohamed et al. 2020, §4).
The surrogate is

.. math::
    \frac1S \sum_s \Big[ f_\phi(z_s) + \big(\bot f_\phi(z_s) - b_s\big)
        \big(\log q_\phi(z_s) - \bot\log q_\phi(z_s)\big) \Big],

with :math:`\bot` the stop-gradient and the samples :math:`z_s` detached: the second term is zero in value,
so the surrogate's value is the Monte Carlo estimate of the objective, and its gradient is the score term
("magic box", Foerster et al. 2018).

Baselines (``baseline=``):

- ``none``: :math:`b = 0`.
- ``moving_average``: :math:`b` is an exponential moving average (``decay``) of the mean learning signal
  over earlier calls. It updates at the end of every call in training mode (``est.train()``), never in
  eval mode, and the current call uses the value from before it, so the estimator stays unbiased.
- ``leave_one_out``: :math:`b_s = \frac{1}{S-1}\sum_{j \ne s} f(z_j)` per batch element
  (Kool, van Hoof & Welling 2019, "Buy 4 REINFORCE samples, get a baseline for free!"); needs ``S >= 2``.
- ``weighted_leave_one_out``: the other samples' values weighted by their squared score norms, a
  leave-one-out *estimate* of the variance-minimizing constant baseline for the gradient with respect to
  the distribution's own parameters :math:`\theta_b` (one parameter group per batch element),
  :math:`b^* = \mathbb{E}[f \lVert\nabla_\theta \log q\rVert^2] / \mathbb{E}[\lVert\nabla_\theta \log q\rVert^2]`
  (Weaver & Tao 2001; Greensmith et al. 2004), estimated leave-one-out from the other samples so that
  :math:`b_s` is independent of :math:`z_s` and the estimator stays unbiased; needs ``S >= 2``.
  We take the distribution's parameters (e.g. an encoder's outputs) rather than upstream network weights
  as the group because per-sample scores with respect to them cost one extra ``log_prob`` and backward,
  while per-sample gradients of every weight would cost a backward per sample; by the chain rule the
  weights' gradient is a fixed linear map of this one. It was called ``optimal``; it is not: with few
  samples the noise of the estimated coefficient can cost more than it saves (measured against
  ``leave_one_out`` in results/README.md).

A learned, input-dependent baseline (NVIL; Mnih & Gregor 2014) is passed per call as
``learned_baseline=`` (a tensor broadcastable to ``[n_samples, *batch_shape]``, e.g. a network's output for
each data point). The learning signal becomes :math:`f - b_\psi(x)`, to which the configured baseline
is applied on top (NVIL pairs its input-dependent baseline with a moving average), and
``out.baseline_loss`` :math:`= \sum_b \frac1S \sum_s (\bot f(z_s) - b_\psi(x))^2` is the loss to minimize
to train :math:`\psi`.

Applies to every distribution that can be sampled and has ``log_prob``, except those whose support
depends on the parameters (Uniform), where the score identity misses boundary terms; unbiased.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Normal, OneHotCategorical, Uniform

from . import families
from .base import Estimator, EstimatorOutput, evaluate, reduce_samples
from .capabilities import Capabilities
from .options import Option, interval, one_of
from .registry import register
from .sampling import draw

BASELINES = ("none", "moving_average", "leave_one_out", "weighted_leave_one_out")
#: Baselines computed from the other samples of the same call need at least two.
MIN_SAMPLES = {"leave_one_out": 2, "weighted_leave_one_out": 2}


def leave_one_out_mean(values: Tensor) -> Tensor:
    """Per-sample mean of the other samples along dim 0: ``[S, ...] -> [S, ...]``."""
    n = values.shape[0]
    return (values.sum(0, keepdim=True) - values) / (n - 1)


def score_sq_norms(dist: Distribution, z: Tensor) -> Tensor:
    r"""Per-sample :math:`\lVert\nabla_\theta \log q_\theta(z_s)\rVert^2`, ``[S, *batch_shape]``.

    :math:`\theta` are the tensors ``dist`` was built from (e.g. ``loc`` and ``scale``). Where a closed form is
    known (``closed_form_score_sq_norms``) it is used; otherwise each parameter is replicated along a new
    sample dimension so one backward pass yields every sample's score (``autograd_score_sq_norms``).
    """
    closed = closed_form_score_sq_norms(dist, z)
    return closed if closed is not None else autograd_score_sq_norms(dist, z)


def closed_form_score_sq_norms(dist: Distribution, z: Tensor) -> Tensor | None:
    r"""``score_sq_norms`` without autograd, or ``None`` where no closed form applies here.

    With every parameter of the full elementwise shape (no broadcasting, so each score entry belongs to one
    coordinate), per coordinate, :math:`\epsilon = (z - \mu)/\sigma`:

    - ``Normal(loc, scale)``: :math:`\partial_\mu \log q = \epsilon/\sigma`,
      :math:`\partial_\sigma \log q = (\epsilon^2 - 1)/\sigma`, so the squares sum to
      :math:`(\epsilon^2 + (\epsilon^2 - 1)^2)/\sigma^2`;
    - ``Bernoulli(logits=l)``: :math:`\partial_l \log q = z - \sigma(l)`;
    - ``OneHotCategorical(logits=l)``: :math:`\partial_{l_k} \log q = z_k - \mathrm{softmax}(l)_k`;

    summed over the coordinates of an event (the dims after ``dist.batch_shape``). About one extra pass over
    ``z`` instead of a ``log_prob`` and a backward on replicated parameters (benchmarks/bench_vae_step.py).
    """
    base, _ = families.unwrap(dist)
    params = families.parameters(dist)
    full = base.batch_shape + base.event_shape
    if any(value.shape != full for value in params.values()):
        return None
    z = z.detach()
    if type(base) is Normal and set(params) == {"loc", "scale"}:
        loc, scale = base.loc.detach(), base.scale.detach()
        eps2 = ((z - loc) / scale).pow(2)
        per_coordinate = (eps2 + (eps2 - 1).pow(2)) / scale.pow(2)
    elif type(base) in (Bernoulli, OneHotCategorical) and set(params) == {"logits"}:
        # probs is sigmoid / softmax of the logits, the same numbers; the sampler has usually made it already.
        per_coordinate = (z - base.probs.detach()).pow(2)
    else:
        return None
    return per_coordinate.reshape(*per_coordinate.shape[: 1 + len(dist.batch_shape)], -1).sum(-1)


def autograd_score_sq_norms(dist: Distribution, z: Tensor) -> Tensor:
    """``score_sq_norms`` for any distribution ``families.rebuild`` can rebuild, by one backward pass over its
    parameters replicated along a new sample dimension."""
    n = z.shape[0]
    batch = tuple(dist.batch_shape)
    leaves = {}
    for name, value in families.parameters(dist).items():
        if tuple(value.shape[: len(batch)]) != batch:
            raise ValueError(
                f"baseline='weighted_leave_one_out' needs parameters with the full batch shape {batch}; "
                f"{name} has shape {tuple(value.shape)}"
            )
        leaves[name] = value.detach().unsqueeze(0).expand(n, *value.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        log_q = families.rebuild(dist, leaves).log_prob(z.detach())
        grads = torch.autograd.grad(log_q.sum(), list(leaves.values()), allow_unused=True)
    total = torch.zeros((n, *batch), dtype=z.dtype if z.is_floating_point() else log_q.dtype, device=log_q.device)
    for grad in grads:
        if grad is not None:
            total = total + grad.reshape(n, *batch, -1).pow(2).sum(-1)
    return total


@register
class Reinforce(Estimator):
    name = "reinforce"
    # The score identity needs a support that does not move with the parameters: for U(a, b) the gradient
    # has boundary terms (f(b) and f(a)) that no score-function estimate contains, so it would be biased.
    # stackable unless baseline="moving_average" (Estimator.adapts).
    capabilities = Capabilities(role="score_function", unbiased=True, requires=("sample",), excludes=(Uniform,),
                                exclude_reason="its support depends on its parameters", stackable=True)
    declared_options = {
        "baseline": Option("none", one_of(*BASELINES),
                           "what is subtracted from f(z) (leave-one-out: `n_samples` >= 2); per call, "
                           "`learned_baseline=` subtracts an input-dependent one too (NVIL)"),
        "decay": Option(0.99, interval(0, 1, upper_open=True), "the moving average's decay"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    def options(self) -> dict[str, object]:
        opts = {"baseline": self.baseline}
        if self.baseline == "moving_average":
            opts["decay"] = self.decay
        return opts

    @property
    def adapts(self) -> bool:
        return self.baseline == "moving_average"

    @property
    def min_samples(self) -> int:
        return MIN_SAMPLES.get(self.baseline, self.capabilities.min_samples)

    def _estimate(self, f, dist, n_samples, generator, learned_baseline: Tensor | None = None) -> EstimatorOutput:
        z = draw(dist, n_samples, generator, reparameterized=False)  # no path gradient: score term only
        fz = evaluate(f, z, dist, n_samples)
        log_q = dist.log_prob(z)
        signal = fz.detach()
        baseline_loss = None
        if learned_baseline is not None:
            learned = self._check_learned(learned_baseline, signal.shape)
            baseline_loss = reduce_samples((signal - learned).pow(2))  # trains psi only: signal is detached
            signal = signal - learned.detach()
        b = self._baseline(signal, dist, z)
        # (f - b) * (log q - stop(log q)): zero in value, (f - b) grad log q in gradient.
        score_term = (signal - b) * (log_q - log_q.detach())
        surrogate = reduce_samples(fz + score_term)
        if self.baseline == "moving_average" and self.training:
            self._update_running_mean(signal)
        return EstimatorOutput(surrogate=surrogate, value=fz.detach(), baseline_loss=baseline_loss)

    def _baseline(self, signal: Tensor, dist: Distribution, z: Tensor) -> Tensor | float:
        if self.baseline == "none":
            return 0.0
        if self.baseline == "moving_average":
            return self.running_mean.to(signal) if int(self.n_updates) > 0 else 0.0
        if self.baseline == "leave_one_out":
            return leave_one_out_mean(signal)
        weights = score_sq_norms(dist, z).to(signal)
        num = (signal * weights).sum(0, keepdim=True) - signal * weights
        den = (weights.sum(0, keepdim=True) - weights)
        # Where the other samples carry no score at all the ratio is undefined; their plain mean is
        # still independent of z_s, so unbiasedness is kept.
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), leave_one_out_mean(signal))

    @torch.no_grad()
    def _update_running_mean(self, signal: Tensor) -> None:
        batch_mean = signal.mean()
        if int(self.n_updates) == 0:
            self.running_mean.copy_(batch_mean)
        else:
            self.running_mean.mul_(self.decay).add_((1.0 - self.decay) * batch_mean.to(self.running_mean))
        self.n_updates += 1

    @staticmethod
    def _check_learned(learned: Tensor, shape: torch.Size) -> Tensor:
        if not isinstance(learned, Tensor):
            raise TypeError(f"learned_baseline must be a tensor, got {type(learned).__name__}")
        try:
            if torch.broadcast_shapes(learned.shape, shape) != shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"learned_baseline of shape {tuple(learned.shape)} does not broadcast to "
                f"[n_samples, *batch_shape] = {tuple(shape)}"
            ) from None
        return learned
