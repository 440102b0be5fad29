"""What an estimator applies to, declared as data.

Each estimator class sets ``capabilities = Capabilities(...)``. ``why_not`` is the one function that decides
whether it applies to a distribution (an instance, or a family class when planning a study before any
tensor exists), and ``describe`` writes the sentence used in documentation and error messages, so the
two cannot disagree. torch's own flags (``has_rsample``, ``has_enumerate_support``) are used where they say
what is meant.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch.distributions import Distribution

from . import families, sampling

#: Requirements an estimator can declare: (what it means, the reason given where a distribution lacks it).
REQUIREMENTS = {
    "has_rsample": ("a reparameterized sampler (has_rsample)", "has no reparameterized sampler (has_rsample is False)"),
    "has_enumerate_support": ("an enumerable support (has_enumerate_support)",
                              "cannot enumerate its support (has_enumerate_support is False)"),
    "sample": ("a sampler", "cannot be sampled"),
}

#: What an estimator's surrogate is the gradient of (``Capabilities.objective``).
OBJECTIVES = {
    "expectation": "the expectation sum_b E_q[f(z)] (every estimator unless it says otherwise)",
    "iwae": "the K-sample importance-weighted bound sum_b E[log (1/K) sum_k exp f(z_k)], K = n_samples, "
            "f the per-sample log-weight (Burda et al. 2016; vimco)",
}


#: The kinds of gradient estimator (``Capabilities.role``); a declared comparison can name a role instead of
#: listing estimators (``claim.comparisons``: ``role:score_function``), so an estimator that declares its
#: role joins the comparisons made for that role.
ROLES = {
    "pathwise": "the gradient of f along the sampling path z = h_phi(eps) (reparameterization)",
    "score_function": "the learning signal f(z), less a baseline at most, times the score grad log q(z) "
                      "(REINFORCE and its baselines, VIMCO)",
    "control_variate": "the score-function estimator with a control variate built from f itself (ARM, DisARM, "
                       "MuProp, REBAR, RELAX, the delta method)",
    "relaxation": "the gradient of f at a relaxed or straight-through sample (biased)",
    "measure_valued": "differences of f under coupled distributions (weak derivatives)",
    "exact": "the gradient by enumeration of the support",
}


@dataclass(frozen=True)
class Capabilities:
    """Declared facts about an estimator.

    unbiased: whether its expectation is the true gradient.
    families: the distribution classes it applies to (under any ``Independent`` wrappers); empty means
        every family that meets ``requires``.
    requires: flags the distribution must have (keys of ``REQUIREMENTS``).
    excludes: families refused even though they meet the rest, with ``exclude_reason``.
    min_samples: the smallest ``n_samples`` it accepts (an estimator whose minimum depends on its
        options overrides ``Estimator.min_samples``).
    evaluations_per_sample: evaluations of ``f`` per sample (the unit of cost of fair comparisons);
        ``None`` where it is not proportional to the samples (``exact`` evaluates the whole support).
    limits: instance-level limits in words (checked by ``Estimator._why_not_instance``).
    evaluations_per_coordinate: further evaluations of ``f`` per sample for each scalar coordinate of the
        event (measure-valued gradients evaluate ``f`` at perturbed points, one set per coordinate); the
        total per sample is ``evaluations(event_size)``. 0 for estimators whose cost does not grow with it.
    evaluations_per_call: evaluations of ``f`` per call on top of the per-sample ones, whatever
        ``n_samples`` is (``muprop`` evaluates ``f`` once at the mean); 0 for most.
    differentiable_f: whether ``f`` must be differentiable in ``z`` because it is also evaluated off the
        discrete support (``rebar``, ``relax`` and ``muprop`` refuse, with a ValueError at the call, an ``f``
        whose output does not depend differentiably on its input), or because its derivatives in ``z`` carry
        the gradient (``reinmax`` and ``gumbel_rao`` at the hard sample; ``reinforce_delta`` uses its gradient
        and Hessian-vector products at the mean).
    objective: what the surrogate's gradient estimates, a key of ``OBJECTIVES``: ``"expectation"`` (the
        contract of ``base``), or ``"iwae"`` for ``vimco``, whose estimate is unbiased for the gradient of
        the importance-weighted bound, not of the expectation; compare estimators only within an objective.
    stackable: whether its calls can serve several independent runs stacked along the first batch dimension
        with a ``sampling.GeneratorStack`` (``experiments/vae/stacked.py``): all its randomness goes through
        ``sampling.draw``/``uniform``/``exponential`` and every batch element is estimated on its own. An
        instance that adapts across calls (``Estimator.adapts``) is not, whatever this says
        (``Estimator.stackable``).
    role: what kind of estimator it is, a key of ``ROLES`` (``None``: undeclared; such an estimator enters
        only the comparisons that name it or its id).
    needs_log_q: whether ``f`` must say its log q term apart (``base.LogQSplit``: f(z) = r(z) - log q(z)
        with ``q`` the distribution it samples), because the estimator treats log q's dependence on the
        variational parameters differently from the rest's (``stl``, ``dreg``); it refuses a plain ``f``
        (``Estimator.why_not_f``), and an objective that has no sampled log q term (the ELBO with an exact KL,
        the K-sample bound in its K-tuple form) does not apply.
    """

    unbiased: bool
    families: tuple[type[Distribution], ...] = ()
    requires: tuple[str, ...] = ()
    excludes: tuple[type[Distribution], ...] = ()
    exclude_reason: str = ""
    min_samples: int = 1
    evaluations_per_sample: int | None = 1
    limits: str = ""
    evaluations_per_coordinate: int = 0
    evaluations_per_call: int = 0
    differentiable_f: bool = False
    objective: str = "expectation"
    stackable: bool = False
    role: str | None = None
    needs_log_q: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.requires) - set(REQUIREMENTS))
        if unknown:
            raise ValueError(f"unknown requirement(s) {unknown}; valid: {', '.join(REQUIREMENTS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; valid: {', '.join(ROLES)}")

    def why_not(self, target: Distribution | type[Distribution]) -> str | None:
        """``None`` if the family of ``target`` (an instance or a class) is admitted, else the reason."""
        base = families.unwrap(target)[0] if isinstance(target, Distribution) else target
        klass = type(base) if isinstance(base, Distribution) else base
        name = families.family_name(target) if isinstance(target, Distribution) else klass.__name__
        if self.families and not issubclass(klass, self.families):
            return f"{name} is not one of its families ({self.families_text()})"
        if issubclass(klass, self.excludes):
            return f"{name} is excluded: {self.exclude_reason}"
        for flag in self.requires:
            if not _has(base, flag):
                return f"{name} {REQUIREMENTS[flag][1]}"
        return None

    def evaluations(self, event_size: int = 1) -> int | None:
        """Evaluations of ``f`` per sample for events of ``event_size`` scalar coordinates (``None`` where
        the cost is not proportional to the samples)."""
        if self.evaluations_per_sample is None:
            return None
        return self.evaluations_per_sample + self.evaluations_per_coordinate * int(event_size)

    def evaluations_per_estimate(self, n_samples: int, event_size: int = 1) -> int | None:
        """Evaluations of ``f`` (per batch element) for one estimate from ``n_samples`` samples of events of
        ``event_size`` coordinates: the unit of cost of fair comparisons. ``None`` where the cost is not
        proportional to the samples (``exact``)."""
        per_sample = self.evaluations(event_size)
        return None if per_sample is None else per_sample * int(n_samples) + self.evaluations_per_call

    def families_text(self) -> str:
        return ", ".join(k.__name__ for k in self.families)

    def describe(self) -> str:
        """The families it applies to, in words (for documentation and errors)."""
        parts = []
        if self.families:
            parts.append(self.families_text() + " (and Independent wrappers)")
        else:
            parts.append("every distribution")
        if self.requires:
            parts.append("with " + " and ".join(REQUIREMENTS[flag][0] for flag in self.requires))
        if self.excludes:
            parts.append(f"except {', '.join(k.__name__ for k in self.excludes)} ({self.exclude_reason})")
        if self.limits:
            parts.append(f"with {self.limits}")
        return " ".join(parts)


def _has(base: Distribution | type[Distribution], flag: str) -> bool:
    if flag == "sample":
        if isinstance(base, Distribution):
            return sampling.can_sample(base)
        return base.has_rsample is True or base.sample is not Distribution.sample
    value = getattr(base, flag)
    if isinstance(value, property):  # decided per instance (e.g. TransformedDistribution.has_rsample)
        raise ValueError(f"{base.__name__}.{flag} depends on the instance; pass a distribution, not its class")
    return bool(value)
