"""The excluded cells (``excluded_cells.csv``): what the study does not measure, and why."""
from __future__ import annotations

import pandas as pd

from experiments.config.jobs import EXCLUSION_COLUMNS
from experiments.verdict.tables.table import Table


def excluded_cells(exclusions, skipped: pd.DataFrame) -> pd.DataFrame:
    """What the plan left out (``exclusions``: ``Plan.excluded``), then what each synthetic job found
    inapplicable (``skipped``: its ``skipped.csv`` rows), once per problem setting, estimator and samples."""
    excluded = pd.DataFrame([vars(e) for e in exclusions], columns=EXCLUSION_COLUMNS)
    if not skipped.empty:
        syn = skipped.assign(experiment="synthetic", setting=skipped["problem"] + " " + skipped["setting"])
        excluded = pd.concat([excluded, syn[EXCLUSION_COLUMNS].drop_duplicates()], ignore_index=True)
    return excluded


TABLE = Table("excluded_cells", (
    "Combinations the study does not run, with the reason given by Estimator.why_not."))

