"""Estimator options are declared as data (``estimators.options``), checked in one place, and the README's table of
estimators is generated from the declarations (``estimators.catalog``)."""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest

import estimators
from estimators import catalog
from estimators.capabilities import Capabilities
from estimators.options import INVALID, Option, Rule, interval, one_of, positive, positive_integer, real

ROOT = Path(__file__).resolve().parent.parent
CLASSES = [estimators.estimator_class(name) for name in estimators.available()]
OPTIONS = [(cls.name, option) for cls in CLASSES for option in cls.declared_options]


def test_the_readme_table_is_the_one_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    expected = catalog.table()
    assert catalog.readme_table(readme) == expected, (
        "README.md's table of estimators differs from the declarations; paste this between "
        f"{catalog.MARKERS[0]} and {catalog.MARKERS[1]}:\n{expected}")


def test_the_table_has_one_row_per_estimator_and_every_option():
    rows = catalog.rows()
    names = [name for row in rows for name in row.split(" | ")[0].strip("| ").replace("`", "").split(", ")]
    assert sorted(names) == sorted(estimators.available())
    text = catalog.table()
    for name, option in OPTIONS:
        assert f"`{option}` (" in text


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_options_are_the_declared_ones_stored_as_attributes(cls):
    assert cls.option_names() == tuple(cls.declared_options)
    signature = inspect.signature(cls)  # what help(cls) shows
    assert {p.name: p.default for p in signature.parameters.values()} == {
        name: option.default for name, option in cls.declared_options.items()}
    est = cls()
    for name, option in cls.declared_options.items():
        assert getattr(est, name) == option.default
    given = cls(**{name: option.default for name, option in cls.declared_options.items()})
    assert given.describe() == est.describe()


@pytest.mark.parametrize("name, option", OPTIONS, ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("bad", [float("nan"), True, None, "not-a-value", [1]], ids=repr)
def test_every_option_refuses_a_bad_value_with_one_line_naming_it(name, option, bad):
    """Every option of every estimator, from its declaration: the error names the option, the value and what is
    valid."""
    constraint = estimators.estimator_class(name).declared_options[option].constraint
    with pytest.raises(ValueError) as caught:
        estimators.get(name, **{option: bad})
    message = str(caught.value)
    assert "\n" not in message and option in message and constraint.text in message
    assert repr(bad) in message or f"unknown {option} {bad!r}" in message


def test_numbers_are_normalized():
    est = estimators.get("gumbel_softmax", temperature=2, min_temperature=1)
    assert est.temperature == 2.0 and isinstance(est.temperature, float)
    assert estimators.get("rebar", lr="1e-3").lr == 0.001  # YAML 1.1 reads 1e-3 as a string
    assert estimators.get("reinforce_delta", coefficient=1).coefficient == 1.0
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got 2.5 \(estimator 'gumbel_rao': "):
        estimators.get("gumbel_rao", k=2.5)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1, got 0"):
        estimators.get("relax", hidden=0)
    with pytest.raises(ValueError, match=r"unknown coefficient '1.0' for estimator 'reinforce_delta'; coefficient "
                                         r"must be leave_one_out or a finite number$"):
        estimators.get("reinforce_delta", coefficient="1.0")


def test_constraints_say_what_they_accept():
    assert interval(0, 1, upper_open=True).text == "in [0, 1)"
    assert [interval(0, 1, upper_open=True).accept(v) for v in (0, 0.5)] == [0.0, 0.5]
    assert all(interval(0, 1, upper_open=True).accept(v) is INVALID for v in (1, -0.1, math.inf, "0.5x"))
    assert positive.accept(1e-300) == 1e-300
    assert positive_integer.accept(3) == 3


def _declare(**attrs):
    return type("Declared", (estimators.Estimator,), {"name": "declared_test_only",
                                                       "capabilities": Capabilities(unbiased=True), **attrs})


def test_a_declaration_that_cannot_work_is_refused_when_the_class_is_defined():
    with pytest.raises(ValueError, match=r"scale must be > 0, got 0.0 \(estimator 'declared_test_only': a scale\)"):
        _declare(declared_options={"scale": Option(0.0, positive, "a scale")})
    with pytest.raises(TypeError, match=r"declared_options\['scale'\] must be an estimators.options.Option"):
        _declare(declared_options={"scale": 1.0})
    with pytest.raises(TypeError, match="rule 'low <= high' names undeclared option"):
        _declare(declared_options={"low": Option(0.0, real, "low")},
                 option_rules=(Rule("low <= high", lambda low, high: low <= high),))
    with pytest.raises(ValueError, match="needs mode != off, got mode='off'"):
        _declare(declared_options={"mode": Option("off", one_of("off", "on"), "a mode")},
                 option_rules=(Rule("mode != off", lambda mode: mode != "off"),))


def test_a_declared_estimator_needs_no_constructor():
    declared = _declare(declared_options={"scale": Option(1.0, positive, "a scale")})
    assert declared(scale=2).scale == 2.0 and declared().scale == 1.0
    assert declared.option_names() == ("scale",)
    with pytest.raises(ValueError, match="unknown option.*'sclae' for estimator 'declared_test_only'; valid options: "
                                         "scale$"):
        declared(sclae=2.0)
