r"""Estimator options declared as data, and checked in one place.

As ``torch.distributions`` declares a distribution's ``arg_constraints``, an estimator class declares its
options: a name, a default, a constraint and a one-line doc,

    declared_options = {"temperature": Option(1.0, positive, "the relaxation's temperature")}

and, where options constrain each other, rules (``Rule("min_temperature <= temperature", lambda
temperature, min_temperature: min_temperature <= temperature)``). ``Estimator.__init__`` hands what it was
given to ``resolve``, which refuses unknown options, fills in the defaults, checks every value against its
constraint and every rule, and returns the values (numbers normalized: an integer given for a real option is
stored as a float); the estimator stores each as an attribute of the same name. Errors are one line naming
the option, the value and what is valid. The README's table of estimators writes its options column from the
same declarations (``catalog``).
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

#: What a constraint's ``accept`` returns for a value it refuses.
INVALID = object()


@dataclass(frozen=True)
class Constraint:
    """``text``: what is valid, in words (errors and the README use it); ``accept(value)``: the value as stored
    (numbers normalized), or ``INVALID``; ``choices``: the named values a string must be one of."""

    text: str
    accept: Callable[[object], object]
    choices: tuple[str, ...] = ()


def _real(value) -> float | object:
    """A finite real number as a float (also from a numeric string: YAML 1.1 reads ``1e-3`` as one)."""
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return INVALID
    if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return INVALID
    return float(value)


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def real_where(test: Callable[[float], bool], text: str) -> Constraint:
    """A finite real number (stored as a float) for which ``test`` holds; ``text`` says which."""
    def accept(value):
        number = _real(value)
        return number if number is not INVALID and test(number) else INVALID
    return Constraint(text, accept)


def greater_than(lower: float) -> Constraint:
    return real_where(lambda x: x > lower, f"> {_number_text(lower)}")


def at_least(lower: float) -> Constraint:
    return real_where(lambda x: x >= lower, f">= {_number_text(lower)}")


def interval(lower: float, upper: float, *, upper_open: bool = False) -> Constraint:
    """``[lower, upper]``, or ``[lower, upper)`` with ``upper_open``."""
    closing = ")" if upper_open else "]"
    return real_where(lambda x: lower <= x and (x < upper if upper_open else x <= upper),
                      f"in [{_number_text(lower)}, {_number_text(upper)}{closing}")


def integer_at_least(lower: int) -> Constraint:
    def accept(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lower:
            return INVALID
        return int(value)
    return Constraint(f"an integer >= {lower}", accept)


def one_of(*choices: str) -> Constraint:
    return Constraint("one of " + ", ".join(choices), lambda v: v if isinstance(v, str) and v in choices else INVALID,
                      choices)


def one_of_or_real(*choices: str) -> Constraint:
    """One of ``choices`` (a string) or a finite real number (stored as a float)."""
    def accept(value):
        if isinstance(value, str):
            return value if value in choices else INVALID
        return _real(value)
    return Constraint(" or ".join([", ".join(choices), "a finite number"]), accept, choices)


real = real_where(lambda x: True, "a finite number")
positive = greater_than(0)
nonnegative = at_least(0)
positive_integer = integer_at_least(1)


@dataclass(frozen=True)
class Option:
    """One option of an estimator: its ``default``, the ``constraint`` on its values, and a one-line ``doc``."""

    default: object
    constraint: Constraint
    doc: str

    def check(self, name: str, value, estimator: str):
        """``value`` as stored, or a ValueError naming the option, the value and what is valid."""
        accepted = self.constraint.accept(value)
        if accepted is not INVALID:
            return accepted
        if isinstance(value, str) and self.constraint.choices:
            raise ValueError(f"unknown {name} {value!r} for estimator {estimator!r}; "
                             f"{name} must be {self.constraint.text}")
        raise ValueError(f"{name} must be {self.constraint.text}, got {value!r} (estimator {estimator!r}: {self.doc})")


@dataclass(frozen=True)
class Rule:
    """A check that ties options together: ``holds`` takes the options it names as keyword arguments (so its
    parameters say which), ``text`` says in words what must hold."""

    text: str
    holds: Callable[..., bool]
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(inspect.signature(self.holds).parameters))


def check_declaration(owner: str, declared: dict[str, Option], rules: tuple[Rule, ...]) -> None:
    """A declaration that cannot work is refused when its class is defined: an entry that is not an ``Option``,
    a default its own constraint refuses, a rule naming an undeclared option or refusing the defaults."""
    for name, option in declared.items():
        if not isinstance(option, Option):
            raise TypeError(f"{owner}.declared_options[{name!r}] must be an estimators.options.Option, "
                            f"got {type(option).__name__}")
        option.check(name, option.default, owner)
    for rule in rules:
        unknown = [n for n in rule.names if n not in declared]
        if unknown:
            raise TypeError(f"{owner}: rule {rule.text!r} names undeclared option(s) {', '.join(unknown)}; "
                            f"declared: {', '.join(declared) or 'none'}")
    resolve(owner, declared, rules, {})


def resolve(estimator: str, declared: dict[str, Option], rules: tuple[Rule, ...], given: dict) -> dict:
    """The options of an estimator built with ``given``: every declared one, given or default, checked and
    normalized, in the order of the declaration. Unknown names, invalid values and broken rules raise a
    ValueError."""
    unknown = sorted(name for name in given if name not in declared)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for estimator {estimator!r}; "
                         f"valid options: {', '.join(declared) if declared else 'none'}")
    values = {name: option.check(name, given.get(name, option.default), estimator)
              for name, option in declared.items()}
    for rule in rules:
        if not rule.holds(**{name: values[name] for name in rule.names}):
            got = ", ".join(f"{name}={values[name]!r}" for name in rule.names)
            raise ValueError(f"estimator {estimator!r} needs {rule.text}, got {got}")
    return values
