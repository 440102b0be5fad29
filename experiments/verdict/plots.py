"""Figures: each function takes tidy frames and returns a matplotlib Figure (the pipeline saves them)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from experiments.verdict import across_k  # noqa: E402
from experiments.verdict.claim import stage_boundaries, training_stage  # noqa: E402
from experiments.verdict.tables.claim_summary import STAGE_ORDER, claim_samples  # noqa: E402
from experiments.verdict.tables.lr_selection import only_selected  # noqa: E402
from experiments.verdict.tables import estimator_ranking as ranking_mod  # noqa: E402
from experiments.synthetic.closed_form import variance_ratio_sum_of_squares  # noqa: E402

MOHAMED = {"mohamed_quadratic": "(x - k)^2", "mohamed_exp": "exp(-k x^2)", "mohamed_cos": "cos(k x)"}
ROUND_OFF_VARIANCE = 1e-20


def _empty(title: str, message: str = "no data in this study") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def _facet_title(grid: sns.FacetGrid, title: str) -> plt.Figure:
    """A seaborn grid's figure with its title above the panels' titles (laid out again: never over them)."""
    grid.figure.suptitle(title, fontsize=9)
    grid.tight_layout()
    return grid.figure


def mohamed_variance(synth: pd.DataFrame, n_samples: int | None = None) -> plt.Figure:
    """Per-coordinate gradient variance against k for the three costs of Mohamed et al. 2020 (their Fig. 2-4)."""
    data = synth[synth["problem"].isin(MOHAMED)] if "problem" in synth else synth
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
    grid.set_titles("{row_name}, {col_name}", size=8)
    grid.set_axis_labels("k", "gradient variance")
    note = "" if not exact.any() else (f"\nnot drawn (variance below {ROUND_OFF_VARIANCE:g}, zero but for round-off): "
                                       + ", ".join(sorted(set(data.loc[exact, "estimator_id"] + " on "
                                                              + data.loc[exact, "cost"]))))
    return _facet_title(grid, f"Gradient variance vs k, N(1, 1), {n} sample(s) per estimate{note}")


def dimension_ratio(synth: pd.DataFrame, threshold: float) -> plt.Figure:
    """REINFORCE / pathwise variance ratio against dimension, with the closed form
    (experiments.synthetic.closed_form)."""
    data = synth[(synth["problem"] == "dimension") & (synth["parameter"] == "loc")] if "problem" in synth else synth
    if data.empty or not {"pathwise", "reinforce"} <= set(data["estimator_name"]):
        return _empty("Variance ratio vs dimension")
    keys = ["dim", "n_samples", "seed", "device"]
    ref = data[data["estimator_name"] == "pathwise"].set_index(keys)["mean_variance"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, group in data[data["estimator_name"] == "reinforce"].groupby("estimator_id"):
        ratio = (group.set_index(keys)["mean_variance"] / ref).dropna().reset_index()
        summary = ratio.groupby("dim")["mean_variance"].agg(["mean", "min", "max"])
        ax.errorbar(summary.index, summary["mean"],
                    yerr=[summary["mean"] - summary["min"], summary["max"] - summary["mean"]],
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
    return _facet_title(grid, "Encoder-gradient variance along each estimator's own training run")


def elbo_curves(metrics: pd.DataFrame) -> plt.Figure:
    metrics = only_selected(metrics)
    if metrics.empty:
        return _empty("ELBO curves")
    grid = sns.relplot(data=metrics, x="step", y="elbo", hue="estimator_id", style="split", col="latent",
                       row="dataset", kind="line", errorbar=("pi", 100), height=3, aspect=1.2,
                       facet_kws={"sharey": False})
    grid.set_axis_labels("training step", "ELBO (nats)")
    return _facet_title(grid, "Train and test ELBO")


#: A value under this fraction of its panel's largest is zero but for rounding (an exact estimator, a
#: zero-variance gradient): not drawn on a log axis, where it would stretch the axis over 30 decades.
ROUNDING_FRACTION = 1e-12


def _bars(ax, frame: pd.DataFrame, y: str, x: str, hue: str, colours: dict) -> None:
    """Horizontal bars of ``x`` per ``y`` (top to bottom in order of appearance), one per ``hue`` value."""
    labels = list(dict.fromkeys(frame[y]))
    hues = [h for h in colours if h in set(frame[hue])]
    width = 0.8 / max(1, len(hues))
    for i, h in enumerate(hues):
        part = frame[frame[hue] == h].groupby(y, sort=False)[x].mean()
        pos = [labels.index(label) - 0.4 + width * (i + 0.5) for label in part.index]
        ax.barh(pos, part.to_numpy(), height=width, color=colours[h])
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def work_normalized_variance(cost: pd.DataFrame) -> plt.Figure:
    """Variance x seconds per estimate, one panel per synthetic problem or VAE latent (small multiples), a bar
    per estimator and number of samples (and device); values zero but for rounding are named, not drawn."""
    data = cost.dropna(subset=["work_normalized_variance"]) if not cost.empty else cost
    if data.empty:
        return _empty("Work-normalized variance")
    nan = pd.Series("", index=data.index)
    where = np.where(data["source"] == "vae", "vae " + data.get("latent", nan).astype(str), data.get("problem", nan))
    hue = "S=" + data["n_samples"].astype(float).astype(int).astype(str)
    if data["device"].nunique() > 1:
        hue = hue + " " + data["device"].astype(str)
    data = data.assign(where=where, hue=hue)
    colours = dict(zip(sorted(set(data["hue"]), key=lambda h: (len(h), h)),
                       plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    panels = list(dict.fromkeys(data["where"]))
    tallest = data.groupby("where")["estimator_id"].nunique().max()
    fig, axes = _grid(len(panels), 3.6, 0.17 * tallest + 1.0, extra_h=1.0, max_cols=4)
    for ax, panel in zip(axes, panels):
        rows = data[data["where"] == panel]
        noise = rows["work_normalized_variance"] <= ROUNDING_FRACTION * rows["work_normalized_variance"].max()
        _bars(ax, rows[~noise], "estimator_id", "work_normalized_variance", "hue", colours)
        ax.set_xscale("log")
        ax.tick_params(axis="x", labelsize=6)
        zero = ", ".join(dict.fromkeys(rows.loc[noise, "estimator_id"]))
        ax.set_title(panel + (f"\nzero to rounding, not drawn: {zero}" if zero else ""), fontsize=7)
        ax.set_xlabel("variance x seconds", fontsize=7)
    fig.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], list(colours),
               loc="outside lower center", ncol=len(colours), fontsize=7, frameon=False)
    fig.suptitle("Work-normalized variance: variance x seconds per estimate (lower is better at equal compute)",
                 fontsize=9)
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
#: Line styles told apart at a glance, in order: a comparator each (the claim figure).
DASHES = ["-", (0, (6, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (10, 2, 1, 2, 1, 2)), (0, (3, 3)), (0, (14, 4)),
          (0, (1, 4)), (0, (2, 2, 8, 2)), (0, (4, 1, 1, 1, 1, 1)), (0, (12, 2, 2, 2)), (0, (8, 4, 2, 4))]
EXACT_MARKER = "*"
#: Tallest figure, in inches (4000 pixels at the pipeline's 150 dpi, less room for the titles).
MAX_HEIGHT_IN = 24.0
#: The least height of a panel of small multiples, in inches: below it, more panels a row.
MIN_PANEL_IN = 2.2


def _grid(n: int, panel_w: float, panel_h: float, extra_h: float = 1.5, max_cols: int = 5, **kw):
    """A figure of ``n`` small multiples, ``max_cols`` a row (more where the rows would not fit), no taller
    than ``MAX_HEIGHT_IN`` (panels shrink to fit, to no less than ``MIN_PANEL_IN``), laid out by matplotlib's
    constrained layout; unused axes are off."""
    most_rows = max(1, int((MAX_HEIGHT_IN - extra_h) // min(panel_h, MIN_PANEL_IN)))
    ncols = max(1, min(n, max(max_cols, -(-n // most_rows))))
    nrows = -(-n // ncols)
    panel_h = min(panel_h, (MAX_HEIGHT_IN - extra_h) / nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols, panel_h * nrows + extra_h), squeeze=False,
                             layout="constrained", **kw)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:n])


def _claim_axis(rows: pd.DataFrame) -> tuple[pd.DataFrame, list, list[str], str, bool]:
    """One panel's x axis: ``rows`` with ``x`` and ``line`` (rows may be joined by a line only within one
    ``line`` group: settings along one ordered axis), tick positions and labels (none: a numeric axis), the
    axis name and whether it is logarithmic. VAE rows: the training stages. Synthetic rows: the one numeric
    setting key that varies, or else categories grouped by the other keys, a line joining only the points
    of a group along its numeric key (bernoulli_toy: dim=1, 10, 100 at each t), none across groups."""
    if rows["source"].iloc[0] == "vae":
        stages = sorted(set(rows["stage"]), key=lambda st: STAGE_ORDER.get(st, 9))
        return (rows.assign(x=rows["stage"].map(stages.index).astype(float), line=0), list(range(len(stages))),
                stages, "training stage", False)
    settings = rows["setting"].map(json.loads)
    keys = list(dict.fromkeys(k for s in settings for k in s))
    varying = [k for k in keys if settings.map(lambda s, k=k: json.dumps(s.get(k))).nunique() > 1]
    numeric = [k for k in varying if settings.map(lambda s, k=k: isinstance(s.get(k), (int, float))).all()]
    if len(varying) == 1 and numeric:
        values = settings.map(lambda s: float(s[numeric[0]]))
        log = bool(values.min() > 0 and values.max() / values.min() >= 100)
        return rows.assign(x=values, line=0), [], [], numeric[0], log
    axis = max(numeric, key=lambda k: settings.map(lambda s: s[k]).nunique()) if numeric else None
    others = [k for k in varying if k != axis] or [k for k in keys if k != axis]
    group = settings.map(lambda s: tuple(json.dumps(s.get(k)) for k in others))
    along = settings.map(lambda s: s[axis]) if axis else pd.Series(0, index=rows.index)
    order = sorted(set(zip(group, along)))
    x = [float(order.index(key) + sorted(set(group)).index(key[0])) for key in zip(group, along)]  # a gap per group
    labels = {xi: ", ".join(f"{k}={s.get(k)}" for k in ([axis] if axis else []) + others)
              for xi, s in zip(x, settings)}
    line = group if axis else pd.Series(range(len(rows)), index=rows.index)
    return (rows.assign(x=x, line=line.to_numpy()), sorted(labels), [labels[xi] for xi in sorted(labels)],
            "setting", False)


def _claim_panels(claim: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple]]:
    """The claim rows with ``samples_`` and ``parameter_``, and the panels: one per (family, parameter group,
    comparison, number of samples), in the table's order of families, samples ascending."""
    data = claim.assign(samples_=claim_samples(claim).astype(float),
                        parameter_=(claim["parameter"] if "parameter" in claim else pd.Series(np.nan, index=claim.index)
                                    ).fillna("").astype(str))
    keys = ["family", "parameter_", "comparison"]
    first = {key: i for i, key in enumerate(dict.fromkeys(zip(*(data[k] for k in keys))))}
    panels = sorted(dict.fromkeys(zip(*(data[k] for k in keys), data["samples_"])), key=lambda p: (first[p[:3]], p[3]))
    return data, panels


