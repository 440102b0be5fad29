"""Learning-rate selection on the validation split (estimator entries with ``lr_grid``): the plan, the rule
(``aggregate.select_learning_rates``) and a study through the pipeline on binarized MNIST."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd
import pytest

from experiments.config import study_config
from experiments.config.plan import make_plan
from experiments.config.typed_config import ConfigError
from experiments.verdict.tables.elbo_table import elbo_table
from experiments.verdict.tables.lr_selection import (LR_SELECTION_COLUMNS, mark_selected, only_selected,
                                                     select_learning_rates)

from studies import SMALL_SYNTHETIC, run_study

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GRADVAR_DATA") or ROOT.parent / "shared" / "data")
needs_data = pytest.mark.skipif(not (SHARED_DATA / "binarized_mnist").is_dir(),
                                reason=f"binarized MNIST is not in {SHARED_DATA}")

STUDY = {
    "study": "lrgrid", "seeds": [0], "devices": ["cpu"],
    "synthetic": SMALL_SYNTHETIC,
    "vae": {"datasets": ["binarized_mnist"], "data_dir": str(SHARED_DATA), "n_samples": [2],
            "settings": {"model": {"hidden": [16]}, "train": {"steps": 30, "batch_size": 50},
                         "eval": {"every": 30, "iwae_k": 2, "train_subset": 100},
                         "variance": {"every": 30, "batch_size": 10, "min_estimates": 4, "max_estimates": 4,
                                      "reference_gradient": {"n_samples": 4, "n_estimates": 4}}},
            "latents": {"gaussian": {"family": "gaussian", "dim": 2}},
            "estimators": {"pathwise": {"name": "pathwise", "lr_grid": [0.001, 0.00001]},
                           "reinforce": {"name": "reinforce"}},
            "shared_checkpoints": {"trained_with": {"gaussian": "pathwise"}, "n_samples": [2]}},
}


def _plan(mutate=None):
    config = copy.deepcopy(STUDY)
    if mutate:
        mutate(config)
    return make_plan(study_config.check(config), config["devices"])


def _error(mutate) -> str:
    with pytest.raises(ConfigError) as info:
        _plan(mutate)
    return str(info.value)


@needs_data
def test_a_grid_trains_one_run_per_rate_with_validation_and_the_host_at_the_studys_rate():
    plan = _plan()
    runs = {r.path: r for r in plan.vae_runs if r.estimator_id == "pathwise"}
    assert sorted(runs) == ["vae/runs/binarized_mnist/gaussian/pathwise@lr0.001/s2/cpu/seed0",
                            "vae/runs/binarized_mnist/gaussian/pathwise@lr1e-05/s2/cpu/seed0"]
    for path, run in runs.items():
        config = plan.job_config(path)
        assert config["train"]["lr"] == run.lr and config["eval"]["validation"] is True
    other = [r for r in plan.vae_runs if r.estimator_id == "reinforce"]
    assert [r.lr for r in other] == [None] and plan.job_config(other[0].path)["eval"]["validation"] is False
    assert {job.host.lr for job in plan.shared_jobs} == {0.001}


@needs_data
def test_a_host_grid_without_the_studys_rate_is_refused():
    message = _error(lambda c: c["vae"]["estimators"]["pathwise"].update(lr_grid=[0.01, 0.0001]))
    assert message.startswith("vae.estimators.pathwise.lr_grid: must include the learning rate of the runs")
    assert "(0.001, vae.settings.train.lr or its default)" in message


def test_a_grid_needs_a_validation_split():
    def digits(c):
        c["vae"].update(datasets=["digits"], data_dir=None)
    assert _error(digits) == ("vae.estimators.pathwise.lr_grid: selecting a learning rate needs a validation split, "
                              "which 'digits' has not; data sets with one: binarized_mnist")


@pytest.mark.parametrize("grid, message", [
    ([0.001], "expected a list of at least two distinct positive learning rates"),
    ([0.001, 0.001], "expected a list of at least two distinct positive learning rates"),
    ([0.001, -1], "expected a list of at least two distinct positive learning rates"),
])
def test_a_malformed_grid_is_refused(grid, message):
    from experiments.config.estimator_spec import EstimatorSpec

    with pytest.raises(ConfigError, match=f"^e.lr_grid: {message}"):
        EstimatorSpec.from_config("e", {"name": "pathwise", "lr_grid": grid})
    with pytest.raises(ConfigError, match="^e.lr_grid: an entry with train: false trains no run"):
        EstimatorSpec.from_config("e", {"name": "pathwise", "lr_grid": [0.1, 0.2], "train": False})
    with pytest.raises(ConfigError, match=r"^e.lr_grid: not valid here \(only the VAE study trains runs\)"):
        EstimatorSpec.from_config("e", {"name": "pathwise", "lr_grid": [0.1, 0.2]}, allow_latents=False)


# --- the rule -----------------------------------------------------------------------------------------

def _frames(valid_test: dict, diverged=(), seeds=(0, 1, 2)):
    """Metrics and run status of one cell: ``valid_test[lr] = (valid ELBO, test ELBO)``; the final step's
    numbers are those, an earlier step is 50 nats worse (only the final step may count)."""
    cell = {"dataset": "binarized_mnist", "latent": "bernoulli(200)", "latent_family": "bernoulli",
            "estimator_id": "gumbel", "estimator_name": "gumbel_softmax",
            "estimator_label": "gumbel_softmax(temperature=1.0)", "n_samples": 1, "device": "cpu"}
    metrics, status = [], []
    for lr, (valid, test) in valid_test.items():
        for seed in seeds:
            for step, worse in ((0, 50.0), (100, 0.0)):
                for split, value in (("train", valid), ("valid", valid), ("test", test)):
                    metrics.append({**cell, "lr": lr, "seed": seed, "step": step, "split": split,
                                    "elbo": value - worse + 0.01 * seed})
            status.append({**cell, "lr": lr, "seed": seed,
                           "status": "diverged" if (lr, seed) in diverged else "completed"})
    return pd.DataFrame(metrics), pd.DataFrame(status)


def test_the_rate_with_the_best_validation_elbo_is_selected_never_the_best_test_elbo():
    metrics, status = _frames({1e-3: (-100.0, -99.0), 3e-4: (-98.0, -101.0), 1e-4: (-105.0, -97.0)})
    table = select_learning_rates(metrics, status)
    assert table.loc[table["selected"], "lr"].tolist() == [3e-4]
    row = table[table["selected"]].iloc[0]
    assert (row["valid_elbo_mean"] == pytest.approx(-98.0 + 0.01)
            and row["test_elbo_mean"] == pytest.approx(-101.0 + 0.01))
    assert table["n_runs"].tolist() == [3, 3, 3] and table["eligible"].all()
    marked = mark_selected(metrics, table)
    assert set(marked.loc[marked["selected"], "lr"]) == {3e-4}
    elbo = elbo_table(only_selected(marked), only_selected(mark_selected(status, table)))
    assert len(elbo) == 1 and elbo["neg_elbo_mean"].iloc[0] == pytest.approx(101.0 - 0.01)


def test_a_rate_that_diverges_on_a_seed_is_not_eligible_and_ties_go_to_the_smaller_rate():
    metrics, status = _frames({1e-3: (-90.0, -90.0), 3e-4: (-95.0, -95.0), 1e-4: (-95.0, -95.0)},
                              diverged={(1e-3, 2)})
    table = select_learning_rates(metrics, status)
    assert not table.set_index("lr").loc[1e-3, "eligible"]
    assert table.loc[table["selected"], "lr"].tolist() == [1e-4]
    metrics, status = _frames({1e-3: (-90.0, -90.0)}, diverged={(1e-3, 0)})
    assert select_learning_rates(metrics, status).empty   # one rate: not a selection


def test_nothing_is_selected_when_every_rate_diverged_on_some_seed():
    metrics, status = _frames({1e-3: (-90.0, -90.0), 1e-4: (-95.0, -95.0)}, diverged={(1e-3, 0), (1e-4, 1)})
    table = select_learning_rates(metrics, status)
    assert len(table) == 2 and not table["selected"].any()
    marked = mark_selected(metrics, table)
    assert not marked["selected"].any()


def test_studies_without_grids_select_everything():
    metrics, status = _frames({1e-3: (-90.0, -90.0)})
    table = select_learning_rates(metrics, status)
    assert table.empty and list(table.columns) == LR_SELECTION_COLUMNS
    assert mark_selected(metrics, table)["selected"].all()


# --- through the pipeline -----------------------------------------------------------------------------

@needs_data
def test_a_study_with_a_grid_selects_on_validation_and_reports_the_selected_runs_test_numbers(tmp_path):
    run_study(tmp_path, STUDY, tables_only=True)
    tables = tmp_path / "results" / "lrgrid" / "tables"
    selection = pd.read_csv(tables / "lr_selection.csv")
    assert sorted(selection["lr"]) == [1e-5, 1e-3] and selection["selected"].sum() == 1
    best = selection.loc[selection["valid_elbo_mean"].idxmax()]
    assert bool(best["selected"])
    runs = tmp_path / "results" / "lrgrid" / "vae" / "runs" / "binarized_mnist" / "gaussian"
    run_metrics = pd.read_csv(runs / f"pathwise@lr{best['lr']:g}" / "s2" / "cpu" / "seed0" / "metrics.csv")
    assert set(run_metrics["split"]) == {"train", "valid", "test"} and (run_metrics["lr"] == best["lr"]).all()
    final_test = run_metrics[(run_metrics["split"] == "test") & (run_metrics["step"] == 30)]["elbo"].iloc[0]
    elbo = pd.read_csv(tables / "elbo_table.csv").set_index("estimator_id")
    assert elbo.loc["pathwise", "neg_elbo_mean"] == pytest.approx(-final_test)
    assert elbo.loc["pathwise", "n_runs"] == 1    # the other rate's run is not averaged in
    status = pd.read_csv(tables / "run_status.csv")
    assert sorted(status.loc[status["estimator_id"] == "pathwise", "lr"]) == [1e-5, 1e-3]
    assert status.loc[status["host"], "lr"].tolist() == [1e-3]
