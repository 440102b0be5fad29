"""Aggregation: pure functions from tidy result frames to the tables under ``results/STUDY/tables``.

No I/O here: the pipeline's scripts read the CSVs, call these, and write what they return.

The variance claim (``claim_table``) is computed by ``experiments.claim`` on the rows the plan declared
before measuring (``Plan.claim_rows``): synthetic cells and the shared-checkpoints protocol only, intervals
over seeds, a ``missing`` row with its reason wherever a declared row has no measurement.
``claim_summary`` condenses it into one statement per (family of settings, comparison, estimator).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import claim as claim_mod

#: The identification columns of an estimator in every table.
ESTIMATOR_COLUMNS = ["estimator_id", "estimator_name", "estimator_label"]
SYNTHETIC_SETTING = ["problem", "setting", "parameter", "n_samples", "device"]
ELBO_COLUMNS = ["dataset", "latent_family", "latent", "preset", *ESTIMATOR_COLUMNS, "n_samples", "device",
                "neg_elbo_mean", "neg_elbo_sd", "train_neg_elbo_best", "n_seeds", "n_runs", "n_diverged", "final_step",
                "anchor", "anchor_neg_elbo", "anchor_measure"]
DEVICE_COLUMNS = ["source", "cell", "device_a", "device_b", "seconds_a", "seconds_b", "speedup_b_over_a", "variance_a",
                  "variance_b", "variance_z", "variances_agree"]
VAE_SETTING = ["dataset", "latent_id", "stage", "samples", "device"]
CLAIM_FIRST = ["source", "family", "setting_label", "comparison", *ESTIMATOR_COLUMNS, "comparator_id",
               "comparator_name", "comparator_label", "variance_ratio", "ci_low", "ci_high", "interval", "verdict",
               "n_seeds", "missing_seeds", "reason", "work_ratio", "equal_cost_ratio", "mse_ratio", "mse_ci_low",
               "mse_ci_high", "estimator_bias_norm", "estimator_mse", "comparator_bias_norm", "comparator_mse"]

#: The study's tables, in report order, with their captions: the one list the aggregation rule, the
#: report (each rendered inline as HTML) and the tests read. results/README.md documents every column.
TABLES: dict[str, str] = {
    "claim_summary": "The claim in at most 40 rows: per family of settings (a synthetic problem, or a VAE latent under the shared-checkpoints protocol), declared comparison and estimator, at its smallest number of samples: the range of the variance ratio over the family's settings, the verdict counts, and where the claim holds.",
    "variance_claim": "Variance claim, one row per declared comparison (config `claim.comparisons`) and setting: the estimator's gradient variance over the comparator's, geometric mean over seeds with a 95% t-interval over seeds (fewer than 3 seeds: measurement-only interval, verdict undecided). Verdict against the threshold: yes / no / undecided, and missing (with the reason) where a declared row has no measurement. Also the work-normalized and equal-cost ratios and, for biased comparators, their bias and MSE and the MSE ratio. Synthetic cells and shared checkpoints only: own-run measurements compare different networks.",
    "lr_selection": "Learning-rate selection (entries with lr_grid), declared before training: per cell (dataset, latent, estimator, n_samples, device) and learning rate, the final validation and test ELBO (mean and sd over seeds); a rate is eligible when every seed's run completed, and the eligible rate with the highest mean final validation ELBO is selected (ties: the smaller rate). Only selected runs enter the ELBO, cost and device tables and the training figures. Header only in a study without lr_grid.",
    "elbo_table": '-ELBO on the test set at the end of training (mean and standard deviation over seeds), in the layout of Jang et al. 2017 Table 1, and the best training -ELBO over the evaluations; beside ours, a published number where the model (preset) and estimator match (ANCHORS: Jang et al. 2017 Table 1, test -ELBO on binarized MNIST; Grathwohl et al. 2018 (RELAX) Table 1, highest training ELBO after 2M iterations at batch 24 on static MNIST), with the measure it is on (anchor_measure) and the scale it was obtained at. Only the paper config has those presets.',
    "cost_table": 'Cost: seconds per VAE training step, seconds per gradient estimate, and work-normalized variance (variance x seconds) per estimator and device; synthetic rows give the median over problems.',
    "device_comparison": "The same cell on two devices: time ratio, and whether the measured variances agree within "
                         "3 combined standard errors (header only in a one-device study).",
    "excluded_cells": "Combinations the study does not run, with the reason given by Estimator.why_not.",
    "run_status": "Every VAE run: completed or diverged, with the step reached.",
    "synthetic_all": "Every synthetic measurement: bias, variance with its standard error, MSE, SNR and cost per "
                     "(problem, setting, parameter, estimator, n_samples, seed).",
    "vae_metrics": "Train and test ELBO and the test IWAE bound of every VAE run at its evaluation steps.",
    "vae_variance": "Every encoder-gradient variance measurement: own-run and shared-checkpoints protocols.",
}


@dataclass(frozen=True)
class Anchor:
    """A published -ELBO for a model (``preset``) trained with an estimator (``estimator_name``); ``measure``
    says which of our columns it is comparable with: ``test`` (``neg_elbo_mean``, the final test -ELBO) or
    ``best_train`` (``train_neg_elbo_best``); ``source`` names the table, column and scale."""

    preset: str
    estimator_name: str
    neg_elbo: float
    measure: str
    source: str


_JANG = "Jang et al. 2017 Table 1, {}: test -ELBO, binarized MNIST"
_RELAX = ("Grathwohl et al. 2018 (RELAX) Table 1, {}, linear one-layer: highest training ELBO after 2M "
          "iterations at batch 24, static MNIST")
# Jang et al. 2017, Table 1: their SF, ST, Gumbel-S. and ST Gumbel-S. columns. Grathwohl et al. 2018, Table 1:
# the linear one-layer model (200 Bernoulli, 784-200 linear: dong2020_linear); their two-layer rows (REBAR
# -98.22, RELAX -98.00) have two stochastic layers, a model gradvar does not build, so they match nothing.
ANCHORS = (
    *(Anchor(preset, name, value, "test", _JANG.format(column))
      for preset, values in (("jang2017_bernoulli", (112.2, 116.0, 105.0, 111.5)),
                             ("jang2017_categorical", (110.6, 110.9, 101.5, 107.8)))
      for (name, column), value in zip((("reinforce", "SF"), ("straight_through", "ST"), ("gumbel_softmax", "Gumbel-S."),
                                        ("st_gumbel_softmax", "ST Gumbel-S.")), values)),
    Anchor("dong2020_linear", "rebar", 111.6, "best_train", _RELAX.format("REBAR")),
    Anchor("dong2020_linear", "relax", 111.20, "best_train", _RELAX.format("RELAX")),
)


def _describe(setting_json: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in json.loads(setting_json).items())


def _with_equal_cost(measured: pd.DataFrame, out: pd.DataFrame, setting_cols: list[str], samples_col: str) -> pd.DataFrame:
    out["equal_cost_ratio"] = [claim_mod.equal_cost_ratio(measured, row, setting_cols, samples_col)
                               for row in out.to_dict("records")] if len(out) else []
    return out


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
        shared = shared.assign(stage=[claim_mod.training_stage(s, final_steps[(d, l)]) for s, d, l in
                                      zip(shared["step"], shared["dataset"], shared["latent_id"])])

    def reason(setting: dict, missing: list) -> str:
        hosts = run_status[(run_status["dataset"] == setting["dataset"]) & (run_status["latent_id"] == setting["latent_id"])
                           & (run_status["device"] == setting["device"]) & run_status["host"]] if len(run_status) else run_status
        why = []
        for seed in missing:
            host = hosts[hosts["seed"] == seed] if len(hosts) else hosts
            if len(host) and host["status"].iloc[0] == "diverged":
                why.append(f"seed {seed}: host run diverged at step {int(host['step'].iloc[0])}")
            else:
                why.append(f"seed {seed}: no measurement at this stage")
        return "; ".join(why)

    out = claim_mod.compare(shared, declared, VAE_SETTING, threshold, seeds, reason)
    out = _with_equal_cost(shared, out, VAE_SETTING, "samples") if len(shared) else out.assign(equal_cost_ratio=math.nan)
    out.insert(0, "source", "vae")
    out.insert(1, "family", "vae " + out["latent_id"].astype(str))
    out.insert(2, "setting_label", [f"{d}, {l}, {st}, S={int(n)}" for d, l, st, n in
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


STATEMENT_AXES = {"mohamed_quadratic": "k", "mohamed_exp": "k", "mohamed_cos": "k", "dimension": "dim"}
STAGE_ORDER = {"start": 0, "early": 1, "middle": 2, "late": 3}


def _where(row) -> str:
    """A setting in a few characters: ``k=1.5``, ``dim=10, t=0.45``, ``late``."""
    return str(row["stage"]) if row["source"] == "vae" else _describe(row["setting"])


def claim_samples(claim: pd.DataFrame) -> pd.Series:
    """Samples per estimate of every claim row (``n_samples`` for synthetic rows, ``samples`` for VAE ones)."""
    nan = pd.Series(math.nan, index=claim.index)
    return claim.get("n_samples", nan).fillna(claim.get("samples", nan))


def _order(row):
    if row["source"] == "vae":
        return (STAGE_ORDER.get(row["stage"], 9),)
    return tuple(json.loads(row["setting"]).values())


def family_statement(rows: pd.DataFrame, threshold: float) -> str:
    """One sentence on where the claim holds in a family of settings (``rows``: one comparison, one
    estimator and comparator, several settings)."""
    rows = rows.assign(where=[_where(r) for r in rows.to_dict("records")],
                       order=[_order(r) for r in rows.to_dict("records")]).sort_values("order")
    if rows["verdict"].eq("missing").all():
        return "no measurement: " + "; ".join(sorted(set(rows["reason"].dropna()) - {""}))
    holds = rows[rows["verdict"] == "yes"]
    axis = STATEMENT_AXES.get(rows["family"].iloc[0])
    if holds.empty:
        parts = [f"below {threshold:g} everywhere" if rows["verdict"].isin(["no", "missing"]).all()
                 else f"above {threshold:g} nowhere"]
    elif axis and rows.loc[rows["order"] >= holds["order"].min(), "verdict"].eq("yes").all():
        parts = [f"above {threshold:g} from {holds['where'].iloc[0]} on"]
    else:
        parts = [f"above {threshold:g} at {'; '.join(holds['where'])}"]
    beats = rows[rows["ci_high"] < 1]
    if len(beats):
        parts.append(f"the estimator beats its comparator (ratio < 1) at {'; '.join(beats['where'])}")
    for verdict in ("undecided", "missing"):
        n = int((rows["verdict"] == verdict).sum())
        if n:
            parts.append(f"{n} {verdict}")
    return "; ".join(parts)


def claim_summary(claim: pd.DataFrame, threshold: float, max_rows: int = 40) -> pd.DataFrame:
    """At most ``max_rows`` readable rows: per (family, comparison, estimator) at its smallest number of
    samples (and the first parameter of a synthetic problem), the range of the ratio over the family's
    settings, the verdict counts and where the claim holds."""
    columns = ["family", "comparison", "estimator", "comparators", "samples", "settings", "ratio_range",
               "verdicts", "statement", "seeds"]
    if claim.empty:
        return pd.DataFrame(columns=columns)
    data = claim.assign(samples_=claim_samples(claim))
    keys = ["source", "family", "comparison", "estimator_id"]
    if data.groupby(keys).ngroups > max_rows:
        keys = ["source", "family", "comparison"]
    rows = []
    for _, group in data.groupby(keys, sort=False):
        group = group[group["samples_"] == group["samples_"].min()]
        if group["source"].iloc[0] == "synthetic":
            group = group[group["parameter"] == group["parameter"].iloc[0]]
        valid = group[np.isfinite(group["variance_ratio"])]
        if len(valid):
            lo, hi = valid.loc[valid["variance_ratio"].idxmin()], valid.loc[valid["variance_ratio"].idxmax()]
            ratio_range = f"{lo['variance_ratio']:.3g} ({_where(lo)}) to {hi['variance_ratio']:.3g} ({_where(hi)})"
        else:
            ratio_range = ""
        comparators = list(dict.fromkeys(group["comparator_id"]))
        statements = [(f"over {c}: " if len(comparators) > 1 else "")
                      + family_statement(group[group["comparator_id"] == c], threshold) for c in comparators]
        counts = group["verdict"].value_counts()
        rows.append({
            "family": group["family"].iloc[0], "comparison": group["comparison"].iloc[0],
            "estimator": group["estimator_id"].iloc[0] if "estimator_id" in keys else "all",
            "comparators": ", ".join(comparators), "samples": int(group["samples_"].iloc[0]),
            "settings": int(group.assign(w=[_where(r) for r in group.to_dict("records")])["w"].nunique()),
            "ratio_range": ratio_range,
            "verdicts": ", ".join(f"{v} {int(counts.get(v, 0))}" for v in claim_mod.VERDICTS if counts.get(v, 0)),
            "statement": " | ".join(statements), "seeds": int(group["n_seeds"].max()),
        })
    return pd.DataFrame(rows, columns=columns).head(max_rows)


LR_CELL = ["dataset", "latent", "estimator_id", "n_samples", "device"]
LR_SELECTION_COLUMNS = [*LR_CELL, "estimator_name", "estimator_label", "lr", "n_runs", "n_completed",
                        "valid_elbo_mean", "valid_elbo_sd", "test_elbo_mean", "test_elbo_sd", "eligible", "selected"]


def select_learning_rates(metrics: pd.DataFrame, run_status: pd.DataFrame) -> pd.DataFrame:
    """The learning-rate selection of every cell trained at several rates (Jang et al.
    2017's protocol: the best rate on the validation split, its test numbers reported), and the chosen
    ``(cell, lr)`` pairs. The rule, fixed before any run: a rate is eligible when every one of its seeds'
    runs completed (a rate that diverges on a seed is not a usable setting); among eligible rates the one
    with the highest mean over seeds of the final validation ELBO; ties go to the smaller rate. A cell whose
    rates are all ineligible has no chosen rate (and no row in the ELBO table). Cells trained at one rate are
    not selections and have no rows (``mark_selected`` applies the table to result rows)."""
    empty = pd.DataFrame(columns=LR_SELECTION_COLUMNS)
    if metrics.empty or "lr" not in metrics:
        return empty
    rates = metrics.groupby(LR_CELL)["lr"].nunique()
    grid_cells = rates[rates > 1].index
    if not len(grid_cells):
        return empty
    data = metrics.set_index(LR_CELL).loc[grid_cells].reset_index()
    run = [*LR_CELL, "lr", "seed"]
    final = data.loc[data.groupby([*run, "split"])["step"].idxmax()]
    per_run = final.pivot_table(index=run, columns="split", values="elbo").reset_index()
    status = run_status[[*run, "status"]] if len(run_status) and "lr" in run_status else pd.DataFrame(columns=[*run, "status"])
    per_run = per_run.merge(status, on=run, how="left")
    names = data.drop_duplicates(LR_CELL).set_index(LR_CELL)[["estimator_name", "estimator_label"]]
    rows = []
    for key, group in per_run.groupby([*LR_CELL, "lr"]):
        done = group[group["status"] == "completed"]
        rows.append({**dict(zip([*LR_CELL, "lr"], key)), "n_runs": len(group), "n_completed": len(done),
                     "valid_elbo_mean": done.get("valid", pd.Series(dtype=float)).mean(),
                     "valid_elbo_sd": done.get("valid", pd.Series(dtype=float)).std(),
                     "test_elbo_mean": done.get("test", pd.Series(dtype=float)).mean(),
                     "test_elbo_sd": done.get("test", pd.Series(dtype=float)).std()})
    table = pd.DataFrame(rows)
    table["eligible"] = (table["n_completed"] == table["n_runs"]) & table["valid_elbo_mean"].notna()
    table["selected"] = False
    for _, group in table[table["eligible"]].groupby(LR_CELL):
        best = group.sort_values(["valid_elbo_mean", "lr"], ascending=[False, True]).index[0]
        table.loc[best, "selected"] = True
    table = table.join(names, on=LR_CELL)
    return table[LR_SELECTION_COLUMNS]


def mark_selected(frame: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``selected`` column: False for rows of a learning-rate grid cell (a cell of the
    ``selection`` table) at a rate that was not selected, or of a cell where none was; True otherwise (cells
    trained at one rate, shared-checkpoints rows, frames without ``lr``)."""
    if frame.empty or "lr" not in frame or selection.empty:
        return frame.assign(selected=True)
    chosen = selection[selection["selected"].astype(bool)]
    in_grid = frame.set_index(LR_CELL).index.isin(selection.set_index(LR_CELL).index)
    is_chosen = frame.set_index([*LR_CELL, "lr"]).index.isin(chosen.set_index([*LR_CELL, "lr"]).index)
    shared = frame["protocol"].eq("shared_checkpoints").to_numpy() if "protocol" in frame else False
    return frame.assign(selected=~in_grid | is_chosen | shared)


def only_selected(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["selected"]] if "selected" in frame and len(frame) else frame


def elbo_table(metrics: pd.DataFrame, run_status: pd.DataFrame) -> pd.DataFrame:
    """Jang et al. 2017 Table 1 layout: -ELBO on the test set at the final step, ours (mean +- sd over the
    seeds whose run completed), the best training -ELBO over the evaluations (mean over those seeds), and
    the published number (``ANCHORS``) for the run's preset (``run_status``'s ``preset``) and estimator.
    Diverged runs are counted (``n_diverged``) and kept out of the means; their last ELBO is not an
    end-of-training number."""
    test = metrics[(metrics["split"] == "test")] if len(metrics) else metrics
    if test.empty:
        return pd.DataFrame(columns=ELBO_COLUMNS)
    run_keys = ["dataset", "latent", "estimator_id", "n_samples", "device", "seed"]
    final = test.loc[test.groupby(run_keys)["step"].idxmax()]
    status = run_status[run_keys + ["status"] + (["preset"] if "preset" in run_status else [])] if len(run_status) \
        else pd.DataFrame(columns=run_keys + ["status"])
    final = final.merge(status, on=run_keys, how="left").assign(neg_elbo=lambda d: -d["elbo"])
    if "preset" not in final:
        final["preset"] = None
    train = metrics[metrics["split"] == "train"]
    best_train = (-train.groupby(run_keys)["elbo"].max()).rename("train_neg_elbo_best")
    final = final.join(best_train, on=run_keys)
    final["preset"] = final["preset"].fillna("")
    cell = ["dataset", "latent_family", "latent", "preset", *ESTIMATOR_COLUMNS, "n_samples", "device"]
    completed = final[final["status"] == "completed"]
    table = final.groupby(cell).agg(n_runs=("seed", "count"), n_diverged=("status", lambda s: int((s == "diverged").sum())))
    means = completed.groupby(cell)["neg_elbo"].agg(neg_elbo_mean="mean", neg_elbo_sd="std", n_seeds="count")
    table = table.join(means, how="left").join(completed.groupby(cell)["train_neg_elbo_best"].mean(), how="left")
    table = table.join(completed.groupby(cell)["step"].max().rename("final_step"), how="left").reset_index()
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    anchors = {(a.preset, a.estimator_name): a for a in ANCHORS}
    found = [anchors.get((p, n)) for p, n in zip(table["preset"], table["estimator_name"])]
    table["anchor"] = [a.source if a else "" for a in found]
    table["anchor_neg_elbo"] = [a.neg_elbo if a else math.nan for a in found]
    table["anchor_measure"] = [a.measure if a else "" for a in found]
    return table[ELBO_COLUMNS]


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
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS)
