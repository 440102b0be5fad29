"""Snakemake script: draw one figure with experiments.plots and save it as PNG and PDF."""
import logging

import pandas as pd

from experiments import plots

sm = snakemake  # noqa: F821  (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")


def read(path):
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


synth, metrics = read(sm.input.synthetic_all), read(sm.input.vae_metrics)
variance, cost = read(sm.input.vae_variance), read(sm.input.cost)
draw = {
    "variance_vs_k": lambda: plots.mohamed_variance(synth),
    "ratio_vs_dimension": lambda: plots.dimension_ratio(synth),
    "vae_variance_over_training": lambda: plots.vae_variance_over_training(variance),
    "elbo_curves": lambda: plots.elbo_curves(metrics),
    "work_normalized_variance": lambda: plots.work_normalized_variance(cost),
    "device_timings": lambda: plots.device_timings(cost),
}
if sm.params.figure not in draw:
    raise ValueError(f"unknown figure {sm.params.figure!r}; valid: {', '.join(draw)}")
fig = draw[sm.params.figure]()
fig.savefig(sm.output.png, dpi=150, bbox_inches="tight")
fig.savefig(sm.output.pdf, bbox_inches="tight")
logging.info("wrote %s", sm.output.png)
