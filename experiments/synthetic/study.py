r"""Synthetic study: bias, variance, MSE and cost of every estimator on problems with exact gradients.

    python -m experiments.synthetic --config config/synthetic/example.yaml --out results/demo/synthetic

The config is a ``RunConfig`` (below: every key and default; a problem's keys are the parameters of its
function in ``problems.py``). For each (problem, setting, estimator that applies, n_samples) the study draws
independent gradient estimates (vectorized, see ``estimators.measure``) until the total variance's relative
standard error is below ``measurement.target_rse`` or ``measurement.max_estimates`` is reached, and times
``measurement.timing_calls`` single estimator calls (call + backward, as in training) for the cost. One row
per parameter group (e.g. ``loc`` and ``scale``) goes into ``synthetic.csv``; combinations an estimator
does not apply to go into ``skipped.csv`` with the reason given by ``Estimator.why_not``. Columns are
documented in ``results/README.md``.

Every cell draws from its own generator seeded from (seed, problem, setting, estimator, n_samples), so a
cell's numbers do not depend on which other cells run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

import estimators
from estimators import iwae
from estimators.measure import VarianceResult

from experiments.synthetic import closed_form
from experiments.synthetic import problems
from experiments.runtime import jobtime
from experiments.runtime.cli import checked, failures_as_one_line, job_arguments, run_job
from experiments.runtime.devices import device_name, resolve_device
from experiments.config.estimator_spec import EstimatorSpec
from experiments.runtime import result_tables
from experiments.runtime.provenance import provenance
from experiments.runtime.seeds import cell_seed
from experiments.config.typed_config import load_yaml, parse, to_dict
from experiments.config.user_modules import import_modules

log = logging.getLogger("gradvar.synthetic")


# --- settings ---------------------------------------------------------------------------------------


#: The problem grid: one optional entry per registered problem (``problems.STUDY_PROBLEMS``, in its order), whose
#: keys, types and defaults are that problem's function's parameters; a problem left out (null) is not in the study.
Problems = dataclasses.make_dataclass(
    "Problems", [(name, entry.grid | None, None) for name, entry in problems.STUDY_PROBLEMS.items()], frozen=True)
Problems.__module__ = __name__


@dataclass(frozen=True)
class Measurement:
    min_estimates: int = 2000       # first batch of independent estimates per cell
    max_estimates: int = 32000      # stop here even if the target below is not met
    target_rse: float = 0.05        # relative standard error of the total variance to reach
    timing_calls: int = 20          # single calls timed for seconds_per_estimate
    warmup_calls: int = 50          # train-mode calls that give moving averages their state
    chunk_size: int = 4096          # estimates per vectorized pass

    def validate(self) -> None:
        if not 2 <= self.min_estimates <= self.max_estimates:
            raise ValueError("measurement needs 2 <= min_estimates <= max_estimates")


@dataclass(frozen=True)
class Settings:
    """What a study sets for the synthetic study (``synthetic.settings``)."""

    n_samples: list[int] = field(default_factory=lambda: [1, 10])
    measurement: Measurement = field(default_factory=Measurement)
    problems: Problems = field(default_factory=Problems)


@dataclass(frozen=True)
class RunConfig(Settings):
    """One synthetic job: the settings, a seed, a device and the estimators (id -> entry)."""

    seed: int = 0
    device: str = "cpu"
    modules: list[str] = field(default_factory=list)   # the user's estimator modules, imported first
    estimators: dict[str, dict] = field(default_factory=dict)

    def specs(self) -> list[EstimatorSpec]:
        import_modules(self.modules)
        return [EstimatorSpec.from_config(est_id, entry, f"estimators.{est_id}", allow_nvil=False,
                                          allow_latents=False) for est_id, entry in self.estimators.items()]


def parse_settings(data: dict | None, path: str = "synthetic.settings") -> Settings:
    return parse(Settings, data, path)


def load_config(path: str | Path) -> RunConfig:
    with open(path) as fh:
        config = parse(RunConfig, load_yaml(fh))
    config.specs()  # estimator entries are checked before anything runs
    return config


# --- the grid ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    problem_key: str
    setting: dict
    problem: problems.Problem


def iter_problems(grid: Problems) -> Iterator[Cell]:
    """The cells of the problem grid, in the order of the registry (``problems.STUDY_PROBLEMS``)."""
    for name, entry in problems.STUDY_PROBLEMS.items():
        if getattr(grid, name) is not None:
            for setting, problem in entry.expand(getattr(grid, name)):
                yield Cell(name, setting, problem)


def _on_device(problem: problems.Problem, device: torch.device) -> problems.Problem:
    return dataclasses.replace(problem, params={k: v.to(device) for k, v in problem.params.items()})


def measure_cell(est, problem, n_samples, generator, cfg: Measurement) -> VarianceResult:
    """Estimates until the total variance's relative SE reaches the target (or the cap)."""
    def measure(n):
        return estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=n, n_samples=n_samples,
                                           generator=generator, vectorize=True, chunk_size=cfg.chunk_size)
    res = estimators.measure_until(measure, cfg.min_estimates, cfg.target_rse, cfg.max_estimates)
    return VarianceResult(grads=res.grads, n_samples=n_samples, seconds_per_estimate=math.nan)


