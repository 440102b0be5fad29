"""Degenerate comparisons: a side whose variance is zero to rounding is recorded as exact, never divided by.

The oracle: on the gamma problem with cost ``log`` (f = sum log z), the pathwise gradient of the rate is
exactly -1/rate for every sample, so its measured variance is float64 rounding (~1e-33).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.verdict.tables import variance_claim as agg
from experiments.verdict.tables.claim_summary import claim_summary
from experiments.verdict import claim
from experiments.synthetic import study as synthetic
from experiments.config.typed_config import parse

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def gamma_rows(tmp_path_factory) -> pd.DataFrame:
    """The synthetic study's rows of the gamma problem (both costs), pathwise and REINFORCE, 3 seeds, S=1."""
    frames = []
    for seed in SEEDS:
        config = parse(synthetic.RunConfig, {
            "seed": seed, "n_samples": [1], "problems": {"gamma": {"costs": ["square", "log"]}},
            "measurement": {"min_estimates": 2000, "max_estimates": 2000, "timing_calls": 2},
            "estimators": {"pathwise": {"name": "pathwise"}, "reinforce": {"name": "reinforce", "baseline": "none"}}})
        frames.append(synthetic.run(config, tmp_path_factory.mktemp(f"seed{seed}")))
    return pd.concat(frames, ignore_index=True)


def _declared(rows: pd.DataFrame, pairs) -> pd.DataFrame:
    cells = rows[agg.SYNTHETIC_SETTING].drop_duplicates()
    return pd.concat([cells.assign(comparison="c", estimator_id=n, comparator_id=d) for n, d in pairs],
                     ignore_index=True)


