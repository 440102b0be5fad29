# Helpers shared by the rules: the study config checked, the plan made once, and input functions.
# Everything the sweep contains, and everything it leaves out and why, comes from experiments.config.plan.
import json
import re
import os
import sys
from pathlib import Path

import snakemake.utils

from experiments.config import job_resources, study_config
from experiments.config.jobs import LR_SUFFIX_PATTERN, SHARED_CHECKPOINTS_JOB, SYNTHETIC_JOB, VAE_CELL, VAE_RUN
from experiments.config.plan import make_plan
from experiments.verdict.tables import TABLES
from experiments.verdict.plots import FIGURE_TABLES, FIGURES
from experiments.config.typed_config import ConfigError
from experiments.runtime.devices import device_available

# Every job Snakemake starts inherits this: PyTorch maps its large CPU tensors (2 MiB and more) with transparent
# huge pages, one page fault per 2 MiB instead of per 4 KiB. A vectorized synthetic cell allocates and frees
# tensors of tens of MB to GB per operation, and on the default study the faults were a third of the synthetic
# jobs' CPU time; with huge pages one seed's 30 jobs took 188 s instead of 225 s (system time 66 s, was 96 s),
# with the same tables and a peak memory 0.68-1.12 times as large per job. PyTorch reads the variable once, while
# it is imported, so it is set here for the jobs, not inside them; a value already in the environment is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _runs_remotely():
    """True under a cluster executor: the submit host need not have the jobs' devices."""
    settings = getattr(getattr(workflow, "executor_plugin", None), "common_settings", None)
    return bool(getattr(settings, "non_local_exec", False))


def select_devices(cfg):
    devices = list(dict.fromkeys(cfg["devices"]))
    if not cfg["check_devices"] or _runs_remotely():
        return devices  # each job checks its own device and fails clearly where it is missing
    missing = [d for d in devices if not device_available(d)]
    if missing and not cfg["drop_unavailable_devices"]:
        raise ConfigError(
            f"devices: {missing} are not on this machine (torch sees no such CUDA device); remove them, set "
            f"drop_unavailable_devices: true to leave them out, or on a cluster submit host pass "
            f"--config check_devices=False (the jobs check their own device)")
    kept = [d for d in devices if d not in missing]
    if not kept:
        raise ConfigError(f"devices: none of {devices} is available here")
    if missing:
        print(f"devices: left out {', '.join(missing)} (not on this machine; drop_unavailable_devices is set)",
              file=sys.stderr)
    return kept


# --config KEY=VALUE over the study config, typed as YAML types it (Snakemake reads nested values as text).
snakemake.utils.update_config(config, study_config.typed(dict(workflow.config_settings.config)))
try:
    config.update(study_config.check(config))
    PLAN = make_plan(config, select_devices(config))
    for notice in PLAN.downloads.values():
        print(notice, file=sys.stderr)
except ConfigError as err:
    # One line, not a traceback: the message names the key path and what is valid.
    raise SystemExit(f"config error: {err}") from None

STUDY = config["study"]
R = PLAN.results  # results/<study>
LOGS = f"logs/{STUDY}"
_SCHEMA = study_config.schema()
ID_PATTERN = _SCHEMA["definitions"]["id_map"]["propertyNames"]["pattern"].strip("^$")
ESTIMATOR_FOLDER_PATTERN = ID_PATTERN + LR_SUFFIX_PATTERN  # an lr_grid entry's runs: ID@lrLR
DEVICE_PATTERN = _SCHEMA["properties"]["devices"]["items"]["pattern"].strip("^$")
DATASET_PATTERN = "|".join(_SCHEMA["properties"]["vae"]["properties"]["datasets"]["items"]["enum"])

SYNTHETIC_TABLES = PLAN.outputs(PLAN.synthetic_jobs, "synthetic.csv")
SYNTHETIC_SKIPPED = PLAN.outputs(PLAN.synthetic_jobs, "skipped.csv")
VAE_METRICS = PLAN.outputs(PLAN.vae_runs, "metrics.csv")
VAE_VARIANCE = PLAN.outputs(PLAN.vae_runs, "variance.csv")
VAE_STATUS = PLAN.outputs(PLAN.vae_runs, "status.json")
SHARED_TABLES = PLAN.outputs(PLAN.shared_jobs, "variance.csv")


# The rules' patterns come from the job folder templates of experiments.config.jobs (SYNTHETIC_JOB, VAE_RUN,
# VAE_CELL, SHARED_CHECKPOINTS_JOB: written once, with Snakemake's wildcards), which each job's path also fills in.
def job_file(template, name):
    """``results/STUDY/TEMPLATE/NAME``: a file of a job folder template, its wildcards left for Snakemake."""
    return f"{R}/{template}/{name}"


