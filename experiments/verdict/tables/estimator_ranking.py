"""The estimator ranking (``estimator_ranking.csv``): per family and setting, every estimator's variance and MSE
relative to the best at equal evaluations of f, with intervals over seeds, and its seconds per estimate.
Descriptive, not a verdict.

A family is a synthetic problem or a VAE latent (shared-checkpoints protocol only: the same network for every
estimator); a setting is a problem setting and parameter group, or a checkpoint's step, at one number of samples
and device. The work of an estimate is its evaluations of f (``f_evaluations``), so the compared quantity is
``variance x f_evaluations`` (and ``mse x f_evaluations``): what the variance would be at one evaluation's
budget. The best is the estimator with the lowest geometric mean over seeds among those whose variance is not
zero to rounding (``experiments.verdict.claim.zero_to_rounding``); an estimator whose variance is zero to rounding is
``exact`` (relative variance 0). Each estimator's ratio to the best is the geometric mean over seeds of the
per-seed ratios (paired on the seed), with the interval of ``experiments.verdict.claim.seed_interval``.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from experiments.verdict import claim as claim_mod
from experiments.verdict.tables.table import Table

RANKING_COLUMNS = ["source", "family", "setting", "samples", "device", "estimator_id", "estimator_name", "unbiased",
                   "rank", "n_seeds", "exact", "work_variance", "variance_vs_best", "variance_ci_low",
                   "variance_ci_high", "work_mse", "mse_vs_best", "mse_ci_low", "mse_ci_high", "seconds_per_estimate",
                   "best_variance", "best_mse"]
GROUP = ["source", "family", "setting", "samples", "device"]


def _unbiased(names: pd.Series) -> pd.Series:
    """Whether each estimator (by registry name) is unbiased, from its declared capabilities."""
    import estimators

    def one(name):
        try:
            return bool(estimators.estimator_class(name).unbiased)
        except (KeyError, ValueError):
            return math.nan
    return names.map({n: one(n) for n in set(names)})


def _scale(frame: pd.DataFrame) -> pd.Series:
    present = [c for c in claim_mod.SCALE_COLUMNS if c in frame]
    return frame[present].max(axis=1) if present else pd.Series(0.0, index=frame.index)


def ranking_rows(synth: pd.DataFrame, variance: pd.DataFrame) -> pd.DataFrame:
    """The measurements to rank, one row per (group, estimator, seed), with ``GROUP`` columns, ``work_variance``,
    ``work_mse``, the variance's relative standard error ``rse`` and ``exact`` (zero to rounding)."""
    parts = []
    if len(synth):
        settings = [", ".join(f"{k}={v}" for k, v in json.loads(s).items()) for s in synth["setting"]]
        unbiased = synth["unbiased"].astype(str).str.lower().map({"true": True, "false": False}) \
            if "unbiased" in synth else _unbiased(synth["estimator_name"])
        parts.append(synth.assign(source="synthetic", family=synth["problem"], samples=synth["n_samples"],
                                  setting=[f"{s}, {p}" for s, p in zip(settings, synth["parameter"])],
                                  unbiased=unbiased))
    if len(variance) and "protocol" in variance:
        shared = variance[variance["protocol"] == "shared_checkpoints"]
        if len(shared):
            several = shared["dataset"].nunique() > 1
            setting = ("step " + shared["step"].astype(int).astype(str)
                       + ((" " + shared["dataset"].astype(str)) if several else ""))
            parts.append(shared.assign(source="vae", family="vae " + shared["latent"].astype(str), setting=setting,
                                       samples=shared["measured_n_samples"],
                                       unbiased=_unbiased(shared["estimator_name"])))
    if not parts:
        return pd.DataFrame()
    rows = pd.concat(parts, ignore_index=True)
    evaluations = rows["f_evaluations"].astype(float).where(rows["f_evaluations"].astype(float) > 0)
    se = rows["total_variance_se"] if "total_variance_se" in rows else pd.Series(0.0, index=rows.index)
    return rows.assign(work_variance=rows["total_variance"] * evaluations, work_mse=rows["mse"] * evaluations,
                       rse=(se / rows["total_variance"]).where(rows["total_variance"] > 0),
                       exact=claim_mod.zero_to_rounding(rows["total_variance"], _scale(rows)),
                       mse_exact=claim_mod.zero_to_rounding(rows["mse"], _scale(rows)),
                       samples=rows["samples"].astype(int))


def _best(per_estimator: pd.DataFrame, value: str) -> pd.Series:
    """Per group, the estimator with the lowest ``value`` (geometric mean over seeds) among those not exact."""
    candidates = per_estimator[~per_estimator[f"{value}_exact"] & (per_estimator[value] > 0)].dropna(subset=[value])
    return candidates.loc[candidates.groupby(GROUP)[value].idxmin(), [*GROUP, "estimator_id"]].set_index(GROUP)[
        "estimator_id"]


