"""The README's table of estimators, written from their declarations.

One row per registered estimator (estimators that share one declaration, a class and its subclass that only
changes what ``_estimate`` does, share a row), ordered by role (``capabilities.ROLES``) and name:

- options: each declared option (``declared_options``: name, constraint, default, doc) and rule
  (``option_rules``), then what a call needs beyond the contract (``capabilities``: a minimum ``n_samples``,
  another objective, an ``f`` that says its log q term apart);
- applies to: ``families_doc`` (``Capabilities.describe``);
- unbiased: ``capabilities.unbiased`` ("(exact)" for the role ``exact``).

``python -c "from estimators import catalog; print(catalog.table())"`` prints the table, to paste between the
README's ``<!-- estimators:start -->`` and ``<!-- estimators:end -->``; ``tests/test_estimator_options.py`` fails
when the README's copy differs.
"""
from __future__ import annotations

import re

from . import registry
from .capabilities import ROLES
from .options import Option

HEADER = ("| name | options | applies to | unbiased |", "|---|---|---|---|")
#: The README's markers around the table.
MARKERS = ("<!-- estimators:start -->", "<!-- estimators:end -->")


def _code(text: str, words) -> str:
    """``text`` with each of ``words`` set as code."""
    for word in words:
        text = re.sub(rf"(?<![`\w]){re.escape(word)}(?![`\w])", f"`{word}`", text)
    return text


def option_text(name: str, option: Option) -> str:
    """One option in words: ``name`` (constraint, default): doc."""
    default = f"`{option.default}`" if isinstance(option.default, str) else repr(option.default)
    constraint = _code(option.constraint.text, option.constraint.choices)
    return f"`{name}` ({constraint}, default {default}): {option.doc}"


def call_needs(cls) -> list[str]:
    """What a call needs beyond the contract of ``base``, from the capabilities."""
    caps = cls.capabilities
    needs = []
    if caps.min_samples > 1:
        needs.append(f"`n_samples` >= {caps.min_samples}")
    if caps.objective != "expectation":
        needs.append(f"objective `{caps.objective}` (`capabilities.OBJECTIVES`)")
    if caps.needs_log_q:
        needs.append("`f` a `LogQSplit`")
    return needs


def options_cell(cls) -> str:
    parts = [option_text(name, option) for name, option in cls.declared_options.items()]
    parts += [f"needs {rule.text}" for rule in cls.option_rules]
    return "; ".join(parts + call_needs(cls))


def unbiased_cell(cls) -> str:
    if cls.capabilities.role == "exact":
        return "(exact)"
    return "yes" if cls.capabilities.unbiased else "no"


def _row(cells: list[str]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def rows() -> list[str]:
    roles = list(ROLES)

    def order(name: str):
        role = registry.estimator_class(name).capabilities.role
        return (roles.index(role) if role in roles else len(roles), name)

    grouped: dict[tuple, list[str]] = {}
    for name in sorted(registry.available(), key=order):
        cls = registry.estimator_class(name)
        cells = (options_cell(cls), cls.families_doc, unbiased_cell(cls))
        grouped.setdefault((id(cls.capabilities), cells), []).append(name)
    return [_row([", ".join(f"`{n}`" for n in names), *cells]) for (_, cells), names in grouped.items()]


def table() -> str:
    """The markdown table, header included, without a trailing newline."""
    return "\n".join([*HEADER, *rows()])


def readme_table(readme: str) -> str:
    """The table between the README's markers (``ValueError`` if they are missing)."""
    start, end = (readme.find(marker) for marker in MARKERS)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {MARKERS[0]} ... {MARKERS[1]} block")
    return readme[start + len(MARKERS[0]):end].strip("\n")
