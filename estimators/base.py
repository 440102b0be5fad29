r"""The estimator contract.

An estimator turns an objective :math:`\sum_b \mathbb{E}_{z \sim q_{\phi,b}}[f_\phi(z)]` into a scalar
*surrogate* whose autograd gradient is a Monte Carlo estimate of the objective's gradient with respect to
everything ``q`` and ``f`` depend on (the total derivative, including ``f``'s direct dependence on
:math:`\phi`). The surrogate's value is the Monte Carlo estimate of the objective itself (for relaxations,
evaluated at the relaxed samples).

Shapes (checked at the edges):

- samples ``z``: ``[n_samples, *batch_shape, *event_shape]``;
- ``f(z)`` and ``out.value``: ``[n_samples, *batch_shape]``;
- ``out.surrogate``: ``[]``, the mean over samples summed over the batch.

An integrand that contains :math:`-\log q(z)` of the very distribution sampled (a Monte Carlo ELBO, the
log-weight of an importance-weighted bound) can say that term apart: ``LogQSplit(rest, q)``. Every estimator
calls it as ``f(z)``; those that declare ``Capabilities.needs_log_q`` (``stl``, ``dreg``) also call
``f.stop_log_q(z)``, the same values with log q's parameters detached, and refuse a plain ``f``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from . import families, registry, sampling
from .capabilities import OBJECTIVES, Capabilities
from .options import Option, Rule, check_declaration, resolve

Objective = Callable[[Tensor], Tensor]


class LogQSplit:
    r"""An integrand with its log q term apart: :math:`f(z) = r(z) - \log q_\phi(z)`.

    ``rest`` (:math:`r`) is everything else, with its own dependence on the parameters (for a VAE,
    :math:`\log p_\theta(x, z)`: the decoder and the prior); ``q`` is the distribution the estimator samples;
    ``log_density(q, z)`` its log-density formula (default ``q.log_prob``; the VAE's extends it off the discrete
    support). ``f(z)`` is the integrand, so every estimator takes it as a plain ``f``. ``stop_log_q(z)`` has the
    same values with :math:`\log q`'s parameters detached: :math:`\phi` then reaches it only along the
    sampling path :math:`z = h_\phi(\epsilon)`, and the score term :math:`-\nabla_\phi \log q_\phi(z)` is
    left out (what ``stl`` and ``dreg`` need to tell apart).
    """

    def __init__(self, rest: Objective, q: Distribution,
                 log_density: Callable[[Distribution, Tensor], Tensor] | None = None):
        self.rest, self.q = rest, q
        self.log_density = log_density or (lambda dist, z: dist.log_prob(z))

    def __call__(self, z: Tensor) -> Tensor:
        return self.rest(z) - self.log_density(self.q, z)

    def stop_log_q(self, z: Tensor) -> Tensor:
        """``f(z)`` with the parameters of ``q`` detached in the log q term (``rest`` untouched)."""
        detached = families.rebuild(self.q, {k: v.detach() for k, v in families.parameters(self.q).items()})
        return self.rest(z) - self.log_density(detached, z)


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns.

    surrogate: scalar; differentiate it to get the gradient estimate.
    value: detached ``[n_samples, *batch_shape]``, ``f`` at the samples used (for ``exact``,
        ``[support_size, *batch_shape]``, ``f`` at every point of the support).
    baseline_loss: scalar to *minimize* to train a learned baseline passed to ``reinforce``
        (NVIL), else ``None``.
    """

    surrogate: Tensor
    value: Tensor
    baseline_loss: Tensor | None = None


