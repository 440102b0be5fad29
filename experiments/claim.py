r"""The verdict on the variance claim: declared comparisons, intervals over seeds, and fair pairings.

A *comparison* is declared in the study config before anything is measured (``claim.comparisons``): a
numerator and a denominator, each a list of estimator names, ids or roles (``role:score_function``: every
estimator whose ``Capabilities.role`` it is, ``estimators.capabilities.ROLES``). Its rows are every
(setting, numerator id, denominator id) of the study where both apply; the default comparisons are the
claim itself (every score-function estimator over pathwise, in every continuous setting) and its discrete
analogue (every score-function estimator over each relaxation). Nothing is chosen on the data it is judged
with.

Only fair pairings decide: synthetic cells (the same problem and parameters) and the
``shared_checkpoints`` protocol (the same network). Measurements along each estimator's own training run
compare different networks and feed the training figure only.

Statistics. The *unit* of replication is the seed. Within a seed, the log variance ratio is measured at
each checkpoint of a stage (one value for a synthetic cell) and averaged. Over seeds,

.. math::
    \bar y \pm t_{n-1,\,0.975}\; s_y / \sqrt{n},

a t-interval on the per-seed log ratios :math:`y_i = \theta + b_i + e_i`, whose spread :math:`s_y` carries
both the between-seed variation :math:`b_i` and the measurement error :math:`e_i` (``tests/test_claim.py``
simulates both and checks that it covers). With fewer than ``MIN_SEEDS`` seeds there is no honest
between-seed interval: the row shows the measurement-only interval (from the per-seed standard errors)
and its verdict is ``undecided``.

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
    """The interval of ``exp(mean(log_values))`` from per-seed log values (and their standard errors)."""
    y = np.asarray(log_values, dtype=float)
    y = y[np.isfinite(y)]
    n = y.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, "none", 0)
    mean = float(y.mean())
    if n >= min_seeds:
        half = stats.t.ppf(0.5 + level / 2, n - 1) * y.std(ddof=1) / math.sqrt(n)
        kind = "seeds_t"
    else:
        se = np.nan_to_num(np.asarray(log_se if log_se is not None else np.zeros(n), dtype=float)[:n], nan=0.0)
        half = stats.norm.ppf(0.5 + level / 2) * math.sqrt(float((se**2).sum())) / n
        kind = "measurement_only"
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), kind, n)


def verdict(interval: Interval, threshold: float) -> str:
    if interval.kind == "none" or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "missing"
    if interval.kind != "seeds_t":
        return "undecided"
    if interval.low >= threshold:
        return "yes"
    if interval.high < threshold:
        return "no"
    return "undecided"


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


def per_seed(frame: pd.DataFrame, value: str, se: str | None = None) -> pd.DataFrame:
    """Per (seed) mean over checkpoints of ``log(value_num / value_den)`` and its standard error.

    ``frame`` holds one row per (seed, step) with ``{value}_num``, ``{value}_den`` (and ``{se}_num``,
    ``{se}_den``: standard errors of the values) already paired.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(frame[f"{value}_num"]) - np.log(frame[f"{value}_den"])
        if se is not None:
            var = (frame[f"{se}_num"] / frame[f"{value}_num"]) ** 2 + (frame[f"{se}_den"] / frame[f"{value}_den"]) ** 2
        else:
            var = pd.Series(0.0, index=frame.index)
    parts = pd.DataFrame({"seed": frame["seed"], "y": log_ratio, "var": var})
    parts = parts[np.isfinite(parts["y"])]
    grouped = parts.groupby("seed")
    return pd.DataFrame({"y": grouped["y"].mean(), "se": np.sqrt(grouped["var"].sum()) / grouped.size()})


PAIR_KEYS = ["seed", "step"]
SIDE_COLUMNS = ["total_variance", "total_variance_se", "mse", "bias_norm", "seconds_per_estimate"]


#: Carried where the measurements have it: evaluations of f per estimate (the cost unit of ``evaluations_ratio``).
EVALUATIONS = "f_evaluations"


def _side(frame: pd.DataFrame, est_id: str) -> pd.DataFrame:
    rows = frame[frame["estimator_id"] == est_id]
    return rows.set_index(PAIR_KEYS)[SIDE_COLUMNS + ([EVALUATIONS] if EVALUATIONS in frame.columns else [])]


