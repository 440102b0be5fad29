"""Capabilities are data: one function decides applicability, documentation and errors come from it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch.distributions import (Bernoulli, Categorical, Gamma, Independent, LogNormal, Normal, OneHotCategorical,
                                 Uniform)

import estimators
from estimators.capabilities import Capabilities
from estimators.options import Option, positive

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = [
    Independent(Normal(torch.zeros(2), torch.ones(2)), 1),
    Independent(Bernoulli(logits=torch.zeros(2)), 1),
    Independent(OneHotCategorical(logits=torch.zeros(2, 3)), 1),
    Categorical(logits=torch.zeros(3)),
    Gamma(torch.ones(2), torch.ones(2)),
    Uniform(torch.zeros(2), torch.ones(2)),
]


@pytest.mark.parametrize("name", estimators.available())
@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: type(d).__name__)
def test_planning_on_the_family_agrees_with_the_instance(name, dist):
    """A study is planned on family classes; the jobs ask the same function on instances."""
    est = estimators.get(name)
    base = dist.base_dist if isinstance(dist, Independent) else dist
    assert (est.why_not(type(base)) is None) == (est.why_not(dist) is None) == est.supports(dist)


@pytest.mark.parametrize("dist", DISTRIBUTIONS + [LogNormal(torch.zeros(2), torch.ones(2))],
                         ids=lambda d: type(d).__name__)
def test_pathwise_says_what_torch_says(dist):
    assert estimators.get("pathwise").supports(dist) == bool(dist.has_rsample)


@pytest.mark.parametrize("name", estimators.available())
def test_documentation_and_errors_come_from_the_declaration(name):
    klass = estimators.estimator_class(name)
    assert isinstance(klass.capabilities, Capabilities)
    assert klass.families_doc == klass.capabilities.describe()
    assert klass.unbiased == klass.capabilities.unbiased


def test_the_reasons_name_what_is_missing():
    assert estimators.get("straight_through").why_not(Normal) == \
        "Normal is not one of its families (Bernoulli, OneHotCategorical)"
    assert estimators.get("reinforce").why_not(Uniform) == "Uniform is excluded: its support depends on its parameters"
    assert (estimators.get("reinforce", baseline="leave_one_out").why_not(Normal, 1)
            == "n_samples=1 is below its minimum 2")
    big = Independent(Bernoulli(logits=torch.zeros(30)), 1)
    assert estimators.get("exact").why_not(Bernoulli) is None  # the instance-level limit needs the instance
    assert "above max_support=65536" in estimators.get("exact").why_not(big)
    with pytest.raises(ValueError, match=r"'exact' does not support Independent\(Bernoulli\): its support has"):
        estimators.get("exact")(lambda z: z.sum(-1), big)


def test_registration_refuses_options_that_are_not_declared():
    """A named constructor argument would be an option nothing checks, lists or documents."""
    class Undeclared(estimators.Estimator):
        name = "undeclared_test_only"
        capabilities = Capabilities(unbiased=True)

        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale

    with pytest.raises(ValueError, match=r"Undeclared: declare its options as data, declared_options = "
                                         r"\{'scale': Option\(default, constraint, doc\)\}.*: scale$"):
        estimators.register(Undeclared)
    assert "undeclared_test_only" not in estimators.available()


def test_registration_checks_the_option_attribute_convention():
    class Forgetful(estimators.Estimator):
        name = "forgetful_test_only"
        capabilities = Capabilities(unbiased=True)
        declared_options = {"scale": Option(1.0, positive, "a scale")}

        def __init__(self, **options):
            super().__init__(**options)
            self._scale = self.scale
            del self.scale

    with pytest.raises(ValueError, match=r"Forgetful: each option must be an attribute of the same name "
                                         r"\(self.scale\), as Estimator.__init__ stores it; missing: scale"):
        estimators.register(Forgetful)
    assert "forgetful_test_only" not in estimators.available()


def _module_imports(path: Path, package: str) -> set[str]:
    """Modules a file imports at run time (not under ``if TYPE_CHECKING``), as dotted names."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    parent = package.rsplit(".", 1)[0] if path.name != "__init__.py" else package
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
            continue
        base = node.module or ""
        if node.level:
            anchor = parent.split(".")[: len(parent.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        out.add(base)
        out |= {f"{base}.{a.name}" for a in node.names}
    return out


def test_no_import_circle():
    modules = {}
    for top in ("estimators", "experiments"):
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            modules[name] = path
    graph = {m: {i for i in _module_imports(p, m) if i in modules and i != m and not m.startswith(i + ".")}
             for m, p in modules.items()}
    # Packages import their own modules by design (the estimators package registers them all).
    graph = {m: {i for i in deps if not (i.startswith(m + "."))} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for dep in graph[m]:
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
