"""Protocol ``reference_run``: every applicable estimator at the same checkpoints of one training run.

    python -m experiments.vae.variance --run results/vae/runs/REF --estimators config/vae/estimators.yaml \
        --out results/vae/reference/REF.csv [--n-samples 1 --n-samples 10]

Each estimator is measured on the run's snapshot models (``checkpoints/step_N.pt``, written at its variance
steps) with the run's evaluation minibatch and reference gradient, so differences between estimators are
not differences between training trajectories. Stateful estimators are put where training would have them:
a moving-average baseline is warmed up on the evaluation minibatch (``warmup_calls`` train-mode calls,
drawn from a generator separate from the measurement's), an annealed temperature is set to its value at
the checkpoint's step. A learned (NVIL) baseline exists only in a run trained with one, so ``nvil`` entries
are measured only on such runs.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
import torch
import yaml

from ..io import write_csv_atomic
from ..seeds import cell_seed
from .gradient_variance import encoder_gradient_estimates, reference_gradient, variance_row
from .train import Run, build_estimator

log = logging.getLogger("gradvar.vae.variance")


def _prepare(est, run: Run, x, step: int, warmup_calls: int) -> None:
    if hasattr(est, "step"):
        est.step.fill_(step)  # the temperature schedule's value at this checkpoint
    if getattr(est, "baseline", None) == "moving_average":
        gen = torch.Generator(device=run.device).manual_seed(cell_seed(run.config["seed"], "warmup", step))
        est.train()
        for _ in range(warmup_calls):
            q = run.model.posterior(x)
            est(run.model.elbo_integrand(x, q), q, max(est.min_samples, 1), gen)
    est.eval()


def measure_reference_run(run_dir: Path, estimator_cfgs: list[dict], n_samples_list: list[int],
                          warmup_calls: int = 20) -> pd.DataFrame:
    config = json.loads((run_dir / "config.json").read_text())
    run = Run(config, run_dir)
    vcfg = config["variance"]
    x = run.test_data[: int(vcfg["batch_size"])]
    q0 = run.model.posterior(x)
    rows = []
    for snapshot in sorted((run_dir / "checkpoints").glob("step_*.pt")):
        state = torch.load(snapshot, map_location=run.device, weights_only=False)
        run.model.load_state_dict(state["model"])
        if run.baseline_net is not None:
            run.baseline_net.load_state_dict(state["baseline_net"])
        step = int(state["step"])
        run.step = step
        reference = reference_gradient(run.model, x, run._eval_gen("reference"), vcfg["reference"])
        for cfg in estimator_cfgs:
            est, nvil = build_estimator(cfg)
            est = est.to(run.device)
            if not est.supports(q0) or (nvil and run.baseline_net is None):
                continue
            for n_samples in n_samples_list:
                if n_samples < est.min_samples:
                    continue
                _prepare(est, run, x, step, warmup_calls)
                gen = torch.Generator(device=run.device).manual_seed(
                    cell_seed(config["seed"], "reference_run", step, est.describe(), nvil, n_samples))
                res = encoder_gradient_estimates(run.model, x, est, n_samples=n_samples,
                                                 n_estimates=int(vcfg["n_estimates"]), generator=gen,
                                                 reference=reference,
                                                 baseline_net=run.baseline_net if nvil else None)
                label = est.describe() + ("+nvil" if nvil else "")
                rows.append({**run.ids, "step": step, "protocol": "reference_run", "measured_estimator": label,
                             "measured_estimator_name": est.name, "measured_n_samples": n_samples,
                             **variance_row(res, reference)})
        log.info("%s: step %d measured", run_dir, step)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Measure every applicable estimator at one run's checkpoints")
    ap.add_argument("--run", required=True, help="a finished run folder of experiments.vae.train")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--estimators", help="YAML list of estimator configs (name + options [+ nvil])")
    source.add_argument("--estimator", action="append", type=json.loads, metavar="JSON",
                        help='one estimator config as JSON, e.g. \'{"name": "pathwise"}\' (repeatable)')
    ap.add_argument("--n-samples", type=int, action="append", help="samples per estimate (repeatable; default 1)")
    ap.add_argument("--warmup-calls", type=int, default=20)
    ap.add_argument("--out", required=True, help="CSV to write")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.estimator:
        cfgs = args.estimator
    else:
        with open(args.estimators) as fh:
            cfgs = yaml.safe_load(fh)
        if isinstance(cfgs, dict):
            cfgs = cfgs["estimators"]
    frame = measure_reference_run(Path(args.run), cfgs, args.n_samples or [1], args.warmup_calls)
    write_csv_atomic(frame, args.out)
    log.info("wrote %d rows to %s", len(frame), args.out)


if __name__ == "__main__":
    main()
