"""The study's tables: one module per table (named after it), and ``aggregate_study``, which makes them all.

Pure functions from tidy result frames to the tables under ``results/STUDY/tables``; no I/O here (the aggregate
rule's script reads the jobs' tables with ``experiments.verdict.inputs.read_inputs`` and writes what
``aggregate_study`` returns). Each module declares its table (``Table``: name, caption) next to the function that
makes it; ``REGISTRY`` puts them in report order, and ``TABLES`` (name -> caption) is what the rules, the report
and the tests read.

A new table: a module here with its function and its ``Table``, one line in ``REGISTRY``, one entry in
``aggregate_study``, its outputs in ``workflow/rules/aggregate.smk`` and its columns in ``results/README.md``.
"""
from __future__ import annotations

import pandas as pd

from experiments.verdict.inputs import StudyInputs
from experiments.verdict.tables import (claim_summary, cost_table, device_comparison, elbo_table, estimator_ranking,
                                        excluded_cells, lr_selection, run_status, tidy, variance_claim)
from experiments.verdict.tables.table import Table

#: Every table of a study, in report order.
REGISTRY: dict[str, Table] = {t.name: t for t in (
    claim_summary.TABLE, variance_claim.TABLE, estimator_ranking.TABLE, lr_selection.TABLE, elbo_table.TABLE,
    cost_table.TABLE, device_comparison.TABLE, excluded_cells.TABLE, run_status.TABLE, tidy.SYNTHETIC_ALL,
    tidy.VAE_METRICS, tidy.VAE_VARIANCE)}

#: The study's tables, in report order, with their captions: the one list the aggregation rule, the
#: report (each rendered inline as HTML) and the tests read. results/README.md documents every column.
TABLES: dict[str, str] = {name: table.caption for name, table in REGISTRY.items()}


def aggregate_study(plan, inputs: StudyInputs, threshold: float, seeds: list[int]) -> dict[str, pd.DataFrame]:
    """Every table of the study (``TABLES``, in its order) from what its jobs wrote (``inputs``) and its plan
    (the declared claim rows, the runs, the exclusions). The claim reads every measurement; where a cell was
    trained on a grid of learning rates, the tables of training results (ELBO, cost, devices, ranking) read
    the selected runs only (the selection is made here, by the rule declared in
    ``lr_selection.select_learning_rates``), while ``vae_metrics``, ``vae_variance`` and ``run_status`` keep
    every run, marked ``selected``."""
    status = run_status.run_status(plan, inputs.statuses, inputs.latent_names)
    claim = variance_claim.variance_claim(plan, inputs.synthetic, inputs.variance, status, threshold, seeds)
    selection = lr_selection.select_learning_rates(inputs.metrics, status)
    metrics, variance, status = (lr_selection.mark_selected(f, selection) for f in (inputs.metrics, inputs.variance,
                                                                                      status))
    chosen = {name: lr_selection.only_selected(f) for name, f in (("metrics", metrics), ("variance", variance),
                                                                   ("status", status))}
    made = {
        "claim_summary": claim_summary.claim_summary(claim, threshold),
        "variance_claim": claim,
        "estimator_ranking": estimator_ranking.estimator_ranking(inputs.synthetic, chosen["variance"]),
        "lr_selection": selection,
        "elbo_table": elbo_table.elbo_table(chosen["metrics"], chosen["status"]),
        "cost_table": cost_table.cost_table(chosen["metrics"], chosen["variance"], inputs.synthetic),
        "device_comparison": device_comparison.device_comparison(inputs.synthetic, chosen["metrics"],
                                                                 chosen["variance"]),
        "excluded_cells": excluded_cells.excluded_cells(plan.excluded, inputs.skipped),
        "run_status": status,
        "synthetic_all": inputs.synthetic,
        "vae_metrics": metrics,
        "vae_variance": variance,
    }
    return {name: made[name] for name in TABLES}
