"""Snakemake script: draw every figure of experiments.verdict.plots.FIGURES and save each as PNG and PDF.

The figures are independent and matplotlib draws on one core, so the rule's threads draw them in as many
processes (forked: they share the tables read here and the imports; where fork is not available, one after
another). The figures are taken in the order of FIGURES, which lists the costly claim figure first.
"""
import logging
import multiprocessing

import matplotlib.pyplot as plt
import pandas as pd

from experiments.runtime import cli, jobtime
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


def draw(name: str) -> str:
    fig = FIGURES[name].draw(tables, float(sm.params.threshold))
    fig.savefig(sm.output[f"{name}_png"], dpi=150, bbox_inches="tight")
    fig.savefig(sm.output[f"{name}_pdf"], bbox_inches="tight")
    plt.close(fig)
    return sm.output[f"{name}_png"]


tables = {name: read(sm.input[name]) for name in FIGURE_TABLES}
names = list(sm.params.figures)
processes = min(sm.threads, len(names))
if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for path in pool.imap_unordered(draw, names):
            logging.info("wrote %s", path)
else:
    for name in names:
        logging.info("wrote %s", draw(name))
cli.finish()  # every figure is saved: skip the interpreter's teardown
