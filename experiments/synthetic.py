r"""Synthetic study: bias, variance, MSE and cost of every estimator on problems with exact gradients.

    python -m experiments.synthetic --config config/synthetic/quick.yaml --out results/synthetic

For each (problem, setting, estimator that supports it, n_samples) the study draws independent gradient
estimates (vectorized, see ``estimators.variance``) until the total variance's relative standard error is
below ``variance.target_rse`` or ``variance.max_estimates`` is reached, and times ``variance.timing_calls``
single estimator calls (call + backward, as in training) for the cost. One row per parameter group
(e.g. ``loc`` and ``scale``) goes into ``synthetic.csv``; combinations an estimator does not support go into
``skipped.csv`` with the reason. Columns are documented in ``results/README.md``.

Every cell draws from its own generator seeded from (seed, problem, setting, estimator, n_samples), so a
cell's numbers do not depend on which other cells run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import yaml

import estimators
from estimators.variance import VarianceResult

from . import closed_form, problems
from .devices import device_name, resolve_device
from .io import write_csv_atomic
from .provenance import provenance
from .seeds import cell_seed

log = logging.getLogger("gradvar.synthetic")


@dataclass(frozen=True)
class Cell:
    problem_key: str
    setting: dict
    problem: problems.Problem


def _grid(spec) -> list[float]:
    """A list as given, or {start, stop, num} as an evenly spaced grid."""
    if isinstance(spec, dict):
        return [float(x) for x in np.linspace(spec["start"], spec["stop"], int(spec["num"]))]
    return [float(x) for x in spec]


def iter_problems(spec: dict) -> Iterator[Cell]:
    """The problem grid of a config's ``problems`` section."""
    makers = {
        "mohamed_quadratic": ("k", lambda k: problems.normal_quadratic(k=k, dim=1, mu=1.0, sigma=1.0)),
        "mohamed_exp": ("k", lambda k: problems.normal_exp_square(k=k, dim=1, mu=1.0, sigma=1.0)),
        "mohamed_cos": ("k", lambda k: problems.normal_cosine(k=k, dim=1, mu=1.0, sigma=1.0)),
    }
    for key, options in spec.items():
        if key in makers:
            name, make = makers[key]
            for k in _grid(options["k"]):
                yield Cell(key, {"k": k}, make(k))
        elif key == "dimension":
            for dim in options["dims"]:
                yield Cell(key, {"dim": int(dim)}, problems.normal_quadratic(k=0.0, dim=int(dim), mu=1.0, sigma=1.0))
        elif key == "bernoulli_toy":
            for t in options["t"]:
                for dim in options["dims"]:
                    yield Cell(key, {"t": float(t), "dim": int(dim)},
                               problems.bernoulli_toy(t=float(t), dim=int(dim), p=float(options.get("p", 0.5))))
        elif key == "categorical_toy":
            for groups in options["groups"]:
                yield Cell(key, {"dim": int(groups), "classes": int(options["classes"])},
                           problems.categorical_polynomial(groups=int(groups), classes=int(options["classes"]),
                                                           t=float(options.get("t", 1.5))))
        elif key == "gamma":
            for name in options["costs"]:
                make = {"square": problems.gamma_square, "log": problems.gamma_log}[name]
                yield Cell(key, {"cost": name, "dim": 3}, make(3))
        else:
            raise ValueError(f"unknown problem {key!r}; valid: mohamed_quadratic, mohamed_exp, mohamed_cos, "
                             f"dimension, bernoulli_toy, categorical_toy, gamma")


def _on_device(problem: problems.Problem, device: torch.device) -> problems.Problem:
    return dataclasses.replace(problem, params={k: v.to(device) for k, v in problem.params.items()})


def measure_cell(est, problem, n_samples, generator, var_cfg) -> VarianceResult:
    """Accumulate estimates until the total variance's relative SE reaches the target."""
    chunks, n = [], int(var_cfg["min_estimates"])
    total = 0
    while True:
        res = estimators.measure_variance(est, problem.build, problem.leaves(), n_estimates=n,
                                          n_samples=n_samples, generator=generator, vectorize=True,
                                          chunk_size=int(var_cfg.get("chunk_size", 4096)))
        chunks.append(res.grads)
        total += n
        merged = VarianceResult(grads=torch.cat(chunks), n_samples=n_samples, seconds_per_estimate=math.nan)
        if not merged.total_variance_rse > var_cfg["target_rse"] or total >= var_cfg["max_estimates"]:
            return merged
        n = min(int(var_cfg["max_estimates"]) - total, 3 * total)


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


