"""The claim across K: the declared comparisons on the K-sample bound, against K (pure functions of the tables).

A *bound setting* is a synthetic problem whose claim rows include an estimator of the bound itself
(``capabilities.objective == "iwae"``: vimco, dreg), or a VAE latent trained on the bound (``run_status.bound_k``).
``ratio_rows`` gathers its comparisons over a pathwise-role comparator (pathwise, which is then Burda et al.'s
IWAE gradient, and DReG) with ``place`` (a synthetic problem and parameter, or a VAE latent at its late stage),
``samples_`` (K-tuples per estimate) and ``k``; the figure ``claim_across_k`` draws them and the findings say them.
"""
from __future__ import annotations

import json

import pandas as pd

import estimators

COLUMNS = ["place", "samples_", "k", "estimator_id", "comparator_id"]


def _names(test) -> set[str]:
    return {n for n in estimators.available() if test(estimators.estimator_class(n).capabilities)}


def pathwise_role() -> set[str]:
    return _names(lambda c: c.role == "pathwise")


def bound_problems(claim: pd.DataFrame) -> list[str]:
    """The synthetic problems of ``claim`` with a row of an estimator of the bound itself, in the table's order."""
    if claim.empty or "problem" not in claim:
        return []
    own = _names(lambda c: c.objective == "iwae")
    rows = claim[(claim["source"] == "synthetic")
                 & (claim["estimator_name"].isin(own) | claim["comparator_name"].isin(own))]
    return list(dict.fromkeys(rows["problem"]))


def bound_latents(run_status: pd.DataFrame) -> dict[tuple[str, str], tuple[float, str]]:
    """(data set, latent id) -> (K, latent name) of the VAE latents trained on a K-sample bound. The name is the
    latent's label without the id that tells same-label latents apart in the tables (``inputs.latent_names``:
    ``gaussian(8) gaussian_k5``), so that the latents of one sweep over K share a place."""
    if run_status is None or run_status.empty or "bound_k" not in run_status:
        return {}
    rows = run_status[pd.to_numeric(run_status["bound_k"], errors="coerce").notna()]
    return {(d, i): (float(k), str(n).removesuffix(f" {i}"))
            for d, i, k, n in zip(rows["dataset"], rows["latent_id"], rows["bound_k"], rows["latent"])}


def vae_place(dataset: str, name: str) -> str:
    return f"{dataset}, {name} (VAE, late)"


def ratio_rows(claim: pd.DataFrame, run_status: pd.DataFrame | None = None) -> pd.DataFrame:
    """The declared comparisons over a pathwise-role comparator in every bound setting, with ``COLUMNS``."""
    if claim.empty or "comparator_name" not in claim:
        return pd.DataFrame(columns=COLUMNS)
    claim = claim[claim["comparator_name"].isin(pathwise_role())]
    parts = []
    syn = claim[(claim["source"] == "synthetic")]
    syn = syn[syn["problem"].isin(bound_problems(claim))] if "problem" in syn else syn.iloc[:0]
    if not syn.empty:
        parts.append(syn.assign(place=syn["problem"] + ", " + syn["parameter"].astype(str),
                                k=syn["setting"].map(lambda s: float(json.loads(s)["k"])),
                                samples_=syn["n_samples"].astype(int)))
    bounds = bound_latents(run_status)
    if bounds and "latent_id" in claim:
        on_bound = pd.Series([key in bounds for key in zip(claim["dataset"], claim["latent_id"])], index=claim.index)
        vae = claim[(claim["source"] == "vae") & on_bound & (claim["stage"] == "late")]
        if not vae.empty:
            keys = list(zip(vae["dataset"], vae["latent_id"]))
            parts.append(vae.assign(place=[vae_place(d, bounds[(d, i)][1]) for d, i in keys],
                                    k=[bounds[key][0] for key in keys], samples_=vae["samples"].astype(int)))
    return pd.concat(parts) if parts else pd.DataFrame(columns=COLUMNS)
