"""The variance claim (``variance_claim.csv``): one row per declared comparison and setting.

The rows are the ones the plan declared before measuring (``Plan.claim_rows``): synthetic cells and the
shared-checkpoints protocol only (own-run measurements compare different networks), intervals over seeds
(``experiments.verdict.claim``), a ``missing`` row with its reason wherever a declared row has no measurement.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from experiments.config.jobs import checkpoint_steps
from experiments.verdict import claim as claim_mod
from experiments.verdict.inputs import ESTIMATOR_COLUMNS
from experiments.verdict.tables.table import Table

SYNTHETIC_SETTING = ["problem", "setting", "parameter", "n_samples", "device"]
VAE_SETTING = ["dataset", "latent_id", "stage", "samples", "device"]
CLAIM_FIRST = ["source", "family", "setting_label", "comparison", *ESTIMATOR_COLUMNS, "comparator_id",
               "comparator_name", "comparator_label", "variance_ratio", "ci_low", "ci_high", "interval", "verdict",
               "n_seeds", "missing_seeds", "reason", "work_ratio", "equal_cost_ratio", "mse_ratio", "mse_ci_low",
               "mse_ci_high", "estimator_bias_norm", "estimator_mse", "comparator_bias_norm", "comparator_mse"]


def _describe(setting_json: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in json.loads(setting_json).items())


def _with_equal_cost(measured: pd.DataFrame, out: pd.DataFrame, setting_cols: list[str],
                     samples_col: str) -> pd.DataFrame:
    sides = claim_mod.Sides(measured, setting_cols)
    out["equal_cost_ratio"] = [claim_mod.equal_cost_ratio(sides, row, setting_cols, samples_col)
                               for row in out.to_dict("records")] if len(out) else []
    return out


def declared_by_source(claim_rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The declared rows (``Plan.claim_rows``) of each source (``synthetic``, ``vae``), each without the
    ``source`` column and without the other source's setting columns (those it leaves empty)."""
    declared = pd.DataFrame(claim_rows)
    if declared.empty:
        return {"synthetic": pd.DataFrame(), "vae": pd.DataFrame()}
    return {s: declared[declared["source"] == s].drop(columns="source").dropna(axis=1, how="all")
            for s in ("synthetic", "vae")}


def host_final_steps(plan) -> dict[tuple[str, str], int]:
    """(dataset, latent id) -> the planned last checkpoint step of the latent's shared-checkpoints host runs
    (0 for a run without checkpoints): the end that training stages are counted from."""
    hosts = {job.host for job in plan.shared_jobs}
    return {(h.dataset, h.latent_id): (checkpoint_steps(plan.job_config(h.path)) or [0])[-1] for h in hosts}


def synthetic_claim(synth: pd.DataFrame, declared: pd.DataFrame, threshold: float, seeds: list[int]) -> pd.DataFrame:
    """The declared synthetic rows: each (problem, setting, parameter, n_samples, device, pair)."""
    if declared.empty:
        return pd.DataFrame()
    measured = synth.assign(step=0) if len(synth) else synth
    out = claim_mod.compare(measured, declared, SYNTHETIC_SETTING, threshold, seeds,
                            lambda setting, missing: f"no measurement for seeds {missing}")
    out = _with_equal_cost(measured, out, SYNTHETIC_SETTING, "n_samples")
    out.insert(0, "source", "synthetic")
    out.insert(1, "family", out["problem"])
    out.insert(2, "setting_label", [f"{p}: {_describe(s)}, {q}, S={int(n)}" for p, s, q, n in
                                    zip(out["problem"], out["setting"], out["parameter"], out["n_samples"])])
    return out


