r"""RELAX: REBAR's estimator with a learned control variate (Grathwohl et al. 2018).

Grathwohl, Choi, Wu, Roeder & Duvenaud 2018, "Backpropagation through the Void: Optimizing control
variates for black-box gradient estimation". The estimate of the gradient with respect to the
distribution's parameters :math:`\theta` is

.. math::
    \hat g_\theta = \big[f(b) - c_\phi(\tilde z)\big]\,\nabla_\theta \log p_\theta(b)
        + \nabla_\theta c_\phi\big(z(\theta, u)\big) - \nabla_\theta c_\phi\big(\tilde z(\theta, v, b)\big),
    \qquad b = H(z),\ \tilde z \sim p(z \mid b),

with the control variate of the paper's discrete experiments,
:math:`c_\phi(z) = \eta\, f(\sigma_\lambda(z)) + r_\rho(\sigma_1(z))`: REBAR's relaxed ``f`` plus a
free-form network :math:`r_\rho` (an MLP, one ``tanh`` hidden layer of ``hidden`` units, from the
flattened event of :math:`\sigma_1(z)`, the relaxation at temperature 1, to a scalar per batch element).
:math:`z`, :math:`\tilde z` (with its :math:`d\tilde z/d\theta` path), the relaxation
:math:`\sigma_\lambda` and everything about what the surrogate carries are as in ``rebar`` (see that
module): ``f``'s other parameters receive exactly ``f``'s gradient at the discrete samples, and the
control variate only shapes :math:`\hat g_\theta`.

:math:`\phi = (\eta, \log\lambda, \rho)` is trained to minimize the variance of :math:`\hat g_\theta` by
the single-sample gradient of :math:`\lVert\hat g_\theta\rVert^2` (``create_graph=True``; RELAX
Algorithm 1), one step of the estimator's own Adam optimizer (``lr``) at the end of every call in
training mode where :math:`\theta` requires grad; never in eval mode.

The network is built at the first call, for the event size it meets, on the parameters' device and dtype,
its hidden layer initialized from the ``generator`` passed to that call (uniform in
:math:`\pm 1/\sqrt{\text{fan-in}}`, a fixed-seed generator where none is passed; never torch's global
generator) and its output layer at zero, so an untrained RELAX is REBAR. The optimizer's state and the
network's shape are in ``state_dict()`` (``get_extra_state``, loadable with ``weights_only=True``): loading
into a fresh estimator rebuilds the network before its weights are loaded, so a resumed run continues
bit for bit, also from a state saved before the first call. A later call with another event size is
refused.

``f`` must be differentiable in ``z`` (refused with a ValueError otherwise). Cost: three evaluations of
``f`` per sample and the network's. Applies to Bernoulli and OneHotCategorical; unbiased.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .capabilities import Capabilities
from .options import Option, positive_integer
from .rebar import RELAXABLE, _TrainedControlVariate, relax_fn
from .registry import register

#: Seed of the network's initialization when a call passes no generator.
DEFAULT_INIT_SEED = 0


@register
class Relax(_TrainedControlVariate):
    name = "relax"
    capabilities = Capabilities(role="control_variate", unbiased=True, families=RELAXABLE, evaluations_per_sample=3,
                                differentiable_f=True)
    declared_options = {
        **_TrainedControlVariate.declared_options,
        "hidden": Option(32, positive_integer, "hidden units of the control variate's network"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self.register_module("net", None)
        self._event_shape: tuple[int, ...] | None = None

    # --- the lazy network ---------------------------------------------------------------------------
    def _build_net(self, in_features: int, dtype: torch.dtype, device: torch.device) -> None:
        # skip_init: nn.Linear would initialize from torch's global generator; the caller fills the values.
        kw = {"device": device, "dtype": dtype}
        self.net = nn.Sequential(nn.utils.skip_init(nn.Linear, in_features, self.hidden, **kw), nn.Tanh(),
                                 nn.utils.skip_init(nn.Linear, self.hidden, 1, **kw))
        self._optimizer = None  # its parameters changed

    def _prepare(self, sample_like: Tensor, dist: Distribution, generator) -> None:
        event = tuple(sample_like.shape[1 + len(dist.batch_shape):])
        if self.net is None:
            in_features = math.prod(event)
            self._build_net(in_features, sample_like.dtype, sample_like.device)
            self._event_shape = event
            if generator is None:
                generator = torch.Generator(device=sample_like.device).manual_seed(DEFAULT_INIT_SEED)
            with torch.no_grad():
                first = self.net[0]
                bound = 1.0 / math.sqrt(in_features)
                for p in (first.weight, first.bias):
                    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=generator.device)
                    p.copy_(((2 * u - 1) * bound).to(p.device))
                self.net[2].weight.zero_()
                self.net[2].bias.zero_()
        elif event != self._event_shape:
            raise ValueError(f"estimator 'relax' built its network for events of shape {self._event_shape}; "
                             f"got {event} (use one estimator per latent shape)")

    def _extra_cv(self, z: Tensor, bernoulli: bool, dist: Distribution) -> Tensor:
        # Its own relaxation of z (temperature 1), not the tensor f is evaluated at: the check that f depends
        # on its input differentiates through that tensor alone.
        features = relax_fn(z, 1.0, bernoulli)
        lead = z.shape[: 1 + len(dist.batch_shape)]
        flat = features.reshape(*lead, -1).to(self.net[0].weight.dtype)
        return self.net(flat).squeeze(-1).to(z.dtype)

    # --- state --------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        state = super().get_extra_state()
        state["event_shape"] = None if self._event_shape is None else list(self._event_shape)
        state["net_dtype"] = None if self.net is None else str(self.net[0].weight.dtype).removeprefix("torch.")
        return state

    def set_extra_state(self, state: dict) -> None:
        event = state.get("event_shape")
        if event is None:
            self.net, self._event_shape = None, None
        else:
            event = tuple(int(e) for e in event)
            if self.net is None or event != self._event_shape:
                self._build_net(math.prod(event), getattr(torch, state["net_dtype"]), self.cv_scale.device)
            self._event_shape = event
        super().set_extra_state(state)
