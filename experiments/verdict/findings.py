"""The study's answer in words: ``findings.md``, generated from the verdict table and its summary, never by hand.

``findings(claim, summary, threshold)`` is pure: from ``variance_claim`` (one row per declared comparison and
setting, ``experiments.verdict.tables.variance_claim``) and ``claim_summary`` (``tables.claim_summary``) to 4-8
sentences of markdown, each with its numbers and their 95% intervals over seeds:

1. the whole verdict: how many rows hold, fail, are undecided or exact, and the extreme ratios;
2. plain REINFORCE over pathwise on each continuous VAE latent, stage by stage;
3. the same with a baseline (every other score-function estimator of that comparison);
4. the dimension at which the ratio crosses the threshold (the quadratic in D dimensions);
5. where REINFORCE beats pathwise (the whole interval below 1) on the synthetic problems;
6. the discrete analogue: plain REINFORCE over each relaxation on the discrete latents (or toys);
7. what the relaxations pay for their lower variance: the MSE ratio beside the variance ratio;
8. the claim across K on the K-sample bound (``across_k``): plain REINFORCE and VIMCO over pathwise and over DReG
   from the smallest K to the largest, on a VAE latent trained on the bound where the study has one (its late
   stage; ``run_status`` says which), else on the synthetic bound problem.

A sentence whose rows the study does not have is left out. ``write_findings(tables)`` reads the two tables
from a study's tables folder and writes ``findings.md`` beside that folder (``results/STUDY/findings.md``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.verdict import across_k as bound
from experiments.verdict.tables import claim_summary as agg

FILENAME = "findings.md"
PATHWISE, RELAXATION = "reinforce_over_pathwise", "reinforce_over_relaxation"
MAX_SENTENCES = 8


def _ratio(row) -> str:
    """``7.17e+05 [6.5e+05, 7.9e+05]``: a ratio and its 95% interval (3 significant digits)."""
    return f"{row['variance_ratio']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"


def _plain_ids(claim: pd.DataFrame) -> set[str]:
    """The estimator ids of plain REINFORCE (no baseline): by name and label where the table has them."""
    if "estimator_label" in claim and "estimator_name" in claim:
        plain = claim["estimator_name"].eq("reinforce") & claim["estimator_label"].astype(str).str.contains("'none'")
        if plain.any():
            return set(claim.loc[plain, "estimator_id"])
    return {"reinforce"} & set(claim["estimator_id"])


def _measured(rows: pd.DataFrame, every: bool = False) -> pd.DataFrame:
    """Rows with a ratio from measurements (not exact, not missing), with ``place`` and ``order``
    (``claim_summary.setting_places``, ``setting_order``), each family's in order; unless ``every``, only at each
    family's smallest number of samples and a synthetic problem's first parameter group (as the figure)."""
    rows = rows[np.isfinite(rows["variance_ratio"]) & (rows["interval"] != "exact") & (rows["verdict"] != "missing")]
    if rows.empty:
        return rows
    samples = agg.claim_samples(rows)
    if not every:
        rows = rows[samples == samples.groupby(rows["family"]).transform("min")]
    if "parameter" in rows and not every:   # a synthetic problem's first parameter group (loc before scale)
        first = rows.groupby("family")["parameter"].transform(lambda p: p.dropna().iloc[0] if p.notna().any() else None)
        rows = rows[rows["parameter"].isna() | (rows["parameter"] == first)]
    parts = [part.assign(place=agg.setting_places(part), order=[agg.setting_order(r) for r in part.to_dict("records")])
             for _, part in rows.groupby("family", sort=False)]
    # Orders compare within a family only (a stage against a stage, a setting against a setting).
    return pd.concat([part.sort_values("order", kind="stable") for part in parts])


def _select(claim: pd.DataFrame, comparison: str, source: str | None = None, plain: bool | None = None) -> pd.DataFrame:
    rows = claim[claim["comparison"] == comparison]
    if source:
        rows = rows[rows["source"] == source]
    if plain is not None:
        rows = rows[rows["estimator_id"].isin(_plain_ids(claim)) == plain]
    return _measured(rows)


def _held(rows: pd.DataFrame) -> str:
    """``3 of 4``: how many of the rows hold (verdict yes)."""
    return f"{int((rows['verdict'] == 'yes').sum())} of {len(rows)}"


def _undecided(rows: pd.DataFrame) -> str:
    """``; 1 undecided``, where rows are undecided (a reader must not take them for failures)."""
    n = int((rows["verdict"] == "undecided").sum())
    return f"; {n} undecided" if n else ""


def overall(claim: pd.DataFrame, threshold: float) -> str | None:
    """How many rows hold, fail, are undecided, missing or exact, and the smallest and largest ratio."""
    if claim.empty:
        return None
    counts = claim["verdict"].value_counts()
    said = ", ".join(f"{words} in {int(counts[v])}" for v, words in
                     (("yes", "holds"), ("no", "fails"), ("undecided", "is undecided"), ("missing", "is missing"))
                     if counts.get(v, 0))
    exact = claim[claim["interval"] == "exact"]
    exact_words = "" if exact.empty else f" ({len(exact)} exact: {_exact_example(exact.iloc[0])}; no ratio)"
    rows = _measured(claim, every=True)
    text = (f"Of {len(claim)} declared comparisons, the claim (variance ratio at least {threshold:g}, the whole 95% "
            f"interval over seeds) {said}{exact_words}")
    if len(rows):
        low, high = rows.loc[rows["variance_ratio"].idxmin()], rows.loc[rows["variance_ratio"].idxmax()]
        text += f"; the ratios run from {_ratio(low)} ({_where(low)}) to {_ratio(high)} ({_where(high)})"
    return text + "."


def _where(row) -> str:
    """``reinforce over pathwise, dimension, dim=1000``: who and where, for a ratio."""
    return f"{row['estimator_id']} over {row['comparator_id']}, {_family_words(row['family'])}, {row['place']}"


def _exact_example(row) -> str:
    """Which side of an exact row has zero variance, and where."""
    side = row["estimator_id"] if row["variance_ratio"] == 0 else row["comparator_id"]
    where = row["setting_label"] if isinstance(row.get("setting_label"), str) else row["family"]
    return f"a side's variance is zero to rounding, e.g. {side}'s in {where}"


def _family_words(family: str) -> str:
    return f"the {family[4:]} VAE" if family.startswith("vae ") else family


def _per_vae_family(claim: pd.DataFrame, plain: bool, say) -> list[str] | None:
    """``say(family, rows)`` for each VAE family's comparisons over pathwise (plain REINFORCE's, or every other
    score-function estimator's), in the table's order; ``None`` where there are none."""
    rows = _select(claim, PATHWISE, "vae", plain=plain)
    if rows.empty:
        return None
    return [say(family, part) for family, part in rows.groupby("family", sort=False)]


def vae_plain(claim: pd.DataFrame, threshold: float) -> str | None:
    """Plain REINFORCE over pathwise on each continuous VAE latent, at its first and last stage."""
    def say(family, part):
        first, last = part.iloc[0], part.iloc[-1]
        return (f"on {_family_words(family)} it is {_ratio(first)} at {first['place']} and {_ratio(last)} at "
                f"{last['place']} (at least {threshold:g} at {_held(part)} stages{_undecided(part)})")

    parts = _per_vae_family(claim, True, say)
    if parts is None:
        return None
    return "Plain REINFORCE's gradient variance over pathwise's, at the same network: " + "; ".join(parts) + "."


def vae_baselines(claim: pd.DataFrame, threshold: float) -> str | None:
    """Every other score-function estimator over pathwise on the VAE: its range over stages."""
    def say(family, by_family):
        said = []
        for est, part in by_family.groupby("estimator_id", sort=False):
            low, high = part.loc[part["variance_ratio"].idxmin()], part.loc[part["variance_ratio"].idxmax()]
            said.append(f"{est} (S={int(agg.claim_samples(part).iloc[0])}) from {_ratio(low)} at {low['place']} to "
                        f"{_ratio(high)} at {high['place']} ({_held(part)} at least {threshold:g}{_undecided(part)})")
        return f"on {_family_words(family)}, " + ", ".join(said[:3])

    parts = _per_vae_family(claim, False, say)
    if parts is None:
        return None
    return "With a baseline, over pathwise: " + "; ".join(parts[:2]) + "."


def dimension_crossing(claim: pd.DataFrame, threshold: float) -> str | None:
    """The dimension from which plain REINFORCE over pathwise stays at or above the threshold."""
    rows = _select(claim[claim["family"] == "dimension"], PATHWISE, plain=True)
    if rows.empty:
        return None
    rows = rows[rows["estimator_id"] == rows["estimator_id"].iloc[0]]
    first, last = rows.iloc[0], rows.iloc[-1]
    if len(rows) == 1:
        verdict = {"yes": f"at least {threshold:g}", "no": f"below {threshold:g}"}.get(first["verdict"], "undecided")
        return (f"In the quadratic in D dimensions, measured at {first['place']} only, plain REINFORCE over "
                f"pathwise is {_ratio(first)}: {verdict}.")
    text = f"In the quadratic in D dimensions, plain REINFORCE over pathwise goes from {_ratio(first)} at " \
           f"{first['place']} to {_ratio(last)} at {last['place']}"
    above = rows["verdict"].eq("yes").to_numpy()
    tail = [i for i in range(len(rows)) if above[i:].all()]
    if tail:
        cross = rows.iloc[tail[0]]
        text += f"; it is at least {threshold:g} from {cross['place']} on ({_ratio(cross)})"
    else:
        text += f"; it does not stay at least {threshold:g} from any dimension on"
    return text + "."


def reinforce_wins(claim: pd.DataFrame, threshold: float) -> str | None:
    """Where plain REINFORCE beats pathwise: the whole interval below 1, per synthetic problem."""
    rows = _select(claim, PATHWISE, "synthetic", plain=True)
    rows = rows[rows["ci_high"] < 1] if len(rows) else rows
    if rows.empty:
        return None
    parts = []
    for family, part in rows.groupby("family", sort=False):
        everywhere = _select(claim[claim["family"] == family], PATHWISE, plain=True)
        places = agg.say_places(list(part["place"]), list(everywhere["place"]), True, len(part) > 4)
        best = part.loc[part["variance_ratio"].idxmin()]
        parts.append(f"on {family} {places} (down to {_ratio(best)} at {best['place']})")
    return "Plain REINFORCE beats pathwise (ratio below 1) " + "; ".join(parts[:3]) + "."


def discrete(claim: pd.DataFrame, threshold: float) -> str | None:
    """Plain REINFORCE over each relaxation: the discrete VAE latents, else the discrete toys."""
    rows = _select(claim, RELAXATION, "vae", plain=True)
    rows = rows if len(rows) else _select(claim, RELAXATION, "synthetic", plain=True)
    if rows.empty:
        return None
    parts = []
    families = rows["family"].value_counts(sort=True).index[:2]   # the two with the most rows (settings x relaxations)
    for family, part in rows[rows["family"].isin(families)].groupby("family", sort=False):
        low, high = part.loc[part["variance_ratio"].idxmin()], part.loc[part["variance_ratio"].idxmax()]
        parts.append(f"on {_family_words(family)} from {_ratio(low)} ({low['place']}, over {low['comparator_id']}) to "
                     f"{_ratio(high)} ({high['place']}, over {high['comparator_id']}), at least {threshold:g} in "
                     f"{_held(part)} rows{_undecided(part)}")
    return "The discrete analogue, plain REINFORCE over each relaxation: " + "; ".join(parts) + "."


def relaxation_bias(claim: pd.DataFrame, threshold: float) -> str | None:
    """The relaxation with the largest bias at the last place of any discrete family: its MSE ratio (which
    counts the bias) beside its variance ratio."""
    rows = _select(claim, RELAXATION, "vae", plain=True)
    rows = rows if len(rows) else _select(claim, RELAXATION, "synthetic", plain=True)
    needed = ["mse_ratio", "mse_ci_low", "mse_ci_high", "comparator_bias_norm"]
    if rows.empty or not set(needed) <= set(rows.columns):
        return None
    rows = rows[np.isfinite(rows["mse_ratio"])]
    rows = pd.concat([part[part["order"] == part["order"].max()] for _, part in rows.groupby("family")]) \
        if len(rows) else rows
    if rows.empty or not np.isfinite(rows["comparator_bias_norm"]).any():
        return None
    row = rows.loc[rows["comparator_bias_norm"].idxmax()]
    mse = f"{row['mse_ratio']:.3g} [{row['mse_ci_low']:.3g}, {row['mse_ci_high']:.3g}]"
    return (f"The relaxations pay for their lower variance with bias: on {_family_words(row['family'])} at "
            f"{row['place']}, {row['comparator_id']}'s gradient bias has norm {row['comparator_bias_norm']:.3g}, and "
            f"plain REINFORCE's MSE is {mse} times its, against a variance ratio of {_ratio(row)}.")


def across_k(claim: pd.DataFrame, threshold: float, run_status: pd.DataFrame | None = None) -> str | None:
    """The claim across K at one place (a VAE latent on the bound, late, else the first synthetic bound problem's
    first parameter), at its smallest number of K-tuples: plain REINFORCE and VIMCO over pathwise and over DReG,
    from the smallest K measured to the largest."""
    rows = bound.ratio_rows(claim, run_status)
    rows = rows[np.isfinite(rows["variance_ratio"].astype(float))] if len(rows) else rows
    if rows.empty:
        return None
    vae = rows[rows["source"] == "vae"]
    rows = vae if len(vae) else rows
    rows = rows[(rows["place"] == rows["place"].iloc[0]) & (rows["samples_"] == rows["samples_"].min())]
    plain, parts = _plain_ids(claim), []
    for label, ids in (("plain REINFORCE", plain), ("VIMCO", set(rows.loc[rows["estimator_name"] == "vimco",
                                                                           "estimator_id"]))):
        said = []
        for comparator in dict.fromkeys(rows["comparator_id"]):
            part = rows[rows["estimator_id"].isin(ids) & (rows["comparator_id"] == comparator)].sort_values("k")
            part = part[part["estimator_id"] == part["estimator_id"].iloc[0]] if len(part) else part
            if len(part) >= 2:
                first, last = part.iloc[0], part.iloc[-1]
                said.append(f"over {comparator} from {_ratio(first)} at K={first['k']:g} to {_ratio(last)} at "
                            f"K={last['k']:g}")
        if said:
            parts.append(f"{label} " + " and ".join(said))
    if not parts:
        return None
    where = rows["place"].iloc[0]
    return (f"On the K-sample bound ({where}, S={int(rows['samples_'].iloc[0])} K-tuples): " + "; ".join(parts)
            + f" (the claim's threshold is {threshold:g}).")


SENTENCES = (overall, vae_plain, vae_baselines, dimension_crossing, reinforce_wins, discrete, relaxation_bias,
             across_k)


def findings(claim: pd.DataFrame, summary: pd.DataFrame, threshold: float = 100.0,
             run_status: pd.DataFrame | None = None) -> str:
    """``findings.md``: a title line and at most ``MAX_SENTENCES`` sentences, one a bullet (``SENTENCES``, in
    order, each left out where the study has no rows for it); ``summary`` gives the number of summary rows;
    ``run_status`` says which VAE latents are trained on the K-sample bound (``across_k``)."""
    said = [s for s in (sentence(claim, threshold, run_status) if sentence is across_k else sentence(claim, threshold)
                        for sentence in SENTENCES) if s][:MAX_SENTENCES]
    head = (f"Findings, generated from `tables/variance_claim.csv` ({len(claim)} rows) and "
            f"`tables/claim_summary.csv` ({len(summary)} rows); intervals are 95% over seeds.")
    if not said:
        return head + "\n\nNo declared comparison was measured.\n"
    return head + "\n\n" + "\n".join(f"- {s}" for s in said) + "\n"


def write_findings(tables: str | Path, threshold: float = 100.0, out: str | Path | None = None) -> Path:
    """Read ``variance_claim.csv`` and ``claim_summary.csv`` from ``tables`` and write ``findings.md`` to
    ``out`` (default: beside the tables folder, ``results/STUDY/findings.md``). Returns the path written."""
    tables = Path(tables)
    claim, summary = (_read(tables / f"{name}.csv") for name in ("variance_claim", "claim_summary"))
    status = _read(tables / "run_status.csv") if (tables / "run_status.csv").exists() else None
    path = Path(out) if out is not None else tables.parent / FILENAME
    path.write_text(findings(claim, summary, threshold, status))
    return path


def _read(path: Path) -> pd.DataFrame:
    """A table, empty where the file has no rows (an empty study writes a header or nothing)."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["verdict", "interval", "variance_ratio", "comparison", "source", "family"])


if __name__ == "__main__":   # python -m experiments.verdict.findings results/STUDY/tables [threshold]
    import sys

    print(write_findings(sys.argv[1], *(float(a) for a in sys.argv[2:3])))
