"""Estimators registered by name: ``available()``, ``get(name, **options)``, ``supporting(dist)``.

The base class imports this module (its errors name the estimators that do apply), so nothing here
imports it: the registry holds ``Estimator`` subclasses by duck type.
"""
from __future__ import annotations

import inspect

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
    _check_constructor(cls)
    _check_option_attributes(cls)
    _REGISTRY[cls.name] = cls
    return cls


def _check_constructor(cls) -> None:
    """Options are declared as data (``declared_options``, checked in one place: ``options.resolve``) and taken
    as ``**options``: a named constructor argument would be an option that nothing checks, lists or documents."""
    named = [p.name for p in inspect.signature(cls.__init__).parameters.values()
             if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if named:
        raise ValueError(
            f"{cls.__name__}: declare its options as data, declared_options = {{{named[0]!r}: Option(default, "
            f"constraint, doc)}} (estimators.options), and take them as __init__(self, **options); "
            f"constructor argument(s): {', '.join(named)}"
        )


def _check_option_attributes(cls) -> None:
    """Options must come back as attributes of the same name (``describe``, provenance): the base class stores
    them; a subclass must not delete or rename them."""
    instance = cls()  # every declared option has a default (supporting() builds estimators so too)
    missing = [name for name in cls.option_names() if not hasattr(instance, name)]
    if missing:
        raise ValueError(
            f"{cls.__name__}: each option must be an attribute of the same name (self.{missing[0]}), as "
            f"Estimator.__init__ stores it; missing: {', '.join(missing)}"
        )


def available() -> tuple[str, ...]:
    """Sorted names of the registered estimators."""
    return tuple(sorted(_REGISTRY))


def estimator_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ValueError(f"unknown estimator {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def get(name: str, **options) -> nn.Module:
    """A new estimator ``name`` built with ``options``; unknown names, unknown options and invalid values raise
    ValueError (the options are checked against the class's declaration when it is built)."""
    return estimator_class(name)(**options)


def supporting(dist: Distribution) -> tuple[str, ...]:
    """Names of the estimators whose default configuration applies to ``dist``."""
    return tuple(name for name in available() if _REGISTRY[name]().why_not(dist) is None)
