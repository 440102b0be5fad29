r"""The K-sample importance-weighted bound as an expectation, so that every estimator can estimate its gradient.

Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"; Mnih & Rezende 2016 (VIMCO). With
``f`` the per-sample log-weight (for a VAE, :math:`f(z) = \log p(x, z) - \log q(z \mid x)`) the bound is

.. math::
    \mathcal L_K = \mathbb{E}_{z_{1:K} \sim q^K}\Big[\hat L(z_{1:K})\Big], \qquad
    \hat L(z_{1:K}) = \log \frac1K \sum_{k=1}^K e^{f(z_k)},

an expectation over *K-tuples* of independent draws. ``k_tuples(q, K)`` is that product distribution,
:math:`q^K`: the same family with the K draws as a new event dimension (``batch_shape`` unchanged,
``event_shape = [K, *q.event_shape]``), so a K-tuple is one sample of it, its log-density is
:math:`\sum_k \log q(z_k)` and, where q has one, it has a reparameterized sampler. ``k_sample_bound(f, K)`` is
:math:`\hat L` as an integrand of K-tuples. An estimator of the gradient of an expectation
(``capabilities.objective == "expectation"``: REINFORCE with a leave-one-out baseline over tuples, the pathwise
estimator, which is then the IWAE gradient of Burda et al.) is unbiased for :math:`\nabla \mathcal L_K` on
``(k_sample_bound(f, K), k_tuples(q, K))`` with ``n_samples`` tuples, :math:`nK` evaluations of ``f``. An
estimator of the bound itself (``objective == "iwae"``: ``vimco``, ``dreg``; ``BoundEstimator``) takes the
per-sample ``f`` with ``(q, K)``, one K-tuple, or with ``(k_tuples(q, K), n)``, ``n`` independent K-tuples (the mean
of ``n`` one-tuple estimates, :math:`nK` evaluations). So on either kind ``n_samples`` counts K-tuples, and a study
compares both kinds on the same objective at the same number of tuples and evaluations of ``f``. ``estimate``,
``why_not`` and ``f_evaluations`` choose between the two forms.

Shapes: ``f`` maps ``[n, *batch, *event] -> [n, *batch]``; samples of ``k_tuples(q, K)`` are
``[n, *batch, K, *event]``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

from .base import Estimator, EstimatorOutput
from .sampling import draw

#: The families ``k_tuples`` can widen (under any ``Independent``): each by its one parameter tensor.
_PARAMETERS = {Normal: ("loc", "scale"), Bernoulli: ("logits",), OneHotCategorical: ("logits",)}


class KTuples(Independent):
    """:math:`q^K` (``k_tuples``), an ``Independent`` that keeps its ``k`` and the per-sample ``q`` it widens, so
    that an estimator of the bound itself (``BoundEstimator``) called on it knows the tuples' size."""

    def __init__(self, base_distribution, reinterpreted_batch_ndims: int, k: int, per_sample: Distribution,
                 validate_args=None):
        super().__init__(base_distribution, reinterpreted_batch_ndims, validate_args=validate_args)
        self.k, self.per_sample = k, per_sample