def _intervals(rows: pd.DataFrame, best: pd.Series, value: str, se: str | None) -> pd.DataFrame:
    """Per (group, estimator): the ratio of ``value`` to the group's best's, paired on the seed, as a geometric
    mean over seeds with its interval (``seed_interval``): columns ``ratio``, ``low``, ``high``."""
    keys = [*GROUP, "seed"]
    theirs = rows.join(best.rename("best"), on=GROUP)
    columns = {value: "theirs", **({se: "theirs_se"} if se else {})}
    theirs = theirs[theirs["estimator_id"] == theirs["best"]].set_index(keys)[list(columns)].rename(columns=columns)
    paired = rows.join(theirs, on=keys).join(best.rename("best"), on=GROUP)
    with np.errstate(divide="ignore", invalid="ignore"):
        paired = paired.assign(log=np.log(paired[value].astype(float)) - np.log(paired["theirs"].astype(float)),
                               log_se=np.hypot(paired[se], paired["theirs_se"]) if se else 0.0)
    out = {}
    for key, part in paired.groupby([*GROUP, "estimator_id"], sort=False):
        if key[-1] == part["best"].iloc[0]:   # the best against itself: 1, no interval
            out[key] = (1.0, 1.0, 1.0)
            continue
        iv = claim_mod.seed_interval(part["log"], part["log_se"])
        out[key] = (iv.ratio, iv.low, iv.high)
    index = pd.MultiIndex.from_tuples(list(out), names=[*GROUP, "estimator_id"])
    return pd.DataFrame(list(out.values()), index=index, columns=["ratio", "low", "high"])


def estimator_ranking(synth: pd.DataFrame, variance: pd.DataFrame) -> pd.DataFrame:
    """``RANKING_COLUMNS``, one row per (family, setting, samples, device, estimator), in rank order within each
    group (the module's docstring says what is compared). Empty (with the columns) when nothing was measured."""
    rows = ranking_rows(synth, variance)
    if rows.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    keys = [*GROUP, "estimator_id"]
    logs = rows.assign(log_variance=np.log(rows["work_variance"].where(rows["work_variance"] > 0)),
                       log_mse=np.log(rows["work_mse"].where(rows["work_mse"] > 0)))
    table = logs.groupby(keys, sort=False).agg(
        estimator_name=("estimator_name", "first"), unbiased=("unbiased", "first"), n_seeds=("seed", "nunique"),
        exact=("exact", "all"), work_mse_exact=("mse_exact", "all"), log_variance=("log_variance", "mean"),
        log_mse=("log_mse", "mean"), seconds_per_estimate=("seconds_per_estimate", "mean")).reset_index()
    table = table.assign(work_variance=np.exp(table["log_variance"]), work_mse=np.exp(table["log_mse"]),
                         work_variance_exact=table["exact"])
    result = {}
    for value, name, se in (("work_variance", "variance", "rse"), ("work_mse", "mse", None)):
        best = _best(table, value)
        ratios = _intervals(rows, best, value, se).reindex(pd.MultiIndex.from_frame(table[keys]))
        zero = table[f"{value}_exact"].to_numpy()
        result.update({f"{name}_vs_best": np.where(zero, 0.0, ratios["ratio"]),
                       f"{name}_ci_low": np.where(zero, 0.0, ratios["low"]),
                       f"{name}_ci_high": np.where(zero, 0.0, ratios["high"]),
                       f"best_{name}": table.join(best.rename("b"), on=GROUP)["b"].fillna("").to_numpy()})
    table = table.assign(**result)
    table["rank"] = table.groupby(GROUP, sort=False)["variance_vs_best"].rank(method="min", na_option="bottom")
    table["rank"] = table["rank"].astype(int)
    table["order_"] = table.groupby(GROUP, sort=False).ngroup()
    return table.sort_values(["order_", "rank"], kind="stable")[RANKING_COLUMNS].reset_index(drop=True)


def family_summary(ranking: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (estimator, family): the median over the family's settings of ``value`` (a ratio to the best), for
    the heat map; estimators in order of their median over every family, families in the table's order."""
    data = ranking.dropna(subset=[value])
    table = data.pivot_table(index="estimator_id", columns="family", values=value, aggfunc="median", sort=False)
    table = table[list(dict.fromkeys(data["family"]))]
    with np.errstate(divide="ignore"):
        order = np.log10(table).median(axis=1).sort_values(na_position="last").index   # exact (0) first
    return table.loc[order]



TABLE = Table("estimator_ranking", (
    "Which estimator, where: descriptive, not a verdict (no test decides a ranking). One row per family (a "
    "synthetic problem, or a VAE latent at the shared checkpoints: the same network for every estimator), "
    "setting (problem setting and parameter group, or checkpoint step), number of samples, device and estimator: "
    "its variance and MSE times its evaluations of f per estimate (the work of an estimate), relative to the "
    "group's best (the lowest geometric mean over seeds among estimators whose variance is not zero to "
    "rounding), as a geometric mean over seeds of per-seed ratios with a 95% interval (the claim's seed "
    "interval; measurement-only with fewer than 3 seeds); `exact` (ratio 0) where the variance is zero to "
    "rounding; its rank by the variance ratio, its seconds per estimate, and whether it is unbiased (a biased "
    "estimator's MSE, not its variance, is the fair comparison)."))

