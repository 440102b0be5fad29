"""The synthetic study runs end to end on its tiny config and writes the documented columns; its problems are
one registry, and adding one is a function and a config line."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from experiments.config.typed_config import ConfigError
from experiments.synthetic import problems, study as synthetic

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config",
                    str(ROOT / "config/synthetic/example.yaml"), "--out", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    return pd.read_csv(out / "synthetic.csv"), pd.read_csv(out / "skipped.csv")


def test_columns_are_documented(tiny_run):
    frame, _ = tiny_run
    documented = set()
    for line in (ROOT / "results/README.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| column"):
            documented |= {c.strip() for c in re.split(r",", line.split("|")[1])}
    assert set(frame.columns) <= documented, set(frame.columns) - documented


def test_rows_cover_supported_cells_and_skip_the_rest(tiny_run):
    frame, skipped = tiny_run
    assert set(frame.problem) == {"mohamed_cos", "dimension", "bernoulli_toy"}
    assert not ((frame.family == "Normal") & (frame.estimator_name == "straight_through")).any()
    assert skipped.reason.str.contains("is not one of its families").any()
    assert skipped.reason.str.contains("n_samples=1 is below its minimum 2").any()
    assert set(skipped.columns) == set(synthetic.SKIPPED_COLUMNS)
    assert frame.total_variance.ge(0).all() and np.isfinite(frame.seconds_per_estimate).all()


def test_exact_has_no_variance_and_no_bias(tiny_run):
    frame, _ = tiny_run
    exact = frame[frame.estimator_name == "exact"]
    assert len(exact) and (exact.total_variance == 0).all() and (exact.bias_norm < 1e-12).all()


def test_cells_are_seeded_independently():
    a = synthetic.cell_seed(0, "dimension", {"dim": 3}, "pathwise", 1)
    assert a == synthetic.cell_seed(0, "dimension", {"dim": 3}, "pathwise", 1)
    assert a != synthetic.cell_seed(1, "dimension", {"dim": 3}, "pathwise", 1)


def test_unknown_problem_is_refused():
    with pytest.raises(ValueError, match=r"synthetic.settings.problems.nope: unknown key; valid keys: bernoulli_iwae, "
                                         r"bernoulli_toy"):
        synthetic.parse_settings({"problems": {"nope": {}}})


def test_a_config_error_is_one_line_from_the_command_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nmeasurement: {min_estimate: 10}\n")
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", str(bad), "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == ("config error: measurement.min_estimate: unknown key (did you mean "
                                  "'min_estimates'?); valid keys: chunk_size, max_estimates, min_estimates, "
                                  "target_rse, timing_calls, warmup_calls")


def test_one_job_runs_several_seeds_each_as_it_would_alone(tmp_path):
    """The pipeline gives every seed of an estimator to one process (one start-up): each seed's table equals
    the one its own process writes (timing columns aside)."""
    base = yaml.safe_load((ROOT / "config/synthetic/example.yaml").read_text())
    configs = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.yaml"
        path.write_text(yaml.safe_dump({**base, "seed": seed}))
        configs.append(path)
    args = [a for seed, c in enumerate(configs) for a in ("--config", str(c), "--out", str(tmp_path / f"both/s{seed}"))]
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", *args], cwd=ROOT, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", str(configs[1]), "--out",
                    str(tmp_path / "alone")], cwd=ROOT, check=True, capture_output=True)
    timing = ["seconds_per_estimate", "work_normalized_variance"]
    both, alone = (pd.read_csv(p / "synthetic.csv").drop(columns=timing)
                   for p in (tmp_path / "both/s1", tmp_path / "alone"))
    pd.testing.assert_frame_equal(both, alone)
    assert set(pd.read_csv(tmp_path / "both/s0/synthetic.csv")["seed"]) == {0}


def test_config_and_out_pairs_must_match(tmp_path):
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", "a.yaml", "--config",
                          "b.yaml", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "give one --out per --config" in res.stderr


# --- the problem registry ------------------------------------------------------------------------------


def test_the_problem_grid_is_the_registry():
    assert [f.name for f in dataclasses.fields(synthetic.Problems)] == list(problems.STUDY_PROBLEMS)
    assert list(problems.STUDY_PROBLEMS) == ["mohamed_quadratic", "mohamed_exp", "mohamed_cos", "dimension",
                                             "bernoulli_toy", "categorical_toy", "bernoulli_iwae", "gaussian_iwae",
                                             "gaussian_elbo", "gamma"]


def test_the_default_study_has_the_cells_it_always_had():
    """A cell's setting labels its rows and seeds its generator: these (the cells before the registry) must not
    move, or every number of the default study would."""
    study = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cells = list(synthetic.iter_problems(synthetic.parse_settings(study["synthetic"]["settings"]).problems))
    labels = [(c.problem_key, json.dumps(c.setting, sort_keys=True)) for c in cells]
    assert len(labels) == 58 and len(set(labels)) == 58
    expected = {  # per problem: number of cells, first and last setting
        "mohamed_quadratic": (13, '{"k": -3.0}', '{"k": 3.0}'),
        "mohamed_exp": (9, '{"k": 0.1}', '{"k": 10.0}'),
        "mohamed_cos": (10, '{"k": 0.5}', '{"k": 5.0}'),
        "dimension": (7, '{"dim": 1}', '{"dim": 1000}'),
        "bernoulli_toy": (6, '{"dim": 1, "t": 0.45}', '{"dim": 100, "t": 0.499}'),
        "categorical_toy": (2, '{"classes": 10, "dim": 1}', '{"classes": 10, "dim": 5}'),
        "bernoulli_iwae": (2, '{"dim": 3, "k": 2}', '{"dim": 3, "k": 5}'),
        "gaussian_iwae": (4, '{"dim": 1, "k": 1}', '{"dim": 1, "k": 50}'),
        "gaussian_elbo": (3, '{"dim": 1, "gap": 0.01}', '{"dim": 1, "gap": 1.0}'),
        "gamma": (2, '{"cost": "square", "dim": 3}', '{"cost": "log", "dim": 3}'),
    }
    for name, (n, first, last) in expected.items():
        mine = [setting for key, setting in labels if key == name]
        assert (len(mine), mine[0], mine[-1]) == (n, first, last), name
    assert [key for key, _ in labels] == sorted((key for key, _ in labels), key=list(expected).index)
    toy = next(c for c in cells if c.problem_key == "bernoulli_toy")
    assert toy.problem.info == {"t": 0.45, "dim": 1} and torch.equal(toy.problem.params["logits"],
                                                                    torch.zeros(1, dtype=torch.float64))


@pytest.mark.parametrize("entry, message", [
    ({"bernoulli_toy": {"t": [0.45], "dim": [2]}},
     r"^synthetic.settings.problems.bernoulli_toy.dim: unknown key \(did you mean 'dims'\?\); valid keys: dims, p, t$"),
    ({"categorical_toy": {"groups": [1]}},
     r"^synthetic.settings.problems.categorical_toy.classes: required key is missing$"),
    ({"gamma": {"costs": ["sqare"]}},
     (r"^synthetic.settings.problems.gamma.costs\[0\]: 'sqare' is not valid \(did you mean 'square'\?\); "
      r"valid: square, log$")),
    ({"mohamed_exp": {"k": {"start": 0, "stop": 1}}},
     r"^synthetic.settings.problems.mohamed_exp.k: expected a list or a mapping, got \{'start': 0, 'stop': 1\}$"),
])
def test_a_wrong_problem_entry_is_one_line_naming_the_valid_choices(entry, message):
    with pytest.raises(ConfigError, match=message):
        synthetic.parse_settings({"problems": entry})


def test_a_problem_function_declares_its_keys():
    with pytest.raises(TypeError, match=r"study problem 'untyped': parameter 'k' needs a type"):
        problems.study_problem("untyped")(lambda k: iter(()))
    with pytest.raises(ValueError, match=r"study problem 'gamma' is registered twice"):
        problems.study_problem("gamma")(problems.gamma_cells)
    assert "untyped" not in problems.STUDY_PROBLEMS


def _readme_block(tag: str) -> str:
    (body,) = re.findall(rf"<!-- {re.escape(tag)} -->\n```\w+\n(.*?)```", README, flags=re.S)
    return body


def test_adding_a_problem_takes_one_function_and_one_config_line(tmp_path):
    """The README's example, in a copy of the code: the function appended to problems.py and the line in a
    config; the planner takes its cells into the claim's rows, a typo in it is one line, and the study runs it."""
    for item in ("estimators", "experiments", "config", "workflow"):  # the code, the configs, the study schema
        shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    module = tmp_path / "experiments" / "synthetic" / "problems.py"
    module.write_text(module.read_text() + "\n\n" + _readme_block("example-problem: problems.py"))
    line = yaml.safe_load(_readme_block("example-problem-line"))
    assert list(line) == ["laplace_cos"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    plan = """
import json, sys, yaml
from experiments.config import study_config
from experiments.config.plan import make_plan
from experiments.config.typed_config import ConfigError
study = yaml.safe_load(open("config/tiny.yaml"))
study["synthetic"]["settings"]["problems"] = json.loads(sys.argv[1])
try:
    plan = make_plan(study_config.check(study), ["cpu"])
except ConfigError as err:
    print(err)
else:
    print(sorted({(r["problem"], r["setting"]) for r in plan.claim_rows if r.get("problem") == "laplace_cos"}))
"""
    cells = [("laplace_cos", '{"dim": 3, "k": 0.5}'), ("laplace_cos", '{"dim": 3, "k": 2.0}')]
    typo = ("synthetic.settings.problems.laplace_coss: unknown key (did you mean 'laplace_cos'?); valid keys: "
            "bernoulli_iwae, bernoulli_toy, categorical_toy, dimension, gamma, gaussian_elbo, gaussian_iwae, "
            "laplace_cos, mohamed_cos, mohamed_exp, mohamed_quadratic")
    for problem, expected in ((line, str(cells)), ({"laplace_coss": line["laplace_cos"]}, typo)):
        res = subprocess.run([sys.executable, "-c", plan, json.dumps(problem)], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.strip() == expected, res.stdout + res.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config/synthetic/example.yaml").read_text())
    (tmp_path / "laplace.yaml").write_text(yaml.safe_dump({**config, "problems": line}))
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic", "--config", "laplace.yaml", "--out", "out"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "out" / "synthetic.csv")
    assert set(frame.problem) == {"laplace_cos"} and set(frame.family) == {"Laplace"}
    assert set(frame.setting) == {'{"dim": 3, "k": 0.5}', '{"dim": 3, "k": 2.0}'} and set(frame.k) == {0.5, 2.0}
    assert {"pathwise", "reinforce"} <= set(frame.estimator_name) and frame.total_variance.gt(0).all()