def _row(claim_rows: pd.DataFrame, cost: str, parameter: str, estimator: str = "reinforce") -> pd.Series:
    hit = claim_rows[claim_rows["setting"].str.contains(f'"{cost}"') & (claim_rows["parameter"] == parameter)
                     & (claim_rows["estimator_id"] == estimator)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_the_tolerance_separates_rounding_from_monte_carlo_noise(gamma_rows):
    """The measured rounding of the gamma rate sits 10 orders below ``ROUNDING_RTOL``, every other gamma cell
    (Monte Carlo noise) orders above it."""
    scale = gamma_rows[list(claim.SCALE_COLUMNS)].max(axis=1)
    relative_sd = np.sqrt(gamma_rows["total_variance"]) / scale
    rounding = gamma_rows["setting"].str.contains('"log"') & gamma_rows["parameter"].eq("rate") \
        & gamma_rows["estimator_id"].eq("pathwise")
    assert rounding.sum() == len(SEEDS)
    assert (relative_sd[rounding] < 1e-15).all(), relative_sd[rounding]
    assert (relative_sd[~rounding] > 1e-3).all(), relative_sd[~rounding].min()
    assert claim.zero_to_rounding(gamma_rows["total_variance"], scale).tolist() == rounding.tolist()


def test_float32_rounding_is_within_the_tolerance():
    """The same exact gradient computed in float32 (the VAE's precision): its relative SD is float32 rounding,
    nonzero but below ``ROUNDING_RTOL``."""
    torch.manual_seed(0)    # Gamma.rsample draws from the global generator
    concentration = torch.tensor([1.5, 2.0, 4.5]).expand(4000, 3)
    rate = torch.tensor([1.0, 1.5, 3.0]).expand(4000, 3).clone().requires_grad_(True)
    gamma = torch.distributions.Gamma(concentration, rate)
    z = gamma.rsample()
    (grads,) = torch.autograd.grad(z.log().sum(), rate)    # row i: the gradient of sample i, exactly -1/rate
    variance, scale = float(grads.double().var(0).sum()), float(grads.double().mean(0).norm())
    assert 0 < math.sqrt(variance) / scale < claim.ROUNDING_RTOL
    assert claim.zero_to_rounding(variance, scale)


@pytest.mark.parametrize("variance, scale, exact", [
    ((0.5e-6 * 2.0) ** 2, 2.0, True), ((2e-6 * 2.0) ** 2, 2.0, False),
    (0.0, math.nan, True), (1e-40, math.nan, False), (1e-40, 0.0, False)])
def test_zero_to_rounding_is_relative_to_the_gradient_norm(variance, scale, exact):
    """At most (1e-6 x scale)^2 is zero to rounding; without a scale, only an exact zero is."""
    assert bool(claim.zero_to_rounding(variance, scale)) is exact


def test_a_zero_variance_comparator_gives_no_ratio_from_noise_and_the_claim_holds_trivially(gamma_rows):
    out = agg.synthetic_claim(gamma_rows, _declared(gamma_rows, [("reinforce", "pathwise")]), 100, SEEDS)
    rate = _row(out, "log", "rate")
    assert rate["interval"] == "exact" and rate["verdict"] == "yes" and rate["n_seeds"] == 3
    assert "comparator's variance is zero to rounding" in rate["reason"] and "trivially" in rate["reason"]
    for column in ("variance_ratio", "ci_low", "ci_high", "work_ratio", "evaluations_ratio", "equal_cost_ratio",
                   "mse_ratio"):
        assert rate[column] == math.inf, column
    # Every other row is a ratio of two Monte Carlo variances: finite, with a t-interval over seeds.
    others = out[~out.index.isin([rate.name])]
    assert len(others) == 3 and (others["interval"] == "seeds_t").all() and others["reason"].eq("").all()
    assert np.isfinite(others[["variance_ratio", "ci_low", "ci_high", "work_ratio"]].to_numpy()).all()
    # The whole table: no finite ratio where a side is zero to rounding.
    table = agg.claim_table(out, pd.DataFrame())
    exact = table["interval"] == "exact"
    assert not np.isfinite(table.loc[exact, ["variance_ratio", "ci_low", "ci_high"]].to_numpy()).any()


def test_a_zero_variance_estimator_or_both_sides(gamma_rows):
    """The other exact cases: the exact side as the estimator (ratio 0: it beats its comparator) and on both
    sides (no ratio, no claim)."""
    out = agg.synthetic_claim(gamma_rows, _declared(gamma_rows, [("pathwise", "reinforce")]), 100, SEEDS)
    row = _row(out, "log", "rate", "pathwise")
    assert row["interval"] == "exact" and row["verdict"] == "no" and row["variance_ratio"] == 0.0
    assert "estimator's variance is zero to rounding" in row["reason"]
    twin = gamma_rows[gamma_rows["estimator_id"] == "pathwise"].assign(estimator_id="pathwise_2")
    both = pd.concat([gamma_rows, twin], ignore_index=True)
    out = agg.synthetic_claim(both, _declared(both, [("pathwise", "pathwise_2")]), 100, SEEDS)
    row = _row(out, "log", "rate", "pathwise")
    assert row["interval"] == "exact" and row["verdict"] == "no" and math.isnan(row["variance_ratio"])
    assert "both sides" in row["reason"]


def test_exact_rows_are_said_apart_in_the_summary(gamma_rows):
    """The summary keeps the rate apart from the concentration, says the exact row in words and takes its
    extremes from the measured ratios only."""
    out = agg.synthetic_claim(gamma_rows, _declared(gamma_rows, [("reinforce", "pathwise")]), 100, SEEDS)
    summary = claim_summary(agg.claim_table(out, pd.DataFrame()), 100).set_index("parameter")
    assert sorted(summary.index) == ["concentration", "rate"]
    rate = summary.loc["rate"]
    assert rate["verdicts"] == "yes 1, no 1"
    assert rate["statement"] == "below 100 at cost=square; pathwise exact (zero variance) at cost=log: holds trivially"
    assert rate["smallest"] == rate["largest"] and rate["smallest"].endswith("at cost=square")
