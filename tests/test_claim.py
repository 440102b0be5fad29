"""The verdict's statistics: intervals that cover (simulated), declared comparisons, missing rows."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments import claim

TRUE_RATIO = 100.0


def _simulate(n_seeds: int, n_checkpoints: int, sims: int, rng, interval) -> float:
    """Coverage of ``interval`` for per-seed log ratios with between-seed variation (log-SD 0.5) and
    measurement error (SE 0.05 per checkpoint), the review's setting."""
    hits = 0
    for _ in range(sims):
        seed_effect = rng.normal(0.0, 0.5, n_seeds)
        logs = np.log(TRUE_RATIO) + seed_effect[:, None] + rng.normal(0.0, 0.05, (n_seeds, n_checkpoints))
        low, high = interval(logs, np.full(logs.shape, 0.05))
        hits += low <= TRUE_RATIO <= high
    return hits / sims


def _seed_t(logs, ses):
    per_seed = logs.mean(1)
    se = np.sqrt((ses**2).sum(1)) / logs.shape[1]
    out = claim.seed_interval(per_seed, se)
    assert out.kind == "seeds_t"
    return out.low, out.high


def _checkpoints_as_units(logs, ses):
    """The wrong variant: every (seed, checkpoint) treated as an independent unit."""
    out = claim.seed_interval(logs.reshape(-1), ses.reshape(-1))
    return out.low, out.high


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_seed_interval_covers(n_seeds):
    coverage = _simulate(n_seeds, 3, 4000, np.random.default_rng(n_seeds), _seed_t)
    # 4000 simulations: the binomial SE of a 0.95 coverage is 0.0034, so 0.93 is 6 SE below nominal.
    assert coverage >= 0.93, coverage


def test_pseudo_replicates_undercover():
    """Meta-test: treating the checkpoints of one seed as units makes the interval too narrow, and the
    coverage check catches it."""
    coverage = _simulate(3, 3, 2000, np.random.default_rng(0), _checkpoints_as_units)
    assert coverage < 0.85, coverage


def test_few_seeds_are_undecided_with_a_measurement_only_interval():
    out = claim.seed_interval(np.log([150.0, 160.0]), np.array([0.01, 0.01]))
    assert out.kind == "measurement_only" and out.n_seeds == 2
    assert claim.verdict(out, 100) == "undecided"
    assert claim.verdict(claim.seed_interval([]), 100) == "missing"


@pytest.mark.parametrize("logs, expected", [([5.5, 5.6, 5.7], "yes"), ([1.0, 1.1, 1.2], "no"), ([3.0, 5.0, 7.0], "undecided")])
def test_verdicts(logs, expected):
    assert claim.verdict(claim.seed_interval(logs), math.exp(4.6)) == expected


def test_the_t_interval_has_the_textbook_width():
    out = claim.seed_interval(np.array([0.0, 1.0, 2.0]))
    half = 4.302652729911275 * 1.0 / math.sqrt(3)   # t_{2, 0.975} * sd / sqrt(n)
    assert out.ratio == pytest.approx(math.e) and out.low == pytest.approx(math.exp(1 - half))


def test_comparisons_pair_names_and_ids_in_config_order():
    comparison = claim.Comparison("c", ("reinforce",), ("pathwise", "gumbel"))
    estimators = {"pathwise": "pathwise", "reinforce": "reinforce", "loo": "reinforce", "gumbel": "gumbel_softmax"}
    assert comparison.pairs(estimators) == [("reinforce", "pathwise"), ("reinforce", "gumbel"), ("loo", "pathwise"),
                                            ("loo", "gumbel")]


def _measured(ratios: dict[int, float]) -> pd.DataFrame:
    rows = []
    for seed, ratio in ratios.items():
        for est, var in (("reinforce", ratio), ("pathwise", 1.0)):
            rows.append({"setting": "s", "seed": seed, "step": 0, "estimator_id": est, "estimator_name": est,
                         "estimator_label": est, "total_variance": var, "total_variance_se": 0.01 * var,
                         "mse": var, "bias_norm": 0.0, "seconds_per_estimate": 1e-3})
    return pd.DataFrame(rows)


def test_compare_declared_rows_and_missing_with_reason():
    expected = pd.DataFrame([{"setting": "s", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"},
                             {"setting": "t", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"}])
    out = claim.compare(_measured({0: 300.0, 1: 320.0, 2: 310.0}), expected, ["setting"], 100, [0, 1, 2],
                        lambda setting, missing: f"runs {missing} diverged")
    by = out.set_index("setting")
    assert by.loc["s", "verdict"] == "yes" and by.loc["s", "n_seeds"] == 3
    assert by.loc["s", "variance_ratio"] == pytest.approx((300 * 320 * 310) ** (1 / 3))
    assert by.loc["t", "verdict"] == "missing" and by.loc["t", "reason"] == "runs [0, 1, 2] diverged"


def test_a_missing_seed_is_named_and_the_row_falls_back_to_undecided():
    expected = pd.DataFrame([{"setting": "s", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"}])
    out = claim.compare(_measured({0: 300.0, 1: 320.0}), expected, ["setting"], 100, [0, 1, 2],
                        lambda setting, missing: f"seed {missing[0]} diverged").iloc[0]
    assert out["missing_seeds"] == "2" and out["reason"] == "seed 2 diverged"
    assert out["interval"] == "measurement_only" and out["verdict"] == "undecided"
