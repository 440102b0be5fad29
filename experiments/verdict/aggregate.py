"""Aggregation: pure functions from tidy result frames to the tables under ``results/STUDY/tables``.

No I/O here: the pipeline's scripts read the CSVs, call these, and write what they return.

The variance claim (``claim_table``) is computed by ``experiments.verdict.claim`` on the rows the plan declared
before measuring (``Plan.claim_rows``): synthetic cells and the shared-checkpoints protocol only, intervals
over seeds, a ``missing`` row with its reason wherever a declared row has no measurement.
``claim_summary`` condenses it into one row per (family of settings, parameter group, comparison, estimator,
number of samples), with its extremes and their intervals and one statement; ``claim_summary_markdown``
renders it for a reader.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.verdict import claim as claim_mod

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
    "claim_summary": "The claim at a glance: one row per family of settings (a synthetic problem, or a VAE latent under the shared-checkpoints protocol), parameter group (synthetic), declared comparison, estimator and number of samples, never merged: how many settings, the verdict counts, the smallest and the largest variance ratio each with its 95% interval and where, and a statement of where the claim holds (each place named once; exact rows, where a side has zero variance, said apart).",
    "variance_claim": "Variance claim, one row per declared comparison (config `claim.comparisons`) and setting: the estimator's gradient variance over the comparator's, geometric mean over seeds with a 95% t-interval over seeds, never narrower than the per-seed measurement errors imply (fewer than 3 seeds: measurement-only interval, verdict undecided; `exact` where a side's variance is zero to rounding: no ratio from noise, the reason says which side). Verdict against the threshold: yes / no / undecided, and missing (with the reason) where a declared row has no measurement. Also the work-normalized and equal-cost ratios and, for biased comparators, their bias and MSE and the MSE ratio. Synthetic cells and shared checkpoints only: own-run measurements compare different networks.",
    "estimator_ranking": (
        "Which estimator, where: descriptive, not a verdict (no test decides a ranking). One row per family "
        "(a synthetic problem, or a VAE latent at the shared checkpoints: the same network for every "
        "estimator), setting (problem setting and parameter group, or checkpoint step), number of samples, "
        "device and estimator: its variance and MSE times its evaluations of f per estimate (the work of an "
        "estimate), relative to the group's best (the lowest geometric mean over seeds among estimators whose"
        " variance is not zero to rounding), as a geometric mean over seeds of per-seed ratios with a 95% "
        "interval (the claim's seed interval; measurement-only with fewer than 3 seeds); `exact` (ratio 0) "
        "where the variance is zero to rounding; its rank by the variance ratio, its seconds per estimate, "
        "and whether it is unbiased (a biased estimator's MSE, not its variance, is the fair comparison)."),
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


STAGE_ORDER = {"start": 0, "early": 1, "middle": 2, "late": 3}
SUMMARY_KEYS = ["source", "family", "comparison", "estimator_id", "samples_", "parameter_"]
SUMMARY_COLUMNS = ["family", "parameter", "comparison", "estimator", "comparators", "samples", "settings", "verdicts",
                   "smallest", "largest", "statement", "seeds"]
#: A statement's length: aimed at (a finer wording is dropped for counts above it), and never exceeded.
STATEMENT_AIM, STATEMENT_MAX = 120, 160


def claim_samples(claim: pd.DataFrame) -> pd.Series:
    """Samples per estimate of every claim row (``n_samples`` for synthetic rows, ``samples`` for VAE ones)."""
    nan = pd.Series(math.nan, index=claim.index)
    return claim.get("n_samples", nan).fillna(claim.get("samples", nan))


def setting_order(row) -> tuple:
    """A claim row's place in its family's order: its stage (VAE), or its setting's values (synthetic)."""
    if row["source"] == "vae":
        return (STAGE_ORDER.get(row["stage"], 9),)
    return tuple(json.loads(row["setting"]).values())


def setting_places(rows: pd.DataFrame) -> pd.Series:
    """Each row's place in a few characters: its stage (VAE), or the setting keys that vary among ``rows``
    (``k=1.5``, ``dim=10 t=0.45``; every key where none varies)."""
    if rows["source"].iloc[0] == "vae":
        return rows["stage"].astype(str)
    settings = [json.loads(s) for s in rows["setting"]]
    keys = [k for k in settings[0] if len({json.dumps(s.get(k)) for s in settings}) > 1] or list(settings[0])
    return pd.Series([" ".join(f"{k}={s.get(k)}" for k in keys) for s in settings], index=rows.index)


def _on_one_axis(rows: pd.DataFrame) -> bool:
    """Whether the places lie along one ordered axis (the stages, or one varying setting key): then runs of
    places can be said as ranges ("from dim=100 on")."""
    return rows["source"].iloc[0] == "vae" or " " not in rows["place"].iloc[0]


