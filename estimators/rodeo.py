r"""RODEO: REINFORCE leave-one-out with discrete Stein operator control variates (Shi et al. 2022).

Shi, Zhou, Hwang, Titsias & Mackey 2022, "Gradient Estimation with Discrete Stein Operators", NeurIPS 2022.

Stein operator. For a Markov chain with transition kernel :math:`K(x, y)` that leaves :math:`q` invariant, the
generator :math:`(\mathcal{A}h)(x) = \sum_y K(x, y)\,(h(y) - h(x))` has :math:`\mathbb{E}_q[(\mathcal{A}h)(x)] = 0`
for every function :math:`h`: a family of mean-zero control variates that costs no evaluation of ``f``. Here
the chain is the random-scan Gibbs sampler of :math:`q(b) = \prod_i p_i^{b_i}(1 - p_i)^{1 - b_i}`: pick a
coordinate uniformly and resample it, so its moves are to the :math:`D` neighbours :math:`y^{(i)}` of
:math:`b` (coordinate :math:`i` flipped) with :math:`K(b, y^{(i)}) = w_i / D`,
:math:`w_i = q_i(1 - b_i) = p_i (1 - b_i) + (1 - p_i)\, b_i`:

.. math::
    (\mathcal{A}h)(b) = \frac1D \sum_{i=1}^{D} w_i\,\big(h(y^{(i)}) - h(b)\big).

Estimator (the authors' RODEO, Gibbs kernel, "output averaging"). For :math:`S \ge 2` samples
:math:`b_1, \dots, b_S` with scores :math:`s(y) = y - p` (:math:`\nabla_\ell \log q`, logits :math:`\ell`),
values :math:`f_j = f(b_j)` and gradients :math:`g_j = \nabla_b f(b_j)`, sample :math:`k`'s control-variate
functions use only the *other* samples (so their Stein terms stay mean-zero given them):

.. math::
    H_k(y) = \frac1{S-1}\sum_{j \ne k} r_\phi\big(g_j^\top (y - b_j),\ f_j\big) \in \mathbb{R}^2,

with :math:`r_\phi` a small network (two inputs: the first-order Taylor term of ``f`` around :math:`b_j` and
:math:`f_j`; one LeakyReLU(0.3) hidden layer of ``hidden`` units; two outputs :math:`H^0, H^1`). Then

.. math::
    F_j = f_j + \alpha\,(\mathcal{A}H^0_j)(b_j), \qquad
    \hat g_\ell = \frac1S \sum_k \Big[\Big(f_k - \frac1{S-1}\sum_{j \ne k} F_j\Big)\, s(b_k)
        + \beta\,\big(\mathcal{A}\,[H^1_k\, s]\big)(b_k)\Big].

The first Stein term is a control variate of REINFORCE leave-one-out's baseline (as in ``double_cv``: given
the other samples it is mean-zero and independent of :math:`b_k`); the second one, applied to the
vector-valued :math:`y \mapsto H^1_k(y)\,s(y)`, a control variate of the score-function term itself. Unbiased
for every :math:`\alpha, \beta, \phi`. :math:`\alpha, \beta` start at 0 (the estimator starts as REINFORCE
leave-one-out, as in the authors' code) and, with the network, are trained in training mode to minimize the
variance (``learned_loo``: Adam, ``lr``, 1e-3 as the authors', on :math:`\lVert\hat g_\ell\rVert^2`). With two
samples this is the authors' ``discrete_stein_avg`` too (the average of inputs and of outputs coincide).

The network's weights are drawn at the first call from the ``generator`` passed to it (Glorot-uniform weights,
zero biases, as the authors' Keras layers; a fixed-seed generator where none is passed; never torch's global
generator); whether that happened is the ``initialized`` buffer, part of ``state_dict()`` with the weights.
Cost: one evaluation of ``f`` per sample, one backward pass through it for :math:`g`, and the network at
:math:`S(S-1)(D+1)` points per data point. Applies to Bernoulli (under ``Independent`` too); unbiased;
``n_samples >= 2``; ``f`` must be differentiable in ``z``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli

from .capabilities import Capabilities
from .learned_loo import DTYPE, LearnedLeaveOneOut
from .options import Option, positive_integer
from .registry import register
from .reinforce import leave_one_out_mean

#: Seed of the network's initialization when the first call passes no generator.
DEFAULT_INIT_SEED = 0


def stein_gibbs(w: Tensor, at_neighbours: Tensor, at_sample: Tensor) -> Tensor:
    r""":math:`(\mathcal{A}h)(b)` for the random-scan Gibbs chain: ``w`` ``[..., D]`` flip probabilities,
    ``at_neighbours`` ``[..., D]`` :math:`h(y^{(i)})`, ``at_sample`` ``[...]`` :math:`h(b)`."""
    return (w * (at_neighbours - at_sample.unsqueeze(-1))).mean(-1)


@register
class Rodeo(LearnedLeaveOneOut):
    name = "rodeo"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=(Bernoulli,), min_samples=2,
                                differentiable_f=True)
    declared_options = {
        **LearnedLeaveOneOut.declared_options,
        "hidden": Option(100, positive_integer, "hidden units of the Stein control variates' network"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.alpha = nn.Parameter(torch.zeros((), dtype=DTYPE))
        self.beta = nn.Parameter(torch.zeros((), dtype=DTYPE))
        # nn.Linear initializes from torch's global generator: inside fork_rng, which leaves its state as it was
        # (nn.utils.skip_init does too, but through the meta device, which costs every process that imports
        # the estimators 0.3 s of sympy imports); the first call fills the values from its own generator.
        with torch.random.fork_rng(devices=[]):
            self.net = nn.Sequential(nn.Linear(2, self.hidden, dtype=DTYPE), nn.LeakyReLU(0.3),
                                     nn.Linear(self.hidden, 2, dtype=DTYPE))
        with torch.no_grad():
            for param in self.net.parameters():
                param.zero_()
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _prepare(self, like: Tensor, generator) -> None:
        super()._prepare(like, generator)
        if bool(self.initialized):
            return
        if generator is None:
            generator = torch.Generator(device=like.device).manual_seed(DEFAULT_INIT_SEED)
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                u = torch.rand(layer.weight.shape, generator=generator, dtype=DTYPE, device=generator.device)
                layer.weight.copy_(((2 * u - 1) * bound).to(layer.weight.device))
                layer.bias.zero_()
            self.initialized.fill_(True)

    def _functions(self, fb: Tensor, grad: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`H_k` at each sample ``[S, *batch, 2]`` and at its neighbours ``[S, *batch, D, 2]``, averaged over
        the other samples :math:`j = k + r \bmod S`, ``r = 1..S-1``."""
        n = fb.shape[0]
        flip = 1.0 - 2.0 * b                                           # y^(i)_i - b_i
        total = 0.0
        for r in range(1, n):
            g_j, f_j, b_j = grad.roll(-r, 0), fb.roll(-r, 0), b.roll(-r, 0)
            at_sample = (g_j * (b - b_j)).sum(-1, keepdim=True)       # g_j^T (b_k - b_j)
            taylor = torch.cat([at_sample, at_sample + g_j * flip], -1)  # [S, *batch, 1 + D]
            inputs = torch.stack([taylor, f_j.unsqueeze(-1).expand_as(taylor)], -1)
            total = total + self.net(inputs)
        out = total / (n - 1)
        return out[..., 0, :], out[..., 1:, :]

    @staticmethod
    def _flip_probabilities(p: Tensor, b: Tensor) -> Tensor:
        """The Gibbs chain's rates :math:`w_i = q_i(1 - b_i)` (tests replace them to show they matter)."""
        return p * (1.0 - b) + (1.0 - p) * b

    def _per_sample(self, fb: Tensor, grad: Tensor, b: Tensor, p: Tensor) -> Tensor:
        score = b - p
        w = self._flip_probabilities(p, b)
        at_sample, at_neighbours = self._functions(fb, grad, b)
        baseline_cv = stein_gibbs(w, at_neighbours[..., 0], at_sample[..., 0])                   # [S, *batch]
        h1, h1_b = at_neighbours[..., 1], at_sample[..., 1:]
        # A[H^1 s](b) with s(y^(i)) = s(b) + e_i (1 - 2 b_i), coordinate by coordinate.
        score_cv = (score * (w * h1).sum(-1, keepdim=True) + w * h1 * (1.0 - 2.0 * b)
                    - h1_b * score * w.sum(-1, keepdim=True)) / b.shape[-1]
        values = fb + self.alpha * baseline_cv
        return (fb - leave_one_out_mean(values)).unsqueeze(-1) * score + self.beta * score_cv
