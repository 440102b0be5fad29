"""What the aggregate rule does between reading the jobs' tables and writing the study's: the inputs read and
labelled (``experiments.verdict.inputs``), the tables made from the plan (run status, exclusions, the declared
claim rows per source, the hosts' last steps) and ``aggregate_study``, on small plans and frames built here."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments.config.jobs import Exclusion, SharedCheckpointsJob, VAERun
from experiments.config.plan import Plan
from experiments.runtime import result_tables
from experiments.verdict.inputs import StudyInputs, job_latents, latent_names, read_inputs
from experiments.verdict.tables import REGISTRY, TABLES, aggregate_study
from experiments.verdict.tables.excluded_cells import excluded_cells
from experiments.verdict.tables.run_status import RUN_STATUS_COLUMNS, run_status
from experiments.verdict.tables.variance_claim import declared_by_source, host_final_steps

ESTIMATOR = {"estimator_name": "gumbel_softmax", "estimator_label": "gumbel_softmax(temperature=1.0)"}


def _run(seed=0, lr=None, latent="bern"):
    return VAERun(dataset="digits", latent_id=latent, estimator_id="gumbel", n_samples=1, device="cpu", seed=seed,
                  lr=lr)


def _plan(runs, hosts=(), steps=1000, every=300, results="results/s", **fields) -> Plan:
    """A plan of ``runs`` (each trained at its ``lr``, or 1e-3), shared-checkpoints jobs at ``hosts``."""
    shared = [SharedCheckpointsJob(host=h, measured=(("gumbel", (1,)),)) for h in hosts]
    configs = {r.path: {"train": {"lr": r.lr or 1e-3, "steps": steps}, "variance": {"every": every},
                        "preset": "jang2017_bernoulli" if r.latent_id == "bern" else None,
                        "objective": {"bound": "iwae", "kl": "exact", "k": 5} if r.latent_id == "gauss"
                        else {"bound": "elbo", "kl": "exact", "k": 1}} for r in runs}
    return Plan(study="s", results=results, vae_runs=list(runs), shared_jobs=shared, job_configs=configs, **fields)


def test_two_latents_with_one_label_are_named_apart_and_the_others_by_their_label():
    names = latent_names({"a": {"family": "bernoulli", "dim": 200, "preset": "jang2017_bernoulli"},
                          "b": {"family": "bernoulli", "dim": 200, "settings": {"train": {"lr": 0.1}}},
                          "c": {"family": "categorical", "groups": 20, "classes": 10}})
    assert names == {"a": "bernoulli(200) a", "b": "bernoulli(200) b", "c": "categorical(20x10)"}


def test_job_latents_name_every_vae_job_folder():
    host = _run()
    plan = _plan([host, _run(seed=1)], hosts=[host])
    latents = job_latents(plan, {"bern": "bernoulli(200)"})
    assert latents == {f"results/s/{host.path}": ("bern", "bernoulli(200)"),
                       f"results/s/{_run(seed=1).path}": ("bern", "bernoulli(200)"),
                       "results/s/vae/shared_checkpoints/digits/bern/cpu/seed0": ("bern", "bernoulli(200)")}


def _variance_rows(protocol: str, step: int) -> pd.DataFrame:
    return pd.DataFrame([{"experiment": "vae", "dataset": "digits", "latent": "raw", "estimator_id": "gumbel",
                          **ESTIMATOR, "seed": 0, "step": step, "protocol": protocol, "measured_n_samples": 1,
                          "total_variance": 2.0, "total_variance_se": 0.1, "mean_variance": 0.5, "grad_norm": 1.0,
                          "seconds_per_estimate": 1e-3, "n_estimates": 10, "bias_norm": 0.0, "mse": 2.0}])


def test_read_inputs_labels_every_vae_row_with_its_latent_and_puts_own_runs_before_shared_checkpoints(tmp_path):
    host = _run()
    plan = _plan([host], hosts=[host], results=str(tmp_path / "results/s"))
    run_dir, shared_dir = tmp_path / "results/s" / host.path, tmp_path / "results/s" / plan.shared_jobs[0].path
    result_tables.write(_variance_rows("shared_checkpoints", 300), shared_dir / "variance.csv")
    result_tables.write(_variance_rows("own_run", 100), run_dir / "variance.csv")
    result_tables.write(pd.DataFrame(columns=["experiment", "dataset", "latent", "estimator_id", "seed", "step",
                                              "split", "elbo", "iwae", "seconds_per_step"]), run_dir / "metrics.csv")
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "step": 1000}))
    inputs = read_inputs(plan, {"bern": "bernoulli(200)"}, synthetic=[], skipped=[],
                         metrics=[str(run_dir / "metrics.csv")], variance=[str(run_dir / "variance.csv")],
                         shared=[str(shared_dir / "variance.csv")])
    assert inputs.variance["protocol"].tolist() == ["own_run", "shared_checkpoints"]
    assert set(inputs.variance["latent"]) == {"bernoulli(200)"} and set(inputs.variance["latent_id"]) == {"bern"}
    assert inputs.metrics.empty and inputs.synthetic.empty        # a table without rows is left out
    assert inputs.statuses == {host.path: {"status": "completed", "step": 1000}}
    # A table that is not what its job wrote stops the aggregation with one line naming it.
    (run_dir / "variance.csv").write_text((run_dir / "variance.csv").read_text().replace("2.0", "3.0"))
    with pytest.raises(result_tables.InputError, match="variance.csv"):
        read_inputs(plan, {"bern": "bernoulli(200)"}, synthetic=[], skipped=[], metrics=[],
                    variance=[str(run_dir / "variance.csv")], shared=[])


def test_run_status_has_every_planned_run_with_its_rate_preset_host_and_status():
    host, other, grid = _run(), _run(seed=1, latent="gauss"), _run(lr=3e-4)
    plan = _plan([host, other, grid], hosts=[host])
    statuses = {host.path: {"status": "completed", "step": 1000},
                other.path: {"status": "diverged", "step": 40, "message": "NaN loss"},
                grid.path: {"status": "completed", "step": 1000}}
    table = run_status(plan, statuses, {"bern": "bernoulli(200)", "gauss": "gaussian(4)"})
    assert list(table.columns) == RUN_STATUS_COLUMNS and len(table) == 3
    assert table["run"].tolist() == [f"results/s/{r.path}" for r in (host, other, grid)]
    assert table["host"].tolist() == [True, False, False] and table["lr"].tolist() == [1e-3, 1e-3, 3e-4]
    assert table["preset"].tolist() == ["jang2017_bernoulli", "", "jang2017_bernoulli"]
    assert table["message"].tolist() == ["", "NaN loss", ""] and table["latent"].iloc[1] == "gaussian(4)"
    assert table["objective"].tolist() == ["elbo, kl exact", "iwae, k=5", "elbo, kl exact"]
    assert table["bound_k"].tolist()[1] == 5 and table["bound_k"].isna().tolist() == [True, False, True]
    assert run_status(_plan([]), {}, {}).columns.tolist() == RUN_STATUS_COLUMNS


def test_excluded_cells_are_the_plans_then_each_skipped_problem_setting_once():
    planned = [Exclusion("vae", "digits bern", "pathwise", None, "pathwise needs a reparameterizable latent")]
    skipped = pd.DataFrame([{"problem": "bernoulli_toy", "setting": '{"dim": 2}', "estimator_id": "pathwise",
                             "estimator_name": "pathwise", "n_samples": 1, "seed": seed, "reason": "discrete"}
                            for seed in (0, 1, 2)])
    table = excluded_cells(planned, skipped)
    assert table["experiment"].tolist() == ["vae", "synthetic"]
    assert table["setting"].tolist() == ["digits bern", 'bernoulli_toy {"dim": 2}']
    assert excluded_cells(planned, pd.DataFrame())["reason"].tolist() == [planned[0].reason]


def test_declared_rows_split_by_source_each_with_its_own_setting_columns():
    rows = [{"source": "synthetic", "problem": "p", "setting": "{}", "parameter": "loc", "n_samples": 1,
             "device": "cpu", "comparison": "c", "estimator_id": "a", "comparator_id": "b"},
            {"source": "vae", "dataset": "digits", "latent_id": "bern", "stage": "late", "samples": 1,
             "device": "cpu", "comparison": "c", "estimator_id": "a", "comparator_id": "b"}]
    by_source = declared_by_source(rows)
    assert list(by_source["synthetic"].columns) == [k for k in rows[0] if k != "source"]
    assert list(by_source["vae"].columns) == ["device", "comparison", "estimator_id", "comparator_id", "dataset",
                                              "latent_id", "stage", "samples"]
    assert all(frame.empty for frame in declared_by_source([]).values())


def test_the_hosts_last_step_is_their_last_checkpoint_and_0_without_checkpoints():
    host = _run()
    assert host_final_steps(_plan([host], hosts=[host], steps=1000, every=300)) == {("digits", "bern"): 1000}
    assert host_final_steps(_plan([host], hosts=[host], steps=1000, every=0)) == {("digits", "bern"): 0}


def _synthetic_rows() -> pd.DataFrame:
    return pd.DataFrame([{"experiment": "synthetic", "problem": "dimension", "setting": '{"dim": 3}',
                          "parameter": "loc", "n_samples": 1, "device": "cpu", "device_name": "cpu", "seed": seed,
                          "estimator_id": est, "estimator_name": est, "estimator_label": f"{est}()", "unbiased": True,
                          "f_evaluations": 1, "total_variance": var * (1 + 0.01 * seed),
                          "total_variance_se": 0.01 * var, "mse": var, "bias_norm": 0.0,
                          "work_normalized_variance": var * 1e-3, "seconds_per_estimate": 1e-3}
                         for seed in (0, 1, 2) for est, var in (("pathwise", 1.0), ("reinforce", 300.0))])


def _metrics(runs_valid_test: dict) -> pd.DataFrame:
    """Final-step ELBOs of each run: ``{run: (valid, test)}``."""
    return pd.DataFrame([{"experiment": "vae", "dataset": r.dataset, "latent": "bernoulli(200)", "latent_id": "bern",
                          "latent_family": "bernoulli", "estimator_id": r.estimator_id, **ESTIMATOR, "lr": r.lr,
                          "n_samples": r.n_samples, "device": r.device, "device_name": "cpu", "seed": r.seed,
                          "step": 100, "split": split, "elbo": value, "iwae": value, "seconds_per_step": 0.01}
                         for r, (valid, test) in runs_valid_test.items()
                         for split, value in (("train", valid), ("valid", valid), ("test", test))])


def test_aggregate_study_makes_every_table_and_reads_only_the_selected_rate_for_training_results():
    fast, slow = _run(lr=1e-3), _run(lr=1e-4)
    declared = [{"source": "synthetic", "problem": "dimension", "setting": '{"dim": 3}', "parameter": "loc",
                 "n_samples": 1, "device": "cpu", "comparison": "c", "estimator_id": "reinforce",
                 "comparator_id": "pathwise"}]
    plan = _plan([fast, slow], claim_rows=declared,
                 excluded=[Exclusion("synthetic", "dimension", "exact", 1, "no closed form")])
    inputs = StudyInputs(synthetic=_synthetic_rows(), skipped=pd.DataFrame(),
                         metrics=_metrics({fast: (-100.0, -101.0), slow: (-95.0, -97.0)}), variance=pd.DataFrame(),
                         statuses={r.path: {"status": "completed", "step": 100} for r in (fast, slow)},
                         latent_names={"bern": "bernoulli(200)"})
    tables = aggregate_study(plan, inputs, 100.0, [0, 1, 2])
    assert list(tables) == list(TABLES) == list(REGISTRY)
    claim = tables["variance_claim"]
    assert claim["verdict"].tolist() == ["yes"] and claim["variance_ratio"].iloc[0] == pytest.approx(300.0)
    assert tables["claim_summary"]["statement"].tolist() == ["above 100 at dim=3"]
    assert REGISTRY["claim_summary"].markdown(tables["claim_summary"]).startswith("| where")   # for a reader
    # The rate with the better validation ELBO (1e-4) is the one the ELBO table reports; every run stays in the
    # tidy tables, marked.
    assert tables["lr_selection"].set_index("lr")["selected"].to_dict() == {1e-4: True, 1e-3: False}
    assert tables["elbo_table"]["neg_elbo_mean"].tolist() == [97.0]
    assert tables["vae_metrics"].groupby("lr")["selected"].all().to_dict() == {1e-4: True, 1e-3: False}
    assert tables["run_status"]["selected"].tolist() == [False, True]
    assert tables["cost_table"].query("source == 'vae'")["seconds_per_step"].tolist() == [0.01]
    assert tables["excluded_cells"]["reason"].tolist() == ["no closed form"]
    assert tables["estimator_ranking"].set_index("estimator_id")["rank"].to_dict() == {"pathwise": 1, "reinforce": 2}
    assert tables["synthetic_all"] is inputs.synthetic and tables["device_comparison"].empty


def test_a_study_without_rows_has_every_table_and_each_declares_a_caption_and_its_markdown():
    empty = aggregate_study(_plan([]), StudyInputs(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(),
                                                   {}, {}), 100.0, [0])
    assert list(empty) == list(TABLES) and all(frame.empty for frame in empty.values())
    assert all(table.caption and table.name == name for name, table in REGISTRY.items())
    assert REGISTRY["claim_summary"].markdown(empty["claim_summary"]) == "(empty)\n"
    frame = pd.DataFrame({"x": [1.234567]})
    assert "1.235" in REGISTRY["elbo_table"].markdown(frame) and "1.235" in REGISTRY["elbo_table"].latex(frame)
