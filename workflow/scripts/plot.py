"""Snakemake script: draw every figure of experiments.verdict.plots.FIGURES and save each as PNG and PDF."""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from experiments.runtime import jobtime
from experiments.verdict.plots import FIGURE_TABLES, FIGURES
from experiments.runtime.provenance import TEXT_DTYPES

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("figures")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")


def read(path):
    try:
        return pd.read_csv(path, dtype=TEXT_DTYPES)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


tables = {name: read(sm.input[name]) for name in FIGURE_TABLES}
for name in sm.params.figures:
    fig = FIGURES[name].draw(tables, float(sm.params.threshold))
    fig.savefig(sm.output[f"{name}_png"], dpi=150, bbox_inches="tight")
    fig.savefig(sm.output[f"{name}_pdf"], bbox_inches="tight")
    plt.close(fig)
    logging.info("wrote %s", sm.output[f"{name}_png"])
