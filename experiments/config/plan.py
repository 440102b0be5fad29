"""The plan of a study: every job, its resolved config and output folder, and what is left out and why.

``make_plan(config, devices)`` is a pure function of the study config (already checked against
``workflow/schemas/config.schema.yaml``): it parses every estimator entry once (``EstimatorSpec``), resolves
every job's typed config (so a typo at any depth fails here, before any job starts), and decides which
estimator applies where with the one function that decides it, ``Estimator.why_not``. The Snakefile
only turns the plan into rules; the aggregation reads the same plan.

It is made in three steps, one module each: the sweep expanded into jobs (``sweep``, with the cross-key checks
of ``checks``), then the claim's rows declared over them (``claims``). The jobs and their folders are
``jobs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from experiments.config.claims import declare_claim
from experiments.config.jobs import Exclusion, SharedCheckpointsJob, StackedJob, SyntheticJob, VAERun
from experiments.config.sweep import plan_synthetic, plan_vae
from experiments.config.user_modules import import_modules


@dataclass
class Plan:
    study: str
    results: str                                    # results/<study>: every output of the study is below it
    synthetic_jobs: list[SyntheticJob] = field(default_factory=list)
    vae_runs: list[VAERun] = field(default_factory=list)
    stacked_jobs: list[StackedJob] = field(default_factory=list)   # vae.stack_seeds: runs trained together
    shared_jobs: list[SharedCheckpointsJob] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    job_configs: dict[str, dict] = field(default_factory=dict)   # job path -> the config its job reads
    #: The claim's rows, declared before anything is measured: (source, setting..., comparison,
    #: estimator_id, comparator_id) for every setting where both estimators of a declared pair apply.
    claim_rows: list[dict] = field(default_factory=list)
    #: Data set -> a one-line notice: files the study's jobs will download (neither local nor cached).
    downloads: dict[str, str] = field(default_factory=dict)

    def job_config(self, path: str) -> dict:
        if path not in self.job_configs:
            raise KeyError(f"no job of study {self.study!r} has the folder {path!r}")
        return self.job_configs[path]

    def outputs(self, jobs, *names: str) -> list[str]:
        return [f"{self.results}/{job.path}/{name}" for job in jobs for name in names]

    def stacked_job(self, folder: str) -> StackedJob:
        """The stacked job of the runs in ``folder`` (``StackedJob.folder``)."""
        for job in self.stacked_jobs:
            if job.folder == folder:
                return job
        raise KeyError(f"no stacked job trains the runs of {folder!r}")

    def host_of(self, dataset: str, latent_id: str, device: str, seed: int) -> VAERun:
        for job in self.shared_jobs:
            h = job.host
            if (h.dataset, h.latent_id, h.device, h.seed) == (dataset, latent_id, device, int(seed)):
                return h
        raise KeyError(f"no shared-checkpoints host run for {dataset}/{latent_id}/{device}/seed{seed}")


def make_plan(config: dict, devices: list[str]) -> Plan:
    """Every job of the study on ``devices`` (those this machine or cluster has, chosen by the caller)."""
    import_modules(config.get("modules"))
    plan = Plan(study=config["study"], results=f"results/{config['study']}")
    plan_synthetic(config, devices, plan)
    plan_vae(config, devices, plan)
    declare_claim(config, plan)
    return plan
