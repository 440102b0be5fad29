r"""The verdict on the variance claim: declared comparisons, intervals over seeds, and fair pairings.

A *comparison* is declared in the study config before anything is measured (``claim.comparisons``): a
numerator and a denominator, each a list of estimator names, ids or roles (``role:score_function``: every
estimator whose ``Capabilities.role`` it is, ``estimators.capabilities.ROLES``). Its rows are every
(setting, numerator id, denominator id) of the study where both apply; the default comparisons are the
claim itself (every score-function estimator over pathwise, in every continuous setting), its discrete
analogue (every score-function estimator over each relaxation) and the claim over an improved pathwise
estimator (every score-function estimator over STL, on a Monte Carlo ELBO, and over DReG, on the K-sample bound:
Rainforth et al. 2018 show the pathwise encoder's SNR falls like 1/sqrt(K), and DReG's does not). Nothing is chosen
on the data it is judged with.

Only fair pairings decide: synthetic cells (the same problem and parameters) and the
``shared_checkpoints`` protocol (the same network). Measurements along each estimator's own training run
compare different networks and feed the training figure only.

Statistics. The *unit* of replication is the seed. Within a seed, the log variance ratio is measured at
each checkpoint of a stage (one value for a synthetic cell) and averaged. Over seeds,

.. math::
    \bar y \pm t_{n-1,\,0.975}\; s_y / \sqrt{n},

a t-interval on the per-seed log ratios :math:`y_i = \theta + b_i + e_i`, whose spread :math:`s_y` carries
both the between-seed variation :math:`b_i` and the measurement error :math:`e_i`. With 2 to 4 degrees of
freedom :math:`s_y` can come out far smaller than the measurement error alone allows (the seeds agree by
chance), so the spread used is never below what the per-seed standard errors :math:`se_i` imply:

.. math::
    \bar y \pm t_{n-1,\,0.975}\; \max\!\left(s_y,\ \sqrt{\overline{se^2}}\right) / \sqrt{n}.

:math:`\mathrm{Var}(\bar y) = (\sigma_b^2 + \overline{se^2}) / n \ge \overline{se^2} / n` whatever the between-seed
variation, so the floor is a known lower bound of the spread, and the interval is never narrower than the
plain t-interval (``tests/test_claim.py`` simulates both sources, and the seeds agreeing by chance, and checks
that it covers). With fewer than ``MIN_SEEDS`` seeds there is no honest between-seed interval: the row shows
the measurement-only interval (from the per-seed standard errors) and its verdict is ``undecided``.

A side whose variance is zero to rounding (``zero_to_rounding``: at most ``(ROUNDING_RTOL x its gradient
norm)^2``, the exact gradient of the pathwise estimator on a linear cost, say) is not divided by: the row is
``exact`` (``exact_interval``), its ratio the exact one (``inf`` over a zero comparator, ``0`` for a zero
estimator, NaN for both), its verdict the one the exact comparison implies, and ``reason`` says so.

Verdict against the threshold T: ``yes`` where the whole interval is at or above T, ``no`` where it is
entirely below, ``undecided`` otherwise, ``missing`` where a declared row has no measurement (the reason
says why: a diverged run, an absent seed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

MIN_SEEDS = 3
LEVEL = 0.95
VERDICTS = ("yes", "no", "undecided", "missing")


@dataclass(frozen=True)
class Interval:
    """A ratio (geometric mean over seeds) and its interval, on the ratio scale."""

    ratio: float
    low: float
    high: float
    kind: str        # "seeds_t" (decides), "measurement_only" (fewer than MIN_SEEDS seeds) or "none"
    n_seeds: int


def seed_interval(log_values, log_se=None, level: float = LEVEL, min_seeds: int = MIN_SEEDS) -> Interval:
    """The interval of ``exp(mean(log_values))`` from per-seed log values (and their standard errors).

    ``log_values``, ``log_se``: shape (n_seeds,); a seed whose value is not finite is left out with its SE.
    With ``min_seeds`` or more seeds, a t-interval whose spread is ``max(sd(log_values), rms(log_se))``
    (the module's docstring says why); with fewer, the measurement-only normal interval."""
    y = np.asarray(log_values, dtype=float)
    se = np.zeros(y.size) if log_se is None else np.nan_to_num(np.asarray(log_se, dtype=float), nan=0.0)
    keep = np.isfinite(y)
    y, se = y[keep], se[keep]
    n = y.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, "none", 0)
    mean = float(y.mean())
    if n >= min_seeds:
        spread = max(float(y.std(ddof=1)), math.sqrt(float((se**2).mean())))
        half = stats.t.ppf(0.5 + level / 2, n - 1) * spread / math.sqrt(n)
        kind = "seeds_t"
    else:
        half = stats.norm.ppf(0.5 + level / 2) * math.sqrt(float((se**2).sum())) / n
        kind = "measurement_only"
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), kind, n)