def vae_claim(variance: pd.DataFrame, declared: pd.DataFrame, threshold: float, seeds: list[int],
              final_steps: dict, latent_ids: dict, run_status: pd.DataFrame) -> pd.DataFrame:
    """The declared VAE rows, measured under the shared-checkpoints protocol only (the same network for
    every estimator). ``final_steps`` maps (dataset, latent_id) to the host run's planned last step;
    ``latent_ids`` maps latent labels to ids; ``run_status`` says why a host's seeds are missing."""
    if declared.empty:
        return pd.DataFrame()
    shared = variance[variance["protocol"] == "shared_checkpoints"] if len(variance) else variance
    if len(shared):
        shared = shared.assign(latent_id=shared["latent"].map(latent_ids), samples=shared["measured_n_samples"])
        shared = shared.assign(stage=[claim_mod.training_stage(s, final_steps[(d, latent)]) for s, d, latent in
                                      zip(shared["step"], shared["dataset"], shared["latent_id"])])

    def reason(setting: dict, missing: list) -> str:
        hosts = run_status[(run_status["dataset"] == setting["dataset"])
                           & (run_status["latent_id"] == setting["latent_id"])
                           & (run_status["device"] == setting["device"]) & run_status["host"]] \
            if len(run_status) else run_status
        why = []
        for seed in missing:
            host = hosts[hosts["seed"] == seed] if len(hosts) else hosts
            if len(host) and host["status"].iloc[0] == "diverged":
                why.append(f"seed {seed}: host run diverged at step {int(host['step'].iloc[0])}")
            else:
                why.append(f"seed {seed}: no measurement at this stage")
        return "; ".join(why)

    out = claim_mod.compare(shared, declared, VAE_SETTING, threshold, seeds, reason)
    out = _with_equal_cost(shared, out, VAE_SETTING, "samples") if len(shared) \
        else out.assign(equal_cost_ratio=math.nan)
    out.insert(0, "source", "vae")
    out.insert(1, "family", "vae " + out["latent_id"].astype(str))
    out.insert(2, "setting_label", [f"{d}, {latent}, {st}, S={int(n)}" for d, latent, st, n in
                                    zip(out["dataset"], out["latent_id"], out["stage"], out["samples"])])
    return out


def claim_table(synthetic: pd.DataFrame, vae: pd.DataFrame) -> pd.DataFrame:
    """The published table: one row per declared (setting, comparison, estimator, comparator)."""
    frames = [f for f in (synthetic, vae) if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame(columns=CLAIM_FIRST)
    both = pd.concat(frames, ignore_index=True)
    for col in CLAIM_FIRST:
        if col not in both:
            both[col] = math.nan
    return both[CLAIM_FIRST + [c for c in both.columns if c not in CLAIM_FIRST]]


def variance_claim(plan, synth: pd.DataFrame, variance: pd.DataFrame, run_status: pd.DataFrame, threshold: float,
                   seeds: list[int]) -> pd.DataFrame:
    """The table, from the plan's declared rows, every synthetic measurement and every encoder-gradient
    variance measurement (``run_status``: every VAE run, ``experiments.verdict.tables.run_status``)."""
    declared = declared_by_source(plan.claim_rows)
    latent_ids = dict(zip(run_status["latent"], run_status["latent_id"]))
    return claim_table(synthetic_claim(synth, declared["synthetic"], threshold, seeds),
                       vae_claim(variance, declared["vae"], threshold, seeds, host_final_steps(plan), latent_ids,
                                 run_status))


TABLE = Table("variance_claim", (
    "Variance claim, one row per declared comparison (config `claim.comparisons`) and setting: the estimator's "
    "gradient variance over the comparator's, geometric mean over seeds with a 95% t-interval over seeds, never "
    "narrower than the per-seed measurement errors imply (fewer than 3 seeds: measurement-only interval, verdict "
    "undecided; `exact` where a side's variance is zero to rounding: no ratio from noise, the reason says which "
    "side). Verdict against the threshold: yes / no / undecided, and missing (with the reason) where a declared "
    "row has no measurement. Also the work-normalized and equal-cost ratios and, for biased comparators, their "
    "bias and MSE and the MSE ratio. Synthetic cells and shared checkpoints only: own-run measurements compare "
    "different networks."))