class Estimator(nn.Module):
    """Base class: subclasses set ``name`` and ``capabilities``, declare their options (``declared_options``,
    ``option_rules``; see ``options``) and implement ``_estimate``.

    The constructor takes the declared options as keyword arguments, checks them (``options.resolve``: the one
    place where option values are checked) and stores each as an attribute of the same name (``describe`` and
    the provenance columns read them back). A subclass with state of its own (buffers, parameters) extends
    ``__init__(self, **options)``, calling ``super().__init__(**options)`` first.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]
    #: The options: name -> ``Option(default, constraint, doc)``, in the order ``describe`` lists them.
    declared_options: ClassVar[dict[str, Option]] = {}
    #: Checks that tie options together (``Rule(text, holds)``).
    option_rules: ClassVar[tuple[Rule, ...]] = ()
    #: Derived from ``capabilities`` (kept as class attributes for callers that only need these).
    unbiased: ClassVar[bool]
    families_doc: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        caps = cls.__dict__.get("capabilities")
        if caps is not None:
            cls.unbiased = caps.unbiased
            cls.families_doc = caps.describe()
        check_declaration(cls.name or cls.__name__, cls.declared_options, cls.option_rules)
        # help(cls) and inspect.signature(cls) show the options with their defaults.
        cls.__signature__ = inspect.Signature([
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option.default)
            for name, option in cls.declared_options.items()])

    def __init__(self, **options):
        super().__init__()
        for name, value in resolve(self.name or type(self).__name__, self.declared_options, self.option_rules,
                                   options).items():
            setattr(self, name, value)

    @property
    def min_samples(self) -> int:
        """Smallest ``n_samples`` the estimator accepts."""
        return self.capabilities.min_samples

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The declared options' names, in declaration order."""
        return tuple(cls.declared_options)

    def options(self) -> dict[str, object]:
        """The options this instance was built with (for provenance columns)."""
        return {name: getattr(self, name) for name in self.option_names()}

    def why_not(self, target: Distribution | type[Distribution], n_samples: int | None = None,
                objective: str | None = None) -> str | None:
        """Why this estimator does not apply to ``target`` with ``n_samples``, or ``None`` if it does.

        ``target`` is a distribution, or a family class when a study is planned before any tensor exists
        (then instance-level limits, such as ``exact``'s support size, are decided when the job runs).
        Every study and protocol asks this one function, with its ``objective`` (a key of
        ``capabilities.OBJECTIVES``): an estimator of another objective's gradient does not apply.
        """
        reason = None
        if objective is not None and self.capabilities.objective != objective:
            reason = (f"it estimates the gradient of another objective ({self.capabilities.objective}: "
                      f"{OBJECTIVES[self.capabilities.objective]}), not of this one ({objective})")
        reason = reason or self.capabilities.why_not(target)
        if reason is None and isinstance(target, Distribution):
            reason = self._why_not_instance(target)
        if reason is None and n_samples is not None and n_samples < self.min_samples:
            reason = f"n_samples={n_samples} is below its minimum {self.min_samples}"
        return reason

    def supports(self, dist: Distribution) -> bool:
        return self.why_not(dist) is None

    def _why_not_instance(self, dist: Distribution) -> str | None:
        """Limits that only an instance shows (override where there are any)."""
        return None

    def why_not_f(self, f: Objective, dist: Distribution) -> str | None:
        """Why ``f`` does not suit this estimator on ``dist`` (``Capabilities.needs_log_q``), or ``None``."""
        if not self.capabilities.needs_log_q:
            return None
        if not isinstance(f, LogQSplit):
            return (f"it needs f to say its log q term apart, as estimators.base.LogQSplit(rest, q) with "
                    f"f(z) = rest(z) - log q(z) and q the distribution sampled; got a plain {type(f).__name__}")
        if f.q is not dist:
            return "f's log q term (LogQSplit.q) must be the distribution it samples (the same object)"
        return None

    def forward(self, f: Objective, dist: Distribution, n_samples: int = 1,
                generator: torch.Generator | None = None, **kwargs) -> EstimatorOutput:
        self._check_call(f, dist, n_samples, generator)
        return self._estimate(f, dist, n_samples, generator, **kwargs)

    def _estimate(self, f: Objective, dist: Distribution, n_samples: int,
                  generator: torch.Generator | None) -> EstimatorOutput:  # pragma: no cover
        raise NotImplementedError

    def _check_call(self, f, dist, n_samples, generator) -> None:
        if not isinstance(dist, Distribution):
            raise TypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < self.min_samples:
            raise ValueError(
                f"estimator {self.describe()!r} needs an integer n_samples >= {self.min_samples}, got {n_samples!r}"
            )
        reason = self.why_not(dist)
        if reason is not None:
            others = registry.supporting(dist)
            raise ValueError(
                f"estimator {self.name!r} does not support {families.family_name(dist)}: {reason} "
                f"(it applies to: {self.families_doc}); estimators that do: "
                f"{', '.join(others) if others else 'none'}"
            )
        reason = self.why_not_f(f, dist)
        if reason is not None:
            raise ValueError(f"estimator {self.describe()!r} does not apply to this f: {reason}")
        if isinstance(generator, sampling.GeneratorStack):
            reason = self.why_not_stacked()
            if reason is not None:
                raise ValueError(reason)
        if generator is not None:
            sampling.check_generator(generator, families.device_of(dist))

    @property
    def stackable(self) -> bool:
        """Whether one call can serve stacked independent runs (``Capabilities.stackable``, and not ``adapts``:
        an adapting state would be shared by the runs)."""
        return self.capabilities.stackable and not self.adapts

    def why_not_stacked(self) -> str | None:
        """``None`` if this instance can be called with a ``sampling.GeneratorStack``, else the one-line reason."""
        if self.stackable:
            return None
        why = ("it adapts across calls (Estimator.adapts), a state the runs would share" if self.adapts else
               "its randomness does not go through sampling.draw/uniform/exponential")
        return (f"estimator {self.describe()!r} cannot be stacked: {why}; estimators that can: "
                f"{', '.join(stackable_estimators())} (without adapting options such as baseline='moving_average')")

    @property
    def adapts(self) -> bool:
        """Whether train-mode calls change what later calls estimate (a moving-average baseline, a trained
        control variate): a measurement must warm such an estimator up first, as training would have."""
        return False

    def f_evaluations(self, dist: Distribution, n_samples: int) -> float:
        """Evaluations of ``f`` per estimate (per batch element) on ``dist`` with ``n_samples``; NaN where the
        cost is not proportional to the samples."""
        count = self.capabilities.evaluations_per_estimate(n_samples, dist.event_shape.numel())
        return float("nan") if count is None else float(count)

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{self.name}({opts})" if opts else self.name

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())