def verdict(interval: Interval, threshold: float) -> str:
    """``yes`` / ``no`` / ``undecided`` / ``missing`` (the module's docstring); an ``exact`` interval is
    ``yes`` where its exact ratio is at or above ``threshold`` (``inf``), else ``no`` (``0``, or NaN: both
    sides exact, no ratio and no claim)."""
    if interval.kind == "exact":
        return "yes" if interval.ratio >= threshold else "no"
    if interval.kind == "none" or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "missing"
    if interval.kind != "seeds_t":
        return "undecided"
    if interval.low >= threshold:
        return "yes"
    if interval.high < threshold:
        return "no"
    return "undecided"


#: A side's variance is zero to rounding where it is at most ``(ROUNDING_RTOL x g)^2``, ``g`` the norm of its
#: gradient (``SCALE_COLUMNS``): the estimates' relative standard deviation is at most 1e-6. Rounding leaves
#: ~1e-16 relative in float64 (the synthetic problems: 2e-17 to 9e-17 measured on the gamma rate) and ~1e-7 per
#: operation in float32 (the VAE), both below it; Monte Carlo noise lies far above it (the smallest relative
#: SD of the default study's claim estimators is 2.6e-3: REINFORCE with a moving average on bernoulli_toy,
#: D=1, t=0.499, S=10). ``tests/test_degenerate.py`` checks both sides of the line.
ROUNDING_RTOL = 1e-6
#: The gradient norms a side's scale is read from, where the measurements have them: the mean estimate's
#: norm, and the exact gradient's (synthetic). The larger counts; where neither is present the scale is
#: 0 and only an exact zero is zero to rounding.
SCALE_COLUMNS = ("grad_norm", "exact_grad_norm")


def zero_to_rounding(variance, scale, rtol: float = ROUNDING_RTOL) -> np.ndarray:
    """Whether each ``variance`` is zero up to rounding: ``variance <= (rtol * scale)^2`` (a NaN scale
    counts as 0). Arrays of one shape; returns booleans of that shape."""
    scale = np.nan_to_num(np.asarray(scale, dtype=float), nan=0.0)
    return np.asarray(variance, dtype=float) <= (rtol * scale) ** 2


def exact_interval(num_exact: bool, den_exact: bool, n_seeds: int) -> Interval:
    """The exact ratio where a side is zero to rounding: ``inf`` (the comparator only), ``0`` (the estimator
    only) or NaN (both: no ratio)."""
    ratio = math.nan if num_exact and den_exact else 0.0 if num_exact else math.inf
    return Interval(ratio, ratio, ratio, "exact", n_seeds)


def exact_reason(num_exact: bool, den_exact: bool) -> str:
    """The ``reason`` of an exact row, in words."""
    zero = f"variance is zero to rounding (at most ({ROUNDING_RTOL:g} x gradient norm)^2)"
    if num_exact and den_exact:
        return f"exact: both sides' {zero}: no ratio, and no claim"
    if den_exact:
        return f"exact: the comparator's {zero}, the estimator's is not: the claim holds trivially"
    return f"exact: the estimator's {zero}, the comparator's is not: the estimator beats it"


@dataclass(frozen=True)
class Comparison:
    """``numerator`` over ``denominator``: lists of estimator names or ids."""

    id: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]

    @classmethod
    def from_config(cls, entry: dict) -> "Comparison":
        return cls(entry["id"], tuple(entry["numerator"]), tuple(entry["denominator"]))

    def pairs(self, estimators: dict[str, str]) -> list[tuple[str, str]]:
        """(numerator id, denominator id) among ``estimators`` (id -> registered name), in config order."""
        def chosen(side):
            return [i for i, name in estimators.items() if i in side or name in side or role_item(name) in side]
        return [(n, d) for n in chosen(self.numerator) for d in chosen(self.denominator) if n != d]

    def unknown_items(self, ids) -> list[str]:
        """The items of either side that are no id of ``ids``, no registered estimator and no role."""
        import estimators as estimator_registry  # here: the tables' readers (plots) need no torch

        valid = set(ids) | set(estimator_registry.available()) | role_items()
        return [item for item in (*self.numerator, *self.denominator) if item not in valid]


