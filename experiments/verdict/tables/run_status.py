"""The run status (``run_status.csv``): every VAE run of the plan, how it ended and at which step."""
from __future__ import annotations

import pandas as pd

from experiments.verdict.tables.table import Table

RUN_STATUS_COLUMNS = ["run", "dataset", "latent_id", "latent", "estimator_id", "n_samples", "device", "seed", "lr",
                      "preset", "host", "status", "step", "message"]


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
                     "preset": config.get("preset") or "", "host": run in hosts,
                     "status": status["status"], "step": status["step"], "message": status.get("message", "")})
    return pd.DataFrame(rows, columns=RUN_STATUS_COLUMNS)


TABLE = Table("run_status", (
    "Every VAE run: completed or diverged, with the step reached."))

