"""Learning-rate selection (``lr_selection.csv``) for the VAE entries trained on a grid of rates (``lr_grid``).

``select_learning_rates`` applies the rule declared before training; ``mark_selected`` and ``only_selected``
let the tables of training results (ELBO, cost, devices, ranking) and the training figures read the selected
runs only, while ``vae_metrics`` and ``vae_variance`` keep every run.
"""
from __future__ import annotations

import pandas as pd

from experiments.verdict.tables.table import Table

LR_CELL = ["dataset", "latent", "estimator_id", "n_samples", "device"]
LR_SELECTION_COLUMNS = [*LR_CELL, "estimator_name", "estimator_label", "lr", "n_runs", "n_completed",
                        "valid_elbo_mean", "valid_elbo_sd", "test_elbo_mean", "test_elbo_sd", "eligible", "selected"]


def select_learning_rates(metrics: pd.DataFrame, run_status: pd.DataFrame) -> pd.DataFrame:
    """The learning-rate selection of every cell trained at several rates (Jang et al.
    2017's protocol: the best rate on the validation split, its test numbers reported), and the chosen
    ``(cell, lr)`` pairs. The rule, fixed before any run: a rate is eligible when every one of its seeds'
    runs completed (a rate that diverges on a seed is not a usable setting); among eligible rates the one
    with the highest mean over seeds of the final validation ELBO; ties go to the smaller rate. A cell whose
    rates are all ineligible has no chosen rate (and no row in the ELBO table). Cells trained at one rate are
    not selections and have no rows (``mark_selected`` applies the table to result rows)."""
    empty = pd.DataFrame(columns=LR_SELECTION_COLUMNS)
    if metrics.empty or "lr" not in metrics:
        return empty
    rates = metrics.groupby(LR_CELL)["lr"].nunique()
    grid_cells = rates[rates > 1].index
    if not len(grid_cells):
        return empty
    data = metrics.set_index(LR_CELL).loc[grid_cells].reset_index()
    run = [*LR_CELL, "lr", "seed"]
    final = data.loc[data.groupby([*run, "split"])["step"].idxmax()]
    per_run = final.pivot_table(index=run, columns="split", values="elbo").reset_index()
    status = run_status[[*run, "status"]] if len(run_status) and "lr" in run_status \
        else pd.DataFrame(columns=[*run, "status"])
    per_run = per_run.merge(status, on=run, how="left")
    names = data.drop_duplicates(LR_CELL).set_index(LR_CELL)[["estimator_name", "estimator_label"]]
    rows = []
    for key, group in per_run.groupby([*LR_CELL, "lr"]):
        done = group[group["status"] == "completed"]
        rows.append({**dict(zip([*LR_CELL, "lr"], key)), "n_runs": len(group), "n_completed": len(done),
                     "valid_elbo_mean": done.get("valid", pd.Series(dtype=float)).mean(),
                     "valid_elbo_sd": done.get("valid", pd.Series(dtype=float)).std(),
                     "test_elbo_mean": done.get("test", pd.Series(dtype=float)).mean(),
                     "test_elbo_sd": done.get("test", pd.Series(dtype=float)).std()})
    table = pd.DataFrame(rows)
    table["eligible"] = (table["n_completed"] == table["n_runs"]) & table["valid_elbo_mean"].notna()
    table["selected"] = False
    for _, group in table[table["eligible"]].groupby(LR_CELL):
        best = group.sort_values(["valid_elbo_mean", "lr"], ascending=[False, True]).index[0]
        table.loc[best, "selected"] = True
    table = table.join(names, on=LR_CELL)
    return table[LR_SELECTION_COLUMNS]


def mark_selected(frame: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``selected`` column: False for rows of a learning-rate grid cell (a cell of the
    ``selection`` table) at a rate that was not selected, or of a cell where none was; True otherwise (cells
    trained at one rate, shared-checkpoints rows, frames without ``lr``)."""
    if frame.empty or "lr" not in frame or selection.empty:
        return frame.assign(selected=True)
    chosen = selection[selection["selected"].astype(bool)]
    in_grid = frame.set_index(LR_CELL).index.isin(selection.set_index(LR_CELL).index)
    is_chosen = frame.set_index([*LR_CELL, "lr"]).index.isin(chosen.set_index([*LR_CELL, "lr"]).index)
    shared = frame["protocol"].eq("shared_checkpoints").to_numpy() if "protocol" in frame else False
    return frame.assign(selected=~in_grid | is_chosen | shared)


def only_selected(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["selected"]] if "selected" in frame and len(frame) else frame




TABLE = Table("lr_selection", (
    "Learning-rate selection (entries with lr_grid), declared before training: per cell (dataset, latent, "
    "estimator, n_samples, device) and learning rate, the final validation and test ELBO (mean and sd over "
    "seeds); a rate is eligible when every seed's run completed, and the eligible rate with the highest mean "
    "final validation ELBO is selected (ties: the smaller rate). Only selected runs enter the ELBO, cost and "
    "device tables and the training figures. Header only in a study without lr_grid."))