def _paired(num: pd.DataFrame, den: pd.DataFrame) -> pd.DataFrame:
    joined = num.merge(den, left_index=True, right_index=True, suffixes=("_num", "_den")).reset_index()
    return joined[(joined["total_variance_num"] > 0) & (joined["total_variance_den"] > 0)]


def _log_interval(paired: pd.DataFrame, value: str, se: str | None = None) -> Interval:
    seeds = per_seed(paired, value, se)
    return seed_interval(seeds["y"].to_numpy(), seeds["se"].to_numpy())


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


def compare(measured: pd.DataFrame, expected: pd.DataFrame, setting_cols: list[str], threshold: float,
            seeds: list[int], reason_for=None) -> pd.DataFrame:
    """One row per declared (setting, comparison, numerator, denominator) of ``expected``.

    measured: one row per (setting, estimator_id, seed, step) with the estimator columns and
        ``SIDE_COLUMNS`` (``step`` is 0 where there are no checkpoints).
    expected: the declared rows: ``setting_cols`` + ``comparison``, ``estimator_id``, ``comparator_id``.
    reason_for: ``reason_for(setting: dict, missing_seeds: list) -> str`` says why seeds are absent.
    """
    names = measured.drop_duplicates("estimator_id").set_index("estimator_id")[["estimator_name", "estimator_label"]]
    groups = {key if isinstance(key, tuple) else (key,): g
              for key, g in measured.groupby(setting_cols, sort=False, dropna=False)} if len(measured) else {}
    rows = []
    for _, want in expected.iterrows():
        setting = {c: want[c] for c in setting_cols}
        group = groups.get(tuple(setting.values()), measured.iloc[0:0])
        num_id, den_id = want["estimator_id"], want["comparator_id"]
        paired = _paired(_side(group, num_id), _side(group, den_id))
        var = _log_interval(paired, "total_variance", "total_variance_se")
        present = sorted(set(paired["seed"])) if len(paired) else []
        missing_seeds = [s for s in seeds if s not in present]
        row = {**setting, "comparison": want["comparison"],
               "estimator_id": num_id, **_names(names, num_id, "estimator"),
               "comparator_id": den_id, **_names(names, den_id, "comparator"),
               "variance_ratio": var.ratio, "ci_low": var.low, "ci_high": var.high, "interval": var.kind,
               "verdict": verdict(var, threshold), "n_seeds": var.n_seeds,
               "missing_seeds": " ".join(map(str, missing_seeds)),
               "reason": reason_for(setting, missing_seeds) if (missing_seeds and reason_for) else ""}
        if len(paired):
            mse = _log_interval(paired, "mse")
            row.update(work_ratio=_work_ratio(paired), evaluations_ratio=_evaluations_ratio(paired), mse_ratio=mse.ratio, mse_ci_low=mse.low,
                       mse_ci_high=mse.high)
            for side, suffix in (("estimator", "num"), ("comparator", "den")):
                row[f"{side}_bias_norm"] = float(paired[f"bias_norm_{suffix}"].mean())
                row[f"{side}_mse"] = float(paired[f"mse_{suffix}"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _names(names: pd.DataFrame, est_id: str, prefix: str) -> dict:
    if est_id in names.index:
        return {f"{prefix}_name": names.loc[est_id, "estimator_name"], f"{prefix}_label": names.loc[est_id, "estimator_label"]}
    return {f"{prefix}_name": "", f"{prefix}_label": ""}


def equal_cost_ratio(measured: pd.DataFrame, row: dict, setting_cols: list[str], samples_col: str) -> float:
    """Work-normalized variance of the estimator at its samples over the comparator's at one sample:
    the variance ratio at equal wall time (REINFORCE with S samples against pathwise with one)."""
    others = {c: row[c] for c in setting_cols if c != samples_col}
    mask = np.logical_and.reduce([measured[c] == v for c, v in others.items()]) if others else np.ones(len(measured), bool)
    num = measured[mask & (measured[samples_col] == row[samples_col])]
    den = measured[mask & (measured[samples_col] == 1)]
    paired = _paired(_side(num, row["estimator_id"]), _side(den, row["comparator_id"]))
    return _work_ratio(paired) if len(paired) else math.nan


def training_stage(step: int, final_step: int) -> str:
    """``start`` (step 0), ``early`` (up to a third of training), ``middle`` (up to two thirds), ``late``."""
    if step == 0:
        return "start"
    frac = step / final_step if final_step > 0 else 1.0
    return "early" if frac <= 1 / 3 else "middle" if frac <= 2 / 3 else "late"
