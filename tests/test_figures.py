"""Every figure of the registry is legible at its saved size: drawn on a default-sized table set and on the
committed snapshots' claim tables (the tiny study's in tests/test_pipeline.py), saved as the pipeline saves it
(dpi 150, tight bounding box), no taller than 4000 pixels, and no two of its titles, axis labels and legends
overlapping.

The default-sized set has the default study's problems, estimators, settings, samples and seeds, with made-up
but plausibly scaled numbers, rounding-noise rows included; the snapshots' claim tables are real study rows,
read back from their markdown."""
from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from experiments.verdict.tables import cost_table as agg
from experiments.verdict.plots import FIGURE_TABLES, FIGURES, claim_figure
from experiments.verdict.tables.estimator_ranking import estimator_ranking

MAX_PIXELS = 4000
ROOT = Path(__file__).resolve().parent.parent
NORMAL = ["pathwise", "reinforce", "reinforce_ma", "reinforce_loo", "reinforce_wloo", "measure_valued",
          "reinforce_delta", "reinforce_delta_1"]
DISCRETE = ["reinforce", "reinforce_ma", "reinforce_loo", "reinforce_wloo", "straight_through", "gumbel", "st_gumbel",
            "exact", "arm", "disarm", "muprop", "rebar", "relax", "gumbel_rao", "reinmax", "gumbel_t1", "st_gumbel_t1",
            "reinmax_t05", "reinmax_t2"]
NAMES = {"reinforce_ma": "reinforce", "reinforce_loo": "reinforce", "reinforce_wloo": "reinforce",
         "gumbel": "gumbel_softmax",
         "st_gumbel": "st_gumbel_softmax", "gumbel_t1": "gumbel_softmax", "st_gumbel_t1": "st_gumbel_softmax",
         "reinmax_t05": "reinmax", "reinmax_t2": "reinmax", "reinforce_delta_1": "reinforce_delta", "nvil": "reinforce",
         "gumbel_t05": "gumbel_softmax", "gumbel_t2": "gumbel_softmax", "gumbel_rao_t1": "gumbel_rao"}
TEMPERATURE = {"gumbel": 0.5, "st_gumbel": 0.5, "gumbel_rao": 0.5, "reinmax": 1.0, "gumbel_t1": 1.0,
               "st_gumbel_t1": 1.0,
               "reinmax_t05": 0.5, "reinmax_t2": 2.0, "gumbel_t05": 0.5, "gumbel_t2": 2.0, "gumbel_rao_t1": 1.0}
BIASED = {"straight_through", "gumbel_softmax", "st_gumbel_softmax", "gumbel_rao", "reinmax"}
EVALUATIONS = {"measure_valued": 4, "arm": 2, "disarm": 2, "muprop": 2, "rebar": 3, "relax": 3, "exact": 0}


def _problems() -> list[tuple[str, dict, str, list[str]]]:
    """(problem, setting, parameter, estimators) of the default study."""
    out = []
    for problem, ks in (("mohamed_quadratic", np.linspace(-3, 3, 13)), ("mohamed_exp", [0.1, 0.5, 1, 2, 5, 10]),
                        ("mohamed_cos", np.linspace(0.5, 5, 10))):
        out += [(problem, {"k": float(k)}, p, NORMAL) for k in ks for p in ("loc", "scale")]
    out += [("dimension", {"dim": d}, p, NORMAL if d <= 30 else NORMAL[:5]) for d in (1, 3, 10, 30, 100, 300, 1000)
            for p in ("loc", "scale")]
    out += [("bernoulli_toy", {"dim": d, "t": t}, "logits", DISCRETE) for t in (0.45, 0.499) for d in (1, 10, 100)]
    out += [("categorical_toy", {"classes": 10, "dim": g}, "logits", [e for e in DISCRETE if "arm" not in e])
            for g in (1, 5)]
    out += [("bernoulli_iwae", {"dim": 3, "k": k}, "logits", [*DISCRETE, "vimco"]) for k in (2, 5)]
    out += [("gaussian_iwae", {"dim": 1, "k": k}, p, [*NORMAL[:5], "dreg"] + (["vimco"] if k > 1 else []))
            for k in (1, 5, 20) for p in ("loc", "scale", "weight")]
    out += [("gamma", {"cost": c, "dim": 3}, p, NORMAL[:5]) for c in ("square", "log")
            for p in ("concentration", "rate")]
    return out


