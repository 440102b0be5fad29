"""The tiny study submitted to a real (one-node) SLURM cluster through snakemake-executor-plugin-slurm.

The cluster (slurmctld, slurmd, munge; loopback only; a fake GPU resource) is installed, started and
stopped by tests/slurm/cluster.sh. The test follows the README's cluster section with the test profile
(tests/slurm/profile, the VAE rules asking for the fake GPU). It checks that:

- a job killed on the cluster (scancel) fails, the other jobs' results are kept, and a rerun plans and runs
  only what is missing (the killed VAE run resumes from its checkpoint);
- GPU requests reach SLURM for the VAE jobs and not for the others;
- the results equal those of a local run of the same config (same seeds), timings aside.

It changes the machine, so it runs only when asked: GRADVAR_SLURM_TEST=1 (opt-in; cluster.sh refuses to
overwrite a SLURM configuration it did not write and stops every daemon it started). CI sets
GRADVAR_REQUIRE_SLURM=1, which asks for it and turns "cannot install or start SLURM" into a failure.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
import pytest

from studies import copy_workflow

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
PROFILE = ROOT / "tests" / "slurm" / "profile"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
KILLED = "rule_vae_train_wildcards_digits_gaussian_reinforce_loo_2_cpu_0"
# Timings, and the claim's ratios that are made of timings, differ between any two runs.
TIMING = ["seconds_per_step", "eval_seconds", "seconds_per_estimate", "work_normalized_variance", "device_name",
          "work_ratio", "equal_cost_ratio"]
pytestmark = pytest.mark.slurm


def _unavailable(reason: str):
    if os.environ.get("GRADVAR_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM is required here (GRADVAR_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("GRADVAR_SLURM_TEST") != "1" and os.environ.get("GRADVAR_REQUIRE_SLURM") != "1":
        pytest.skip("the cluster test changes the machine (Debian packages, /etc/slurm, munge and SLURM daemons); "
                    "run it on a disposable machine with GRADVAR_SLURM_TEST=1 pytest -q tests/test_slurm.py")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')")
    if os.geteuid() != 0:
        _unavailable("installing and starting SLURM's daemons needs root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        _unavailable("SLURM is not installed and there is no apt-get to install it")
    res = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        _unavailable(f"the test cluster did not start: {res.stderr[-2000:]}")
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=120)


def _submit(workdir: Path, *extra) -> subprocess.Popen:
    # SIGINT, not SIGTERM, stops a waiting run and cancels its jobs (see shared notes on the plugin).
    cmd = ["timeout", "-s", "INT", "-k", "30", "900", *SNAKEMAKE, "--workflow-profile", str(PROFILE),
           "--configfile", "config/tiny.yaml", *extra]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when_running(comment: str, proc: subprocess.Popen, limit: float = 300) -> str:
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T %k"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            job, state, job_comment = (line.split(" ", 2) + ["", ""])[:3]
            if job_comment.strip() == comment and state == "RUNNING":
                subprocess.run(["scancel", job], check=True)
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {comment} never ran")


def _tables(workdir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / "tiny" / "tables" / f"{name}.csv").drop(columns=TIMING, errors="ignore")


def test_tiny_study_on_slurm_matches_local(cluster, tmp_path):
    slurm_dir = copy_workflow(tmp_path / "slurm")
    first = _submit(slurm_dir)
    killed_job = _kill_when_running(KILLED, first)
    log1, _ = first.communicate(timeout=900)
    assert first.returncode != 0, log1[-3000:]
    assert re.search(rf"SLURM-job '{killed_job}' failed", log1), log1[-3000:]

    runs = slurm_dir / "results" / "tiny" / "vae" / "runs" / "digits"
    killed_run = runs / "gaussian" / "reinforce_loo" / "s2" / "cpu" / "seed0"
    assert not (killed_run / "status.json").exists()
    for other in ("gaussian/pathwise", "categorical/gumbel", "categorical/reinforce_loo"):
        assert (runs / other / "s2" / "cpu" / "seed0" / "status.json").exists(), f"{other} was lost"
    synthetic_ids = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())["synthetic"]["estimators"]
    done = (slurm_dir / "results" / "tiny" / "synthetic" / "cpu" / "seed0").glob("*/synthetic.csv")
    assert {p.parent.name for p in done} == set(synthetic_ids)

    plan = subprocess.run([*SNAKEMAKE, "--workflow-profile", str(PROFILE), "--configfile", "config/tiny.yaml", "-n"],
                          cwd=slurm_dir, capture_output=True, text=True)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout.split("Job stats:")[1], flags=re.M))
    expected = {"vae_train": 1, "aggregate": 1, "figures": 1, "tables_html": 1, "all": 1}
    assert jobs == {**{k: str(v) for k, v in expected.items()}, "total": str(sum(expected.values()))}, plan.stdout

    second = _submit(slurm_dir)
    log2, _ = second.communicate(timeout=900)
    assert second.returncode == 0, log2[-3000:]
    assert (killed_run / "status.json").exists()

    jobs = subprocess.run(["scontrol", "-o", "show", "jobs"], capture_output=True, text=True).stdout.splitlines()
    vae_jobs = [j for j in jobs if "Comment=rule_vae_train" in j]
    other_jobs = [j for j in jobs if "Comment=rule_synthetic" in j or "Comment=rule_aggregate" in j]
    assert vae_jobs and all("TresPerJob=gres:gpu:1" in j for j in vae_jobs)
    assert other_jobs and not any("gpu" in j.split("TRES=")[1] for j in other_jobs if "TRES=" in j)
    assert not any("TresPerJob=gres:gpu" in j for j in other_jobs)

    local_dir = copy_workflow(tmp_path / "local")
    local = subprocess.run([*SNAKEMAKE, "--cores", "2", "--configfile", "config/tiny.yaml"], cwd=local_dir,
                           capture_output=True, text=True)
    assert local.returncode == 0, local.stderr[-3000:]
    for name in ("synthetic_all", "vae_metrics", "vae_variance", "variance_claim", "elbo_table"):
        pd.testing.assert_frame_equal(_tables(local_dir, name), _tables(slurm_dir, name), check_exact=True)
