"""The claim at a glance (``claim_summary.csv``): the variance claim condensed, with a statement of where it holds.

``claim_summary`` condenses the claim table (``variance_claim``) into one row per (family of settings,
parameter group, comparison, estimator, number of samples), with its extremes and their intervals and one
statement (``family_statement``); ``claim_summary_markdown`` renders it for a reader. The places and
statement builders are also what ``experiments.verdict.findings`` says the answer in words with.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from experiments.verdict import claim as claim_mod
from experiments.verdict.tables.table import Table

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



TABLE = Table("claim_summary", (
    "The claim at a glance: one row per family of settings (a synthetic problem, or a VAE latent under the "
    "shared-checkpoints protocol), parameter group (synthetic), declared comparison, estimator and number of "
    "samples, never merged: how many settings, the verdict counts, the smallest and the largest variance ratio "
    "each with its 95% interval and where, and a statement of where the claim holds (each place named once; "
    "exact rows, where a side has zero variance, said apart)."), markdown=claim_summary_markdown)

