"""The cost table (``cost_table.csv``): seconds per VAE training step and per gradient estimate, and
work-normalized variance, per estimator and device."""
from __future__ import annotations

import pandas as pd

from experiments.verdict.inputs import ESTIMATOR_COLUMNS
from experiments.verdict.tables.table import Table


def cost_table(metrics: pd.DataFrame, variance: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Seconds per training step and work-normalized variance per estimator and device."""
    frames = []
    if not metrics.empty:
        last = metrics.sort_values("step").groupby(["dataset", "latent", *ESTIMATOR_COLUMNS, "n_samples", "device",
                                                    "device_name", "seed"]).tail(1)
        per_step = last.groupby(["dataset", "latent", *ESTIMATOR_COLUMNS, "n_samples", "device", "device_name"]) \
            ["seconds_per_step"].mean()
        own = variance[variance["protocol"] == "own_run"] if not variance.empty else variance
        wnv = own.groupby(["dataset", "latent", *ESTIMATOR_COLUMNS, "n_samples", "device", "device_name"]) \
            [["seconds_per_estimate", "work_normalized_variance", "total_variance"]].mean() if not own.empty else None
        vae = per_step.to_frame().join(wnv) if wnv is not None else per_step.to_frame()
        frames.append(vae.reset_index().assign(source="vae"))
    if not synthetic.empty:
        s = synthetic.groupby(["problem", *ESTIMATOR_COLUMNS, "n_samples", "device", "device_name"]) \
            [["seconds_per_estimate", "work_normalized_variance", "total_variance"]].median().reset_index()
        frames.append(s.assign(source="synthetic"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["source", *ESTIMATOR_COLUMNS])



TABLE = Table("cost_table", (
    "Cost: seconds per VAE training step, seconds per gradient estimate, and work-normalized variance (variance "
    "x seconds) per estimator and device; synthetic rows give the median over problems."))

