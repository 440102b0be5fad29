"""Aggregation functions on small hand-made frames with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments import aggregate as agg


def _frame(variances: dict[str, list[float]], rse: float = 0.0, unbiased=None) -> pd.DataFrame:
    rows = []
    for est, values in variances.items():
        for seed, v in enumerate(values):
            name = next((n for n in ("pathwise", "exact") if est.startswith(n)), est)
            rows.append({"problem": "p", "estimator_id": est, "estimator_name": name, "estimator_label": f"{est}()",
                         "seed": seed, "total_variance": v,
                         "total_variance_se": rse * v,
                         "unbiased": True if unbiased is None else unbiased.get(est, True)})
    return pd.DataFrame(rows)


def test_bootstrap_without_noise_is_the_geometric_mean():
    rng = np.random.default_rng(0)
    point, lo, hi = agg.bootstrap_log_ratio(np.log([10.0, 10.0, 10.0]), np.zeros(3), rng)
    assert point == pytest.approx(10) and lo == pytest.approx(10) and hi == pytest.approx(10)
    point, lo, hi = agg.bootstrap_log_ratio(np.log([10.0, 1000.0]), np.zeros(2), rng)
    assert point == pytest.approx(100) and lo == pytest.approx(10) and hi == pytest.approx(1000)


def test_measurement_error_widens_a_single_unit_interval():
    rng = np.random.default_rng(0)
    _, lo, hi = agg.bootstrap_log_ratio(np.log([100.0]), np.array([0.5]), rng)
    assert lo < 100 / math.exp(0.8) and hi > 100 * math.exp(0.8)


@pytest.mark.parametrize("ci, expected", [((150, 300), "yes"), ((10, 99.9), "no"), ((50, 200), "undecided"),
                                          ((math.nan, math.nan), "missing")])
def test_verdict(ci, expected):
    assert agg.verdict(*ci, threshold=100) == expected


def test_variance_claim_ratios_verdicts_and_missing():
    frame = _frame({"pathwise": [1.0, 2.0, 4.0], "reinforce": [1000.0, 2000.0, 4000.0], "loo": [10.0, 20.0, 40.0]})
    out = agg.variance_claim(frame, ["problem"], ["seed"], threshold=100,
                             expected={("p",): ["pathwise", "reinforce", "loo", "nvil"]})
    by = out.set_index("estimator_id")
    assert by.loc["reinforce", "variance_ratio"] == pytest.approx(1000)
    assert by.loc["reinforce", "verdict"] == "yes" and by.loc["loo", "verdict"] == "no"
    assert (by["comparator"] == "pathwise").all() and by.loc["loo", "estimator_label"] == "loo()"
    assert by.loc["nvil", "verdict"] == "missing" and by.loc["nvil", "n_units"] == 0


def test_units_are_matched_and_missing_units_counted():
    frame = _frame({"pathwise": [1.0, 1.0, 1.0], "reinforce": [300.0, 300.0]})
    row = agg.variance_claim(frame, ["problem"], ["seed"], threshold=100).iloc[0]
    assert row["n_units"] == 2 and row["missing_units"] == 1 and row["variance_ratio"] == pytest.approx(300)


def test_comparator_without_pathwise_is_best_unbiased_not_exact():
    frame = _frame({"exact(max_support=1)": [1e-30, 1e-30], "reinforce": [50.0, 50.0], "loo": [5.0, 5.0],
                    "gumbel": [0.5, 0.5]}, unbiased={"gumbel": False})
    assert agg.choose_comparator(frame, "estimator_id", "total_variance") == "loo"
    out = agg.variance_claim(frame, ["problem"], ["seed"], threshold=100).set_index("estimator_id")
    assert "exact(max_support=1)" not in out.index
    assert out.loc["gumbel", "variance_ratio"] == pytest.approx(0.1)


def test_training_stage():
    steps = pd.Series([0, 100, 300, 600, 900])
    assert agg.training_stage(steps, pd.Series([900] * 5)).tolist() == ["start", "early", "early", "middle", "late"]


def test_elbo_table_takes_final_test_step_and_adds_jang_numbers():
    rows = []
    for seed, final in [(0, -100.0), (1, -104.0)]:
        for step, elbo in [(0, -200.0), (10, final)]:
            for split in ("train", "test"):
                rows.append({"dataset": "binarized_mnist", "latent_family": "categorical", "latent": "categorical(20x10)",
                             "estimator_id": "gumbel", "estimator_name": "gumbel_softmax",
                             "estimator_label": "gumbel_softmax(temperature=1.0)",
                             "n_samples": 1, "device": "cpu", "seed": seed, "step": step, "split": split,
                             "elbo": elbo if split == "test" else elbo + 1})
    table = agg.elbo_table(pd.DataFrame(rows))
    row = table.iloc[0]
    assert row["neg_elbo_mean"] == pytest.approx(102) and row["neg_elbo_sd"] == pytest.approx(math.sqrt(8))
    assert row["n_seeds"] == 2 and row["final_step"] == 10
    assert row["jang2017_column"] == "Gumbel-S." and row["jang2017_neg_elbo"] == 101.5


def test_device_comparison_flags_disagreeing_variances():
    base = {"problem": "p", "setting": "{}", "parameter": "loc", "estimator_id": "pathwise", "n_samples": 1,
            "seed": 0, "device_name": "x"}
    synth = pd.DataFrame([
        {**base, "device": "cpu", "total_variance": 4.0, "total_variance_se": 0.1, "seconds_per_estimate": 2e-3},
        {**base, "device": "cuda", "total_variance": 4.1, "total_variance_se": 0.1, "seconds_per_estimate": 1e-3},
        {**base, "parameter": "scale", "device": "cpu", "total_variance": 4.0, "total_variance_se": 0.1,
         "seconds_per_estimate": 2e-3},
        {**base, "parameter": "scale", "device": "cuda", "total_variance": 6.0, "total_variance_se": 0.1,
         "seconds_per_estimate": 1e-3},
    ])
    out = agg.device_comparison(synth, pd.DataFrame()).set_index("cell")
    assert out["speedup_b_over_a"].tolist() == [2.0, 2.0]
    assert out["variances_agree"].tolist() == [True, False]


def test_device_comparison_of_vae_runs():
    base = {"dataset": "digits", "latent": "gaussian(4)", "estimator_id": "pathwise", "n_samples": 1, "seed": 0,
            "protocol": "own_run", "step": 100}
    variance = pd.DataFrame([
        {**base, "device": "cpu", "total_variance": 2.0, "total_variance_se": 0.2, "seconds_per_estimate": 4e-3},
        {**base, "device": "cuda", "total_variance": 2.1, "total_variance_se": 0.2, "seconds_per_estimate": 1e-3},
    ])
    metrics = pd.DataFrame([
        {**{k: v for k, v in base.items() if k not in ("protocol",)}, "split": "test", "device": d, "seconds_per_step": t}
        for d, t in (("cpu", 0.01), ("cuda", 0.002))
    ])
    out = agg.device_comparison(pd.DataFrame(), metrics, variance).set_index("source")
    assert out.loc["vae_variance", "variances_agree"] and out.loc["vae_variance", "speedup_b_over_a"] == 4.0
    assert out.loc["vae_training", "speedup_b_over_a"] == pytest.approx(5.0)
