"""Estimators registered by name: ``available()``, ``get(name, **options)``, ``supporting(dist)``.

The base class imports this module (its errors name the estimators that do apply), so nothing here
imports it: the registry holds ``Estimator`` subclasses by duck type.
"""
from __future__ import annotations

from torch import nn
from torch.distributions import Distribution

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"estimator name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    if not hasattr(cls, "capabilities"):
        raise ValueError(f"{cls.__name__} needs a class attribute 'capabilities' (estimators.Capabilities)")
    _check_option_attributes(cls)
    _REGISTRY[cls.name] = cls
    return cls


def _check_option_attributes(cls) -> None:
    """Constructor arguments must come back as attributes of the same name (``describe``, provenance)."""
    try:
        instance = cls()
    except TypeError:  # options without defaults: checked when the estimator is built
        return
    missing = [name for name in cls.option_names() if not hasattr(instance, name)]
    if missing:
        raise ValueError(
            f"{cls.__name__}: store each constructor argument as an attribute of the same name "
            f"(self.{missing[0]} = {missing[0]}); missing: {', '.join(missing)}"
        )


def available() -> tuple[str, ...]:
    """Sorted names of the registered estimators."""
    return tuple(sorted(_REGISTRY))


def estimator_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ValueError(f"unknown estimator {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def get(name: str, **options) -> nn.Module:
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
    return tuple(name for name in available() if _REGISTRY[name]().why_not(dist) is None)