def time_single_calls(est, problem, n_samples, generator, calls: int, device) -> float:
    """Seconds per estimate as training would pay it: one call and one backward."""
    leaves = problem.leaves()
    def once():
        f, dist = problem.build(*leaves)
        torch.autograd.grad(est(f, dist, n_samples, generator).surrogate, leaves, allow_unused=True)
    once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / calls


def _closed_form(cell: Cell, est, param: str, n_samples: int) -> float:
    if cell.problem_key != "dimension" or param != "loc" or est.options().get("baseline", "none") != "none":
        return math.nan
    mu = np.ones(cell.setting["dim"])
    fn = {"pathwise": closed_form.pathwise_variance_sum_of_squares,
          "reinforce": closed_form.reinforce_variance_sum_of_squares}.get(est.name)
    return math.nan if fn is None else float(fn(mu, n_samples).mean())


def warm_up(est, problem, n_samples, generator, calls: int) -> None:
    """Give a moving-average baseline the state a training run would have (a temperature schedule is
    left alone: the configured temperature is the one measured)."""
    if calls <= 0 or getattr(est, "baseline", None) != "moving_average":
        return
    est.train()
    for _ in range(calls):
        f, dist = problem.build(*problem.leaves())
        est(f, dist, n_samples, generator)


def _columns(spec_columns: dict, prov: dict) -> list[str]:
    """The columns of synthetic.csv, for a job whose estimator applies to no problem (a header-only CSV)."""
    summary = VarianceResult(grads=torch.zeros(2, 1, dtype=torch.float64), n_samples=1, seconds_per_estimate=math.nan,
                             reference=torch.zeros(1, dtype=torch.float64)).summary()
    return ["experiment", "problem", "family", "k", "dim", "t", "setting", "parameter", *spec_columns, "unbiased",
            "f_evaluations", "seed", "device", "device_name", "exact_grad_norm", "closed_form_mean_variance", *summary,
            "work_normalized_variance", *prov]


#: What the problems define: the gradient of an expectation (``estimators.capabilities.OBJECTIVES``), except
#: those whose ``objective`` is ``iwae`` (the K-sample bound; ``estimators.iwae`` says how each estimator meets it).
OBJECTIVE = "expectation"


def measured_form(problem: problems.Problem, est, n_samples: int) -> tuple[problems.Problem, str | None]:
    """``(problem, reason)``: the problem ``est`` is called with ``n_samples`` on, and why it does not
    apply (or None). On a K-sample bound problem ``n_samples`` counts K-tuples: an estimator of the bound
    itself (vimco, dreg) takes the per-sample log-weight on ``k_tuples(q, K)``, the others the bound's
    expectation form (``problem.build``), both with ``n_samples`` tuples (``iwae.called``). An estimator that needs
    ``f`` to say its log q term apart (``stl``, ``dreg``: ``Estimator.why_not_f``) applies only where the problem's
    ``f`` does."""
    f, dist = problem.build(*problem.leaves())
    if problem.objective != "iwae":
        return problem, est.why_not(dist, n_samples, objective=OBJECTIVE) or est.why_not_f(f, dist)
    f_k, q = problem.build_log_weight(*problem.leaves())
    reason = iwae.why_not(est, q, problem.iwae_k, n_samples)
    if est.capabilities.objective == "iwae":
        def per_sample(*params):
            return iwae.called(est, *problem.build_log_weight(*params), problem.iwae_k)
        return dataclasses.replace(problem, build=per_sample), reason or est.why_not_f(f_k, q)
    return problem, reason or est.why_not_f(f, dist)


