"""Snakemake script: draw one figure of experiments.plots.FIGURES and save it as PNG and PDF."""
import logging

import pandas as pd

from experiments import jobtime
from experiments.plots import FIGURE_TABLES, FIGURES
from experiments.provenance import TEXT_DTYPES

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("figure")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")


def read(path):
    try:
        return pd.read_csv(path, dtype=TEXT_DTYPES)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


tables = {name: read(sm.input[name]) for name in FIGURE_TABLES}
fig = FIGURES[sm.params.figure].draw(tables, float(sm.params.threshold))
fig.savefig(sm.output.png, dpi=150, bbox_inches="tight")
fig.savefig(sm.output.pdf, bbox_inches="tight")
logging.info("wrote %s", sm.output.png)
