"""Findings in words: generated from a small verdict table whose every number is known."""
from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from experiments.verdict.tables import claim_summary as agg
from experiments.verdict import findings

PLAIN = "reinforce(baseline='none')"


def _row(family, comparison, estimator, comparator, place, ratio, verdict, half=1.2, **extra) -> dict:
    """One claim row: a VAE stage (``place`` a stage name) or a synthetic setting (``place`` a dict)."""
    vae = isinstance(place, str)
    row = {"source": "vae" if vae else "synthetic", "family": family, "comparison": comparison,
           "estimator_id": estimator, "estimator_name": "reinforce",
           "estimator_label": PLAIN if estimator == "reinforce" else "reinforce(baseline='moving_average')",
           "comparator_id": comparator, "variance_ratio": ratio, "ci_low": ratio / half, "ci_high": ratio * half,
           "interval": "seeds_t", "verdict": verdict, "n_seeds": 3, "reason": "", "setting_label": f"{family} {place}"}
    if vae:
        row.update(stage=place, samples=1, dataset="digits", latent_id=family[4:])
    else:
        row.update(setting=json.dumps(place), parameter="loc", n_samples=1)
    return {**row, **extra}


def _claim() -> pd.DataFrame:
    over_pathwise, over_relaxation = "reinforce_over_pathwise", "reinforce_over_relaxation"
    rows = [_row("vae gaussian", over_pathwise, "reinforce", "pathwise", stage, ratio, verdict)
            for stage, ratio, verdict in (("start", 7.17e5, "yes"), ("early", 6.79e3, "yes"), ("middle", 2e4, "yes"),
                                          ("late", 150.0, "undecided"))]
    rows += [_row("vae gaussian", over_pathwise, "reinforce_ma", "pathwise", stage, ratio, verdict)
             for stage, ratio, verdict in (("start", 38.9, "no"), ("late", 239.0, "yes"))]
    rows += [_row("dimension", over_pathwise, "reinforce", "pathwise", {"dim": d}, ratio, verdict)
             for d, ratio, verdict in ((1, 7.47, "no"), (3, 150.0, "yes"), (10, 90.0, "no"), (30, 300.0, "yes"),
                                       (100, 3000.0, "yes"))]
    rows += [_row("mohamed_cos", over_pathwise, "reinforce", "pathwise", {"k": k}, ratio, "no")
             for k, ratio in ((0.5, 11.6), (1.0, 2.0), (2.0, 0.5), (3.0, 0.0396))]
    rows += [_row("vae bernoulli", over_relaxation, "reinforce", comparator, stage, ratio, verdict,
                  mse_ratio=ratio / 10, mse_ci_low=ratio / 12, mse_ci_high=ratio / 8, comparator_bias_norm=bias)
             for comparator, bias in (("gumbel", 0.3), ("straight_through", 0.9))
             for stage, ratio, verdict in (("start", 2.22e6, "yes"), ("late", 5.85, "no"))]
    rows.append(_row("gamma", over_pathwise, "reinforce", "pathwise", {"cost": "log"}, math.inf, "yes",
                     ci_low=math.inf, ci_high=math.inf, interval="exact", parameter="rate",
                     reason="exact: the comparator's variance is zero to rounding"))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def text() -> str:
    claim = _claim()
    return findings.findings(claim, agg.claim_summary(claim, 100), 100)