def place_categories(rows: pd.DataFrame) -> pd.Series:
    """One category per place of ``rows`` (one summary row: several comparators may share a place), in the
    places' order: ``exact`` (every row exact), else over the rows that are not: ``yes`` (every one),
    ``some`` (some yes), ``undecided`` (some), ``missing`` (some), ``beats`` (every one no with its interval
    below 1: the estimator beats every comparator), ``no``. ``rows`` needs ``place`` and ``order``."""
    def category(at: pd.DataFrame) -> str:
        measured = at[at["interval"] != "exact"]
        if measured.empty:
            return "exact"
        verdicts = set(measured["verdict"])
        if verdicts == {"yes"}:
            return "yes"
        for name, found in (("some", "yes"), ("undecided", "undecided"), ("missing", "missing")):
            if found in verdicts:
                return name
        return "beats" if (measured["ci_high"] < 1).all() else "no"
    ordered = rows.sort_values("order", kind="stable")
    return pd.Series({place: category(at) for place, at in ordered.groupby("place", sort=False)})


def say_places(chosen: list[str], ordered: list[str], axis: bool, compact: bool) -> str:
    """``chosen`` places said in the fewest words: ``everywhere``, a range along an axis (``from X on``,
    ``up to X``, ``from X to Y``), the list (``at X, Y``) or, ``compact``, a count (``at 3 of 13 settings``)."""
    if len(chosen) == len(ordered) and len(ordered) > 1:
        return "everywhere"
    index = [ordered.index(p) for p in chosen]
    if axis and len(chosen) > 1 and index == list(range(index[0], index[-1] + 1)):
        if index[-1] == len(ordered) - 1:
            return f"from {chosen[0]} on"
        if index[0] == 0:
            return f"up to {chosen[-1]}"
        if len(chosen) > 2:
            return f"from {chosen[0]} to {chosen[-1]}"
    if compact and len(chosen) > 1:
        return f"at {len(chosen)} of {len(ordered)} settings"
    return "at " + ", ".join(chosen)


def _exact_words(rows: pd.DataFrame, them: str) -> str:
    """What the exact rows say: which side has zero variance, and what that implies (``{}``: the places)."""
    exact = rows[rows["interval"] == "exact"]["variance_ratio"]
    if np.isinf(exact).all():
        return f"{them} exact (zero variance) {{}}: holds trivially"
    if exact.eq(0).all():
        return f"{rows['estimator_id'].iloc[0]} exact (zero variance) {{}}"
    return "a side exact (zero variance) {}"


def _statement_clauses(rows: pd.DataFrame, categories: pd.Series, threshold: float) -> list[tuple[str, str]]:
    """(category, words) of each clause, in the order said: the places of a category follow its words."""
    comparators = list(dict.fromkeys(rows["comparator_id"]))
    them = comparators[0] if len(comparators) == 1 else "every comparator"
    found = set(categories)
    clauses = []
    if "yes" in found:
        clauses.append(("yes", f"above {threshold:g}" + ("" if len(comparators) == 1 else " over all comparators")))
    if "some" in found:
        clauses.append(("some", "over some" if "yes" in found else f"above {threshold:g} over some comparators"))
    if not found & {"yes", "some"}:
        if found <= {"no", "beats"}:
            clauses.append(("", f"below {threshold:g} everywhere"))
        elif "no" in found:
            clauses.append(("no", f"below {threshold:g}"))
    said = (("undecided", "undecided"), ("missing", "missing"), ("beats", f"beats {them}"))
    clauses += [(c, words) for c, words in said if c in found]
    if "exact" in found:
        clauses.append(("exact", _exact_words(rows, them)))
    return clauses


def _say_statement(clauses, categories: pd.Series, axis: bool, compact: set) -> str:
    ordered = list(categories.index)
    def say(category, words):
        if not category:
            return words
        places = say_places(list(categories.index[categories == category]), ordered, axis, category in compact)
        return words.format(places) if "{}" in words else f"{words} {places}"
    return "; ".join(say(category, words) for category, words in clauses)


def _counts_statement(categories: pd.Series) -> str:
    """The shortest statement: how many places fall in each category."""
    counts = categories.value_counts()
    return "; ".join(f"{c} at {int(counts[c])}" for c in ("yes", "some", "undecided", "missing", "beats", "no", "exact")
                     if c in counts)


