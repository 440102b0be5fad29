"""The ELBO table (``elbo_table.csv``): -ELBO at the end of training in the layout of Jang et al. 2017 Table 1,
beside the published number (``ANCHORS``) where the model and estimator match."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from experiments.verdict.inputs import ESTIMATOR_COLUMNS
from experiments.verdict.tables.table import Table

ELBO_COLUMNS = ["dataset", "latent_family", "latent", "preset", *ESTIMATOR_COLUMNS, "n_samples", "device",
                "neg_elbo_mean", "neg_elbo_sd", "train_neg_elbo_best", "n_seeds", "n_runs", "n_diverged", "final_step",
                "anchor", "anchor_neg_elbo", "anchor_measure"]


@dataclass(frozen=True)
class Anchor:
    """A published -ELBO for a model (``preset``) trained with an estimator (``estimator_name``); ``measure``
    says which of our columns it is comparable with: ``test`` (``neg_elbo_mean``, the final test -ELBO) or
    ``best_train`` (``train_neg_elbo_best``); ``source`` names the table, column and scale."""

    preset: str
    estimator_name: str
    neg_elbo: float
    measure: str
    source: str


_JANG = "Jang et al. 2017 Table 1, {}: test -ELBO, binarized MNIST"
_RELAX = ("Grathwohl et al. 2018 (RELAX) Table 1, {}, linear one-layer: highest training ELBO after 2M "
          "iterations at batch 24, static MNIST")
# Jang et al. 2017, Table 1: their SF, ST, Gumbel-S. and ST Gumbel-S. columns. Grathwohl et al. 2018, Table 1:
# the linear one-layer model (200 Bernoulli, 784-200 linear: dong2020_linear); their two-layer rows (REBAR
# -98.22, RELAX -98.00) have two stochastic layers, a model gradvar does not build, so they match nothing.
ANCHORS = (
    *(Anchor(preset, name, value, "test", _JANG.format(column))
      for preset, values in (("jang2017_bernoulli", (112.2, 116.0, 105.0, 111.5)),
                             ("jang2017_categorical", (110.6, 110.9, 101.5, 107.8)))
      for (name, column), value in zip((("reinforce", "SF"), ("straight_through", "ST"),
                                        ("gumbel_softmax", "Gumbel-S."), ("st_gumbel_softmax", "ST Gumbel-S.")),
                                       values)),
    Anchor("dong2020_linear", "rebar", 111.6, "best_train", _RELAX.format("REBAR")),
    Anchor("dong2020_linear", "relax", 111.20, "best_train", _RELAX.format("RELAX")),
)

def elbo_table(metrics: pd.DataFrame, run_status: pd.DataFrame) -> pd.DataFrame:
    """Jang et al. 2017 Table 1 layout: -ELBO on the test set at the final step, ours (mean +- sd over the
    seeds whose run completed), the best training -ELBO over the evaluations (mean over those seeds), and
    the published number (``ANCHORS``) for the run's preset (``run_status``'s ``preset``) and estimator.
    Diverged runs are counted (``n_diverged``) and kept out of the means; their last ELBO is not an
    end-of-training number."""
    test = metrics[(metrics["split"] == "test")] if len(metrics) else metrics
    if test.empty:
        return pd.DataFrame(columns=ELBO_COLUMNS)
    run_keys = ["dataset", "latent", "estimator_id", "n_samples", "device", "seed"]
    final = test.loc[test.groupby(run_keys)["step"].idxmax()]
    status = run_status[run_keys + ["status"] + (["preset"] if "preset" in run_status else [])] if len(run_status) \
        else pd.DataFrame(columns=run_keys + ["status"])
    final = final.merge(status, on=run_keys, how="left").assign(neg_elbo=lambda d: -d["elbo"])
    if "preset" not in final:
        final["preset"] = None
    train = metrics[metrics["split"] == "train"]
    best_train = (-train.groupby(run_keys)["elbo"].max()).rename("train_neg_elbo_best")
    final = final.join(best_train, on=run_keys)
    final["preset"] = final["preset"].fillna("")
    cell = ["dataset", "latent_family", "latent", "preset", *ESTIMATOR_COLUMNS, "n_samples", "device"]
    completed = final[final["status"] == "completed"]
    table = final.groupby(cell).agg(n_runs=("seed", "count"),
                                    n_diverged=("status", lambda s: int((s == "diverged").sum())))
    means = completed.groupby(cell)["neg_elbo"].agg(neg_elbo_mean="mean", neg_elbo_sd="std", n_seeds="count")
    table = table.join(means, how="left").join(completed.groupby(cell)["train_neg_elbo_best"].mean(), how="left")
    table = table.join(completed.groupby(cell)["step"].max().rename("final_step"), how="left").reset_index()
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    anchors = {(a.preset, a.estimator_name): a for a in ANCHORS}
    found = [anchors.get((p, n)) for p, n in zip(table["preset"], table["estimator_name"])]
    table["anchor"] = [a.source if a else "" for a in found]
    table["anchor_neg_elbo"] = [a.neg_elbo if a else math.nan for a in found]
    table["anchor_measure"] = [a.measure if a else "" for a in found]
    return table[ELBO_COLUMNS]



TABLE = Table("elbo_table", (
    "-ELBO on the test set at the end of training (mean and standard deviation over seeds), in the layout of "
    "Jang et al. 2017 Table 1, and the best training -ELBO over the evaluations; beside ours, a published number "
    "where the model (preset) and estimator match (ANCHORS: Jang et al. 2017 Table 1, test -ELBO on binarized "
    "MNIST; Grathwohl et al. 2018 (RELAX) Table 1, highest training ELBO after 2M iterations at batch 24 on "
    "static MNIST), with the measure it is on (anchor_measure) and the scale it was obtained at. Only the paper "
    "config has those presets."))

