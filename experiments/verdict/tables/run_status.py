"""The run status (``run_status.csv``): every VAE run of the plan, how it ended and at which step."""
from __future__ import annotations

import pandas as pd

from experiments.verdict.tables.table import Table

RUN_STATUS_COLUMNS = ["run", "dataset", "latent_id", "latent", "estimator_id", "n_samples", "device", "seed", "lr",
                      "preset", "objective", "bound_k", "host", "status", "step", "message"]


def objective_columns(objective: dict) -> dict:
    """``objective`` (in words: ``elbo, kl exact`` or ``iwae, k=5``) and ``bound_k`` (the K of the K-sample
    bound; None for the ELBO) of a run's resolved ``objective`` settings."""
    if objective["bound"] == "iwae":
        return {"objective": f"iwae, k={int(objective['k'])}", "bound_k": int(objective["k"])}
    return {"objective": f"elbo, kl {objective['kl']}", "bound_k": None}


def run_status(plan, statuses: dict[str, dict], names: dict[str, str]) -> pd.DataFrame:
    """One row per VAE run (``plan.vae_runs``, in order): its folder, cell, learning rate and preset (from the
    run's resolved config), whether it hosts the shared-checkpoints protocol (``host``), and its
    ``status.json`` (``statuses``: run path -> status; ``step`` reached, ``message``). ``names``: latent id ->
    the latent's name in the tables (``experiments.verdict.inputs.latent_names``)."""
    hosts = {job.host for job in plan.shared_jobs}
    rows = []
    for run in plan.vae_runs:
        config, status = plan.job_config(run.path), statuses[run.path]
        rows.append({"run": f"{plan.results}/{run.path}", "dataset": run.dataset, "latent_id": run.latent_id,
                     "latent": names[run.latent_id], "estimator_id": run.estimator_id, "n_samples": run.n_samples,
                     "device": run.device, "seed": run.seed, "lr": config["train"]["lr"],
                     "preset": config.get("preset") or "", **objective_columns(config["objective"]),
                     "host": run in hosts,
                     "status": status["status"], "step": status["step"], "message": status.get("message", "")})
    return pd.DataFrame(rows, columns=RUN_STATUS_COLUMNS)


TABLE = Table("run_status", (
    "Every VAE run: completed or diverged, with the step reached."))