def family_statement(rows: pd.DataFrame, threshold: float) -> str:
    """Where the claim holds among ``rows`` (one summary row: one comparison, estimator, number of samples and
    parameter group; one or more comparators; several settings), each place named at most once
    (``place_categories`` partitions them), in at most ``STATEMENT_MAX`` characters: while longer than
    ``STATEMENT_AIM``, the longest list of places becomes a count."""
    rows = rows.assign(place=setting_places(rows), order=[setting_order(r) for r in rows.to_dict("records")])
    if rows["verdict"].eq("missing").all():
        reasons = sorted(set(rows["reason"].dropna()) - {""})
        return ("no measurement: " + "; ".join(reasons))[:STATEMENT_MAX] if reasons else "no measurement"
    categories = place_categories(rows)
    clauses, axis, compact = _statement_clauses(rows, categories, threshold), _on_one_axis(rows), set()
    text = _say_statement(clauses, categories, axis, compact)
    while len(text) > STATEMENT_AIM:
        longest = max((c for c, _ in clauses if c and c not in compact),
                      key=lambda c: len(", ".join(categories.index[categories == c])), default=None)
        if longest is None:
            break
        compact.add(longest)
        text = _say_statement(clauses, categories, axis, compact)
    return text if len(text) <= STATEMENT_MAX else _counts_statement(categories)


def _ratio_at(row: pd.Series, several: bool) -> str:
    """``ratio [low, high] at PLACE`` (``over COMPARATOR`` where the summary row has several)."""
    over = f" over {row['comparator_id']}" if several else ""
    return f"{row['variance_ratio']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}] at {row['place']}{over}"


def _extremes(rows: pd.DataFrame) -> tuple[str, str]:
    """The smallest and the largest measured ratio (exact rows have none), each with its 95% interval."""
    valid = rows[np.isfinite(rows["variance_ratio"]) & (rows["interval"] != "exact")]
    if valid.empty:
        return "", ""
    several = rows["comparator_id"].nunique() > 1
    return (_ratio_at(valid.loc[valid["variance_ratio"].idxmin()], several),
            _ratio_at(valid.loc[valid["variance_ratio"].idxmax()], several))


def _summary_row(group: pd.DataFrame, threshold: float) -> dict:
    """One summary row from the claim rows of one (family, comparison, estimator, samples, parameter)."""
    group = group.assign(place=setting_places(group))
    counts = group["verdict"].value_counts()
    smallest, largest = _extremes(group)
    return {"family": group["family"].iloc[0], "parameter": group["parameter_"].iloc[0],
            "comparison": group["comparison"].iloc[0], "estimator": group["estimator_id"].iloc[0],
            "comparators": ", ".join(dict.fromkeys(group["comparator_id"])), "samples": int(group["samples_"].iloc[0]),
            "settings": int(group["place"].nunique()),
            "verdicts": ", ".join(f"{v} {int(counts[v])}" for v in claim_mod.VERDICTS if counts.get(v, 0)),
            "smallest": smallest, "largest": largest, "statement": family_statement(group, threshold),
            "seeds": int(group["n_seeds"].max())}


def claim_summary(claim: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per (family, comparison, estimator, number of samples, parameter group: synthetic problems
    only), in the claim table's order, never merged: ``SUMMARY_COLUMNS``, of which ``settings`` (how many
    places), ``verdicts`` (counts), ``smallest`` and ``largest`` (ratio [95% interval] at place), and
    ``statement`` (``family_statement``: where the claim holds, at most ``STATEMENT_MAX`` characters)."""
    if claim.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    parameter = claim["parameter"] if "parameter" in claim else pd.Series(math.nan, index=claim.index)
    data = claim.assign(samples_=claim_samples(claim), parameter_=parameter.where(claim["source"] == "synthetic", ""),
                        interval=claim.get("interval", pd.Series("", index=claim.index)))
    rows = [_summary_row(group, threshold) for _, group in data.groupby(SUMMARY_KEYS, sort=False, dropna=False)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


#: At most this many rows in one markdown table; a longer summary gets a section per family.
MARKDOWN_ROWS = 40


def claim_summary_markdown(summary: pd.DataFrame) -> str:
    """The summary for a reader (README, report): seven columns (``where``: family, parameter and samples;
    ``comparison``: the estimator over its comparators), one table, or a ``###`` section per family where
    there are more than ``MARKDOWN_ROWS`` rows."""
    if summary.empty:
        return "(empty)\n"
    parameter = summary["parameter"].fillna("")
    where = summary["family"] + np.where(parameter != "", ", " + parameter, "")
    table = pd.DataFrame({"where": where + ", S=" + summary["samples"].astype(str),
                          "comparison": summary["estimator"] + " over " + summary["comparators"],
                          **{c: summary[c] for c in ("settings", "verdicts", "smallest", "largest", "statement")}})
    if len(table) <= MARKDOWN_ROWS:
        return table.to_markdown(index=False) + "\n"
    return "\n".join(f"### {family}\n\n{part.to_markdown(index=False)}\n"
                     for family, part in table.groupby(summary["family"], sort=False))


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
