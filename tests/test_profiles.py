"""Every rule that runs as a job declares its cluster resources (a rule without a runtime would get the
cluster's default time limit, and a long job would be stopped there), from one source: the rules' `resources:`,
estimated from each job's config by ``experiments.config.job_resources``; the SLURM profile says only where jobs
go. A training job's time scales with its steps and, stacked, with its seeds."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.config import job_resources, study_config
from experiments.config.jobs import VAE_CELL, VAE_RUN
from experiments.config.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
LOCAL = {"all", "job_config"}  # localrules: they run on the submit host, never as cluster jobs
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())


def _snakemake(*args) -> str:
    res = subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res.stdout


def _jobs(dry_run: str) -> list[dict]:
    """Each job of a dry run: its rule, wildcards, resources and threads (printed only where above one)."""
    jobs = []
    for line in dry_run.splitlines():
        if line.startswith("rule "):
            jobs.append({"rule": line[5:].rstrip(":"), "wildcards": {}, "resources": {}, "threads": 1})
        elif jobs and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            if key in ("wildcards", "resources"):
                jobs[-1][key] = dict(item.split("=", 1) for item in value.split(", "))
            elif key == "threads":
                jobs[-1]["threads"] = int(value)
    return jobs


@pytest.fixture(scope="module")
def default_study():
    """The default study as a cluster would run it (``vae.sequential_seeds`` off: a cell that cannot be stacked
    trains one job per seed, so every rule has jobs in it, stacked and single training runs included) planned as
    the SLURM profile plans it, with its jobs' resources, and its plan."""
    rules = {line.split(" (")[0].strip() for line in _snakemake("--list-rules").splitlines()
             if line.strip() and not line.startswith(" ")}
    jobs = _jobs(_snakemake("--dry-run", "--forceall", "--workflow-profile", "profiles/slurm",
                            "--config", "vae={sequential_seeds: false}"))
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["vae"]["sequential_seeds"] = False
    config = study_config.check(config)
    return rules, jobs, make_plan(config, config["devices"])


def test_the_slurm_profile_leaves_time_memory_and_cpus_to_the_rules():
    for scope in [PROFILE["default-resources"], *(PROFILE.get("set-resources") or {}).values()]:
        assert not {"runtime", "mem_mb", "mem", "cpus_per_task"} & set(scope), scope


def test_every_cluster_job_has_its_rules_runtime_memory_and_one_cpu(default_study):
    rules, jobs, _ = default_study
    assert {"synthetic", "vae_train", "vae_train_stacked", "vae_shared_checkpoints", "aggregate"} <= rules
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert rules - LOCAL <= set(by_rule), f"rules without a job in the default study: {rules - LOCAL - set(by_rule)}"
    declared = {job_resources.AGGREGATE_MEM_MB, job_resources.REPORT_MEM_MB}
    for device in ("cpu", "cuda"):
        declared |= {job_resources.training_mem_mb(device, n) for n in range(1, 65)}
        declared |= {job_resources.shared_checkpoints_mem_mb(device), job_resources.synthetic_mem_mb(device)}
    declared -= {1000}  # Snakemake's own default
    for job in (j for j in jobs if j["rule"] not in LOCAL):
        resources = job["resources"]
        # Snakemake has no default runtime and the profile sets none: a runtime here is the rule's.
        assert int(resources.get("runtime", 0)) > 0, f"{job['rule']} has no runtime for the cluster"
        # Snakemake's default memory (1 GB and up, from the input size) is none of the rules' values.
        assert int(resources["mem_mb"]) in declared, f"{job['rule']} has no memory of its own: {resources}"
        assert job["threads"] == 1, job  # every rule's command pins one thread: one CPU (cpus-per-task)
        assert resources.get("gpu", "0") == str(job_resources.gpus(job["wildcards"].get("device", "cpu")))


def test_a_training_jobs_time_is_its_runs_steps_and_seeds(default_study):
    _, jobs, plan = default_study
    training = [j for j in jobs if j["rule"] in ("vae_train", "vae_train_stacked")]
    assert {j["rule"] for j in training} == {"vae_train", "vae_train_stacked"}
    for job in training:
        if job["rule"] == "vae_train":
            runs = [plan.job_config(VAE_RUN.format(**job["wildcards"]))]
        else:
            runs = [plan.job_config(r.path) for r in plan.stacked_job(VAE_CELL.format(**job["wildcards"])).runs]
            assert len(runs) > 1
        assert int(job["resources"]["runtime"]) == job_resources.training_minutes(runs)
        assert int(job["resources"]["mem_mb"]) == job_resources.training_mem_mb(job["wildcards"]["device"], len(runs))


@pytest.fixture(scope="module")
def paper_plan():
    config = study_config.check(yaml.safe_load((ROOT / "config/paper.yaml").read_text()))
    return make_plan(config, config["devices"])


def test_training_time_scales_with_steps_and_seeds(paper_plan):
    run = paper_plan.job_config(paper_plan.stacked_jobs[0].runs[0].path)
    longer = copy.deepcopy(run)
    longer["train"]["steps"] *= 2
    step_seconds = run["train"]["steps"] * job_resources.STEP_SECONDS["cuda"]
    # twice the steps: at least their time more (and the evaluations and checkpoints among them), at most twice
    assert job_resources.run_seconds(run) + step_seconds < job_resources.run_seconds(longer)
    assert job_resources.run_seconds(longer) <= 2 * job_resources.run_seconds(run)
    one, three = job_resources.training_minutes([run]), job_resources.training_minutes([run] * 3)
    assert three - job_resources.START_MINUTES == pytest.approx(3 * (one - job_resources.START_MINUTES), abs=3)
    assert job_resources.training_minutes([run] * 3, attempt=2) == 2 * three


def test_the_paper_studys_training_jobs_ask_for_more_than_measured(paper_plan):
    """On an H200 (results/gpu_check) the slowest training step of any estimator at the paper sizes took 15.6 ms
    alone, three seeds stacked ran at 2.16x or more the throughput of three runs, and an evaluation at k = 1000
    took 0.88 s: every training job's limit covers that, with the margin (the issue: the stacked jobs, three seeds
    of 100k steps, had no entry in the profile and got its default 60 minutes)."""
    stacked = {run for job in paper_plan.stacked_jobs for run in job.runs}
    jobs = [job.runs for job in paper_plan.stacked_jobs] + [(run,) for run in paper_plan.vae_runs if run not in stacked]
    for runs in jobs:
        configs = [paper_plan.job_config(run.path) for run in runs]
        steps, every = configs[0]["train"]["steps"], configs[0]["eval"]["every"]
        speedup = 2.16 if len(runs) > 1 else 1.0
        measured = len(runs) * (steps * 0.0156 / speedup + (steps // every + 1) * 0.88)
        assert job_resources.training_minutes(configs) * 60 >= job_resources.MARGIN * measured
        assert len(runs) == 1 or job_resources.training_minutes(configs) > 60