def k_tuples(q: Distribution, k: int) -> KTuples:
    """:math:`q^K`: ``batch_shape`` of ``q``, ``event_shape`` ``[k, *q.event_shape]``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    reinterpreted, base = 0, q
    while isinstance(base, Independent):
        reinterpreted += base.reinterpreted_batch_ndims
        base = base.base_dist
    names = _PARAMETERS.get(type(base))
    if names is None:
        raise ValueError(f"k_tuples widens {', '.join(c.__name__ for c in _PARAMETERS)} (under Independent), "
                         f"not {type(base).__name__}")
    # The base's batch is q's batch then its reinterpreted dims; the K draws go between the two.
    at = len(base.batch_shape) - reinterpreted
    params = {}
    for name in names:
        value = getattr(base, name)
        shape = list(value.shape)
        params[name] = value.unsqueeze(at).expand(*shape[:at], k, *shape[at:])
    return KTuples(type(base)(**params), reinterpreted + 1, k, q)


def k_sample_bound(f, k: int, batch_ndims: int):
    r""":math:`\hat L` of K-tuples: ``[n, *batch, K, *event] -> [n, *batch]`` from the per-sample ``f``
    (``batch_ndims = len(batch_shape)``); ``f`` is evaluated once on all :math:`nK` draws."""
    def bound(z: Tensor) -> Tensor:
        n = z.shape[0]
        draws = z.movedim(1 + batch_ndims, 1)                       # [n, K, *batch, *event]
        log_w = f(draws.reshape(n * k, *draws.shape[2:]))           # [nK, *batch]
        return torch.logsumexp(log_w.reshape(n, k, *log_w.shape[1:]), dim=1) - math.log(k)
    return bound


def _per_tuple(est: Estimator) -> bool:
    return est.capabilities.objective == "iwae"


class BoundEstimator(Estimator):
    r"""Base of the estimators of the K-sample bound itself (``capabilities.objective == "iwae"``).

    Called as ``est(f, q, K)``, with ``f`` the per-sample log-weight ``[n, *batch, *event] -> [n, *batch]``, it
    estimates :math:`\nabla \sum_b \mathcal L_K` from one K-tuple; as ``est(f, k_tuples(q, K), n)``, from ``n``
    independent K-tuples: the mean of ``n`` one-tuple estimates (its variance is the one-tuple variance over
    ``n``). Both forms draw ``q`` once for :math:`nK` samples, tuple-major, so ``n = 1`` draws exactly what
    ``est(f, q, K)`` draws. Subclasses implement ``_estimate_tuples(f, q, k, tuples, generator)``.
    """

    def forward(self, f, dist: Distribution, n_samples: int = 1, generator: torch.Generator | None = None,
                **kwargs) -> EstimatorOutput:
        q, k, _ = self._tuples(dist, n_samples)
        self._check_call(f, q, k, generator)
        return self._estimate(f, dist, n_samples, generator, **kwargs)

    def _tuples(self, dist: Distribution, n_samples: int) -> tuple[Distribution, int, int]:
        """``(q, K, tuples)`` of a call: ``(dist, n_samples, 1)``, or ``(q, K, n_samples)`` on ``k_tuples(q, K)``."""
        if not isinstance(dist, KTuples):
            return dist, n_samples, 1
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"estimator {self.describe()!r} on k_tuples(q, {dist.k}) needs an integer number of "
                             f"K-tuples n_samples >= 1, got {n_samples!r}")
        return dist.per_sample, dist.k, n_samples

    def _estimate(self, f, dist, n_samples, generator) -> EstimatorOutput:
        return self._estimate_tuples(f, *self._tuples(dist, n_samples), generator)

    def _estimate_tuples(self, f, q: Distribution, k: int, tuples: int,
                         generator) -> EstimatorOutput:  # pragma: no cover
        raise NotImplementedError


def draw_tuples(q: Distribution, k: int, tuples: int, generator, reparameterized: bool) -> Tensor:
    """``tuples`` K-tuples of ``q``, ``[k * tuples, *batch, *event]``: the draws ``draw(q, k * tuples)``, whose
    view ``[k, tuples, ...]`` has tuple ``j`` in column ``j``."""
    return draw(q, k * tuples, generator, reparameterized=reparameterized)


def why_not(est: Estimator, q: Distribution | type[Distribution], k: int, n_samples: int | None = None) -> str | None:
    """Why ``est`` cannot estimate the gradient of the K-sample bound with ``n_samples`` tuples, or None."""
    if _per_tuple(est):
        if n_samples is not None and n_samples < 1:
            return f"n_samples counts K-tuples and must be >= 1, got {n_samples}"
        return est.why_not(q, k, objective="iwae")
    target = k_tuples(q, k) if isinstance(q, Distribution) else q
    return est.why_not(target, n_samples, objective="expectation")


def estimate(est: Estimator, f, q: Distribution, k: int, n_samples: int, generator: torch.Generator | None,
             **kwargs) -> EstimatorOutput:
    """An estimate of the gradient of ``sum_b L_K`` through ``surrogate`` from ``n_samples`` K-tuples: ``est``
    on the per-sample ``f`` if it estimates the bound itself, else on the bound of K-tuples (``called``)."""
    f_called, dist = called(est, f, q, k)
    return est(f_called, dist, n_samples, generator, **kwargs)


def called(est: Estimator, f, q: Distribution, k: int):
    """``(f, dist)`` that ``est`` is called with, with ``n_samples`` K-tuples, to estimate the bound's gradient:
    the per-sample ``f`` on ``k_tuples(q, k)`` for an estimator of the bound itself, else the bound of K-tuples
    (``k_sample_bound``) on it."""
    tuples = k_tuples(q, k)
    return (f, tuples) if _per_tuple(est) else (k_sample_bound(f, k, len(q.batch_shape)), tuples)


def f_evaluations(est: Estimator, q: Distribution, k: int, n_samples: int) -> int | None:
    """Evaluations of the per-sample ``f`` per estimate (per batch element)."""
    if _per_tuple(est):
        return est.f_evaluations(q, k) * n_samples
    per_tuple = est.f_evaluations(k_tuples(q, k), n_samples)
    return None if per_tuple is None else k * per_tuple


__all__ = ["BoundEstimator", "KTuples", "called", "draw_tuples", "estimate", "f_evaluations", "k_sample_bound",
           "k_tuples", "why_not"]