def _names(est_id: str) -> dict:
    name = NAMES.get(est_id, est_id)
    options = {"temperature": TEMPERATURE[est_id]} if est_id in TEMPERATURE else {}
    return {"estimator_id": est_id, "estimator_name": name, "estimator_label": f"{name}({options})",
            "estimator_options": json.dumps(options), "unbiased": name not in BIASED}


def synthetic_all(seeds=(0, 1, 2), n_samples=(1, 10)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for problem, setting, parameter, estimators in _problems():
        base = 10 ** rng.uniform(-2, 3)
        for est_id in estimators:
            names = _names(est_id)
            factor = 1.0 if est_id == "pathwise" else 10 ** rng.uniform(-1, 4)
            bias = 0.3 * np.sqrt(base) if not names["unbiased"] else 0.0
            for n in n_samples:
                if n < 2 and est_id in ("reinforce_loo", "reinforce_wloo"):
                    continue
                for seed in seeds:
                    var = base * factor / n * rng.lognormal(0, 0.05)
                    if est_id == "exact" or (est_id == "reinforce_delta_1" and problem == "mohamed_quadratic") \
                            or (problem == "gamma" and setting["cost"] == "log" and parameter == "rate"
                                and est_id == "pathwise"):
                        var = 7e-33 if est_id != "exact" else 0.0
                    evals = EVALUATIONS.get(names["estimator_name"], 1) * n
                    seconds = 1e-4 * (1 + evals) * rng.lognormal(0, 0.1)
                    rows.append({"experiment": "synthetic", "problem": problem, **setting,
                                 "setting": json.dumps(setting),
                                 "parameter": parameter, **names, "f_evaluations": float(evals), "seed": seed,
                                 "device": "cpu", "device_name": "x86_64", "n_samples": n, "total_variance": var,
                                 "total_variance_se": 0.03 * var, "mean_variance": var, "exact_grad_norm": 1.0,
                                 "grad_norm": 1.0, "seconds_per_estimate": seconds, "bias_norm": bias + 1e-3,
                                 "mse": var + bias ** 2, "work_normalized_variance": var * seconds,
                                 "snr": 1.0 / math.sqrt(var) if var > 0 else math.inf})
    return pd.DataFrame(rows)


VAE_LATENTS = {"gaussian(8)": ("gaussian", ["pathwise", "reinforce", "reinforce_ma", "reinforce_loo", "nvil",
                                             "measure_valued", "reinforce_delta"]),
               "bernoulli(8)": ("bernoulli", ["reinforce", "reinforce_ma", "reinforce_loo", "nvil", "straight_through",
                                              "gumbel", "st_gumbel", "arm", "disarm", "muprop", "rebar", "relax",
                                              "gumbel_rao", "reinmax", "gumbel_t05", "gumbel_t2", "gumbel_rao_t1",
                                              "reinmax_t05", "reinmax_t2"]),
               "categorical(4x4)": ("categorical", ["reinforce", "reinforce_ma", "reinforce_loo", "nvil",
                                                     "straight_through", "gumbel", "st_gumbel", "relax", "gumbel_rao",
                                                     "reinmax", "gumbel_t05", "gumbel_t2", "reinmax_t05",
                                                     "reinmax_t2"])}
TRAINED = {"pathwise", "reinforce", "reinforce_ma", "reinforce_loo", "nvil", "straight_through", "gumbel", "st_gumbel"}


def vae_tables(seeds=(0, 1, 2), steps=tuple(range(0, 2750, 250))) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(vae_variance, vae_metrics): shared checkpoints at ``steps`` with S in (1, 4), own runs, ELBO curves."""
    rng = np.random.default_rng(1)
    variance, metrics = [], []
    for latent, (family, estimators) in VAE_LATENTS.items():
        for est_id in estimators:
            names = {k: v for k, v in _names(est_id).items() if k != "unbiased"}
            factor = 1.0 if est_id == "pathwise" else 10 ** rng.uniform(0, 4)
            for seed in seeds:
                common = {"experiment": "vae", "dataset": "digits", "latent": latent, "latent_id": family,
                          "latent_family": family, **names, "seed": seed, "device": "cpu", "device_name": "x86_64",
                          "lr": 1e-3, "selected": True}
                for step in steps:
                    for protocol, samples in (("shared_checkpoints", 1), ("shared_checkpoints", 4), ("own_run", 1)):
                        if protocol == "own_run" and est_id not in TRAINED or samples < 2 and est_id == "reinforce_loo":
                            continue
                        var = 100 * factor / samples * (1 + step / 500) * rng.lognormal(0, 0.1)
                        evals = EVALUATIONS.get(names["estimator_name"], 1) * samples
                        seconds = 1e-3 * (1 + evals) * rng.lognormal(0, 0.1)
                        bias = 5.0 if names["estimator_name"] in BIASED else 0.1
                        variance.append({**common, "step": step, "protocol": protocol, "n_samples": samples,
                                         "measured_n_samples": samples, "f_evaluations": float(evals),
                                         "total_variance": var, "total_variance_se": 0.05 * var,
                                         "mean_variance": var / 1000, "log10_mean_variance": np.log10(var / 1000),
                                         "grad_norm": 10.0, "seconds_per_estimate": seconds, "bias_norm": bias,
                                         "mse": var + bias ** 2, "work_normalized_variance": var * seconds})
                    if est_id in TRAINED:
                        for split in ("train", "test"):
                            metrics.append({**common, "n_samples": 1, "step": step, "split": split,
                                            "elbo": -120 + 20 * np.log1p(step / 250) + rng.normal(0, 1),
                                            "seconds_per_step": 0.01 * rng.lognormal(0, 0.1)})
    return pd.DataFrame(variance), pd.DataFrame(metrics)


def snapshot_claim(study: str) -> pd.DataFrame:
    """A committed snapshot's variance_claim table, read back from its markdown (real study rows)."""
    lines = (ROOT / "results" / "snapshots" / study / "tables" / "variance_claim.md").read_text().splitlines()
    frame = pd.read_csv(io.StringIO("\n".join(lines[:1] + lines[2:])), sep="|", skipinitialspace=True)
    frame = frame.iloc[:, 1:-1]
    frame.columns = [c.strip() for c in frame.columns]
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            text = frame[col].astype(str).str.strip().replace({"nan": np.nan, "": np.nan})
            numbers = pd.to_numeric(text, errors="coerce")
            frame[col] = numbers if numbers.notna().sum() == text.notna().sum() else text
    return frame


def with_exact_rows(claim: pd.DataFrame) -> pd.DataFrame:
    """``claim`` where gamma's log-cost rate rows are exact (the comparator's variance is zero to rounding), as
    the current verdict writes them: ratio inf, interval ``exact``."""
    exact = (claim["family"] == "gamma") & claim["setting"].astype(str).str.contains("log") \
        & (claim["parameter"] == "rate")
    out = claim.copy()
    out.loc[exact, ["variance_ratio", "ci_low", "ci_high"]] = np.inf
    out.loc[exact, ["interval", "verdict"]] = ["exact", "yes"]
    return out


def default_like_tables() -> dict[str, pd.DataFrame]:
    synth = synthetic_all()
    variance, metrics = vae_tables()
    return {"synthetic_all": synth, "vae_variance": variance, "vae_metrics": metrics,
            "cost_table": agg.cost_table(metrics, variance, synth),
            "variance_claim": with_exact_rows(snapshot_claim("default")),
            "estimator_ranking": estimator_ranking(synth, variance), "run_status": run_status_of(variance)}


def run_status_of(variance: pd.DataFrame, bound_k: dict | None = None) -> pd.DataFrame:
    """A run_status table of the hosts of ``variance``'s latents; ``bound_k``: latent id -> K where the latent is
    trained on the K-sample bound."""
    bound_k = bound_k or {}
    hosts = variance[["dataset", "latent_id", "latent"]].drop_duplicates()
    return hosts.assign(bound_k=[bound_k.get(i) for i in hosts["latent_id"]],
                        objective=[f"iwae, k={bound_k[i]}" if i in bound_k else "elbo, kl exact"
                                   for i in hosts["latent_id"]])


def texts(fig: plt.Figure) -> list:
    """The figure's titles, suptitle, axis labels, figure texts and legends that show something."""
    items = [fig._suptitle, *fig.texts, *fig.legends]
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:
            items += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
            if ax.get_legend():
                items.append(ax.get_legend())
        elif ax.get_visible():   # a panel that only says something ("no data")
            items += [ax.title, *ax.texts]
    items = list({id(t): t for t in items if t is not None}.values())   # the suptitle is one of fig.texts too
    return [t for t in items if t.get_visible()
            and (not hasattr(t, "get_text") or t.get_text().strip())]


def overlapping(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of the figure's texts (``texts``) whose window extents overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t, t.get_window_extent(renderer)) for t in texts(fig)]
    name = lambda t: t.get_text() if hasattr(t, "get_text") else type(t).__name__  # noqa: E731
    return [(name(a), name(b)) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.overlaps(box_b) and box_a.width * box_a.height > 0 and box_b.width * box_b.height > 0]


def saved_size(fig: plt.Figure, path: Path) -> tuple[int, int]:
    fig.savefig(path, dpi=150, bbox_inches="tight")
    with Image.open(path) as image:
        return image.size




@pytest.fixture(scope="module")
def default_tables():
    return default_like_tables()


def _check(fig, path):
    try:
        overlaps = overlapping(fig)
        width, height = saved_size(fig, path)
    finally:
        plt.close(fig)
    assert height <= MAX_PIXELS, (path.name, width, height)
    assert not overlaps, (path.name, overlaps)


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_is_legible_on_a_default_sized_study(name, default_tables, tmp_path):
    _check(FIGURES[name].draw(default_tables, 100.0), tmp_path / f"{name}.png")


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_draws_on_empty_tables(name, tmp_path):
    _check(FIGURES[name].draw({t: pd.DataFrame() for t in FIGURE_TABLES}, 100.0), tmp_path / f"{name}.png")


@pytest.mark.parametrize("study", ["default", "mnist"])
def test_the_claim_figure_draws_every_comparison_at_every_number_of_samples(study, tmp_path):
    """The committed snapshots' claim rows: every (estimator, comparator) pair at every S has a line or
    marker, so leave-one-out (S >= 2) appears; legible at its saved size."""
    claim = snapshot_claim(study)
    fig = claim_figure(claim, 100.0)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert all(f"estimator {e}" in legend for e in claim["estimator_id"].unique())
    assert all(f"over {c}" in legend for c in claim["comparator_id"].unique())
    samples = claim["n_samples"].fillna(claim["samples"])
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert {f"S={s:g}" for s in samples.unique()} == {t.rsplit(", ", 1)[1] for t in titles}
    assert "reinforce_loo" in set(claim["estimator_id"]) and "estimator reinforce_loo" in legend
    styles = [(str(h.get_color()), str(h._unscaled_dash_pattern), h.get_marker())
              for h in fig.legends[0].legend_handles]
    assert len(set(styles)) == len(styles)   # every series told apart
    _check(fig, tmp_path / "claim.png")


def test_exact_claim_rows_are_drawn_at_the_edge_with_a_note(default_tables):
    claim = default_tables["variance_claim"]
    assert (claim["interval"] == "exact").any() and np.isinf(claim["variance_ratio"]).any()
    fig = claim_figure(claim, 100.0)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "exact" in legend
    for ax in fig.axes:
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            assert not np.isinf(y).any()   # an exact row's +-inf ratio is never a point of a line
    plt.close(fig)


def test_no_figure_axis_spans_rounding_noise(default_tables):
    """Rounding-noise variances (about 1e-32, where the variance is zero) are not drawn: no log axis of a
    figure spans more than 20 decades."""
    for name, spec in FIGURES.items():
        fig = spec.draw(default_tables, 100.0)
        fig.canvas.draw()
        for ax in fig.axes:
            for lim, scale in ((ax.get_xlim(), ax.get_xscale()), (ax.get_ylim(), ax.get_yscale())):
                if scale == "log":
                    assert math.log10(lim[1] / lim[0]) <= 20, (name, ax.get_title(), lim)
        plt.close(fig)


def test_the_default_sized_tables_are_default_sized():
    """The synthetic set has the default study's size (as many synthetic rows as its 3 seeds give)."""
    synth = synthetic_all()
    variance, _ = vae_tables()
    assert len(synth) > 3000 and synth["estimator_id"].nunique() >= 20 and variance["step"].nunique() >= 10


def test_the_overlap_check_finds_a_title_over_a_panel_title():
    """The check itself: a suptitle placed on a panel's title (the old variance_vs_k's second line) is found."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("a panel title")
    fig.suptitle("the figure's title", y=0.91)
    assert ("the figure's title", "a panel title") in overlapping(fig)
    plt.close(fig)


def test_a_claim_figure_of_three_times_the_default_panels_grows_wider_not_taller(tmp_path):
    claim = with_exact_rows(snapshot_claim("default"))
    big = pd.concat([claim.assign(family=claim["family"] + suffix) for suffix in ("", "_b", "_c")], ignore_index=True)
    _check(claim_figure(big, 100.0), tmp_path / "claim.png")


def bound_sweep_tables(ks=(1, 5, 20, 50), seeds=(0, 1, 2), steps=(0, 250, 500, 750, 1000)):
    """(claim, vae_variance, run_status) of a VAE latent on the K-sample bound at each of ``ks`` (latent ids
    ``gaussian_kK``), as the iwae_k study writes them: late-stage claim rows over pathwise and DReG, shared
    checkpoints with the encoder's SNR."""
    rng = np.random.default_rng(3)
    claim, variance = [], []
    for k in ks:
        latent_id = f"gaussian_k{k}"
        for samples in (1, 4):
            for est in ["reinforce", "reinforce_loo", "vimco"]:
                if (est == "vimco" and k < 2) or (est == "reinforce_loo" and samples < 2):
                    continue
                for comp in ("pathwise", "dreg"):
                    ratio = 10 ** rng.uniform(0, 4) * k
                    claim.append({"source": "vae", "family": f"vae {latent_id}", "comparison": "c",
                                  "estimator_id": est, "estimator_name": "vimco" if est == "vimco" else "reinforce",
                                  "comparator_id": comp, "comparator_name": comp, "variance_ratio": ratio,
                                  "ci_low": ratio / 2, "ci_high": ratio * 2, "verdict": "no", "dataset": "digits",
                                  "latent_id": latent_id, "stage": "late", "samples": samples, "device": "cpu"})
            for est in ["pathwise", "dreg", "reinforce"]:
                for seed in seeds:
                    for step in steps:
                        # the tables name same-label latents apart by their id (inputs.latent_names)
                        variance.append({"experiment": "vae", "dataset": "digits", "latent": f"gaussian(8) {latent_id}",
                                         "latent_id": latent_id, "estimator_id": est, "estimator_name": est,
                                         "seed": seed, "device": "cpu", "step": step, "protocol": "shared_checkpoints",
                                         "measured_n_samples": samples, "n_samples": 1, "selected": True,
                                         "total_variance": 1.0, "snr_norm": rng.uniform(0.1, 1) / np.sqrt(k),
                                         "run_estimator_id": "dreg"})
    variance = pd.DataFrame(variance)
    return pd.DataFrame(claim), variance, run_status_of(variance, {f"gaussian_k{k}": k for k in ks})


def test_the_claim_across_k_draws_a_vae_latent_on_the_bound_at_its_late_stage(tmp_path):
    """VAE latents on the bound (run_status.bound_k) join the sweep: one ratio panel and one SNR panel per number of
    K-tuples, x = their K, the SNR the mean over the late checkpoints (750 and 1000 of 1000), each series a
    comparison; a latent on the ELBO is not drawn."""
    from experiments.verdict.across_k import ratio_rows
    from experiments.verdict.plots import across_k_snr, claim_across_k

    claim, variance, status = bound_sweep_tables()
    elbo = claim[claim["latent_id"] == "gaussian_k5"].assign(latent_id="gaussian_elbo")
    ratios = ratio_rows(pd.concat([claim, elbo]), status)
    snr = across_k_snr(pd.DataFrame(), variance, ratios, status)
    assert set(ratios["place"]) == {"digits, gaussian(8) (VAE, late)"} and sorted(set(ratios["k"])) == [1, 5, 20, 50]
    assert len(ratios) == len(claim)
    late = variance[variance["step"] >= 750].groupby(["latent_id", "measured_n_samples", "estimator_id", "seed"])
    expected = late["snr_norm"].mean().sort_values().to_numpy()
    assert np.allclose(np.sort(snr["snr"].to_numpy()), expected)
    fig = claim_across_k(claim, pd.DataFrame(), 100.0, variance, status)
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles == [f"digits, gaussian(8) (VAE, late), S={s}: {what}" for what in ("variance ratio", "SNR")
                      for s in (1, 4)]
    _check(fig, tmp_path / "claim_across_k.png")