def stackable_estimators() -> tuple[str, ...]:
    """Names of the estimators whose default configuration can serve stacked runs (``Estimator.stackable``)."""
    return tuple(name for name in registry.available() if registry.estimator_class(name)().stackable)


def coordinates_over(dist: Distribution, max_coordinates: int, cost: str) -> str | None:
    """Why events of ``dist`` are too large for an estimator whose ``cost`` (in words) grows with their
    coordinates, or ``None``."""
    size = dist.event_shape.numel()
    if size > max_coordinates:
        return f"its events have {size} coordinates, above max_coordinates={max_coordinates} ({cost})"
    return None


def evaluate(f: Objective, z: Tensor, dist: Distribution, n_samples: int) -> Tensor:
    """``f(z)``, checked to be ``[n_samples, *batch_shape]``."""
    return evaluate_rows(f, z, n_samples, dist.batch_shape)


def evaluate_rows(f: Objective, z: Tensor, n_rows: int, batch_shape) -> Tensor:
    """``f(z)`` for ``z`` with ``n_rows`` leading rows (samples, or perturbed points), checked to be
    ``[n_rows, *batch_shape]``."""
    value = f(z)
    expected = (n_rows, *batch_shape)
    if not isinstance(value, Tensor) or tuple(value.shape) != expected:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"f must map samples of shape {tuple(z.shape)} ([n_samples, *batch_shape, *event_shape]) "
            f"to shape {expected} ([n_samples, *batch_shape]); got {got}"
        )
    return value


def reduce_samples(per_sample: Tensor) -> Tensor:
    """Mean over the sample dimension, sum over the batch: the scalar surrogate."""
    return per_sample.mean(0).sum()
