"""Figures: each function takes tidy frames and returns a matplotlib Figure (the pipeline saves them)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .aggregate import claim_samples, only_selected  # noqa: E402
from .closed_form import variance_ratio_sum_of_squares  # noqa: E402

MOHAMED = {"mohamed_quadratic": "(x - k)^2", "mohamed_exp": "exp(-k x^2)", "mohamed_cos": "cos(k x)"}
ROUND_OFF_VARIANCE = 1e-20


def _empty(title: str, message: str = "no data in this study") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def mohamed_variance(synth: pd.DataFrame, n_samples: int | None = None) -> plt.Figure:
    """Per-coordinate gradient variance against k for the three costs of Mohamed et al. 2020 (their Fig. 2-4)."""
    data = synth[synth["problem"].isin(MOHAMED)]
    if data.empty:
        return _empty("Variance vs k (Mohamed et al. 2020 costs)")
    n = n_samples if n_samples is not None else int(data["n_samples"].min())
    data = data[data["n_samples"] == n].assign(cost=lambda d: d["problem"].map(MOHAMED))
    # An exact control variate (the delta method on the quadratic cost) leaves only round-off, ~1e-30: drawn,
    # it would flatten every other line on the log axis, so it is left out and said so in the title.
    exact = data["mean_variance"] < ROUND_OFF_VARIANCE
    data = data.assign(mean_variance=data["mean_variance"].mask(exact))
    grid = sns.relplot(data=data, x="k", y="mean_variance", hue="estimator_id", row="parameter", col="cost",
                       kind="line", marker="o", errorbar=None, facet_kws={"sharex": False, "sharey": False},
                       height=2.8, aspect=1.2)
    grid.set(yscale="log")
    grid.set_axis_labels("k", "gradient variance")
    note = "" if not exact.any() else (f"\nnot drawn (variance below {ROUND_OFF_VARIANCE:g}, zero but for round-off): "
                                       + ", ".join(sorted(set(data.loc[exact, "estimator_id"] + " on "
                                                              + data.loc[exact, "cost"]))))
    grid.figure.suptitle(f"Gradient variance vs k, N(1, 1), {n} sample(s) per estimate{note}", y=1.02, fontsize=9)
    return grid.figure


def dimension_ratio(synth: pd.DataFrame, threshold: float) -> plt.Figure:
    """REINFORCE / pathwise variance ratio against dimension, with the closed form (experiments.closed_form)."""
    data = synth[(synth["problem"] == "dimension") & (synth["parameter"] == "loc")]
    if data.empty or not {"pathwise", "reinforce"} <= set(data["estimator_name"]):
        return _empty("Variance ratio vs dimension")
    keys = ["dim", "n_samples", "seed", "device"]
    ref = data[data["estimator_name"] == "pathwise"].set_index(keys)["mean_variance"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, group in data[data["estimator_name"] == "reinforce"].groupby("estimator_id"):
        ratio = (group.set_index(keys)["mean_variance"] / ref).dropna().reset_index()
        summary = ratio.groupby("dim")["mean_variance"].agg(["mean", "min", "max"])
        ax.errorbar(summary.index, summary["mean"], yerr=[summary["mean"] - summary["min"], summary["max"] - summary["mean"]],
                    marker="o", capsize=3, label=f"measured: {label}")
    dims = np.unique(np.geomspace(1, max(data["dim"].max(), 2), 200).astype(int))
    ax.plot(dims, [variance_ratio_sum_of_squares(d) for d in dims], "k--", label="closed form, no baseline")
    ax.axhline(threshold, color="grey", lw=0.8, ls=":", label=f"the claim's threshold ({threshold:g})")
    ax.set(xscale="log", yscale="log", xlabel="dimension D", ylabel="variance ratio REINFORCE / pathwise",
           title="f = sum z_i^2, z ~ N(1, I_D): ratio of per-coordinate variances")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def vae_variance_over_training(variance: pd.DataFrame) -> plt.Figure:
    """log10 mean per-parameter variance of the encoder gradient over training (own-run protocol)."""
    data = only_selected(variance[variance["protocol"] == "own_run"]) if not variance.empty else variance
    if data.empty:
        return _empty("VAE encoder-gradient variance over training")
    grid = sns.relplot(data=data, x="step", y="log10_mean_variance", hue="estimator_id", col="latent",
                       row="dataset", kind="line", marker="o", errorbar=("pi", 100), height=3, aspect=1.2,
                       facet_kws={"sharey": False})
    grid.set_axis_labels("training step", "log10 mean variance")
    grid.figure.suptitle("Encoder-gradient variance along each estimator's own training run", y=1.02)
    return grid.figure


def elbo_curves(metrics: pd.DataFrame) -> plt.Figure:
    metrics = only_selected(metrics)
    if metrics.empty:
        return _empty("ELBO curves")
    grid = sns.relplot(data=metrics, x="step", y="elbo", hue="estimator_id", style="split", col="latent",
                       row="dataset", kind="line", errorbar=("pi", 100), height=3, aspect=1.2,
                       facet_kws={"sharey": False})
    grid.set_axis_labels("training step", "ELBO (nats)")
    grid.figure.suptitle("Train and test ELBO", y=1.02)
    return grid.figure


def work_normalized_variance(cost: pd.DataFrame) -> plt.Figure:
    data = cost.dropna(subset=["work_normalized_variance"]) if not cost.empty else cost
    if data.empty:
        return _empty("Work-normalized variance")
    data = data.assign(where=np.where(data["source"] == "vae", data.get("latent", ""), data.get("problem", "")))
    fig, ax = plt.subplots(figsize=(8, 0.35 * data["estimator_id"].nunique() * data["where"].nunique() + 2))
    sns.barplot(data=data, y="estimator_id", x="work_normalized_variance", hue="where", ax=ax, errorbar=None)
    ax.set(xscale="log", xlabel="variance x seconds per estimate", ylabel="",
           title="Work-normalized variance (lower is better at equal compute)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def device_timings(cost: pd.DataFrame) -> plt.Figure:
    data = cost[cost["source"] == "vae"].dropna(subset=["seconds_per_step"]) if not cost.empty else cost
    if data.empty:
        return _empty("Seconds per training step by device")
    data = data.assign(cell=data["latent"] + " / " + data["estimator_id"])
    fig, ax = plt.subplots(figsize=(8, 0.4 * data["cell"].nunique() + 2))
    sns.barplot(data=data, y="cell", x="seconds_per_step", hue="device", ax=ax, errorbar=None)
    ax.set(xscale="log", xlabel="seconds per training step", ylabel="", title="VAE training cost by device")
    fig.tight_layout()
    return fig


VERDICT_MARKERS = {"yes": "^", "no": "v", "undecided": "o", "missing": "x"}


def _claim_axis(rows: pd.DataFrame) -> tuple[list, list[str], str]:
    """x positions, tick labels and axis name for one family's settings."""
    if rows["source"].iloc[0] == "vae":
        order = ["start", "early", "middle", "late"]
        stages = [s for s in order if s in set(rows["stage"])]
        return [stages.index(s) for s in rows["stage"]], stages, "training stage"
    settings = rows["setting"].map(json.loads)
    for key in ("k", "dim"):
        if settings.map(lambda v: key in v and len(v) == 1).all():
            return list(settings.map(lambda v: v[key])), [], key
    labels = list(dict.fromkeys(rows["setting"]))
    return [labels.index(s) for s in rows["setting"]], [", ".join(f"{k}={v}" for k, v in json.loads(x).items()) for x in labels], "setting"


