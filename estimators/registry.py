"""Estimators registered by name: ``available()``, ``get(name, **options)``, ``supporting(dist)``."""
from __future__ import annotations

from torch.distributions import Distribution

from .base import Estimator

_REGISTRY: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"estimator name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> tuple[str, ...]:
    """Sorted names of the registered estimators."""
    return tuple(sorted(_REGISTRY))


def estimator_class(name: str) -> type[Estimator]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown estimator {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def get(name: str, **options) -> Estimator:
    """A new estimator ``name`` built with ``options``; unknown names or options raise ValueError."""
    cls = estimator_class(name)
    valid = cls.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for estimator {name!r}; "
            f"valid options: {', '.join(valid) if valid else 'none'}"
        )
    return cls(**options)


def supporting(dist: Distribution) -> tuple[str, ...]:
    """Names of the estimators whose default configuration applies to ``dist``."""
    return tuple(name for name in available() if _REGISTRY[name]().supports(dist))