def _draw_claim_panel(ax, rows: pd.DataFrame, colours: dict, styles: dict, threshold: float) -> int:
    """One panel of the claim figure; returns how many of its rows are exact (drawn at the axis edges)."""
    rows, ticks, labels, name, log = _claim_axis(rows)
    exact = rows["interval"].eq("exact") | ~np.isfinite(rows["variance_ratio"].astype(float))
    for (est, comp), series in rows[~exact].groupby(["estimator_id", "comparator_id"], sort=False):
        y = np.log10(series["variance_ratio"].astype(float))
        err = np.nan_to_num([y - np.log10(series["ci_low"].astype(float)),
                             np.log10(series["ci_high"].astype(float)) - y], nan=0.0, posinf=0.0, neginf=0.0)
        ax.errorbar(series["x"], y, yerr=err, ls="none", capsize=2, lw=0.8, color=colours[est], alpha=0.8)
        for _, part in series.sort_values("x").groupby("line", sort=False):
            ax.plot(part["x"], np.log10(part["variance_ratio"].astype(float)), color=colours[est],
                    ls=styles[comp], lw=1.1, alpha=0.9)
        for verdict, marker in VERDICT_MARKERS.items():
            part = series[series["verdict"] == verdict]
            ax.scatter(part["x"], np.log10(part["variance_ratio"].astype(float)), marker=marker, color=colours[est],
                       s=16, zorder=3)
    for _, row in rows[exact].iterrows():   # +inf at the top edge, 0 at the bottom one, no ratio (both exact) not drawn
        ratio = float(row["variance_ratio"]) if pd.notna(row["variance_ratio"]) else math.nan
        if not math.isnan(ratio):
            ax.scatter([row["x"]], [0.95 if ratio > 1 else 0.05], marker=EXACT_MARKER, s=70, zorder=4,
                       color=colours[row["estimator_id"]], edgecolors="black", linewidths=0.4,
                       transform=ax.get_xaxis_transform(), clip_on=False)
    for level, style in ((threshold, "--"), (10 * threshold, ":")):
        ax.axhline(np.log10(level), color="grey", ls=style, lw=0.9)
    ax.axhline(0, color="black", lw=0.5)
    if ticks:
        ax.set_xticks(ticks, labels, rotation=30, fontsize=6, ha="right")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(name, fontsize=7)
    ax.set_ylabel("log10 variance ratio", fontsize=7)
    ax.tick_params(labelsize=6)
    return int(exact.sum())


