"""Aggregation: pure functions from tidy result frames to the tables under ``results/tables``.

No I/O here: the pipeline's scripts read the CSVs, call these, and write what they return.

Variance claim. For each setting compared, every estimator's variance is divided by the *comparator*'s
variance *on the same unit* (a seed, or a seed and checkpoint), and the ratio is summarized by
its geometric mean over units with a 95% bootstrap confidence interval. The bootstrap resamples units with
replacement and, inside each unit, perturbs both log-variances by their own measurement error
(log-normal with the variance's relative standard error), so a single seed still gets an honest interval.
The comparator is pathwise where it applies, else the unbiased estimator (``exact`` aside) with the lowest
variance in that setting. Verdict on "two orders of magnitude or more" (ratio >= ``threshold``): ``yes``
if the whole interval is at or above the threshold, ``no`` if it is entirely below, ``undecided``
otherwise, and ``missing`` where an expected estimator has no measurement at all (a diverged or failed run).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

import estimators

N_BOOT = 2000
#: The identification columns of an estimator in every table.
ESTIMATOR_COLUMNS = ["estimator_id", "estimator_name", "estimator_label"]

# Jang et al. 2017, Table 1: -ELBO on binarized MNIST (nats), VAE with Bernoulli or categorical latents.
JANG2017_TABLE1 = {
    "bernoulli": {"SF": 112.2, "ST": 116.0, "Gumbel-S.": 105.0, "ST Gumbel-S.": 111.5},
    "categorical": {"SF": 110.6, "ST": 110.9, "Gumbel-S.": 101.5, "ST Gumbel-S.": 107.8},
}
JANG_COLUMN = {"reinforce": "SF", "straight_through": "ST", "gumbel_softmax": "Gumbel-S.",
               "st_gumbel_softmax": "ST Gumbel-S."}


def bootstrap_log_ratio(log_ratio: np.ndarray, log_se: np.ndarray, rng: np.random.Generator,
                        n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """Geometric-mean ratio and its 95% interval from per-unit log ratios and their standard errors."""
    log_ratio = np.asarray(log_ratio, dtype=float)
    log_se = np.nan_to_num(np.asarray(log_se, dtype=float), nan=0.0)
    if log_ratio.size == 0:
        return math.nan, math.nan, math.nan
    idx = rng.integers(0, log_ratio.size, size=(n_boot, log_ratio.size))
    draws = log_ratio[idx] + rng.standard_normal(idx.shape) * log_se[idx]
    stats = draws.mean(axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(np.exp(log_ratio.mean())), float(np.exp(lo)), float(np.exp(hi))


def verdict(ci_low: float, ci_high: float, threshold: float) -> str:
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "missing"
    if ci_low >= threshold:
        return "yes"
    if ci_high < threshold:
        return "no"
    return "undecided"


def choose_comparator(group: pd.DataFrame, estimator_col: str, var_col: str) -> str | None:
    """Pathwise where present, else the lowest-variance unbiased estimator other than ``exact``."""
    pathwise = sorted(group.loc[group["estimator_name"] == "pathwise", estimator_col].unique())
    if pathwise:
        return pathwise[0]
    candidates = group[group["unbiased"].astype(bool) & (group["estimator_name"] != "exact")]
    candidates = candidates[candidates[var_col] > 0]
    if candidates.empty:
        return None
    return candidates.groupby(estimator_col)[var_col].apply(lambda v: np.log(v).mean()).idxmin()


def variance_claim(frame: pd.DataFrame, setting_cols: list[str], unit_cols: list[str], *, threshold: float,
                   estimator_col: str = "estimator_id", var_col: str = "total_variance",
                   se_col: str = "total_variance_se", expected: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per (setting, estimator other than the comparator): ratio to the comparator, CI, verdict.

    ``frame`` needs the setting and unit columns, the estimator columns (``estimator_id``,
    ``estimator_name``, ``estimator_label``), ``unbiased``, the variance and its standard error. ``expected``
    maps a setting tuple to the estimator ids that should be there; those with no measurement get a
    ``missing`` row.
    """
    names = frame.drop_duplicates(estimator_col).set_index(estimator_col)[["estimator_name", "estimator_label"]]
    describe = lambda est: {"estimator_id": est, **(names.loc[est].to_dict() if est in names.index  # noqa: E731
                                                    else {"estimator_name": "", "estimator_label": ""})}
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in frame.groupby(setting_cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        setting = dict(zip(setting_cols, key))
        ref = choose_comparator(group, estimator_col, var_col)
        present = set(group[estimator_col])
        if ref is None:
            continue
        ref_rows = group[group[estimator_col] == ref].set_index(unit_cols)
        for est, rows_est in group.groupby(estimator_col):
            if est == ref or (rows_est["estimator_name"] == "exact").all():
                continue
            joined = rows_est.set_index(unit_cols).join(ref_rows[[var_col, se_col]], suffixes=("", "_ref"), how="inner")
            joined = joined[(joined[var_col] > 0) & (joined[f"{var_col}_ref"] > 0)]
            log_ratio = np.log(joined[var_col]) - np.log(joined[f"{var_col}_ref"])
            log_se = np.sqrt((joined[se_col] / joined[var_col]) ** 2
                             + (joined[f"{se_col}_ref"] / joined[f"{var_col}_ref"]) ** 2)
            point, lo, hi = bootstrap_log_ratio(log_ratio.to_numpy(), log_se.to_numpy(), rng)
            units_ref = len(ref_rows)
            rows.append({**setting, **describe(est), "comparator": ref, "n_units": len(joined),
                         "missing_units": max(0, units_ref - len(joined)), "variance_ratio": point,
                         "ci_low": lo, "ci_high": hi, "verdict": verdict(lo, hi, threshold)})
        for est in sorted(set((expected or {}).get(tuple(key), [])) - present):
            rows.append({**setting, **describe(est), "comparator": ref, "n_units": 0,
                         "missing_units": len(group[group[estimator_col] == ref]), "variance_ratio": math.nan,
                         "ci_low": math.nan, "ci_high": math.nan, "verdict": "missing"})
    return pd.DataFrame(rows)


def describe_setting(row: pd.Series, cols: list[str]) -> str:
    parts = []
    for c in cols:
        value = row[c]
        if isinstance(value, float) and math.isnan(value):
            continue
        if c == "setting":
            parts.extend(f"{k}={v}" for k, v in json.loads(value).items())
        else:
            parts.append(f"{c}={value}")
    return ", ".join(parts)


def synthetic_claim(synth: pd.DataFrame, threshold: float) -> pd.DataFrame:
    cols = ["problem", "setting", "parameter", "n_samples", "device"]
    out = variance_claim(synth, cols, ["seed"], threshold=threshold)
    if out.empty:
        return out
    out.insert(0, "source", "synthetic")
    out.insert(1, "setting_label", out.apply(lambda r: describe_setting(r, cols[:-1]), axis=1))
    return out


def training_stage(step: pd.Series, final_step: pd.Series) -> pd.Series:
    """``start`` (step 0), ``early`` (up to a third), ``middle`` (up to two thirds), ``late``."""
    frac = step / final_step.where(final_step > 0, 1)
    return pd.Series(np.select([step == 0, frac <= 1 / 3, frac <= 2 / 3], ["start", "early", "middle"], "late"),
                     index=step.index)


def vae_claim(variance: pd.DataFrame, *, threshold: float, final_steps: pd.Series | None = None,
              expected: dict | None = None) -> pd.DataFrame:
    """Variance claim on the VAE encoder gradient, per (protocol, dataset, latent, stage, n_samples, device)."""
    if variance.empty:
        return pd.DataFrame()
    v = variance.copy()
    final = v.groupby(["dataset", "latent"])["step"].transform("max") if final_steps is None else final_steps
    v["stage"] = training_stage(v["step"], final)
    v["samples"] = v["measured_n_samples"].astype(int)
    v["unbiased"] = v["estimator_name"].map(lambda name: estimators.estimator_class(name).unbiased)
    cols = ["protocol", "dataset", "latent", "stage", "samples", "device"]
    out = variance_claim(v, cols, ["seed", "step"], expected=expected, threshold=threshold)
    if out.empty:
        return out
    out.insert(0, "source", "vae")
    out.insert(1, "setting_label", out.apply(
        lambda r: f"{r['protocol']}: {r['dataset']}, {r['latent']}, {r['stage']}, S={r['samples']}", axis=1))
    return out


def claim_table(synthetic: pd.DataFrame, vae: pd.DataFrame) -> pd.DataFrame:
    """The published table: ``setting``, the estimator, its ``comparator``, ratio, CI, verdict, and detail."""
    frames = [f for f in (synthetic, vae) if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame(columns=["source", "setting", *ESTIMATOR_COLUMNS, "comparator", "variance_ratio",
                                     "ci_low", "ci_high", "verdict", "n_units", "missing_units"])
    both = pd.concat(frames, ignore_index=True)
    table = both.rename(columns={"setting": "setting_json"}).rename(columns={"setting_label": "setting"})
    first = ["source", "setting", *ESTIMATOR_COLUMNS, "comparator", "variance_ratio", "ci_low", "ci_high",
             "verdict", "n_units", "missing_units"]
    return table[first + [c for c in table.columns if c not in first]]


def verdict_summary(claim: pd.DataFrame) -> pd.DataFrame:
    """How often the claim holds, per source and estimator: counts of each verdict."""
    if claim.empty:
        return pd.DataFrame()
    counts = claim.groupby(["source", *ESTIMATOR_COLUMNS, "verdict"]).size().unstack("verdict", fill_value=0)
    return counts.reset_index()


def elbo_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Jang et al. 2017 Table 1 layout: -ELBO on the test set at the final step, ours (mean +- sd over seeds)
    next to theirs, for Bernoulli and categorical latents."""
    test = metrics[(metrics["split"] == "test")]
    if test.empty:
        return pd.DataFrame()
    final = test.loc[test.groupby(["dataset", "latent", "estimator_id", "n_samples", "device", "seed"])["step"].idxmax()]
    final = final.assign(neg_elbo=-final["elbo"])
    grouped = final.groupby(["dataset", "latent_family", "latent", *ESTIMATOR_COLUMNS, "n_samples", "device"])
    table = grouped["neg_elbo"].agg(neg_elbo_mean="mean", neg_elbo_sd="std", n_seeds="count").reset_index()
    table["final_step"] = grouped["step"].max().to_numpy()
    table["jang2017_column"] = table["estimator_name"].map(JANG_COLUMN)
    table["jang2017_neg_elbo"] = [JANG2017_TABLE1.get(f, {}).get(c, math.nan)
                                  for f, c in zip(table["latent_family"], table["jang2017_column"])]
    return table


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
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _agreement_rows(frame: pd.DataFrame, keys: list[str], seconds_col: str, source: str, z_tol: float) -> list[dict]:
    """Pair each cell across devices (the first device in sorted order against each other one)."""
    rows = []
    if frame.empty or frame["device"].nunique() < 2:
        return rows
    devices = sorted(frame["device"].unique())
    a = frame[frame.device == devices[0]].set_index(keys)
    for other in devices[1:]:
        b = frame[frame.device == other].set_index(keys)
        joined = a.join(b, suffixes=("_a", "_b"), how="inner")
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
    return pd.DataFrame(rows)
