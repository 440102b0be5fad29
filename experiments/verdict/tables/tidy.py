"""The tidy tables: every job's rows, concatenated (``experiments.verdict.inputs.read_inputs``), as the other
tables read them. ``vae_metrics`` and ``vae_variance`` keep every run, each row marked ``selected`` where it
enters the tables of training results (``experiments.verdict.tables.lr_selection.mark_selected``)."""
from __future__ import annotations

from experiments.verdict.tables.table import Table

SYNTHETIC_ALL = Table("synthetic_all", (
    "Every synthetic measurement: bias, variance with its standard error, MSE, SNR and cost per (problem, "
    "setting, parameter, estimator, n_samples, seed)."))

VAE_METRICS = Table("vae_metrics", (
    "Train and test ELBO and the test IWAE bound of every VAE run at its evaluation steps."))

VAE_VARIANCE = Table("vae_variance", (
    "Every encoder-gradient variance measurement: own-run and shared-checkpoints protocols."))