def claim_figure(claim: pd.DataFrame, threshold: float) -> plt.Figure:
    """log10 variance ratio with its interval over seeds, per family of settings, at the smallest number
    of samples; lines at the threshold and ten times it. The colour is the estimator (its config id), the
    line style the comparator, the marker the verdict."""
    if claim.empty:
        return _empty("The variance claim")
    data = claim.copy()
    data["samples_"] = claim_samples(data)
    data = data[data.groupby(["family", "comparison"])["samples_"].transform("min") == data["samples_"]]
    if "parameter" in data:
        first = data.groupby("family")["parameter"].transform(lambda p: p.dropna().iloc[0] if p.notna().any() else np.nan)
        data = data[(data["parameter"] == first) | data["parameter"].isna()]
    colours = dict(zip(dict.fromkeys(data["estimator_id"]), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    styles = dict(zip(dict.fromkeys(data["comparator_name"]), ["-", "--", ":", "-."] * 4))
    panels = list(dict.fromkeys(zip(data["family"], data["comparison"])))
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows + 1.2), squeeze=False)
    for ax, (family, comparison) in zip(axes.flat, panels):
        rows = data[(data["family"] == family) & (data["comparison"] == comparison)]
        x, ticks, name = _claim_axis(rows)
        rows = rows.assign(x=x)
        for (est, comp), series in rows.groupby(["estimator_id", "comparator_name"], sort=False):
            series = series.sort_values("x")
            y = np.log10(series["variance_ratio"])
            err = [y - np.log10(series["ci_low"]), np.log10(series["ci_high"]) - y]
            ax.errorbar(series["x"], y, yerr=err, capsize=2, lw=1, alpha=0.85, color=colours[est], ls=styles[comp])
            for verdict, marker in VERDICT_MARKERS.items():
                part = series[series["verdict"] == verdict]
                ax.scatter(part["x"], np.log10(part["variance_ratio"]), marker=marker, color=colours[est], s=18, zorder=3)
        for level, style in ((threshold, "--"), (10 * threshold, ":")):
            ax.axhline(np.log10(level), color="grey", ls=style, lw=0.9)
        ax.axhline(0, color="black", lw=0.5)
        if ticks:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, fontsize=7, ha="right")
        if name == "dim":
            ax.set_xscale("log")
        ax.set_title(f"{family}: {comparison.replace('_', ' ')}, S={int(rows['samples_'].iloc[0])}", fontsize=8)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("log10 variance ratio", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    handles = ([plt.Line2D([], [], color=c, lw=2) for c in colours.values()]
               + [plt.Line2D([], [], color="black", ls=st) for st in styles.values()]
               + [plt.Line2D([], [], marker=m, ls="", color="black") for m in VERDICT_MARKERS.values()])
    names = ([f"estimator {e}" for e in colours] + [f"over {c}" for c in styles]
             + [f"verdict {v}" for v in VERDICT_MARKERS])
    fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=7, frameon=False)
    fig.suptitle(f"The claim: variance ratio with its 95% interval over seeds (dashed: {threshold:g}, "
                 f"dotted: {10 * threshold:g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * (len(names) // 6), 1, 0.97))
    return fig


RELAXATIONS = ("gumbel_softmax", "st_gumbel_softmax", "gumbel_rao", "reinmax")


def relaxation_rows(synth: pd.DataFrame, variance: pd.DataFrame) -> pd.DataFrame:
    """Bias, variance and MSE of every relaxation, with its temperature (from its options), on the discrete
    toys and at the VAE's shared checkpoints (late stage), one row per (where, estimator, temperature)."""
    parts = []
    if len(synth):
        toys = synth[synth["problem"].isin(["bernoulli_toy", "categorical_toy"])]
        parts.append(toys.assign(where=toys["problem"] + " " + toys["setting"] + " S=" + toys["n_samples"].astype(str)))
    if len(variance) and "protocol" in variance:
        shared = variance[variance["protocol"] == "shared_checkpoints"]
        late = shared[shared["step"] == shared.groupby("latent")["step"].transform("max")]
        parts.append(late.assign(where="vae " + late["latent"] + " late S=" + late["measured_n_samples"].astype(str)))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rows.empty or "estimator_name" not in rows:
        return pd.DataFrame()
    rows = rows[rows["estimator_name"].isin(RELAXATIONS)]
    if rows.empty:
        return pd.DataFrame()
    options = rows["estimator_options"].map(json.loads)
    # An annealed entry's temperature at a checkpoint is not its option's: it has no place on this axis.
    fixed = options.map(lambda o: not o.get("anneal_rate"))
    temperature = options[fixed].map(lambda o: o.get("temperature", np.nan))
    rows = rows[fixed].assign(temperature=temperature.astype(float)).dropna(subset=["temperature"])
    return (rows.groupby(["where", "estimator_name", "temperature"], as_index=False)
            [["bias_norm", "total_variance", "mse"]].mean())


def relaxation_temperature(synth: pd.DataFrame, variance: pd.DataFrame) -> plt.Figure:
    """Bias, variance and MSE of the relaxations against their temperature (means over seeds)."""
    rows = relaxation_rows(synth, variance)
    if rows.empty:
        return _empty("Relaxations: bias, variance and MSE against temperature")
    long = rows.melt(id_vars=["where", "estimator_name", "temperature"], value_vars=["bias_norm", "total_variance", "mse"],
                     var_name="measure", value_name="value")
    long = long[long["value"] > 0]
    grid = sns.relplot(data=long, x="temperature", y="value", hue="estimator_name", col="measure", row="where",
                       kind="line", marker="o", errorbar=None, height=2.3, aspect=1.3,
                       facet_kws={"sharey": False, "sharex": True})
    grid.set(xscale="log", yscale="log")
    grid.set_titles("{row_name} | {col_name}", size=7)
    grid.figure.suptitle("Relaxations: bias (norm), total variance and MSE against temperature", y=1.01)
    return grid.figure


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``draw(tables, threshold)`` returns it from the study's tables; ``caption`` is its
    caption in the report and in results/README.md."""

    draw: Callable[[dict[str, pd.DataFrame], float], plt.Figure]
    caption: str


#: The study's figures, in report order: the one list the rules, the plotting script, the report and the
#: tests read. The tables a figure reads are ``FIGURE_TABLES``.
FIGURES: dict[str, FigureSpec] = {
    "claim": FigureSpec(
        lambda t, thr: claim_figure(t["variance_claim"], thr),
        "The claim at a glance: for each family of settings and each declared comparison, the log10 ratio of "
        "the estimator's gradient variance to the comparator's, with its 95% interval over seeds (a t-interval "
        "on per-seed log ratios; with fewer than 3 seeds a measurement-only interval and no verdict), at the "
        "smallest number of samples. Dashed line: the threshold; dotted: ten times it; the marker is the verdict "
        "(up: yes, down: no, circle: undecided, cross: missing). Synthetic cells and shared checkpoints only."),
    "variance_vs_k": FigureSpec(
        lambda t, thr: mohamed_variance(t["synthetic_all"]),
        "Per-coordinate gradient variance of the loc and scale gradients against k for the three costs of "
        "Mohamed et al. 2020 (x ~ N(1, 1)): (x - k)^2, exp(-k x^2) and cos(k x), one sample per estimate, with "
        "the four families of their Figures 2-3: pathwise, score function (REINFORCE, with and without "
        "baselines), measure-valued, and the score function with the delta-method control variate "
        "(coefficient 1; it is exact, zero variance, on the quadratic cost, which the title then says)."),
    "ratio_vs_dimension": FigureSpec(
        lambda t, thr: dimension_ratio(t["synthetic_all"], thr),
        "REINFORCE / pathwise variance ratio against dimension for f = sum z_i^2, z ~ N(1, I_D), with the "
        "closed-form curve (experiments/closed_form.py) and the claim's threshold."),
    "vae_variance_over_training": FigureSpec(
        lambda t, thr: vae_variance_over_training(t["vae_variance"]),
        "log10 mean per-parameter variance of the VAE encoder gradient along each estimator's own training "
        "run (protocol own_run: different runs are different networks)."),
    "elbo_curves": FigureSpec(
        lambda t, thr: elbo_curves(t["vae_metrics"]),
        "Train and test ELBO over training, per latent and estimator (range over seeds)."),
    "work_normalized_variance": FigureSpec(
        lambda t, thr: work_normalized_variance(t["cost_table"]),
        "Work-normalized variance (total variance x seconds per estimate): lower is better at equal compute."),
    "relaxation_temperature": FigureSpec(
        lambda t, thr: relaxation_temperature(t["synthetic_all"], t["vae_variance"]),
        "Bias-variance trade-off of the relaxations (Gumbel-softmax, ST Gumbel-softmax, Gumbel-Rao, ReinMax): "
        "the norm of the bias against the exact gradient (synthetic toys) or the reference gradient (VAE, "
        "late shared checkpoint), the total variance and the MSE, against the temperature, means over seeds. "
        "One line per estimator; its points are the study's entries of that estimator at several temperatures "
        "(annealed entries are left out: their temperature changes along training)."),
    "device_timings": FigureSpec(
        lambda t, thr: device_timings(t["cost_table"]),
        "Seconds per VAE training step, per estimator and device."),
}
FIGURE_TABLES = ("variance_claim", "synthetic_all", "vae_metrics", "vae_variance", "cost_table")
