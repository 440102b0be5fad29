"""The synthetic study runs end to end on its tiny config and writes the documented columns."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.synthetic import study as synthetic

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", str(ROOT / "config/synthetic/example.yaml"),
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True)
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
    with pytest.raises(ValueError, match=r"synthetic.settings.problems.nope: unknown key; valid keys: bernoulli_iwae, bernoulli_toy"):
        synthetic.parse_settings({"problems": {"nope": {}}})


def test_a_config_error_is_one_line_from_the_command_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nmeasurement: {min_estimate: 10}\n")
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", str(bad), "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == ("config error: measurement.min_estimate: unknown key (did you mean 'min_estimates'?); "
                                  "valid keys: chunk_size, max_estimates, min_estimates, target_rse, timing_calls, "
                                  "warmup_calls")


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
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", *args], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", str(configs[1]), "--out",
                    str(tmp_path / "alone")], cwd=ROOT, check=True, capture_output=True)
    timing = ["seconds_per_estimate", "work_normalized_variance"]
    both, alone = (pd.read_csv(p / "synthetic.csv").drop(columns=timing) for p in (tmp_path / "both/s1", tmp_path / "alone"))
    pd.testing.assert_frame_equal(both, alone)
    assert set(pd.read_csv(tmp_path / "both/s0/synthetic.csv")["seed"]) == {0}


def test_config_and_out_pairs_must_match(tmp_path):
    res = subprocess.run([sys.executable, "-m", "experiments.synthetic.study", "--config", "a.yaml", "--config", "b.yaml",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "give one --out per --config" in res.stderr