def claim_figure(claim: pd.DataFrame, threshold: float) -> plt.Figure:
    """log10 variance ratio with its interval over seeds: one panel per family of settings, parameter group,
    declared comparison and number of samples; lines at the threshold and ten times it. The colour is the
    estimator (its config id), the line style the comparator (its id), the marker the verdict; exact rows (a
    side with zero variance) are a star at the top (ratio +inf) or bottom (0) edge."""
    if claim.empty:
        return _empty("The variance claim")
    data, panels = _claim_panels(claim)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = dict(zip(dict.fromkeys(data["estimator_id"]), palette * 4))
    styles = dict(zip(dict.fromkeys(data["comparator_id"]), DASHES * 4))
    fig, axes = _grid(len(panels), 3.6, 2.9, extra_h=1.6)
    exact = 0
    for ax, (family, parameter, comparison, samples) in zip(axes, panels):
        rows = data[(data["family"] == family) & (data["parameter_"] == parameter) & (data["comparison"] == comparison)
                    & (data["samples_"] == samples)]
        exact += _draw_claim_panel(ax, rows, colours, styles, threshold)
        where = f"{family}, {parameter}" if parameter else family
        ax.set_title(f"{where}: {comparison.replace('_', ' ')}, S={samples:g}", fontsize=7)
    handles = ([plt.Line2D([], [], color=c, lw=2.5) for c in colours.values()]
               + [plt.Line2D([], [], color="black", ls=st, lw=1.2) for st in styles.values()]
               + [plt.Line2D([], [], marker=m, ls="", color="black") for m in VERDICT_MARKERS.values()])
    names = ([f"estimator {e}" for e in colours] + [f"over {c}" for c in styles]
             + [f"verdict {v}" for v in VERDICT_MARKERS])
    if exact:
        handles.append(plt.Line2D([], [], marker=EXACT_MARKER, ls="", color="grey", markersize=10,
                                  markeredgecolor="black"))
        names.append("exact: a side has zero variance (top edge: ratio +inf, bottom: 0)")
    fig.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=7, frameon=False,
               handlelength=4)
    fig.suptitle(f"The claim: variance ratio with its 95% interval over seeds (dashed: {threshold:g}, "
                 f"dotted: {10 * threshold:g})", fontsize=10)
    return fig