def run(config: dict, out_dir: Path) -> pd.DataFrame:
    device = resolve_device(config.get("device", "cpu"))
    seed = int(config.get("seed", 0))
    var_cfg = config["variance"]
    prov = provenance(config)
    rows, skipped = [], []
    cells = list(iter_problems(config["problems"]))
    log.info("synthetic study: %d problem settings x %d estimators x n_samples %s on %s",
             len(cells), len(config["estimators"]), config["n_samples"], device)
    for i, cell in enumerate(cells, 1):
        problem = _on_device(cell.problem, device)
        _, dist = problem.build(*problem.leaves())
        exact = problem.exact_gradient().to("cpu", torch.float64)
        for est_cfg in config["estimators"]:
            opts = {k: v for k, v in est_cfg.items() if k != "name"}
            est = estimators.get(est_cfg["name"], **opts).to(device)
            ident = {"problem": cell.problem_key, **cell.setting, "estimator": est.describe()}
            if not est.supports(dist):
                skipped.append({**ident, "reason": f"{est.name} does not support {estimators.families.family_name(dist)}"})
                continue
            for n_samples in config["n_samples"]:
                if n_samples < est.min_samples:
                    skipped.append({**ident, "n_samples": n_samples,
                                    "reason": f"needs n_samples >= {est.min_samples}"})
                    continue
                gen = torch.Generator(device=device).manual_seed(
                    cell_seed(seed, cell.problem_key, cell.setting, est.describe(), n_samples))
                warm_up(est, problem, n_samples, gen, int(var_cfg.get("warmup_calls", 0)))
                est.eval()
                res = measure_cell(est, problem, n_samples, gen, var_cfg)
                seconds = time_single_calls(est, problem, n_samples, gen, int(var_cfg["timing_calls"]), device)
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
                        "t": cell.setting.get("t", math.nan), "setting": json.dumps(cell.setting, sort_keys=True),
                        "parameter": param, "estimator": est.name, "estimator_label": est.describe(),
                        "estimator_options": json.dumps(est.options(), sort_keys=True),
                        "unbiased": est.unbiased, "seed": seed, "device": str(device),
                        "device_name": device_name(device), "exact_grad_norm": float(exact[sl].norm()),
                        "closed_form_mean_variance": _closed_form(cell, est, param, n_samples),
                        **summary,
                        "work_normalized_variance": summary["total_variance"] * seconds,
                        **prov,
                    })
        log.info("[%d/%d] %s %s done", i, len(cells), cell.problem_key, cell.setting)
    frame = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(frame, out_dir / "synthetic.csv")
    write_csv_atomic(pd.DataFrame(skipped, columns=["problem", "estimator", "n_samples", "reason"]
                                  if not skipped else None), out_dir / "skipped.csv")
    return frame


def load_config(path: str | Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="gradvar synthetic study (exact gradients)")
    ap.add_argument("--config", required=True, help="YAML config (see config/synthetic/)")
    ap.add_argument("--out", required=True, help="output folder for synthetic.csv and skipped.csv")
    ap.add_argument("--seed", type=int, help="override the config's seed")
    ap.add_argument("--device", help="override the config's device (cpu, cuda, cuda:N)")
    ap.add_argument("--estimator", action="append", type=json.loads, metavar="JSON",
                    help='run these estimators instead of the config\'s, e.g. \'{"name": "reinforce", '
                         '"baseline": "none"}\' (repeatable)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    if args.seed is not None:
        config["seed"] = args.seed
    if args.device is not None:
        config["device"] = args.device
    if args.estimator:
        config["estimators"] = args.estimator
    frame = run(config, Path(args.out))
    log.info("wrote %d rows to %s", len(frame), Path(args.out) / "synthetic.csv")


if __name__ == "__main__":
    main()
