"""The device comparison (``device_comparison.csv``): the same cell on two devices, its time ratio and whether
the measured variances agree."""
from __future__ import annotations

import math

import pandas as pd

from experiments.verdict.tables.table import Table

DEVICE_COLUMNS = ["source", "cell", "device_a", "device_b", "seconds_a", "seconds_b", "speedup_b_over_a", "variance_a",
                  "variance_b", "variance_z", "variances_agree"]


def _agreement_rows(frame: pd.DataFrame, keys: list[str], seconds_col: str, source: str, z_tol: float) -> list[dict]:
    """Pair each cell across devices (the first device in sorted order against each other one)."""
    rows = []
    if frame.empty or frame["device"].nunique() < 2:
        return rows
    devices = sorted(frame["device"].unique())
    a = frame[frame.device == devices[0]].set_index(keys)
    for other in devices[1:]:
        b = frame[frame.device == other].set_index(keys)
        joined = a.merge(b, left_index=True, right_index=True, suffixes=("_a", "_b"))  # join(suffixes=): pandas 3 only
        for idx, r in joined.iterrows():
            has_var = "total_variance_a" in joined
            z = ((r["total_variance_a"] - r["total_variance_b"])
                 / math.hypot(r["total_variance_se_a"], r["total_variance_se_b"])) if has_var else math.nan
            rows.append({"source": source, "cell": " ".join(map(str, idx if isinstance(idx, tuple) else (idx,))),
                         "device_a": devices[0], "device_b": other,
                         "seconds_a": r[f"{seconds_col}_a"], "seconds_b": r[f"{seconds_col}_b"],
                         "speedup_b_over_a": r[f"{seconds_col}_a"] / r[f"{seconds_col}_b"],
                         "variance_a": r["total_variance_a"] if has_var else math.nan,
                         "variance_b": r["total_variance_b"] if has_var else math.nan,
                         "variance_z": z, "variances_agree": bool(abs(z) <= z_tol) if math.isfinite(z) else None})
    return rows


def device_comparison(synthetic: pd.DataFrame, metrics: pd.DataFrame, variance: pd.DataFrame | None = None,
                      z_tol: float = 3.0) -> pd.DataFrame:
    """The same cell on two devices: time ratio, and whether the measured variances agree within
    ``z_tol`` combined standard errors (synthetic cells, and VAE encoder-gradient variance at the same
    checkpoints of the same run; VAE training time per step is compared too)."""
    rows = _agreement_rows(synthetic, ["problem", "setting", "parameter", "estimator_id", "n_samples", "seed"],
                           "seconds_per_estimate", "synthetic", z_tol)
    if variance is not None and not variance.empty:
        own = variance[variance["protocol"] == "own_run"]
        rows += _agreement_rows(own, ["dataset", "latent", "estimator_id", "n_samples", "seed", "step"],
                                "seconds_per_estimate", "vae_variance", z_tol)
    if not metrics.empty:
        keys = ["dataset", "latent", "estimator_id", "n_samples", "seed"]
        last = metrics[metrics.split == "test"].sort_values("step").groupby(keys + ["device"]).tail(1)
        rows += _agreement_rows(last[keys + ["device", "seconds_per_step"]], keys, "seconds_per_step",
                                "vae_training", z_tol)
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS)


TABLE = Table("device_comparison", (
    "The same cell on two devices: time ratio, and whether the measured variances agree within 3 combined "
    "standard errors (header only in a one-device study)."))

