"""What the verdict reads: every job's result tables, checked and concatenated, each VAE row named by its latent.

The only I/O of the verdict besides writing its tables (``workflow/scripts/aggregate.py``): ``read_inputs``
reads what the study's jobs wrote (``experiments.runtime.result_tables`` refuses a table that is not what its
job wrote, with one line naming it); ``experiments.verdict.tables.aggregate_study`` makes every table from it.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from experiments.config.checks import latents as parse_latents
from experiments.runtime import result_tables

#: The identification columns of an estimator in every table.
ESTIMATOR_COLUMNS = ["estimator_id", "estimator_name", "estimator_label"]


def latent_names(latents: dict) -> dict[str, str]:
    """Latent id -> the latent's name in the tables (``latents``: the config's ``vae.latents``): its label
    (e.g. ``bernoulli(200)``), unless two latents of the study share it (the same space under two models,
    presets or objectives): then the label with the latent id, so that no table or figure merges them."""
    label_of = {latent_id: spec.label() for latent_id, (spec, _, _) in parse_latents(latents).items()}
    shared_labels = {label for label, count in Counter(label_of.values()).items() if count > 1}
    return {i: f"{label} {i}" if label in shared_labels else label for i, label in label_of.items()}


def job_latents(plan, names: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Each VAE job's folder (``results/STUDY/...``: training runs and shared-checkpoints jobs) -> (latent id,
    the latent's name in the tables, from ``names``)."""
    runs = {f"{plan.results}/{run.path}": (run.latent_id, names[run.latent_id]) for run in plan.vae_runs}
    shared = {f"{plan.results}/{job.path}": (job.host.latent_id, names[job.host.latent_id]) for job in plan.shared_jobs}
    return {**runs, **shared}


def read_job_tables(paths, kind: str, latents: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
    """Every job's table of ``kind`` (a ``result_tables.KINDS`` name), checked, in the order of ``paths``; tables
    without rows are left out. ``latents`` (``job_latents``): the job folder -> (latent id, name), set as
    ``latent_id`` and ``latent`` on each VAE table's rows."""
    frames = []
    for p in paths:
        frame = result_tables.read(p, kind)
        if frame.empty:
            continue
        if latents is not None:
            latent_id, name = latents[os.path.dirname(p)]
            frame = frame.assign(latent_id=latent_id, latent=name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class StudyInputs:
    """Everything the study's jobs wrote, as the tables are made from it."""

    synthetic: pd.DataFrame     # every synthetic job's measurements
    skipped: pd.DataFrame       # what each synthetic job found inapplicable, per problem setting
    metrics: pd.DataFrame       # every VAE run's evaluations
    variance: pd.DataFrame      # encoder-gradient variance: own-run measurements, then shared checkpoints
    statuses: dict[str, dict]   # VAE run path (``VAERun.path``) -> its status.json
    latent_names: dict[str, str]   # latent id -> its name in the tables (``latent_names``)


def read_inputs(plan, names: dict[str, str], *, synthetic, skipped, metrics, variance, shared) -> StudyInputs:
    """The study's job tables (the keyword arguments: lists of paths, as the aggregate rule's inputs) and
    every VAE run's status; raises ``result_tables.InputError`` naming the first table it cannot trust."""
    latents = job_latents(plan, names)
    frames = {"synthetic": read_job_tables(synthetic, "synthetic"), "skipped": read_job_tables(skipped, "skipped"),
              "metrics": read_job_tables(metrics, "metrics", latents)}
    both = [f for f in (read_job_tables(variance, "variance", latents), read_job_tables(shared, "variance", latents))
            if not f.empty]
    statuses = {run.path: result_tables.read_status(f"{plan.results}/{run.path}/status.json") for run in plan.vae_runs}
    return StudyInputs(**frames, variance=pd.concat(both, ignore_index=True) if both else pd.DataFrame(),
                       statuses=statuses, latent_names=names)
