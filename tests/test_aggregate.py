"""The table functions (``experiments.verdict.tables``) on small hand-made frames with known answers."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from experiments.verdict import claim
from experiments.verdict.tables.claim_summary import (STATEMENT_AIM, STATEMENT_MAX, SUMMARY_COLUMNS, claim_summary,
                                                      claim_summary_markdown)
from experiments.verdict.tables.device_comparison import device_comparison
from experiments.verdict.tables.elbo_table import ANCHORS, elbo_table
from experiments.verdict.tables.variance_claim import claim_table, synthetic_claim


def test_training_stage():
    stages = [claim.training_stage(s, 900) for s in [0, 100, 300, 600, 900]]
    assert stages == ["start", "early", "early", "middle", "late"]


def _synthetic(seeds=(0, 1, 2), problem="dimension"):
    rows = []
    for seed in seeds:
        for est, name, var in (("pathwise", "pathwise", 1.0), ("reinforce", "reinforce", 200.0 + seed),
                               ("loo", "reinforce", 50.0)):
            rows.append({"problem": problem, "setting": '{"dim": 3}', "parameter": "loc", "n_samples": 1,
                         "device": "cpu", "seed": seed, "estimator_id": est, "estimator_name": name,
                         "estimator_label": f"{est}()", "total_variance": var, "total_variance_se": 0.01 * var,
                         "mse": var, "bias_norm": 0.0, "seconds_per_estimate": 1e-3})
    return pd.DataFrame(rows)


def _declared(pairs, problem="dimension"):
    return pd.DataFrame([{"problem": problem, "setting": '{"dim": 3}', "parameter": "loc", "n_samples": 1,
                          "device": "cpu", "comparison": "c", "estimator_id": n, "comparator_id": d} for n, d in pairs])


def test_synthetic_claim_rows_are_the_declared_ones():
    out = synthetic_claim(_synthetic(), _declared([("reinforce", "pathwise"), ("loo", "pathwise")]), 100, [0, 1, 2])
    by = out.set_index("estimator_id")
    assert by.loc["reinforce", "verdict"] == "yes" and by.loc["loo", "verdict"] == "no"
    assert (by["comparator_id"] == "pathwise").all() and by.loc["loo", "estimator_label"] == "loo()"
    assert by.loc["reinforce", "setting_label"] == "dimension: dim=3, loc, S=1"
    assert by.loc["reinforce", "equal_cost_ratio"] == pytest.approx(by.loc["reinforce", "variance_ratio"])
    table = claim_table(out, pd.DataFrame())
    assert list(table.columns[:4]) == ["source", "family", "setting_label", "comparison"]


def test_claim_summary_is_short_and_says_where_the_claim_holds():
    rows = []
    for dim, ratio in ((1, 3.0), (10, 30.0), (100, 300.0), (1000, 3000.0)):
        synth = _synthetic().assign(setting=f'{{"dim": {dim}}}')
        synth.loc[synth.estimator_id == "reinforce", ["total_variance", "total_variance_se"]] = [ratio, 0.01 * ratio]
        rows.append(synthetic_claim(synth, _declared([("reinforce", "pathwise")]).assign(setting=f'{{"dim": {dim}}}'),
                                        100, [0, 1, 2]))
    summary = claim_summary(claim_table(pd.concat(rows), pd.DataFrame()), 100)
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["verdicts"] == "yes 2, no 2" and row["settings"] == 4 and row["seeds"] == 3
    assert row["statement"] == "above 100 from dim=100 on"
    assert row["parameter"] == "loc" and row["estimator"] == "reinforce" and row["comparators"] == "pathwise"
    # The extremes with their 95% intervals: the seeds agree exactly, so the interval is the one their 1%
    # measurement SEs imply: exp(+-t_{2, 0.975} x sqrt(0.01^2 + 0.01^2) / sqrt(3)) = x [0.966, 1.036].
    assert row["smallest"] == "3 [2.9, 3.11] at dim=1" and row["largest"] == "3e+03 [2.9e+03, 3.11e+03] at dim=1000"


def _claim_rows(places, verdicts, comparators=("pathwise",), estimator="reinforce", parameter="loc", samples=1,
                family="mohamed_cos", key="k") -> pd.DataFrame:
    """Claim rows of one summary row: ``verdicts[i][j]`` at ``places[i]`` over ``comparators[j]`` (a ratio of
    1000, 0.5 where the estimator beats its comparator (``beats``), 50 or 150 with an interval that fits)."""
    ratio = {"yes": (1000.0, 500.0, 2000.0), "no": (10.0, 5.0, 20.0), "beats": (0.5, 0.3, 0.8),
             "undecided": (150.0, 60.0, 300.0), "missing": (math.nan, math.nan, math.nan)}
    rows = []
    for place, per_comparator in zip(places, verdicts):
        for comparator, verdict in zip(comparators, per_comparator):
            r, low, high = ratio[verdict]
            setting = json.dumps(place if isinstance(place, dict) else {key: place})
            rows.append({"source": "synthetic", "family": family, "comparison": "c", "estimator_id": estimator,
                         "comparator_id": comparator, "setting": setting, "parameter": parameter, "n_samples": samples,
                         "variance_ratio": r, "ci_low": low, "ci_high": high, "interval": "seeds_t",
                         "verdict": "no" if verdict == "beats" else verdict, "n_seeds": 3,
                         "reason": "diverged" if verdict == "missing" else ""})
    return pd.DataFrame(rows)


def test_the_summary_keeps_every_estimator_parameter_and_number_of_samples():
    """More than 40 (family, comparison, estimator) groups: still one row each, never an ``all`` row; each
    parameter group and number of samples its own row."""
    parts = [_claim_rows([1.0, 2.0], [["yes"], ["no"]], estimator=f"e{i}", parameter=parameter, samples=samples)
             for i in range(45) for parameter in ("loc", "scale") for samples in (1, 10)]
    summary = claim_summary(pd.concat(parts, ignore_index=True), 100)
    assert len(summary) == 45 * 2 * 2 and "all" not in set(summary["estimator"])
    assert summary.groupby(["estimator", "parameter", "samples"]).size().eq(1).all()
    assert list(summary.columns) == SUMMARY_COLUMNS


def _places_said(statement: str, places: list[str]) -> dict[str, int]:
    """How often each place is named in ``statement`` (whole names: ``dim=1`` is not in ``dim=10``)."""
    return {p: len(re.findall(rf"(?<![\w.=-]){re.escape(p)}(?![\w.])", statement)) for p in places}


@pytest.mark.parametrize("seed", range(40))
def test_statements_are_short_and_name_each_place_once(seed):
    """Random verdict patterns over 13 places on one axis, or 12 on two (dim x t), with 1 to 5 comparators:
    at most 160 characters, no place named twice, and undecided places never said to be below."""
    rng = np.random.default_rng(seed)
    two_keys = seed % 2 == 1
    places = ([{"dim": d, "t": t} for d in (1, 3, 10, 30, 100, 300) for t in (0.45, 0.499)] if two_keys
              else [float(k) for k in np.linspace(-3, 3, 13)])
    comparators = [f"c{j}" for j in range(1 + seed % 5)]
    kinds = ["yes", "no", "beats", "undecided", "missing"]
    weights = rng.dirichlet(np.ones(len(kinds)))
    verdicts = [list(rng.choice(kinds, size=len(comparators), p=weights)) for _ in places]
    rows = _claim_rows(places, verdicts, comparators=comparators, family="bernoulli_toy" if two_keys else "mohamed_cos")
    statement = claim_summary(rows, 100)["statement"].iloc[0]
    assert len(statement) <= STATEMENT_MAX, statement
    names = [f"dim={p['dim']} t={p['t']}" for p in places] if two_keys else [f"k={p}" for p in places]
    assert max(_places_said(statement, names).values()) <= 1, statement
    if any("undecided" in v for v in verdicts):
        assert "nowhere" not in statement and "below 100 everywhere" not in statement, statement
    if any("undecided" in v and "yes" not in v for v in verdicts):   # a place where nothing is decided above
        assert "undecided" in statement, statement


def test_undecided_rows_are_never_said_to_be_below_or_nowhere_above():
    rows = _claim_rows([1.0, 2.0, 3.0], [["no"], ["undecided"], ["undecided"]])
    assert claim_summary(rows, 100)["statement"].iloc[0] == "below 100 at k=1.0; undecided from k=2.0 on"
    rows = _claim_rows([1.0, 2.0], [["undecided"], ["undecided"]])
    assert claim_summary(rows, 100)["statement"].iloc[0] == "undecided everywhere"


def test_statements_say_ranges_comparators_and_where_the_estimator_wins():
    def statement(verdicts, comparators=("pathwise",)):
        rows = _claim_rows([float(k) for k in range(len(verdicts))], verdicts, comparators=comparators)
        return claim_summary(rows, 100)["statement"].iloc[0]

    assert statement([["no"], ["yes"], ["yes"], ["yes"]]) == "above 100 from k=1.0 on"
    assert statement([["yes"], ["yes"], ["no"], ["no"]]) == "above 100 up to k=1.0"
    assert statement([["no"], ["yes"], ["yes"], ["yes"], ["no"]]) == "above 100 from k=1.0 to k=3.0"
    assert statement([["no"], ["beats"], ["beats"]]) == "below 100 everywhere; beats pathwise from k=1.0 on"
    assert statement([["yes", "yes"], ["yes", "no"], ["beats", "beats"]], ("a", "b")) \
        == "above 100 over all comparators at k=0.0; over some at k=1.0; beats every comparator at k=2.0"
    assert statement([["missing"], ["yes"]]) == "above 100 at k=1.0; missing at k=0.0"


def test_a_long_list_of_places_becomes_a_count():
    places = [{"dim": d, "t": t} for d in (1, 3, 10, 30, 100, 300) for t in (0.45, 0.499)]
    verdicts = [["yes"] if i % 2 else ["undecided"] for i in range(len(places))]
    statement = claim_summary(_claim_rows(places, verdicts, family="bernoulli_toy"), 100)["statement"].iloc[0]
    assert len(statement) <= STATEMENT_AIM and "6 of 12 settings" in statement, statement


def test_the_summary_in_markdown_has_at_most_eight_columns_and_a_section_per_family_when_long():
    short = claim_summary(_claim_rows([1.0, 2.0], [["yes"], ["no"]]), 100)
    text = claim_summary_markdown(short)
    assert text.splitlines()[0].count("|") - 1 <= 8 and "mohamed_cos, loc, S=1" in text and "###" not in text
    long = claim_summary(pd.concat([_claim_rows([1.0], [["yes"]], estimator=f"e{i}", family=f"f{i % 3}")
                                        for i in range(45)], ignore_index=True), 100)
    text = claim_summary_markdown(long)
    assert [line for line in text.splitlines() if line.startswith("### ")] == ["### f0", "### f1", "### f2"]


def test_elbo_table_takes_final_test_step_and_adds_jang_numbers():
    rows = []
    for seed, final in [(0, -100.0), (1, -104.0)]:
        for step, elbo in [(0, -200.0), (10, final)]:
            for split in ("train", "test"):
                rows.append({"dataset": "binarized_mnist", "latent_family": "categorical",
                             "latent": "categorical(20x10)",
                             "estimator_id": "gumbel", "estimator_name": "gumbel_softmax",
                             "estimator_label": "gumbel_softmax(temperature=1.0)",
                             "n_samples": 1, "device": "cpu", "seed": seed, "step": step, "split": split,
                             "elbo": elbo if split == "test" else elbo + 1})
    status = pd.DataFrame([{"dataset": "binarized_mnist", "latent": "categorical(20x10)", "estimator_id": "gumbel",
                            "n_samples": 1, "device": "cpu", "seed": seed, "status": status,
                            "preset": "jang2017_categorical"}
                           for seed, status in ((0, "completed"), (1, "completed"), (2, "diverged"))])
    diverged = [{**r, "seed": 2, "elbo": -500.0} for r in rows if r["seed"] == 0]
    table = elbo_table(pd.DataFrame(rows + diverged), status)
    row = table.iloc[0]
    assert row["neg_elbo_mean"] == pytest.approx(102) and row["neg_elbo_sd"] == pytest.approx(math.sqrt(8))
    assert row["n_seeds"] == 2 and row["n_runs"] == 3 and row["n_diverged"] == 1 and row["final_step"] == 10
    assert row["train_neg_elbo_best"] == pytest.approx(101)    # the best training evaluation, mean over seeds
    assert row["anchor"].startswith("Jang et al. 2017 Table 1, Gumbel-S.") and row["anchor_neg_elbo"] == 101.5
    assert row["anchor_measure"] == "test"
    # The same latent without the preset (another model) is compared with nothing.
    table = elbo_table(pd.DataFrame(rows), status.assign(preset=""))
    assert table["anchor"].iloc[0] == "" and math.isnan(table["anchor_neg_elbo"].iloc[0])


def test_relax_anchors_match_the_linear_one_layer_model_on_the_best_training_elbo():
    by_key = {(a.preset, a.estimator_name): a for a in ANCHORS}
    assert (by_key[("dong2020_linear", "relax")].neg_elbo == 111.20
            and by_key[("dong2020_linear", "rebar")].neg_elbo == 111.6)
    assert {a.measure for a in ANCHORS if a.preset == "dong2020_linear"} == {"best_train"}
    assert not any(a.preset == "dong2020_nonlinear" for a in ANCHORS)   # their two-layer model is not ours
    from experiments.vae.run_config import PRESETS

    assert {a.preset for a in ANCHORS} <= set(PRESETS)


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
    out = device_comparison(synth, pd.DataFrame()).set_index("cell")
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
        {**{k: v for k, v in base.items() if k not in ("protocol",)},
         "split": "test", "device": d, "seconds_per_step": t}
        for d, t in (("cpu", 0.01), ("cuda", 0.002))
    ])
    out = device_comparison(pd.DataFrame(), metrics, variance).set_index("source")
    assert out.loc["vae_variance", "variances_agree"] and out.loc["vae_variance", "speedup_b_over_a"] == 4.0
    assert out.loc["vae_training", "speedup_b_over_a"] == pytest.approx(5.0)


def test_the_relaxation_figure_draws_for_a_study_without_relaxations():
    """A study need not have the estimators a figure is about (the fault suite's has no relaxation): the
    figure draws a panel that says so rather than failing the pipeline."""
    from experiments.verdict.plots import relaxation_rows, relaxation_temperature

    synth = pd.DataFrame({"experiment": "synthetic", "problem": "bernoulli_toy", "setting": '{"dim": 2, "t": 0.45}',
                          "parameter": "logits", "estimator_id": "reinforce", "estimator_name": "reinforce",
                          "estimator_options": '{"baseline": "none"}', "n_samples": 1, "seed": 0,
                          "total_variance": 2.0, "bias_norm": 0.1, "mse": 2.01}, index=[0])
    assert relaxation_rows(synth, pd.DataFrame()).empty
    assert relaxation_temperature(synth, pd.DataFrame()) is not None
    gumbel = synth.assign(estimator_id="g", estimator_name="gumbel_softmax", estimator_options='{"temperature": 0.5}')
    annealed = gumbel.assign(estimator_id="a", estimator_options='{"temperature": 1.0, "anneal_rate": 0.001}')
    rows = relaxation_rows(pd.concat([synth, gumbel, annealed]), pd.DataFrame())
    assert list(rows.temperature) == [0.5] and list(rows.estimator_name) == ["gumbel_softmax"]


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/paper.yaml"])
def test_variance_vs_k_draws_the_four_gaussian_families_at_one_sample(config_file):
    """Mohamed et al.'s Figures 2-3 have four families; the figure draws one sample per estimate, so each family
    needs an entry of the study that applies to N(1, 1) with n_samples=1."""
    import yaml
    from torch.distributions import Normal

    from experiments.config.estimator_spec import EstimatorSpec

    with open(config_file) as fh:
        entries = yaml.safe_load(fh)["synthetic"]["estimators"]
    dist = Normal(1.0, 1.0)
    drawn = {spec.name for spec in (EstimatorSpec.from_config(i, e, i, allow_nvil=False, allow_latents=False)
                                    for i, e in entries.items())
             if spec.build().why_not(dist, 1) is None}
    assert {"pathwise", "reinforce", "measure_valued", "reinforce_delta"} <= drawn


def test_variance_vs_k_leaves_out_round_off_and_says_so():
    from experiments.verdict.plots import ROUND_OFF_VARIANCE, mohamed_variance

    rows = [{"problem": "mohamed_quadratic", "k": k, "parameter": "loc", "n_samples": 1, "estimator_id": e,
             "mean_variance": v} for k in (0.0, 1.0) for e, v in (("pathwise", 4.0), ("delta", 1e-31))]
    fig = mohamed_variance(pd.DataFrame(rows))
    assert "delta on (x - k)^2" in fig._suptitle.get_text()
    lines = [line for ax in fig.axes for line in ax.get_lines() if len(line.get_ydata())]
    assert all(min(line.get_ydata()) > ROUND_OFF_VARIANCE or all(map(math.isnan, line.get_ydata()))
               for line in lines)


def test_claim_summary_of_a_study_whose_claim_has_only_vae_rows_or_only_synthetic_ones():
    base = {"family": "vae gaussian", "comparison": "c", "estimator_id": "reinforce", "comparator_id": "pathwise",
            "variance_ratio": 300.0, "ci_low": 200.0, "ci_high": 400.0, "verdict": "yes", "n_seeds": 3, "reason": ""}
    vae = pd.DataFrame([{**base, "source": "vae", "stage": "late", "samples": 1}])
    assert claim_summary(vae, 100)["samples"].tolist() == [1]
    synthetic = pd.DataFrame([{**base, "source": "synthetic", "family": "dimension", "setting": '{"dim": 3}',
                               "parameter": "loc", "n_samples": 2}])
    assert claim_summary(synthetic, 100)["samples"].tolist() == [2]


def _ranking_rows(variances: dict, evaluations: dict, seeds=(0, 1, 2), **extra) -> pd.DataFrame:
    """Synthetic rows of one setting: estimator -> per-seed variances, estimator -> f evaluations per estimate."""
    return pd.DataFrame([{"problem": "p", "setting": '{"dim": 2}', "parameter": "loc", "n_samples": 2, "device": "cpu",
                          "estimator_id": est, "estimator_name": est, "unbiased": est != "relaxed", "seed": seed,
                          "f_evaluations": evaluations[est], "total_variance": values[i], "total_variance_se": 0.0,
                          "mse": values[i] + (1.0 if est == "relaxed" else 0.0), "seconds_per_estimate": 0.01,
                          "grad_norm": 1.0, **extra}
                         for est, values in variances.items() for i, seed in enumerate(seeds)])


def test_the_estimator_ranking_compares_variance_at_equal_evaluations_with_intervals():
    from experiments.verdict.tables.estimator_ranking import RANKING_COLUMNS, estimator_ranking

    # a: variance 4 at 2 evaluations (work 8); b: variance 1 at 4 evaluations (work 4, the best); relaxed:
    # variance 0.5 at 2 (work 1, lowest variance) but biased: its MSE (1.5 x 2 = 3) is what compares.
    rows = _ranking_rows({"a": [4.0, 4.4, 3.6], "b": [1.0, 1.0, 1.0], "relaxed": [0.5, 0.5, 0.5],
                          "zero": [1e-20, 0.0, 1e-19]}, {"a": 2, "b": 4, "relaxed": 2, "zero": 2})
    table = estimator_ranking(rows, pd.DataFrame()).set_index("estimator_id")
    assert list(estimator_ranking(rows, pd.DataFrame()).columns) == RANKING_COLUMNS
    assert table.loc["zero", "exact"] and table.loc["zero", "variance_vs_best"] == 0.0   # zero to rounding: exact
    assert set(table["best_variance"]) == {"relaxed"}                                    # exact is not the best
    assert table.loc["relaxed", "variance_vs_best"] == 1.0 and table.loc["relaxed", "rank"] == 2
    assert table.loc["b", "variance_vs_best"] == pytest.approx(4.0)
    expected_a = math.exp(np.mean(np.log(np.array([4.0, 4.4, 3.6]) * 2 / 1.0)))
    assert table.loc["a", "variance_vs_best"] == pytest.approx(expected_a)
    assert table.loc["a", "variance_ci_low"] < expected_a < table.loc["a", "variance_ci_high"]
    assert table.loc["b", "variance_ci_low"] == pytest.approx(4.0)     # identical seeds, no SE: no width
    # MSE x evaluations: relaxed 1.5 x 2 = 3 (the best), b 1 x 4 = 4, zero: zero to rounding (exact)
    assert table.loc["zero", "mse_vs_best"] == 0.0 and table.loc["relaxed", "mse_vs_best"] == 1.0
    assert table.loc["b", "mse_vs_best"] == pytest.approx(4.0 / 3.0) and set(table["best_mse"]) == {"relaxed"}
    assert not table.loc["relaxed", "unbiased"] and table.loc["a", "unbiased"]
    assert table.loc["a", "seconds_per_estimate"] == pytest.approx(0.01)


def test_the_estimator_ranking_of_one_seed_and_of_vae_checkpoints():
    from experiments.verdict.tables.estimator_ranking import estimator_ranking

    rows = _ranking_rows({"a": [2.0], "b": [1.0]}, {"a": 1, "b": 1}, seeds=(0,))
    table = estimator_ranking(rows, pd.DataFrame()).set_index("estimator_id")
    assert table.loc["a", "variance_vs_best"] == pytest.approx(2.0) and table.loc["a", "n_seeds"] == 1
    vae = pd.DataFrame([{"protocol": protocol, "dataset": "digits", "latent": "bernoulli(8)", "step": step,
                         "measured_n_samples": 1, "device": "cpu", "estimator_id": est, "estimator_name": name,
                         "seed": 0, "f_evaluations": 1, "total_variance": var, "total_variance_se": 0.1 * var,
                         "mse": var, "seconds_per_estimate": 0.01, "grad_norm": 10.0}
                        for protocol in ("shared_checkpoints", "own_run") for step in (0, 100)
                        for est, name, var in (("r", "reinforce", 100.0), ("g", "gumbel_softmax", 1.0))])
    table = estimator_ranking(pd.DataFrame(), vae)
    assert len(table) == 4 and set(table["setting"]) == {"step 0", "step 100"}   # own runs are not ranked
    assert set(table["family"]) == {"vae bernoulli(8)"}
    assert dict(zip(table["estimator_id"], table["unbiased"])) == {"g": False, "r": True}
    assert estimator_ranking(pd.DataFrame(), pd.DataFrame()).empty
