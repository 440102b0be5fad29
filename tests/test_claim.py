"""The verdict's statistics: intervals that cover (simulated), declared comparisons, missing rows."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.verdict import claim

TRUE_RATIO = 100.0


def _simulate(n_seeds: int, n_checkpoints: int, sims: int, rng, interval, between: float = 0.5,
              measurement: float = 0.05, agree: float | None = None) -> float:
    """Coverage of ``interval`` for per-seed log ratios with between-seed variation (log-SD ``between``) and
    measurement error (SE ``measurement`` per checkpoint); the default is the review's setting.

    ``agree``: keep only the draws in which the seeds agree by chance, their per-seed means' SD below
    ``agree`` times the per-seed standard error (rejection sampling: the coverage is conditional on it).
    """
    seed_se = measurement / math.sqrt(n_checkpoints)
    kept = []
    while sum(len(k) for k in kept) < sims:
        seed_effect = rng.normal(0.0, between, (sims, n_seeds, 1))
        logs = np.log(TRUE_RATIO) + seed_effect + rng.normal(0.0, measurement, (sims, n_seeds, n_checkpoints))
        if agree is not None:
            logs = logs[logs.mean(2).std(1, ddof=1) < agree * seed_se]
        kept.append(logs)
    logs = np.concatenate(kept)[:sims]
    ses = np.full(logs.shape[1:], measurement)
    hits = sum(low <= TRUE_RATIO <= high for low, high in (interval(one, ses) for one in logs))
    return hits / sims


def _seed_t(logs, ses):
    per_seed = logs.mean(1)
    se = np.sqrt((ses**2).sum(1)) / logs.shape[1]
    out = claim.seed_interval(per_seed, se)
    assert out.kind == "seeds_t"
    return out.low, out.high


def _plain_t(logs, ses):
    """The unwidened t-interval on the per-seed means (the interval before the measurement floor)."""
    y = logs.mean(1)
    half = stats.t.ppf(0.975, y.size - 1) * y.std(ddof=1) / math.sqrt(y.size)
    return math.exp(y.mean() - half), math.exp(y.mean() + half)


def _checkpoints_as_units(logs, ses):
    """The wrong variant: every (seed, checkpoint) treated as an independent unit."""
    out = claim.seed_interval(logs.reshape(-1), ses.reshape(-1))
    return out.low, out.high


#: (between-seed log-SD, measurement SE per checkpoint, agreement): between-seed variation dominating (the
#: review's setting); measurement error only (a synthetic cell: a seed changes nothing but the draws); and the
#: same with the seeds agreeing by chance, at least twice as closely as their standard errors allow.
SCENARIOS = {"between_seeds": (0.5, 0.05, None), "measurement_only": (0.0, 0.1, None),
             "chance_agreement": (0.0, 0.1, 0.5)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_seed_interval_covers(n_seeds, scenario):
    between, measurement, agree = SCENARIOS[scenario]
    coverage = _simulate(n_seeds, 3, 4000, np.random.default_rng(n_seeds), _seed_t, between, measurement, agree)
    # 4000 simulations: the binomial SE of a 0.95 coverage is 0.0034; the floor never narrows the t-interval,
    # which is exact here, so coverage below 0.95 - 3 SE would be a fault.
    assert coverage >= 0.95 - 3 * 0.0034, coverage
    if scenario != "between_seeds":   # where the measurement error is all there is, the floor makes it >= 0.95
        assert coverage >= 0.95, coverage


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_unwidened_interval_undercovers_when_seeds_agree_by_chance(n_seeds):
    """Meta-test: the plain t-interval (no measurement floor) fails the chance-agreement scenario that the
    seed interval passes, so the coverage check can tell them apart."""
    between, measurement, agree = SCENARIOS["chance_agreement"]
    coverage = _simulate(n_seeds, 3, 2000, np.random.default_rng(10 + n_seeds), _plain_t, between, measurement, agree)
    assert coverage < 0.9, coverage


def test_pseudo_replicates_undercover():
    """Meta-test: treating the checkpoints of one seed as units makes the interval too narrow, and the
    coverage check catches it."""
    coverage = _simulate(3, 3, 2000, np.random.default_rng(0), _checkpoints_as_units)
    assert coverage < 0.85, coverage


def test_the_interval_is_never_narrower_than_the_measurement_errors_allow():
    """Three seeds that agree to 1e-4 in log ratio, each measured with SE 0.1: the half-width is
    t_{2, 0.975} x 0.1 / sqrt(3), not t x 1e-4 / sqrt(3)."""
    out = claim.seed_interval(np.array([3.0, 3.0001, 3.0002]), np.array([0.1, 0.1, 0.1]))
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert out.kind == "seeds_t" and math.log(out.high / out.ratio) == pytest.approx(half)
    # A spread larger than the floor is the spread: the floor only ever widens.
    wide = claim.seed_interval(np.array([0.0, 1.0, 2.0]), np.array([0.1, 0.1, 0.1]))
    assert math.log(wide.high / wide.ratio) == pytest.approx(4.302652729911275 / math.sqrt(3))
    # A seed left out (not finite) takes its SE with it.
    assert claim.seed_interval(np.array([3.0, np.nan, 3.0, 3.0]), np.array([0.1, 100.0, 0.1, 0.1])).high \
        == pytest.approx(out.high / out.ratio * math.exp(3.0))


def test_few_seeds_are_undecided_with_a_measurement_only_interval():
    out = claim.seed_interval(np.log([150.0, 160.0]), np.array([0.01, 0.01]))
    assert out.kind == "measurement_only" and out.n_seeds == 2
    assert claim.verdict(out, 100) == "undecided"
    assert claim.verdict(claim.seed_interval([]), 100) == "missing"


@pytest.mark.parametrize("logs, expected", [([5.5, 5.6, 5.7], "yes"), ([1.0, 1.1, 1.2], "no"),
                                            ([3.0, 5.0, 7.0], "undecided")])
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
    expected = pd.DataFrame([
        {"setting": "s", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"},
        {"setting": "t", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"},
    ])
    out = claim.compare(_measured({0: 300.0, 1: 320.0, 2: 310.0}), expected, ["setting"], 100, [0, 1, 2],
                        lambda setting, missing: f"runs {missing} diverged")
    by = out.set_index("setting")
    assert by.loc["s", "verdict"] == "yes" and by.loc["s", "n_seeds"] == 3
    assert by.loc["s", "variance_ratio"] == pytest.approx((300 * 320 * 310) ** (1 / 3))
    assert by.loc["t", "verdict"] == "missing" and by.loc["t", "reason"] == "runs [0, 1, 2] diverged"


def test_a_missing_seed_is_named_and_the_row_falls_back_to_undecided():
    expected = pd.DataFrame([
        {"setting": "s", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise"},
    ])
    out = claim.compare(_measured({0: 300.0, 1: 320.0}), expected, ["setting"], 100, [0, 1, 2],
                        lambda setting, missing: f"seed {missing[0]} diverged").iloc[0]
    assert out["missing_seeds"] == "2" and out["reason"] == "seed 2 diverged"
    assert out["interval"] == "measurement_only" and out["verdict"] == "undecided"


def _per_seed_by_pandas(frame: pd.DataFrame, value: str, se: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``claim.per_seed`` as it was written with a DataFrame groupby (the numbers it must keep)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(frame[f"{value}_num"]) - np.log(frame[f"{value}_den"])
        var = ((frame[f"{se}_num"] / frame[f"{value}_num"]) ** 2 + (frame[f"{se}_den"] / frame[f"{value}_den"]) ** 2
               if se is not None else pd.Series(0.0, index=frame.index))
    parts = pd.DataFrame({"seed": frame["seed"], "y": log_ratio, "var": var})
    grouped = parts[np.isfinite(parts["y"])].groupby("seed")
    return grouped["y"].mean().to_numpy(), (np.sqrt(grouped["var"].sum()) / grouped.size()).to_numpy()


@pytest.mark.parametrize("with_se", [True, False])
def test_per_seed_gives_the_groupby_numbers_to_the_last_bit(with_se):
    """The per-seed means and standard errors equal pandas' groupby (compensated sums) bit for bit, over
    frames with many checkpoints per seed, values over many scales, zeros, NaN and infinite entries."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        frame = pd.DataFrame({"seed": rng.integers(0, 5, n),
                              "v_num": np.exp(rng.normal(0, 8, n)), "v_den": np.exp(rng.normal(0, 8, n)),
                              "s_num": np.exp(rng.normal(-2, 3, n)), "s_den": np.exp(rng.normal(-2, 3, n))})
        odd = rng.random((n, 4)) < 0.08
        frame.loc[odd[:, 0], "v_num"] = 0.0
        frame.loc[odd[:, 1], "v_den"] = np.inf
        frame.loc[odd[:, 2], "s_num"] = np.nan
        frame.loc[odd[:, 3], "s_den"] = np.inf
        got = claim.per_seed(frame, "v", "s" if with_se else None)
        want = _per_seed_by_pandas(frame, "v", "s" if with_se else None)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=f"trial {trial}")


def test_compensated_sums_differ_from_a_plain_sum_where_it_matters():
    """Meta-test: the comparison above can fail. A plain left-to-right sum loses 1e-16 against 1.0 where the
    compensated sum keeps it, and the two differ in the last bits."""
    values = np.array([1.0] + [1e-16] * 10)
    compensated, count = claim.compensated_sums(np.zeros(11, dtype=int), values, 1)
    assert count[0] == 11
    plain = 0.0
    for v in values:
        plain += v
    assert plain == 1.0 and compensated[0] > 1.0
    assert compensated[0] == pd.Series(values).groupby(np.zeros(11, dtype=int)).sum().iloc[0]