def every_seed(template, name):
    """``job_file`` for every seed of the study (``{seed}`` filled in, the other wildcards left open): the
    files of a job that runs every seed (a synthetic job, a stacked training job)."""
    return expand(job_file(template, name), seed=config["seeds"], allow_missing=True)


def canonical_json(value):
    """``value`` as JSON with sorted keys: a rule parameter that changes only when the value does."""
    return json.dumps(value, sort_keys=True)


def job_config_json(job):
    """The config a job reads, as canonical JSON (sorted keys), so it changes only when a value does."""
    return json.dumps(PLAN.job_config(job), indent=2, sort_keys=True)


# vae.stack_seeds / vae.sequential_seeds: the estimator folders whose runs train in one job per cell, and the
# others (one job per run). That depends on the estimator entry only, so a folder is grouped in every cell or none.
STACKED_FOLDERS = sorted({run.estimator_folder for job in PLAN.stacked_jobs for run in job.runs})
SINGLE_FOLDERS = sorted({run.estimator_folder for run in PLAN.vae_runs} - set(STACKED_FOLDERS))
NOTHING = r"(?!x)x"  # a wildcard pattern that matches no folder


def folders_pattern(folders):
    return "|".join(re.escape(f) for f in folders) or NOTHING


def stacked_job(wildcards):
    """The planned job (``StackedJob``) of a cell's seeds."""
    return PLAN.stacked_job(VAE_CELL.format(**wildcards))


def stacked_runs(wildcards):
    """The member runs' folders of a stacked job, in seed order."""
    return [f"{R}/{run.path}" for run in stacked_job(wildcards).runs]


def stacked_mode(wildcards):
    """The stacked job's flag: none where its seeds train as one batched model, else one after another."""
    return "" if stacked_job(wildcards).batched else "--one-after-another"


def host_run_status(wildcards):
    """status.json of the run whose checkpoints the shared-checkpoints protocol measures at."""
    host = PLAN.host_of(wildcards.dataset, wildcards.latent, wildcards.device, wildcards.seed)
    return f"{R}/{host.path}/status.json"


# Cluster resources, declared by the rules of every job (the SLURM profile says only where jobs go). Wall-clock
# minutes and memory are estimated from the config each job reads (experiments.config.job_resources says how),
# one GPU for a job on cuda or cuda:N; the CPUs are each rule's `threads:`, which its command pins.
def gpus(wildcards):
    return job_resources.gpus(wildcards.device)


def _training_runs(wildcards):
    """The resolved configs of the runs a training job trains: its run, or a stacked job's seeds."""
    if "seed" in wildcards.keys():
        return [PLAN.job_config(VAE_RUN.format(**wildcards))]
    return [PLAN.job_config(run.path) for run in stacked_job(wildcards).runs]


def training_minutes(wildcards, attempt):
    return job_resources.training_minutes(_training_runs(wildcards), attempt)


def training_mem_mb(wildcards):
    return job_resources.training_mem_mb(wildcards.device, len(_training_runs(wildcards)))


def shared_checkpoints_mem_mb(wildcards):
    return job_resources.shared_checkpoints_mem_mb(wildcards.device)


def synthetic_mem_mb(wildcards):
    return job_resources.synthetic_mem_mb(wildcards.device)


def shared_checkpoints_minutes(wildcards, attempt):
    host = PLAN.host_of(wildcards.dataset, wildcards.latent, wildcards.device, wildcards.seed)
    job = PLAN.job_config(SHARED_CHECKPOINTS_JOB.format(**wildcards))
    return job_resources.minutes(job_resources.shared_checkpoints_seconds(job, PLAN.job_config(host.path)), attempt)


_SYNTHETIC_CELLS = job_resources.synthetic_cells(config["synthetic"].get("settings"))


def synthetic_minutes(wildcards, attempt):
    seconds = job_resources.synthetic_seconds(wildcards.device, len(config["seeds"]), _SYNTHETIC_CELLS)
    return job_resources.minutes(seconds, attempt)


def caption_file(kind, name, caption):
    """A report caption file for one output of a rule that writes many (a figure, a table), made from its
    registry entry (``FIGURES``, ``TABLES``: the one place a caption is written) under .snakemake/."""
    path = Path(".snakemake", "gradvar_captions", kind, f"{name}.rst").resolve()
    text = f"{name}: {caption}\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)