RELAXATIONS = ("gumbel_softmax", "st_gumbel_softmax", "gumbel_rao", "reinmax")


def relaxation_rows(synth: pd.DataFrame, variance: pd.DataFrame) -> pd.DataFrame:
    """Bias, variance and MSE of every relaxation, with its temperature (from its options), on the discrete
    toys and at the VAE's shared checkpoints (late stage), one row per (where, estimator, temperature)."""
    parts = []
    if len(synth):
        toys = synth[synth["problem"].isin(["bernoulli_toy", "categorical_toy"])]
        described = toys["setting"].map(lambda v: ", ".join(f"{k}={x}" for k, x in json.loads(v).items()))
        parts.append(toys.assign(where=toys["problem"] + ": " + described + ", S=" + toys["n_samples"].astype(str)))
    if len(variance) and "protocol" in variance:
        shared = variance[variance["protocol"] == "shared_checkpoints"]
        late = shared[shared["step"] == shared.groupby("latent")["step"].transform("max")]
        parts.append(late.assign(where="vae " + late["latent"] + ": late, S=" + late["measured_n_samples"].astype(str)))
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


RELAXATION_MEASURES = {"bias_squared": "-", "total_variance": "--", "mse": ":"}


def relaxation_temperature(synth: pd.DataFrame, variance: pd.DataFrame) -> plt.Figure:
    """Squared bias (norm), total variance and MSE of the relaxations against their temperature (means over
    seeds), one panel per place (small multiples): the colour is the estimator, the line style the measure;
    the three are in the same units (MSE = squared bias + variance)."""
    rows = relaxation_rows(synth, variance)
    if rows.empty:
        return _empty("Relaxations: bias, variance and MSE against temperature")
    rows = rows.assign(bias_squared=rows["bias_norm"] ** 2)
    colours = dict(zip(dict.fromkeys(rows["estimator_name"]), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    panels = list(dict.fromkeys(rows["where"]))
    fig, axes = _grid(len(panels), 3.0, 2.4, extra_h=1.2)
    for ax, where in zip(axes, panels):
        for name, (measure, style) in itertools.product(colours, RELAXATION_MEASURES.items()):
            part = rows[(rows["where"] == where) & (rows["estimator_name"] == name)].sort_values("temperature")
            part = part[part[measure] > 0]
            ax.plot(part["temperature"], part[measure], ls=style, marker="o", ms=3, lw=1, color=colours[name])
        ax.set(xscale="log", yscale="log")
        temperatures = sorted(set(rows.loc[rows["where"] == where, "temperature"]))
        ax.set_xticks(temperatures, [f"{t:g}" for t in temperatures])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(where, fontsize=7)
        ax.set_xlabel("temperature", fontsize=7)
        ax.set_ylabel("squared bias, variance, MSE", fontsize=6)
        ax.tick_params(which="both", labelsize=6)
    handles = ([plt.Line2D([], [], color=c, lw=2) for c in colours.values()]
               + [plt.Line2D([], [], color="black", ls=st) for st in RELAXATION_MEASURES.values()])
    fig.legend(handles, [*colours, "squared bias (norm)", "total variance", "MSE"], loc="outside lower center",
               ncol=len(handles), fontsize=7, frameon=False, handlelength=3)
    fig.suptitle("Relaxations: squared bias, total variance and MSE against temperature (means over seeds)",
                 fontsize=9)
    return fig


def _compact(value: float) -> str:
    """A ratio in at most 5 characters: ``exact`` (0), ``3.2``, ``40``, ``2e3``."""
    if value == 0:
        return "exact"
    if value < 9.95:
        return f"{value:.1f}"
    if value < 999.5:
        return f"{value:.0f}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


RANKING_PANELS = {"variance_vs_best": "variance x evaluations / best", "mse_vs_best": "MSE x evaluations / best",
                  "seconds_vs_fastest": "seconds per estimate / fastest"}
#: Ratios at or above 10^RANKING_DECADES share the darkest colour.
RANKING_DECADES = 4


def estimator_ranking_figure(ranking: pd.DataFrame) -> plt.Figure:
    """Heat maps (estimators x families): the median over a family's settings of each estimator's variance and
    MSE relative to the best at equal evaluations of f, and its seconds per estimate relative to the fastest;
    the number in a cell is the ratio (1: the best; ``exact``: zero variance), blank where not measured."""
    if ranking.empty:
        return _empty("Estimator ranking")
    fastest = ranking.groupby(ranking_mod.GROUP, sort=False)["seconds_per_estimate"].transform("min")
    ranking = ranking.assign(seconds_vs_fastest=ranking["seconds_per_estimate"] / fastest)
    tables = {value: ranking_mod.family_summary(ranking, value) for value in RANKING_PANELS}
    estimators = list(tables["variance_vs_best"].index)
    estimators += [e for t in tables.values() for e in t.index if e not in estimators]
    biased = ranking.drop_duplicates("estimator_id").set_index("estimator_id")["unbiased"].map(
        lambda u: str(u).lower() == "false")
    labels = [f"{e} (biased)" if biased.get(e, False) else e for e in estimators]
    families = list(dict.fromkeys(ranking["family"]))
    width = 0.42 * len(families) + 0.6
    fig, axes = plt.subplots(1, len(tables), figsize=(width * len(tables) + 2, 0.2 * len(estimators) + 2.2),
                             layout="constrained", sharey=True)
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#eeeeee")
    for ax, (value, table) in zip(axes, tables.items()):
        table = table.reindex(index=estimators, columns=families)
        with np.errstate(divide="ignore"):
            shown = np.log10(table.to_numpy(dtype=float))
        image = ax.imshow(np.where(np.isneginf(shown), 0.0, shown), cmap=cmap, vmin=0, vmax=RANKING_DECADES,
                          aspect="auto", interpolation="nearest")
        for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
            if np.isfinite(v):
                dark = v > 0 and np.log10(v) > RANKING_DECADES / 2
                ax.text(j, i, _compact(v), ha="center", va="center", fontsize=5, color="white" if dark else "black")
        ax.set_xticks(range(len(families)), families, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(estimators)), labels, fontsize=6)
        ax.set_title(RANKING_PANELS[value], fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.6, label=f"log10 ratio (>= {RANKING_DECADES}: darkest)")
    fig.suptitle("Estimator ranking: median over each family's settings; descriptive, not a verdict", fontsize=9)
    return fig


#: Markers that, with the colour cycle's 10 colours, tell up to 80 series apart (colour first, then marker).
SERIES_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def variance_panels(variance: pd.DataFrame) -> pd.DataFrame:
    """The shared-checkpoints rows of ``variance`` with ``samples`` (samples per estimate of the measured
    estimator) and ``panel``: the host network (data set and latent, and device where the study has several)
    and the number of samples, in the order latents, then S ascending."""
    if variance.empty or "protocol" not in variance:
        return pd.DataFrame()
    data = only_selected(variance[variance["protocol"] == "shared_checkpoints"])
    if data.empty:
        return pd.DataFrame()
    host = data["dataset"].astype(str) + ", " + data["latent"].astype(str)
    if data["device"].nunique() > 1:
        host = host + ", " + data["device"].astype(str)
    samples = (data["measured_n_samples"] if "measured_n_samples" in data else data["n_samples"]).astype(int)
    data = data.assign(host=host, samples=samples, panel=host + ", S=" + samples.astype(str))
    hosts = list(dict.fromkeys(host))
    return data.sort_values(["samples", "host"], key=lambda c: c.map(hosts.index) if c.name == "host" else c,
                            kind="stable")


def variance_along_training(variance: pd.DataFrame) -> plt.Figure:
    """Every estimator's encoder-gradient total variance against training step at the shared checkpoints (the
    same host network for every estimator): small multiples, a column per latent and a row per number of
    samples S. A line is the mean over seeds of log10 variance (the geometric mean), its band the seeds'
    range; colour and marker tell the estimator, the same in every panel. Values zero but for rounding are
    named in the panel's title, not drawn (they would stretch the log axis over 30 decades)."""
    data = variance_panels(variance)
    if data.empty:
        return _empty("Encoder-gradient variance along training, shared checkpoints")
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    estimators = list(dict.fromkeys(data.sort_index()["estimator_id"]))   # the table's order
    looks = {e: (palette[i % len(palette)], SERIES_MARKERS[(i // len(palette)) % len(SERIES_MARKERS)])
             for i, e in enumerate(estimators)}
    panels = list(dict.fromkeys(data["panel"]))
    legend_rows = -(-len(estimators) // 6)
    fig, axes = _grid(len(panels), 4.2, 3.0, extra_h=0.8 + 0.17 * legend_rows, max_cols=data["host"].nunique())
    for ax, panel in zip(axes, panels):
        rows = data[data["panel"] == panel]
        noise = ~(rows["total_variance"] > ROUNDING_FRACTION * rows["total_variance"].max())
        per_step = (rows[~noise].assign(log10=np.log10(rows.loc[~noise, "total_variance"]))
                    .groupby(["estimator_id", "step"], sort=False)["log10"].agg(["mean", "min", "max"]))
        for est, series in per_step.groupby(level="estimator_id", sort=False):
            series = series.sort_index(level="step")
            steps = series.index.get_level_values("step")
            colour, marker = looks[est]
            ax.plot(steps, 10 ** series["mean"], color=colour, marker=marker, ms=3, lw=1)
            ax.fill_between(steps, 10 ** series["min"], 10 ** series["max"], color=colour, alpha=0.15, lw=0)
        for boundary in stage_boundaries(rows["step"].max()):
            ax.axvline(boundary, color="grey", lw=0.6, ls=":")
        ax.set_yscale("log")
        host = (f" (host: {', '.join(dict.fromkeys(rows['run_estimator_id'].astype(str)))})"
                if "run_estimator_id" in rows else "")
        zero = ", ".join(dict.fromkeys(rows.loc[noise, "estimator_id"]))
        ax.set_title(panel + host + (f"\nzero to rounding, not drawn: {zero}" if zero else ""), fontsize=7)
        ax.set_xlabel("training step of the host run", fontsize=7)
        ax.set_ylabel("total variance of the encoder gradient", fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    handles = [plt.Line2D([], [], color=c, marker=m, ms=4, lw=1.5) for c, m in looks.values()]
    fig.legend(handles, estimators, loc="outside lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle("Encoder-gradient variance along training: every estimator at the same checkpoints of one host "
                 "run per latent\n(line: geometric mean over seeds; band: the seeds' range; dotted: the claim's "
                 "stage boundaries)", fontsize=9)
    return fig


def _k_axis(ax, ks: list[float]) -> None:
    """Log-log axes with the study's K values as the x ticks."""
    ax.set(xscale="log", yscale="log")
    ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def across_k_snr(synth: pd.DataFrame, variance: pd.DataFrame, ratios: pd.DataFrame,
                 run_status: pd.DataFrame) -> pd.DataFrame:
    """Every estimator's SNR per seed at the places of ``ratios`` (``across_k.ratio_rows``): a synthetic
    parameter's |mean| / sd, a VAE encoder gradient's ||mean|| / sqrt(trace Cov), the mean over its late
    checkpoints."""
    parts = []
    problems = set(ratios.loc[ratios["source"] == "synthetic", "problem"]) if "problem" in ratios else set()
    if problems and not synth.empty:
        part = synth[synth["problem"].isin(problems)]
        part = part.assign(place=part["problem"] + ", " + part["parameter"].astype(str), k=part["k"].astype(float),
                           samples_=part["n_samples"].astype(int))
        parts.append(part[["place", "samples_", "k", "estimator_id", "seed", "snr"]])
    bounds = across_k.bound_latents(run_status)
    shared = variance_panels(variance) if bounds else pd.DataFrame()
    if not shared.empty:
        shared = shared[[(d, i) in bounds for d, i in zip(shared["dataset"], shared["latent_id"])]]
    if not shared.empty:
        final = shared.groupby(["dataset", "latent_id"])["step"].transform("max")
        late = shared[[training_stage(s, f) == "late" for s, f in zip(shared["step"], final)]]
        per_seed = late.groupby(["dataset", "latent_id", "samples", "estimator_id", "seed"], as_index=False)[
            "snr_norm"].mean()
        keys = list(zip(per_seed["dataset"], per_seed["latent_id"]))
        per_seed = per_seed.assign(place=[across_k.vae_place(d, bounds[(d, i)][1]) for d, i in keys],
                                   k=[bounds[key][0] for key in keys], samples_=per_seed["samples"].astype(int))
        parts.append(per_seed.rename(columns={"snr_norm": "snr"})[["place", "samples_", "k", "estimator_id", "seed",
                                                                   "snr"]])
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts) if parts else pd.DataFrame(columns=["place", "samples_", "k", "estimator_id", "snr"])


def claim_across_k(claim: pd.DataFrame, synth: pd.DataFrame, threshold: float, variance: pd.DataFrame | None = None,
                   run_status: pd.DataFrame | None = None) -> plt.Figure:
    """The claim on the K-sample bound (``across_k.ratio_rows``, ``across_k_snr``): for each synthetic bound
    problem and parameter, and each VAE latent trained on the bound (at its late checkpoints), the declared
    comparisons over a pathwise-role comparator (pathwise, DReG) against K with their 95% intervals (a row of
    panels per number of K-tuples S), then every estimator's SNR against K (mean over seeds, band: the seeds'
    range; a row per S), with the 1/sqrt(K) slope Rainforth et al. 2018 derive for the pathwise encoder gradient
    drawn through pathwise's SNR at the smallest K. Colour: the estimator; line style: the comparator."""
    empty = pd.DataFrame()
    variance, run_status = (empty if t is None else t for t in (variance, run_status))
    rows = across_k.ratio_rows(claim, run_status)
    snr = across_k_snr(synth, variance, rows, run_status) if not rows.empty else rows
    if rows.empty:
        return _empty("The claim across K (K-sample bound)", "no bound setting with a pathwise comparator here")
    places = list(dict.fromkeys(rows["place"]))
    samples = sorted(set(rows["samples_"]))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    estimators_ = list(dict.fromkeys([*rows["estimator_id"], *rows["comparator_id"], *snr["estimator_id"]]))
    colours = {e: palette[i % len(palette)] for i, e in enumerate(estimators_)}
    styles = dict(zip(dict.fromkeys(rows["comparator_id"]), DASHES))
    # A row per (S, ratio or SNR), a column per place; one place: its S side by side instead.
    fig, axes = _grid(2 * len(samples) * len(places), 3.4, 2.5, extra_h=1.4,
                      max_cols=len(places) if len(places) > 1 else len(samples))
    grid = iter(axes)
    for s in samples:
        for place in places:
            ax, part = next(grid), rows[(rows["place"] == place) & (rows["samples_"] == s)]
            for (est, comp), series in part.groupby(["estimator_id", "comparator_id"], sort=False):
                series = series.sort_values("k")
                ratio = series["variance_ratio"].astype(float)
                ax.plot(series["k"], ratio, color=colours[est], ls=styles[comp], marker="o", ms=3, lw=1.1)
                ax.fill_between(series["k"], series["ci_low"].astype(float), series["ci_high"].astype(float),
                                color=colours[est], alpha=0.12, lw=0)
            ax.axhline(threshold, color="grey", ls="--", lw=0.8)
            ax.axhline(1, color="black", lw=0.5)
            _k_axis(ax, sorted(set(rows.loc[rows["place"] == place, "k"])))
            ax.set_title(f"{place}, S={s}: variance ratio", fontsize=7)
            ax.set_ylabel("variance ratio", fontsize=7)
    for s in samples:
        for place in places:
            ax = next(grid)
            part = snr[(snr["place"] == place) & (snr["samples_"] == s)]
            per_k = part.groupby(["estimator_id", "k"], sort=False)["snr"].agg(["mean", "min", "max"])
            for est, series in per_k.groupby(level="estimator_id", sort=False):
                series = series.sort_index(level="k")
                at = series.index.get_level_values("k")
                ax.plot(at, series["mean"], color=colours[est], marker="o", ms=3, lw=1.1)
                ax.fill_between(at, series["min"], series["max"], color=colours[est], alpha=0.12, lw=0)
            if "pathwise" in per_k.index.get_level_values("estimator_id"):
                base = per_k.loc["pathwise"].sort_index()
                at = np.array(base.index, dtype=float)
                ax.plot(at, base["mean"].iloc[0] * np.sqrt(at[0] / at), color="grey", ls=":", lw=1)
            _k_axis(ax, sorted(set(rows.loc[rows["place"] == place, "k"])))
            ax.set_title(f"{place}, S={s}: SNR", fontsize=7)
            ax.set_ylabel("signal-to-noise ratio", fontsize=7)
    for ax in axes:
        ax.set_xlabel("K (samples in the bound)", fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    handles = ([plt.Line2D([], [], color=colours[e], lw=2.5) for e in estimators_]
               + [plt.Line2D([], [], color="black", ls=st, lw=1.2) for st in styles.values()]
               + [plt.Line2D([], [], color="grey", ls=":", lw=1)])
    names = ([f"estimator {e}" for e in estimators_] + [f"ratio over {c}" for c in styles]
             + ["1/sqrt(K) through pathwise's SNR (Rainforth et al. 2018)"])
    fig.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=7, frameon=False,
               handlelength=3.5)
    fig.suptitle(f"The claim across K: variance ratios on the K-sample bound with 95% intervals over seeds "
                 f"(dashed: {threshold:g}), and each estimator's SNR", fontsize=9)
    return fig


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
        "The claim at a glance: one panel per family of settings, parameter group, declared comparison and number "
        "of samples S (every S the study measures, so leave-one-out baselines, S >= 2, appear), the log10 ratio "
        "of the estimator's gradient variance to the comparator's, with its 95% interval over seeds (a t-interval "
        "on per-seed log ratios, never narrower than the measurement errors imply; with fewer than 3 seeds a "
        "measurement-only interval and no verdict). Colour: the estimator; line style: the comparator; lines "
        "join settings along one ordered axis only. Dashed line: the threshold; dotted: ten times it; the marker "
        "is the verdict (up: yes, down: no, circle: undecided, cross: missing); a star at the top (bottom) edge is "
        "an exact row, where the comparator's (estimator's) variance is zero to rounding. Synthetic cells and "
        "shared checkpoints only."),
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
        "closed-form curve (experiments/synthetic/closed_form.py) and the claim's threshold."),
    "claim_across_k": FigureSpec(
        lambda t, thr: claim_across_k(t["variance_claim"], t["synthetic_all"], thr, t["vae_variance"], t["run_status"]),
        "The claim on multi-sample bounds: on each synthetic K-sample bound problem with a Normal latent "
        "(gaussian_iwae; a column per parameter: loc and scale are q's, weight the model's) and on each VAE latent "
        "trained on the bound (run_status.bound_k; its late checkpoints), the declared comparisons over the "
        "pathwise (IWAE) gradient and over DReG: the ratio of the score-function estimator's gradient variance to "
        "the comparator's against K, with its 95% interval over seeds (band), a row of panels per number S of "
        "K-tuples per estimate; below, every estimator's signal-to-noise ratio against K (synthetic: |mean| / sd; "
        "VAE: ||mean|| / sqrt(trace Cov) of the encoder gradient, the mean over the late checkpoints; mean over "
        "seeds, band: the seeds' range), with the 1/sqrt(K) fall Rainforth et al. 2018 derive for the pathwise "
        "encoder gradient drawn through pathwise's SNR at the smallest K. Colour: the estimator; line style: the "
        "comparator; dashed: the claim's threshold."),
    "variance_along_training": FigureSpec(
        lambda t, thr: variance_along_training(t["vae_variance"]),
        "Variance of every estimator along the whole training run, on the same network: the total "
        "variance (trace of the covariance) of each estimator's encoder gradient at every checkpoint of the "
        "latent's host run (protocol shared_checkpoints), a column of panels per latent and a row per number of "
        "samples S per estimate. Line: the mean over seeds of log10 variance (the geometric mean); band: the "
        "range over seeds (the unit of replication). Colour and marker: the estimator, the same in every panel. "
        "Dotted verticals: the boundaries of the claim's early, middle and late stages (a third and two thirds of "
        "training); values zero but for rounding are named in the panel's title, not drawn."),
    "vae_variance_over_training": FigureSpec(
        lambda t, thr: vae_variance_over_training(t["vae_variance"]),
        "log10 mean per-parameter variance of the VAE encoder gradient along each estimator's own training "
        "run (protocol own_run: different runs are different networks)."),
    "elbo_curves": FigureSpec(
        lambda t, thr: elbo_curves(t["vae_metrics"]),
        "Train and test ELBO over training, per latent and estimator (range over seeds)."),
    "work_normalized_variance": FigureSpec(
        lambda t, thr: work_normalized_variance(t["cost_table"]),
        "Work-normalized variance (total variance x seconds per estimate; lower is better at equal compute), one "
        "panel per synthetic problem (median over its settings) or VAE latent (own runs), a bar per estimator and "
        "number of samples; values zero but for rounding (an exact estimator) are named in the panel's title, "
        "not drawn."),
    "relaxation_temperature": FigureSpec(
        lambda t, thr: relaxation_temperature(t["synthetic_all"], t["vae_variance"]),
        "Bias-variance trade-off of the relaxations (Gumbel-softmax, ST Gumbel-softmax, Gumbel-Rao, ReinMax), "
        "one panel per place (a discrete toy's setting and number of samples, or a VAE latent at its late shared "
        "checkpoint): the squared norm of the bias against the exact gradient (toys) or the reference gradient "
        "(VAE), the total variance and the MSE (their sum, same units), against the temperature, means over "
        "seeds. Colour: the estimator; line style: the measure; a line's points are the study's entries of that "
        "estimator at several temperatures (annealed entries are left out: their temperature changes along "
        "training)."),
    "estimator_ranking": FigureSpec(
        lambda t, thr: estimator_ranking_figure(t["estimator_ranking"]),
        "Which estimator, where (descriptive, not a verdict): for each family of settings (a synthetic problem, "
        "or a VAE latent at the shared checkpoints), each estimator's gradient variance and MSE relative to the "
        "family's best at equal evaluations of f (variance x f-evaluations per estimate), and its seconds per "
        "estimate relative to the fastest: the median over the family's settings and numbers of samples of the "
        "ratios in estimator_ranking.csv (1: the best; exact: zero variance; blank: not measured there). "
        "Biased estimators are marked; their MSE, not their variance, is the fair comparison."),
    "device_timings": FigureSpec(
        lambda t, thr: device_timings(t["cost_table"]),
        "Seconds per VAE training step, per estimator and device."),
}
FIGURE_TABLES = ("variance_claim", "synthetic_all", "vae_metrics", "vae_variance", "cost_table", "estimator_ranking",
                 "run_status")