def _sentences(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def test_four_to_eight_sentences_each_with_its_numbers_and_intervals(text):
    sentences = _sentences(text)
    assert 4 <= len(sentences) <= 8, text
    for sentence in sentences:
        assert re.search(r"\d(\.\d+)?(e[+-]\d+)? \[\d[^\]]*, \d[^\]]*\]", sentence), sentence
        assert sentence.endswith(".")
    assert "95%" in text.splitlines()[0]


def test_the_whole_verdict_is_counted_with_its_extremes_and_the_exact_row(text):
    first = _sentences(text)[0]
    assert first.startswith("Of 20 declared comparisons") and "holds in 10, fails in 9, is undecided in 1" in first
    assert "1 exact" in first and "pathwise's in gamma" in first
    # The extremes leave the exact row out: 0.0396 (mohamed_cos) to 2.22e+06 (vae bernoulli).
    assert "from 0.0396 [0.033, 0.0475] (reinforce over pathwise, mohamed_cos, k=3.0)" in first
    assert "to 2.22e+06 [1.85e+06, 2.66e+06] (reinforce over gumbel, the bernoulli VAE, start)" in first


def test_plain_reinforce_and_the_baselines_on_the_gaussian_vae(text):
    plain, baselines = _sentences(text)[1:3]
    assert "the gaussian VAE it is 7.17e+05 [5.98e+05, 8.6e+05] at start and 150 [125, 180] at late" in plain
    assert "(at least 100 at 3 of 4 stages; 1 undecided)" in plain
    assert baselines == ("With a baseline, over pathwise: on the gaussian VAE, reinforce_ma (S=1) from "
                         "38.9 [32.4, 46.7] at start to 239 [199, 287] at late (1 of 2 at least 100).")


def test_the_dimension_from_which_the_claim_holds(text):
    sentence = next(s for s in _sentences(text) if "D dimensions" in s)
    # dim=3 is above but dim=10 is not: the claim holds from dim=30 on, not from dim=3.
    assert "from 7.47 [6.22, 8.96] at dim=1 to 3e+03 [2.5e+03, 3.6e+03] at dim=100" in sentence
    assert "at least 100 from dim=30 on (300 [250, 360])" in sentence


def test_where_reinforce_beats_pathwise_and_the_discrete_analogue_with_its_bias(text):
    sentences = _sentences(text)
    wins = next(s for s in sentences if "beats pathwise" in s)
    assert "on mohamed_cos from k=2.0 on (down to 0.0396 [0.033, 0.0475] at k=3.0)" in wins
    discrete = next(s for s in sentences if "discrete analogue" in s)
    assert "the bernoulli VAE from 5.85 [4.88, 7.02] (late, over gumbel) to 2.22e+06" in discrete
    assert "at least 100 in 2 of 4 rows" in discrete
    bias = next(s for s in sentences if "bias" in s)
    assert "at late, straight_through's gradient bias has norm 0.9" in bias
    assert "MSE is 0.585 [0.487, 0.731] times its, against a variance ratio of 5.85 [4.88, 7.02]" in bias


def test_a_study_without_those_families_says_less_and_an_empty_one_says_so():
    claim = _claim()
    only_dimension = claim[claim["family"] == "dimension"]
    sentences = _sentences(findings.findings(only_dimension, agg.claim_summary(only_dimension, 100), 100))
    assert len(sentences) == 2 and sentences[1].startswith("In the quadratic")
    one_dimension = only_dimension.iloc[:1]
    sentence = _sentences(findings.findings(one_dimension, agg.claim_summary(one_dimension, 100), 100))[1]
    assert sentence == ("In the quadratic in D dimensions, measured at dim=1 only, plain REINFORCE over pathwise is "
                        "7.47 [6.22, 8.96]: below 100.")
    empty = findings.findings(claim.iloc[0:0], pd.DataFrame(), 100)
    assert "No declared comparison was measured" in empty


def test_it_is_a_function_of_its_tables(text):
    claim = _claim()
    before = claim.copy()
    assert findings.findings(claim, agg.claim_summary(claim, 100), 100) == text
    pd.testing.assert_frame_equal(claim, before)


def test_write_findings_reads_the_tables_folder(tmp_path, text):
    tables = tmp_path / "results" / "study" / "tables"
    tables.mkdir(parents=True)
    claim = _claim()
    claim.to_csv(tables / "variance_claim.csv", index=False)
    agg.claim_summary(claim, 100).to_csv(tables / "claim_summary.csv", index=False)
    path = findings.write_findings(tables, 100)
    assert path == tables.parent / "findings.md" and path.read_text() == text


def _bound_claim(source: str = "synthetic") -> pd.DataFrame:
    """Plain REINFORCE and VIMCO over pathwise and over DReG across K: on gaussian_iwae's loc and scale (synthetic),
    or on VAE latents gk1..gk20 at every stage (``source="vae"``)."""
    rows = []
    for k, over_pathwise, over_dreg in ((1, 5.0, 20.0), (5, 50.0, 3e3), (20, 700.0, 8e5)):
        for est, name, factor in (("reinforce", "reinforce", 1.0), ("vimco", "vimco", 0.01)):
            if name == "vimco" and k == 1:
                continue
            for comparator, ratio in (("pathwise", over_pathwise), ("dreg", over_dreg)):
                place = {"dim": 1, "k": k} if source == "synthetic" else "late"
                for where in (["loc", "scale"] if source == "synthetic" else ["early", "late"]):
                    extra = {"parameter": where} if source == "synthetic" else {"stage": where}
                    row = _row("gaussian_iwae" if source == "synthetic" else f"vae gk{k}", "c", est, comparator,
                               place, ratio * factor * (2 if where in ("scale", "early") else 1), "no", **extra)
                    row.update(estimator_name=name, comparator_name=comparator)
                    if source == "synthetic":
                        row["problem"] = "gaussian_iwae"
                    rows.append(row)
    return pd.DataFrame(rows)


def test_the_claim_across_k_at_the_first_place_from_the_smallest_k_to_the_largest():
    sentence = findings.across_k(_bound_claim(), 100)
    assert sentence == (
        "On the K-sample bound (gaussian_iwae, loc, S=1 K-tuples): plain REINFORCE over pathwise from 5 [4.17, 6] "
        "at K=1 to 700 [583, 840] at K=20 and over dreg from 20 [16.7, 24] at K=1 to 8e+05 [6.67e+05, 9.6e+05] at "
        "K=20; VIMCO over pathwise from 0.5 [0.417, 0.6] at K=5 to 7 [5.83, 8.4] at K=20 and over dreg from 30 "
        "[25, 36] at K=5 to 8e+03 [6.67e+03, 9.6e+03] at K=20 (the claim's threshold is 100).")
    assert findings.across_k(_claim(), 100) is None          # no bound setting: left out


def test_the_claim_across_k_on_a_vae_needs_the_run_status_to_know_its_k():
    claim = _bound_claim("vae")
    status = pd.DataFrame({"dataset": "digits", "latent_id": ["gk1", "gk5", "gk20"],
                           "latent": ["gaussian(8) gk1", "gaussian(8) gk5", "gaussian(8) gk20"], "bound_k": [1, 5, 20]})
    assert findings.across_k(claim, 100) is None
    sentence = findings.across_k(claim, 100, status)
    assert sentence.startswith("On the K-sample bound (digits, gaussian(8) (VAE, late), S=1 K-tuples): plain "
                               "REINFORCE over pathwise from 5 [4.17, 6] at K=1 to 700 [583, 840] at K=20")