def f_evaluations(problem: problems.Problem, est, n_samples: int) -> int | None:
    """Evaluations of f per estimate; on a bound problem, of the per-sample log-weight."""
    if problem.objective != "iwae":
        return est.f_evaluations(problem.build(*problem.leaves())[1], n_samples)
    return iwae.f_evaluations(est, problem.build_log_weight(*problem.leaves())[1], problem.iwae_k, n_samples)

SKIPPED_COLUMNS = ["problem", "setting", "estimator_id", "estimator_name", "n_samples", "reason"]


def run(config: RunConfig, out_dir: Path) -> pd.DataFrame:
    device = resolve_device(config.device)
    cfg = config.measurement
    prov = provenance(to_dict(config))
    specs = config.specs()
    rows, skipped = [], []
    cells = list(iter_problems(config.problems))
    log.info("synthetic study: %d problem settings x %d estimators x n_samples %s on %s",
             len(cells), len(specs), config.n_samples, device)
    for i, cell in enumerate(cells, 1):
        problem = _on_device(cell.problem, device)
        exact = problem.exact_gradient().to("cpu", torch.float64)
        setting = json.dumps(cell.setting, sort_keys=True)
        for spec in specs:
            est = spec.build().to(device)
            for n_samples in config.n_samples:
                called, reason = measured_form(problem, est, n_samples)
                if reason is not None:
                    skipped.append({"problem": cell.problem_key, "setting": setting, "estimator_id": spec.id,
                                    "estimator_name": spec.name, "n_samples": n_samples, "reason": reason})
                    continue
                gen = torch.Generator(device=device).manual_seed(
                    cell_seed(config.seed, cell.problem_key, cell.setting, est.describe(), n_samples))
                warm_up(est, called, n_samples, gen, cfg.warmup_calls)
                est.eval()
                res = measure_cell(est, called, n_samples, gen, cfg)
                seconds = time_single_calls(est, called, n_samples, gen, cfg.timing_calls, device)
                offset = 0
                for param, value in problem.params.items():
                    sl = slice(offset, offset + value.numel())
                    offset += value.numel()
                    part = VarianceResult(grads=res.grads[:, sl], n_samples=n_samples,
                                          seconds_per_estimate=seconds, reference=exact[sl])
                    summary = part.summary()
                    rows.append({
                        "experiment": "synthetic", "problem": cell.problem_key, "family": problem.family,
                        "k": cell.setting.get("k", math.nan), "dim": cell.setting.get("dim", value.numel()),
                        "t": cell.setting.get("t", math.nan), "setting": setting,
                        "parameter": param, **spec.columns(),
                        "unbiased": est.unbiased, "f_evaluations": f_evaluations(problem, est, n_samples),
                        "seed": config.seed, "device": str(device),
                        "device_name": device_name(device), "exact_grad_norm": float(exact[sl].norm()),
                        "closed_form_mean_variance": _closed_form(cell, est, param, n_samples),
                        **summary,
                        "work_normalized_variance": summary["total_variance"] * seconds,
                        **prov,
                    })
        log.info("[%d/%d] %s %s done", i, len(cells), cell.problem_key, cell.setting)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(
        columns=_columns(spec_columns=specs[0].columns() if specs else {}, prov=prov))
    out_dir.mkdir(parents=True, exist_ok=True)
    result_tables.write(frame, out_dir / "synthetic.csv")
    result_tables.write(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), out_dir / "skipped.csv")
    return frame


def main(argv=None) -> None:
    """One or more ``--config C --out DIR`` pairs (the pipeline gives every seed of an estimator to one job)."""
    jobtime.mark_started("synthetic")
    ap, args = job_arguments("gradvar synthetic study (exact gradients)",
                             "run config, YAML or JSON (see RunConfig for every key); repeat with --out for more runs",
                             "output folder for synthetic.csv and skipped.csv, one per --config", argv, many=True)
    configs = [checked(ap, load_config, path) for path in args.config]
    with failures_as_one_line(ap):
        for config, out in zip(configs, args.out):
            frame = run(config, Path(out))
            log.info("wrote %d rows to %s", len(frame), Path(out) / "synthetic.csv")


if __name__ == "__main__":
    run_job(main)
