"""What a new user meets first: --config layered onto the default study, the devices and data sets planning
leaves out or will download named in one line, role-declared comparisons, provenance that stays text."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.verdict import claim
from experiments.runtime import provenance
from experiments.runtime import result_tables
from experiments.config import study_config
from experiments.config.plan import make_plan
from experiments.config.typed_config import ConfigError
from studies import copy_workflow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """One copy for the whole file (conftest.py's fixture makes one per test): its tests only dry-run in it."""
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def _plan(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_config_alone_layers_onto_the_default_study(workflow_copy):
    res = _plan(workflow_copy, "--config", "seeds=[1]")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "results/default/synthetic/cpu/seed1/" in res.stdout
    assert "results/default/synthetic/cpu/seed0/" not in res.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_dropped_devices_are_named_in_one_line(workflow_copy):
    res = _plan(workflow_copy, "--config", "devices=[cpu,cuda]", "drop_unavailable_devices=True")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("devices: left out")]
    assert lines == ["devices: left out cuda (not on this machine; drop_unavailable_devices is set)"]
    assert "/cuda/" not in res.stdout  # without the flag it is refused: test_pipeline.py's cuda test


def test_planning_names_the_data_sets_it_will_download(workflow_copy, tmp_path):
    env = {"GRADVAR_CACHE": str(tmp_path / "empty_cache")}
    environ = {k: v for k, v in os.environ.items() if k != "GRADVAR_DATA"}
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/mnist.yaml"],
                         cwd=workflow_copy, capture_output=True, text=True, timeout=300,
                         env={**environ, "PYTHONPATH": str(ROOT), **env})
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("data: ")]
    assert line.startswith("data: binarized_mnist: 3 file(s) (binarized_mnist_train.amat, ")
    assert f"nor in the cache {tmp_path / 'empty_cache' / 'binarized_mnist'}" in line
    assert "downloads them from http" in line

def test_nothing_is_said_of_files_in_the_cache_or_a_data_folder(tmp_path, monkeypatch):
    from experiments.vae import data

    monkeypatch.delenv("GRADVAR_DATA", raising=False)
    cached = data.cache_folder("binarized_mnist", tmp_path)
    assert [r.name for r in data.to_download("binarized_mnist", cache_dir=tmp_path)] == \
        ["binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat"]
    cached.mkdir(parents=True)
    for name in ("train", "valid", "test"):
        (cached / f"binarized_mnist_{name}.amat").touch()
    assert data.to_download("binarized_mnist", cache_dir=tmp_path) == []
    assert data.to_download("mnist", data_dir=tmp_path / "a_data_folder") == []  # check_present speaks for it
    assert data.to_download("digits") == []  # embedded


def _default_config(**changes) -> dict:
    import yaml

    return study_config.check({**yaml.safe_load((ROOT / "config/config.yaml").read_text()), **changes})


def test_a_role_in_a_comparison_takes_every_estimator_declaring_it():
    comparison = claim.Comparison("c", ("role:score_function",), ("pathwise",))
    estimators = {"pathwise": "pathwise", "plain": "reinforce", "loo": "reinforce", "v": "vimco", "arm": "arm"}
    assert comparison.pairs(estimators) == [("plain", "pathwise"), ("loo", "pathwise"), ("v", "pathwise")]


def test_an_unknown_comparison_item_is_refused_at_planning():
    config = _default_config(claim={"comparisons": [{"id": "c", "numerator": ["role:score_functoin"],
                                                      "denominator": ["pathwise"]}]})
    with pytest.raises(ConfigError, match=r"claim.comparisons\[0\] \(c\): 'role:score_functoin' is no estimator id.*"
                                          r"did you mean 'role:score_function'"):
        make_plan(config, ["cpu"])


def test_the_study_name_snapshots_is_reserved():
    with pytest.raises(ConfigError, match="study: 'snapshots' is reserved"):
        _default_config(study="snapshots")


# --- provenance stays text ---------------------------------------------------------------------------

def test_provenance_values_are_never_numbers_to_a_csv_reader(tmp_path):
    assert provenance.git_commit() == "unknown" or provenance.git_commit().startswith("g")
    assert provenance.config_hash({"a": 1}).startswith("sha256:")
    path = tmp_path / "t.csv"
    pd.DataFrame({"git_commit": ["g3675e0888127"], "config_hash": ["sha256:3675e0888127"]}).to_csv(path, index=False)
    back = pd.read_csv(path)  # any reader, without dtypes
    assert back.git_commit[0] == "g3675e0888127" and back.config_hash[0] == "sha256:3675e0888127"


def test_a_hash_that_looks_like_a_number_stays_text_in_every_table_we_read(tmp_path):
    """A commit written by an older gradvar (bare hex) is read as text by the aggregation's reader."""
    row = {"experiment": "synthetic", "problem": "p", "setting": "{}", "parameter": "loc", "estimator_id": "e",
           "n_samples": 1, "seed": 0, "exact_grad_norm": 1.0, "total_variance": 1.0, "mean_variance": 1.0,
           "seconds_per_estimate": 1.0, "git_commit": "3675e0888127", "config_hash": "1234567890123"}
    path = tmp_path / "synthetic.csv"
    result_tables.write(pd.DataFrame([row]), path)
    assert pd.api.types.is_float_dtype(pd.read_csv(path).git_commit)  # the trap: a plain reader makes it a float
    frame = result_tables.read(path, "synthetic")
    assert frame.git_commit[0] == "3675e0888127" and frame.config_hash[0] == "1234567890123"