#: A comparison's side names a role as ``role:NAME`` (``estimators.capabilities.ROLES``).
ROLE_PREFIX = "role:"


def role_items() -> set[str]:
    """Every ``role:ROLE`` a comparison may name."""
    from estimators.capabilities import ROLES

    return {ROLE_PREFIX + role for role in ROLES}


def role_item(name: str) -> str | None:
    """``role:ROLE`` for the registered estimator ``name``, or ``None`` where it declares no role."""
    import estimators as estimator_registry

    role = estimator_registry.estimator_class(name).capabilities.role
    return None if role is None else ROLE_PREFIX + role


def per_seed(frame: pd.DataFrame, value: str, se: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(y, se)``, one entry per seed (in increasing order): the mean over checkpoints of
    ``log(value_num / value_den)`` and its standard error. Rows whose log ratio is not finite are left out.

    ``frame`` holds one row per (seed, step) with ``{value}_num``, ``{value}_den`` (and ``{se}_num``,
    ``{se}_den``: standard errors of the values) already paired.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        num, den = frame[f"{value}_num"].to_numpy(float), frame[f"{value}_den"].to_numpy(float)
        log_ratio = np.log(num) - np.log(den)
        if se is not None:
            var = ((frame[f"{se}_num"].to_numpy(float) / num) ** 2
                   + (frame[f"{se}_den"].to_numpy(float) / den) ** 2)
        else:
            var = np.zeros(len(frame))
    keep = np.isfinite(log_ratio)
    seeds, group = np.unique(frame["seed"].to_numpy()[keep], return_inverse=True)
    y_sum, y_count = compensated_sums(group, log_ratio[keep], len(seeds))
    var_sum, _ = compensated_sums(group, var[keep], len(seeds))
    size = np.bincount(group, minlength=len(seeds))
    return y_sum / np.maximum(y_count, 1), np.sqrt(var_sum) / np.maximum(size, 1)


def compensated_sums(group: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the sum of its non-NaN ``values`` (in row order, with Kahan's compensation) and their count:
    the summation of pandas' groupby ``sum`` and ``mean``, done here without a DataFrame per call (a study's
    claim makes thousands of these) and with their numbers to the last bit (``tests/test_claim.py`` checks)."""
    sums, comp, counts = [0.0] * n_groups, [0.0] * n_groups, [0] * n_groups
    for g, v in zip(group.tolist(), values.tolist()):
        if v != v:
            continue
        counts[g] += 1
        y = v - comp[g]
        t = sums[g] + y
        c = t - sums[g] - y
        comp[g] = 0.0 if c != c else c  # an infinite value: no compensation, or the sum would be NaN
        sums[g] = t
    return np.array(sums, dtype=float), np.array(counts, dtype=float)


PAIR_KEYS = ["seed", "step"]
SIDE_COLUMNS = ["total_variance", "total_variance_se", "mse", "bias_norm", "seconds_per_estimate"]


#: Carried where the measurements have it: evaluations of f per estimate (the cost unit of ``evaluations_ratio``).
EVALUATIONS = "f_evaluations"


def _side_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` indexed by ``PAIR_KEYS``: ``SIDE_COLUMNS`` (+ ``EVALUATIONS``) and ``grad_scale`` (the largest
    of ``SCALE_COLUMNS`` present, NaN where none is)."""
    scales = [c for c in SCALE_COLUMNS if c in rows.columns]
    rows = rows.assign(grad_scale=rows[scales].max(axis=1) if scales else math.nan)
    extra = [EVALUATIONS] if EVALUATIONS in rows.columns else []
    return rows.set_index(PAIR_KEYS)[SIDE_COLUMNS + extra + ["grad_scale"]]


class Sides:
    """One estimator's rows of one setting (``_side_columns``), for every (setting, estimator) of ``measured``,
    found by key: a study's claim has thousands of rows, and a scan of every measurement per row made its
    aggregation quadratic. The side columns are made once for every row, and a key's rows are taken by
    position."""

    def __init__(self, measured: pd.DataFrame, setting_cols: list[str]):
        self._rows = _side_columns(measured)
        self._where = (measured.groupby([*setting_cols, "estimator_id"], sort=False, dropna=False).indices
                       if len(measured) else {})

    def __call__(self, setting: tuple, est_id: str) -> pd.DataFrame:
        return self._rows.iloc[self._where.get((*setting, est_id), [])]


def _joined(num: pd.DataFrame, den: pd.DataFrame) -> pd.DataFrame:
    """The two sides' rows paired on ``PAIR_KEYS`` (columns suffixed ``_num``, ``_den``), with ``exact_num``
    and ``exact_den``: the side's variance is zero to rounding at that (seed, step)."""
    joined = num.merge(den, left_index=True, right_index=True, suffixes=("_num", "_den")).reset_index()
    for suffix in ("num", "den"):
        joined[f"exact_{suffix}"] = zero_to_rounding(joined[f"total_variance_{suffix}"], joined[f"grad_scale_{suffix}"])
    return joined


def _paired(joined: pd.DataFrame) -> pd.DataFrame:
    """The pairs a ratio can be taken of: both variances positive and neither zero to rounding."""
    ok = (joined["total_variance_num"] > 0) & (joined["total_variance_den"] > 0)
    return joined[ok & ~joined["exact_num"] & ~joined["exact_den"]]


def exact_sides(joined: pd.DataFrame) -> tuple[bool, bool]:
    """(estimator, comparator): whether the side's variance is zero to rounding at every paired (seed, step)."""
    if joined.empty:
        return False, False
    return bool(joined["exact_num"].all()), bool(joined["exact_den"].all())


def _log_interval(paired: pd.DataFrame, value: str, se: str | None = None) -> Interval:
    return seed_interval(*per_seed(paired, value, se))


def _work_ratio(paired: pd.DataFrame) -> float:
    """The ratio of work-normalized variances (total variance x seconds per estimate)."""
    work = paired.assign(wnv_num=paired["total_variance_num"] * paired["seconds_per_estimate_num"],
                         wnv_den=paired["total_variance_den"] * paired["seconds_per_estimate_den"])
    return _log_interval(work, "wnv").ratio


def _evaluations_ratio(paired: pd.DataFrame) -> float:
    """The variance ratio at equal evaluations of f: (variance x evaluations per estimate), numerator over
    denominator. NaN where either side's cost is not counted (``exact``) or not recorded."""
    if f"{EVALUATIONS}_num" not in paired.columns:
        return math.nan
    work = paired.assign(evn_num=paired["total_variance_num"] * paired[f"{EVALUATIONS}_num"],
                         evn_den=paired["total_variance_den"] * paired[f"{EVALUATIONS}_den"])
    work = work[work["evn_num"].notna() & work["evn_den"].notna()]
    return _log_interval(work, "evn").ratio if len(work) else math.nan


def _mse_interval(joined: pd.DataFrame) -> Interval:
    """The MSE ratio's interval over seeds; exact where a side's MSE is zero to rounding everywhere (an
    unbiased side of zero variance: its MSE is rounding too)."""
    num, den = (zero_to_rounding(joined[f"mse_{s}"], joined[f"grad_scale_{s}"]) for s in ("num", "den"))
    if num.all() or den.all():
        return exact_interval(bool(num.all()), bool(den.all()), int(joined["seed"].nunique()))
    return _log_interval(joined[(joined["mse_num"] > 0) & (joined["mse_den"] > 0) & ~num & ~den], "mse")


def _variance_interval(joined: pd.DataFrame) -> tuple[Interval, str]:
    """The variance ratio's interval and a note for ``reason``: exact where a side is zero to rounding at
    every (seed, step); otherwise over the pairs that are not, naming those left out."""
    num_exact, den_exact = exact_sides(joined)
    if num_exact or den_exact:
        return exact_interval(num_exact, den_exact, int(joined["seed"].nunique())), exact_reason(num_exact, den_exact)
    paired = _paired(joined)
    dropped = int((joined["exact_num"] | joined["exact_den"]).sum())
    note = f"{dropped} of {len(joined)} measurements zero to rounding on one side, left out" if dropped else ""
    return _log_interval(paired, "total_variance", "total_variance_se"), note


def _cost_ratios(joined: pd.DataFrame, var: Interval) -> dict:
    """``work_ratio`` and ``evaluations_ratio``: the exact ratio where the variance ratio is exact (a zero
    variance stays zero at any cost), else over the pairs a ratio can be taken of."""
    if var.kind == "exact":
        return {"work_ratio": var.ratio, "evaluations_ratio": var.ratio}
    paired = _paired(joined)
    if paired.empty:
        return {"work_ratio": math.nan, "evaluations_ratio": math.nan}
    return {"work_ratio": _work_ratio(paired), "evaluations_ratio": _evaluations_ratio(paired)}


def compare(measured: pd.DataFrame, expected: pd.DataFrame, setting_cols: list[str], threshold: float,
            seeds: list[int], reason_for=None) -> pd.DataFrame:
    """One row per declared (setting, comparison, numerator, denominator) of ``expected``.

    measured: one row per (setting, estimator_id, seed, step) with the estimator columns and
        ``SIDE_COLUMNS`` (``step`` is 0 where there are no checkpoints), and ``SCALE_COLUMNS`` where known.
    expected: the declared rows: ``setting_cols`` + ``comparison``, ``estimator_id``, ``comparator_id``.
    reason_for: ``reason_for(setting: dict, missing_seeds: list) -> str`` says why seeds are absent.
    """
    names = measured.drop_duplicates("estimator_id").set_index("estimator_id")[["estimator_name", "estimator_label"]]
    sides = Sides(measured, setting_cols)
    rows = []
    for _, want in expected.iterrows():
        setting = {c: want[c] for c in setting_cols}
        num_id, den_id = want["estimator_id"], want["comparator_id"]
        key = tuple(setting.values())
        joined = _joined(sides(key, num_id), sides(key, den_id))
        var, note = _variance_interval(joined)
        present = sorted(set(joined["seed"])) if var.kind == "exact" else sorted(set(_paired(joined)["seed"]))
        missing_seeds = [s for s in seeds if s not in present]
        reasons = [note, reason_for(setting, missing_seeds) if (missing_seeds and reason_for) else ""]
        row = {**setting, "comparison": want["comparison"],
               "estimator_id": num_id, **_names(names, num_id, "estimator"),
               "comparator_id": den_id, **_names(names, den_id, "comparator"),
               "variance_ratio": var.ratio, "ci_low": var.low, "ci_high": var.high, "interval": var.kind,
               "verdict": verdict(var, threshold), "n_seeds": var.n_seeds,
               "missing_seeds": " ".join(map(str, missing_seeds)), "reason": "; ".join(r for r in reasons if r)}
        if len(joined):
            mse = _mse_interval(joined)
            row.update(_cost_ratios(joined, var), mse_ratio=mse.ratio, mse_ci_low=mse.low, mse_ci_high=mse.high)
            for side, suffix in (("estimator", "num"), ("comparator", "den")):
                row[f"{side}_bias_norm"] = float(joined[f"bias_norm_{suffix}"].mean())
                row[f"{side}_mse"] = float(joined[f"mse_{suffix}"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _names(names: pd.DataFrame, est_id: str, prefix: str) -> dict:
    if est_id in names.index:
        return {f"{prefix}_name": names.loc[est_id, "estimator_name"],
                f"{prefix}_label": names.loc[est_id, "estimator_label"]}
    return {f"{prefix}_name": "", f"{prefix}_label": ""}


def equal_cost_ratio(sides: Sides, row: dict, setting_cols: list[str], samples_col: str) -> float:
    """Work-normalized variance of the estimator at its samples over the comparator's at one sample:
    the variance ratio at equal wall time (REINFORCE with S samples against pathwise with one); the exact
    ratio where a side's variance is zero to rounding. ``sides``: the measurements' ``Sides`` by ``setting_cols``."""
    setting = tuple(row[c] for c in setting_cols)
    one_sample = tuple(1 if c == samples_col else row[c] for c in setting_cols)
    joined = _joined(sides(setting, row["estimator_id"]), sides(one_sample, row["comparator_id"]))
    var, _ = _variance_interval(joined)
    return _cost_ratios(joined, var)["work_ratio"] if len(joined) else math.nan


#: The fractions of training at which the early and the middle stage end (late runs to the end).
STAGE_ENDS = (1 / 3, 2 / 3)


def training_stage(step: int, final_step: int) -> str:
    """``start`` (step 0), ``early`` (up to a third of training), ``middle`` (up to two thirds), ``late``."""
    if step == 0:
        return "start"
    frac = step / final_step if final_step > 0 else 1.0
    return "early" if frac <= STAGE_ENDS[0] else "middle" if frac <= STAGE_ENDS[1] else "late"


def stage_boundaries(final_step: int) -> tuple[float, ...]:
    """The steps at which the early and the middle stage end (none for a run of no steps)."""
    return tuple(end * final_step for end in STAGE_ENDS) if final_step > 0 else ()
